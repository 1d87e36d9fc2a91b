"""The dnsmasq ``dhcp-script`` hook: pass a DHCP lease event on to pumaguard-heartbeat.

dnsmasq runs the script as ``ACTION MAC IP [HOSTNAME]``. The event goes to the
daemon over its control socket; when no daemon answers, the hook applies it to
the settings file itself (same lock, same atomic write as the daemon), so no
event is lost while the service is stopped. For dnsmasq the hook always exits
0 and says what went wrong on stderr (dnsmasq logs it) and, when there is one,
to syslog.

Shipped as ``/usr/lib/pumaguard-heartbeat/dnsmasq-dhcp-script``; also run by
``pumaguard-hb dhcp-event``.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401 - imported lazily by socket/http, maybe after the drop below
import grp
import logging
import logging.handlers
import os
import pwd
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pumaguard_hb.control.client import Client, DaemonNotRunning, NoAnswer
from pumaguard_hb.logs import PrintableFilter
from pumaguard_hb.model.camera import clean_hostname, normalize_ip, normalize_mac, now_iso
from pumaguard_hb.model.dhcp import ACTIONS
from pumaguard_hb.model.errors import InvalidValue, SettingsError
from pumaguard_hb.model.keys import KEYS_BY_NAME
from pumaguard_hb.model.settings import Settings, parse_settings, raw_value
from pumaguard_hb.model.station import Station, check_event
from pumaguard_hb.paths import default_settings_path
from pumaguard_hb.stores.filestore import FileStore
from pumaguard_hb.stores.settings_file import SettingsFile
from pumaguard_hb.stores.webui import WebUI, WebUIError

log = logging.getLogger(__name__)

HOOK_TIMEOUT = 2.0  # seconds for the daemon to answer; dnsmasq waits for the script
SERVICE_USER = "pumaguard-hb"  # the service's system user and group (systemd/sysusers)
NOBODY = 65534  # nobody/nogroup: the group when the folder's group is root's
SERVICE_SETTINGS = Path("/var/lib/pumaguard-heartbeat/pumaguard-settings.yaml")
SERVICE_CONFIG = Path("/var/lib/pumaguard-heartbeat/heartbeat.yaml")  # the service's --config
SYSLOG_SOCKET = "/dev/log"


@dataclass(frozen=True)
class EventResult:
    """What became of one event: who applied it (daemon, file or nobody) and a sentence."""

    message: str
    via: str  # "daemon", "file" or "ignored"
    settings_path: Path | None = None
    daemon_problem: str | None = None  # why the file was written instead of the daemon told


def hook_settings_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The file to write when the daemon is down.

    ``explicit`` > ``$PUMAGUARD_SETTINGS`` > the service's file (when the service's
    state directory exists) > the user's default location.
    """
    if explicit:
        return Path(explicit)
    env = os.environ.get("PUMAGUARD_SETTINGS")
    if env:
        return Path(env)
    if SERVICE_SETTINGS.parent.is_dir():  # the service is installed (its file may not exist yet)
        return SERVICE_SETTINGS
    return default_settings_path()


def handle_event(
    action: str,
    mac: str,
    ip: str,
    hostname: str | None = None,
    *,
    socket_path: str | os.PathLike[str] | None = None,
    settings_path: str | os.PathLike[str] | None = None,
    timeout: float = HOOK_TIMEOUT,
) -> EventResult:
    """Apply one DHCP event through the daemon, or to the settings file when it is down.

    Raises InvalidValue for a malformed MAC, IP or hostname, NotPermitted when the
    socket may not be used, ProtocolError when the daemon refuses the event, and
    SettingsError/StoreError when the file cannot be read or written.
    """
    if action not in ACTIONS:
        return EventResult(f"dhcp {action}: ignored", "ignored")
    # Check the input here: garbage never reaches the daemon or the file.
    mac = normalize_mac(mac)
    ip = normalize_ip(ip)
    hostname = clean_hostname(hostname) or None
    args: dict[str, str] = {"action": action, "mac": mac, "ip": ip}
    if hostname:
        args["hostname"] = hostname
    try:
        with Client(socket_path, timeout) as client:
            reply = client.call("dhcp_event", args)
        message = reply.get("message", "") if isinstance(reply, dict) else str(reply)
        return EventResult(str(message), "daemon")
    except (DaemonNotRunning, NoAnswer) as err:
        problem = str(err)
    path = hook_settings_path(settings_path)
    # dnsmasq runs us as root: never touch a file (the own config read for the web UI's
    # URL included) with more power than the service's user, or as root a file that
    # anybody but root can write (HookRefused, logged: PRODUCT.md's trust boundaries)
    drop_privileges(path)
    url = hook_webui_url()
    if url:
        try:
            return apply_to_webui(url, action, mac, ip, hostname, problem)
        except (WebUIError, InvalidValue) as err:
            problem = f"{problem}; {err}"
    log.debug("daemon not reachable (%s); applying the event to %s", problem, path)
    return apply_to_file(action, mac, ip, hostname, path, problem)


def _patterns(doc: dict[str, object], path: Path) -> tuple[str, ...]:
    """Hostname patterns of the file; an invalid unrelated key does not stop the hook."""
    try:
        return parse_settings(doc, str(path)).hostname_patterns
    except SettingsError as err:
        key = KEYS_BY_NAME["camera_heartbeat_hostname_patterns"]
        found = raw_value(doc, key)
        patterns: tuple[str, ...] = Settings().hostname_patterns
        if found is not None:
            patterns = tuple(key.check(found[0], found[1]))  # InvalidValue if these are bad too
        log.warning("%s (using hostname patterns %s)", err, ", ".join(patterns))
        return patterns


def apply_to_file(
    action: str,
    mac: str,
    ip: str,
    hostname: str | None,
    path: Path,
    daemon_problem: str | None = None,
) -> EventResult:
    """Apply one event to the settings file at ``path`` under its lock (daemon not running).

    The file's cameras become a station model, the event one transition of it
    (:meth:`.station.Station.dhcp`, as in the daemon); the write re-reads the file under
    the lock and changes only that camera's fields, so a concurrent writer loses nothing.
    """
    file = SettingsFile(path)
    snap = file.read()
    store = FileStore(file, lambda: snap.identity is not None)
    station = Station()
    station.listing(store.entries(snap.doc), time.time())
    event = check_event(action, mac, ip, hostname)
    if event is None:
        return EventResult(f"dhcp {action}: ignored", "ignored", path, daemon_problem)
    outcome = station.dhcp(event, _patterns(snap.doc, path), time.time(), now_iso())
    if outcome.camera is None:
        return EventResult(outcome.message, "ignored", path, daemon_problem)
    for cam in station.cameras.values():  # only this event's camera is the hook's to write
        if cam is not outcome.camera:
            cam.seen.known = False
    store.record_dhcp(outcome)
    store.write(station)
    return EventResult(outcome.message, "file", path, daemon_problem)


def hook_webui_url() -> str:
    """The web UI the daemon reports to, when it runs in web UI mode: the hook then passes
    events straight to it while the daemon is down (never writing the web UI's file)."""
    env = os.environ.get("PUMAGUARD_WEBUI_URL")
    if env:
        return env
    config = os.environ.get("PUMAGUARD_HB_CONFIG") or ""
    if not config:
        try:
            os.stat(SERVICE_CONFIG)
        except FileNotFoundError:
            return ""
        except OSError as err:  # a state folder we may not read: the event goes to the file
            log.warning(
                "cannot read %s (%s); not looking for the web UI's URL there",
                SERVICE_CONFIG,
                err.strerror or err,
            )
            return ""
        config = str(SERVICE_CONFIG)
        if _is_root():
            problem = root_only_problem(SERVICE_CONFIG)
            if problem is not None:  # its web UI URL is a privileged key
                log.warning("not reading %s as root: %s", SERVICE_CONFIG, problem)
                return ""
    try:
        doc = SettingsFile(Path(config)).read().doc
    except SettingsError as err:
        log.warning("%s", err)
        return ""
    found = raw_value(doc, KEYS_BY_NAME["camera_heartbeat_webui_url"])
    return str(found[1]) if found and isinstance(found[1], str) else ""


def apply_to_webui(
    url: str, action: str, mac: str, ip: str, hostname: str | None, daemon_problem: str
) -> EventResult:
    """Pass one event to the web UI (daemon not running, web UI mode); WebUIError if it
    does not take it."""
    client = WebUI(url, timeout=HOOK_TIMEOUT)
    stamp: str | None = now_iso()
    if action == "del":  # keep the last good contact: the web UI takes the event's timestamp
        known = {str(r.get("mac_address", "")).lower(): r for r in client.cameras()}
        last = known.get(mac, {}).get("last_seen")
        stamp = last if isinstance(last, str) and last else None
    client.event(action, mac, ip, hostname or "", stamp)
    return EventResult(
        f"dhcp {action} {mac} {ip}: sent to the web UI at {url}", "webui", None, daemon_problem
    )


class HookRefused(Exception):
    """Run as root without the service's user, the settings file is one that somebody but
    root could write: the hook does not write it (as root or as anybody)."""


def _is_root() -> bool:
    return os.geteuid() == 0 or os.getuid() == 0


def _writable_by_others(st: os.stat_result) -> bool:
    return bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _chain(folder: str) -> list[str]:
    """``folder`` and each of its ancestors, from ``/`` down."""
    out = [folder]
    while True:
        parent = os.path.dirname(out[-1])
        if parent == out[-1]:
            return out[::-1]
        out.append(parent)


def root_only_problem(path: Path) -> str | None:
    """Why ``path`` is not a file that only root can write, or None when it is.

    Only root can write it when: every folder on the way to it (as written, and as its
    symlinks resolve) is root's and not group- or world-writable, a symlink on the way
    is root's (it lies in a folder only root can write), and the file, when it exists, is
    a regular file of root's, not group- or world-writable, with no other hard link.
    """
    folder = os.path.dirname(os.path.abspath(path))
    for place, follow in [(f, False) for f in _chain(folder)] + [
        (f, True) for f in _chain(os.path.realpath(folder))
    ]:
        try:
            st = os.stat(place) if follow else os.lstat(place)
            if not follow and stat.S_ISLNK(st.st_mode):
                if st.st_uid != 0:
                    return f"{place} is a symlink of uid {st.st_uid}"
                st = os.stat(place)
        except FileNotFoundError:
            break  # created later by root, in a folder checked above
        except OSError as err:
            return f"cannot check {place}: {err.strerror or err}"
        if st.st_uid != 0:
            return f"{place} belongs to uid {st.st_uid}"
        if _writable_by_others(st):
            return f"{place} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"cannot check {path}: {err.strerror or err}"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symlink"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_uid != 0:
        return f"{path} belongs to uid {st.st_uid}"
    if _writable_by_others(st):
        return f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    if st.st_nlink != 1:
        return f"{path} has {st.st_nlink} hard links"
    return None


def service_identity(path: Path) -> tuple[int, int, str | None] | None:
    """Whom the hook acts as when dnsmasq runs it as root: ``(uid, gid, user name)``, or
    None to stay root.

    The service's user and group (``pumaguard-hb``) when that user exists. Without it, the
    owner and group of the settings file's folder (its nearest existing ancestor) when that
    is not root; a folder of root's is written as root only when only root can write the
    file (:func:`root_only_problem`), else :class:`HookRefused`.
    """
    try:
        user = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    else:
        try:
            gid = grp.getgrnam(SERVICE_USER).gr_gid
        except KeyError:
            gid = user.pw_gid
        return user.pw_uid, gid, user.pw_name
    folder = Path(os.path.abspath(path)).parent
    while True:
        try:
            st = os.stat(folder)
            break
        except OSError:
            if folder.parent == folder:
                return NOBODY, NOBODY, None
            folder = folder.parent
    uid, gid = st.st_uid, st.st_gid
    if uid == 0:
        problem = root_only_problem(path)
        if problem is None:
            return None
        raise HookRefused(
            f"{path}: Permission denied: there is no {SERVICE_USER} user, and as root the "
            f"hook writes only a file that only root can write, but {problem}; event not "
            f"recorded (create the {SERVICE_USER} user, e.g. with systemd-sysusers, or make "
            f"the file and its folders root's alone)"
        )
    if gid == 0:
        gid = NOBODY
    try:
        name: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    return uid, gid, name


def drop_privileges(path: Path) -> None:
    """Run as root, become the service's user (see :func:`service_identity`) for good: real,
    effective and saved ids, and only that user's groups. A no-op when not root, and when
    only root can write the settings file and there is no service user.

    Called before the hook opens any file, so a symlink planted by the service user (or
    by code it runs) at the lock, temp or settings path gets no more power than theirs.
    """
    if not _is_root():
        return
    who = service_identity(path)
    if who is None:
        log.debug("no %s user; %s is root's alone: acting as root", SERVICE_USER, path)
        return
    uid, gid, name = who
    groups = {gid}
    if name is not None:
        groups |= {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    groups.discard(0)
    os.setgroups(sorted(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if 0 in (os.getuid(), os.geteuid(), *os.getresuid(), *os.getresgid()):
        raise RuntimeError("could not drop root privileges; not touching any file")
    log.debug("acting as uid %d gid %d (%s)", uid, gid, name or "no name")


def _event_args(argv: list[str]) -> tuple[str, str, str, str | None] | None:
    """ACTION MAC IP [HOSTNAME] from dnsmasq's arguments; None when there is no lease event."""
    if not argv:
        log.error("no arguments; dnsmasq runs this as: ACTION MAC IP [HOSTNAME]")
        return None
    action = argv[0]
    if action not in ACTIONS:
        log.debug("dhcp %s: ignored", action)
        return None
    if len(argv) < 3:
        log.error("dhcp %s: expected ACTION MAC IP [HOSTNAME], got %r", action, argv)
        return None
    mac, ip = argv[1], argv[2]
    hostname = argv[3] if len(argv) > 3 else os.environ.get("DNSMASQ_SUPPLIED_HOSTNAME")
    if os.environ.get("DNSMASQ_IAID") is not None:
        # DHCPv6: the second argument is the client's DUID; dnsmasq gives the MAC when known.
        mac = os.environ.get("DNSMASQ_MAC", "")
        if not mac:
            log.info("dhcp %s %s: DHCPv6 client without a known MAC, ignored", action, ip)
            return None
    return action, mac, ip, hostname


def _setup_logging() -> list[logging.Handler]:
    handlers: list[logging.Handler] = []
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("pumaguard-heartbeat dhcp-script: %(message)s"))
    handlers.append(stderr)
    if os.path.exists(SYSLOG_SOCKET):
        try:
            syslog = logging.handlers.SysLogHandler(
                SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON
            )
        except OSError:
            pass
        else:
            syslog.setFormatter(logging.Formatter("pumaguard-heartbeat-dhcp: %(message)s"))
            handlers.append(syslog)
    for handler in handlers:
        handler.addFilter(PrintableFilter())  # argv is dnsmasq's, the hostname a device's
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if os.environ.get("PUMAGUARD_HB_HOOK_DEBUG") else logging.INFO)
    log.propagate = False
    return handlers


def main(argv: list[str] | None = None) -> int:
    """Run as dnsmasq's dhcp-script; always returns 0 so dnsmasq carries on."""
    handlers = _setup_logging()
    try:
        event = _event_args(sys.argv[1:] if argv is None else argv)
        if event is not None:
            result = handle_event(*event)
            if result.via == "ignored" or result.message.endswith("ignored"):
                log.debug("%s", result.message)
            elif result.via == "webui":
                log.info("%s (daemon not running)", result.message)
            elif result.via == "file":
                log.info(
                    "%s (daemon not running; written to %s)", result.message, result.settings_path
                )
            else:
                log.info("%s", result.message)
    except Exception as err:  # dnsmasq must never see a failure; say what it was
        log.error("%s", err or type(err).__name__)
    except KeyboardInterrupt:
        pass
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
