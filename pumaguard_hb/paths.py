"""Where the control socket and the shared settings file live; the daemon, the hook and
the CLI resolve them the same way."""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_SOCKET = Path("/run/pumaguard/heartbeat.sock")


def user_socket() -> Path | None:
    """``$XDG_RUNTIME_DIR/pumaguard/heartbeat.sock`` for a normal user, if there is one."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if os.geteuid() == 0 or not runtime:
        return None
    return Path(runtime) / "pumaguard" / "heartbeat.sock"


def daemon_socket_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--socket`` > ``$PUMAGUARD_HB_SOCKET`` > the user's runtime dir > /run/pumaguard."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("PUMAGUARD_HB_SOCKET")
    if env:
        return Path(env)
    return user_socket() or SYSTEM_SOCKET


def client_socket_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Like the daemon, but a user's CLI falls back to the service's socket when it has none."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("PUMAGUARD_HB_SOCKET")
    if env:
        return Path(env)
    mine = user_socket()
    if mine is not None and mine.exists():
        return mine
    return SYSTEM_SOCKET


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where the daemon keeps its own state (history): ``--state-dir`` > ``$STATE_DIRECTORY``
    (systemd's StateDirectory=) > /var/lib/pumaguard-heartbeat for root >
    ``$XDG_STATE_HOME/pumaguard-heartbeat`` (default ``~/.local/state/pumaguard-heartbeat``)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/pumaguard-heartbeat")
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "pumaguard-heartbeat"


def default_settings_path() -> Path:
    """``$PUMAGUARD_SETTINGS``, else the XDG config location PumaGuard uses."""
    env = os.environ.get("PUMAGUARD_SETTINGS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pumaguard" / "pumaguard-settings.yaml"
