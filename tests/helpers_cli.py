"""Helpers of the CLI and hook tests: a real daemon process, real TCP listeners, temp users.

Only loopback addresses (127.0.0.0/8) are used. Every process and user made here
is removed in a ``finally`` or a fixture teardown.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pty
import pwd
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import harness
import yaml

REPO = Path(__file__).resolve().parent.parent
HOOK_SCRIPT = REPO / "systemd" / "dnsmasq-dhcp-script"
PYTHONPATH = f"{REPO}{os.pathsep}{REPO / 'cli'}"


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without anything that would steer the CLI or the daemon."""
    drop = {
        "NO_COLOR",
        "FORCE_COLOR",
        "PUMAGUARD_HB_SOCKET",
        "PUMAGUARD_SETTINGS",
        "COLUMNS",
        "NOTIFY_SOCKET",
        "JOURNAL_STREAM",
        "TTY_COMPATIBLE",
        "TTY_INTERACTIVE",
    }
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = PYTHONPATH
    env.update(extra)
    return env


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
    python: str = sys.executable,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``pumaguard-hb`` in a subprocess; output captured (a pipe, not a terminal)."""
    return subprocess.run(
        [*prefix, python, "-m", "pumaguard_hb_cli.main", *args],
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
    )


def run_hook(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``systemd/dnsmasq-dhcp-script`` as dnsmasq would, with this test's python."""
    full = env or clean_env()
    full.setdefault("PUMAGUARD_HB_PYTHON", sys.executable)
    return subprocess.run(
        [str(HOOK_SCRIPT), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
    )


def write_settings(path: Path, doc: dict[str, Any]) -> Path:
    """Write a settings file as the web UI would."""
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    return path


def read_settings(path: Path) -> dict[str, Any]:
    """The settings file as a document."""
    doc = yaml.safe_load(path.read_text())
    return doc if isinstance(doc, dict) else {}


def cameras_by_mac(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The file's cameras keyed by MAC."""
    return {c["mac_address"]: c for c in doc.get("cameras") or [] if c.get("mac_address")}


def camera_entry(name: str, ip: str, mac: str, status: str = "disconnected") -> dict[str, Any]:
    """A camera as PumaGuard writes it."""
    return harness.camera(name, ip, mac, status=status)


class Listeners(harness.Listeners):
    """Real TCP listeners on loopback addresses, all on one port (the daemon probes one port)."""

    def open_same_port(self, ips: Sequence[str], attempts: int = 50) -> int:
        """Listen on ``ips`` at one common free port; returns the port."""
        for _ in range(attempts):
            port = 0
            opened: list[tuple[str, int]] = []
            try:
                for ip in ips:
                    opened.append(self.open(ip, port))
                    port = opened[0][1]
            except OSError:
                for addr in opened:
                    self.close(addr)
                continue
            return port
        raise AssertionError("no common free port on " + ", ".join(ips))


class HbDaemon(harness.Daemon):
    """A real ``pumaguard-heartbeat`` process (``python -m pumaguard_hb``) on ``sock``."""

    def __init__(self, settings: Path, sock: Path) -> None:
        super().__init__(sock.parent, settings)
        self.socket = sock

    def start(  # type: ignore[override]
        self, prefix: Sequence[str] = (), timeout: float = 15
    ) -> HbDaemon:
        """Start it and poll the socket (bounded) until it answers ping."""
        super().start(prefix=list(prefix), wait=False)
        try:
            self.wait_ready(timeout)
        except AssertionError:
            self.stop()
            raise
        return self

    def wait_swept(self) -> dict[str, Any]:
        """The status once a sweep has run and its write is done.

        check_now joins (or follows) the start-up sweep and answers only after that
        sweep's write, so a test may then edit the file without racing the daemon.
        """
        self.call("check_now")
        status: dict[str, Any] = self.call("status")
        return status


class Station:
    """A daemon with cameras: two answering TCP listeners and one refused port."""

    UP1 = ("Microseven-Gate", "127.0.0.2", "00:11:22:33:44:01")
    UP2 = ("Microseven-Barn", "127.0.0.3", "00:11:22:33:44:02")
    DOWN = ("Microseven-Creek", "127.0.0.4", "00:11:22:33:44:03")

    def __init__(self, folder: Path, interval: float = 3600, with_down: bool = True) -> None:
        self.folder = folder
        self.listeners = Listeners()
        self.port = self.listeners.open_same_port([self.UP1[1], self.UP2[1]])
        cams = [camera_entry(*self.UP1), camera_entry(*self.UP2)]
        if with_down:
            cams.append(camera_entry(*self.DOWN, status="connected"))
        self.settings = write_settings(
            folder / "pumaguard-settings.yaml",
            {
                "camera-heartbeat-interval": interval,
                "camera-heartbeat-tcp-port": self.port,
                "camera-heartbeat-tcp-timeout": 2,
                "cameras": cams,
                "plugs": [{"hostname": "plug-1", "ip_address": "127.0.0.9"}],
            },
        )
        self.daemon = HbDaemon(self.settings, folder / "hb.sock")

    def env(self, **extra: str) -> dict[str, str]:
        """Environment pointing the CLI at this station's socket."""
        return clean_env(PUMAGUARD_HB_SOCKET=str(self.daemon.socket), **extra)

    def cli(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run the CLI against this station."""
        kw.setdefault("env", self.env())
        return run_cli(*args, **kw)

    def close(self) -> None:
        """Stop the daemon and the listeners."""
        try:
            self.daemon.stop()
        finally:
            self.listeners.close_all()


@contextlib.contextmanager
def station(folder: Path | None = None, **kw: Any) -> Iterator[Station]:
    """A started Station, always stopped afterwards."""
    own = folder is None
    where = folder or Path(tempfile.mkdtemp(prefix="phb-cli-"))
    s = Station(where, **kw)
    try:
        s.daemon.start()
        yield s
    finally:
        s.close()
        if own:
            shutil.rmtree(where, ignore_errors=True)


# -- temporary system users and groups (root only) ------------------------------------------


class TempAccounts:
    """System users and groups made for one test, removed even when the test fails."""

    def __init__(self) -> None:
        self.users: list[str] = []
        self.groups: list[str] = []
        self.tag = f"phb{os.getpid() % 100000}"

    def group(self, suffix: str) -> grp.struct_group:
        name = f"{self.tag}{suffix}"
        subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
        self.groups.append(name)
        return grp.getgrnam(name)

    def user(self, suffix: str, groups: Sequence[str] = ()) -> pwd.struct_passwd:
        name = f"{self.tag}{suffix}"
        cmd = [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
        ]
        if groups:
            cmd += ["--groups", ",".join(groups)]
        subprocess.run([*cmd, name], check=True, capture_output=True)
        self.users.append(name)
        return pwd.getpwnam(name)

    def remove(self) -> None:
        for name in reversed(self.users):
            subprocess.run(["userdel", name], capture_output=True)
        for name in [*self.users, *reversed(self.groups)]:
            with contextlib.suppress(KeyError):
                grp.getgrnam(name)
                subprocess.run(["groupdel", name], capture_output=True)


@contextlib.contextmanager
def temp_accounts() -> Iterator[TempAccounts]:
    """Make system users and groups; they are deleted at the end, whatever happens."""
    accounts = TempAccounts()
    try:
        yield accounts
    finally:
        accounts.remove()


def as_user(user: pwd.struct_passwd, init_groups: bool = False) -> list[str]:
    """A ``setpriv`` prefix that runs a command as ``user`` (with its /etc/group groups)."""
    groups = ["--init-groups"] if init_groups else ["--clear-groups"]
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", *groups]


def unprivileged_python(prefix: Sequence[str]) -> str | None:
    """An interpreter an unprivileged user may run that has click and rich (pyenv under /root
    usually is not reachable; Debian's /usr/bin/python3 with python3-click and python3-rich is)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        done = subprocess.run(
            [*prefix, candidate, "-c", "import click, rich"],
            capture_output=True,
            cwd="/",
            env=clean_env(),
        )
        if done.returncode == 0:
            return candidate
    return None


# -- folders the dnsmasq hook may write when run as root --------------------------------------

def _service_ids() -> tuple[int, int]:
    """The ids the hook run as root becomes in a folder of the service's: the service user
    pumaguard-hb when this machine has it (the package is installed), else nobody/nogroup
    (the tests' stand-in; the hook then acts as the folder's owner)."""
    try:
        user = pwd.getpwnam("pumaguard-hb")
    except KeyError:
        return 65534, 65534
    try:
        return user.pw_uid, grp.getgrnam("pumaguard-hb").gr_gid
    except KeyError:
        return user.pw_uid, user.pw_gid


NOBODY, NOGROUP = _service_ids()  # names kept short: "the service user" of the tests


def give_to_nobody(folder: Path) -> Path:
    """Make ``folder`` and the files in it nobody's (the service user's stand-in), as the
    service's state folder is the service user's. Run as root, the hook acts as the folder's
    owner (never as root), so a test's folder must belong to somebody else; not root: no-op."""
    if os.geteuid() != 0:
        return folder
    os.chown(folder, NOBODY, NOGROUP)
    for entry in folder.iterdir():
        os.chown(entry, NOBODY, NOGROUP, follow_symlinks=False)
    return folder


@contextlib.contextmanager
def hook_folder() -> Iterator[Path]:
    """A fresh folder the hook run as root can write (nobody's, under /tmp, 0755)."""
    folder = Path(tempfile.mkdtemp(prefix="phb-hook-"))
    try:
        os.chmod(folder, 0o755)
        yield give_to_nobody(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_on_tty_bytes(args: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """The CLI with stdout and stderr on a pseudo-terminal: (status, bytes it wrote)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pumaguard_hb_cli.main", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        close_fds=True,
        cwd="/",
    )
    os.close(follower)
    chunks: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return status, b"".join(chunks)
