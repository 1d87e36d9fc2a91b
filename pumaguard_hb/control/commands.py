"""The commands the control socket answers: a table of name → handler.

Each handler takes the monitor, the request's arguments and who is asking (the
peer's credentials) and returns the result object; it raises ProtocolError (or a
HeartbeatError that is mapped to one) for a user's mistake.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pumaguard_hb import __version__
from pumaguard_hb.control.protocol import (
    BAD_ARGS,
    CONFLICT,
    DISABLED,
    INVALID_VALUE,
    NOT_FOUND,
    PERMISSION_DENIED,
    PROTOCOL_VERSION,
    VERSION_MISMATCH,
    ProtocolError,
)
from pumaguard_hb.model.errors import (
    CameraNotFound,
    Conflict,
    Disabled,
    InvalidValue,
    PermissionDenied,
)
from pumaguard_hb.model.keys import KEYS, lookup_key
from pumaguard_hb.monitor import Monitor
from pumaguard_hb.outputs import metrics


@dataclass(frozen=True)
class Peer:
    """Who sent a request (SO_PEERCRED)."""

    uid: int
    gid: int

    @property
    def root(self) -> bool:
        return self.uid == 0


ROOT = Peer(0, 0)
Handler = Callable[[Monitor, dict[str, Any], Peer], Awaitable[Any]]


@dataclass(frozen=True)
class Command:
    """A command: its handler, and whether it changes anything (needs group membership)."""

    handler: Handler
    changes: bool
    doc: str


def _str(args: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise ProtocolError(BAD_ARGS, f'"{name}" must be a non-empty string')
    return value


async def hello(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """Version handshake: the client names its protocol version, the daemon answers with its."""
    wanted = args.get("protocol", PROTOCOL_VERSION)
    if wanted != PROTOCOL_VERSION:
        raise ProtocolError(
            VERSION_MISMATCH,
            f"daemon speaks protocol {PROTOCOL_VERSION}, client speaks {wanted!r}; "
            "use the pumaguard-hb that came with the daemon",
        )
    return {
        "protocol": PROTOCOL_VERSION,
        "daemon": "pumaguard-heartbeat",
        "version": __version__,
        "commands": sorted(COMMANDS),
    }


async def ping(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """Liveness check."""
    return "pong"


async def status(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """The daemon and every camera."""
    return _status(monitor)


def _status(monitor: Monitor) -> dict[str, Any]:
    """monitor.status() with the history: uptime_24h/uptime_7d/recent per camera."""
    result = monitor.status()
    hist = monitor.history
    if hist is None:
        result["daemon"]["history"] = {"available": False, "problem": "history not configured"}
        return result
    result["daemon"]["history"] = hist.info()
    for cam in result["cameras"]:
        cam.update(hist.camera_summary(cam["id"]))
    return result


async def history_cmd(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """State changes from the history file: optional "camera", "since" (Unix s), "limit"."""
    hist = monitor.history
    if hist is None or not hist.available:
        why = hist.problem if hist is not None else "history not configured"
        raise ProtocolError(CONFLICT, why or "history unavailable")
    ref = _str(args, "camera", required=False)
    since = args.get("since")
    if since is not None and (isinstance(since, bool) or not isinstance(since, int | float)):
        raise ProtocolError(BAD_ARGS, '"since" must be a number (Unix seconds)')
    limit = args.get("limit", 100)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100000:
        raise ProtocolError(BAD_ARGS, '"limit" must be a whole number from 1 to 100000')
    match: set[str] | None = None
    known = True
    if ref is not None:
        try:
            match = {monitor.find(ref).id}
        except CameraNotFound:  # a camera removed since: its id, MAC, IP or hostname
            match, known = {ref}, False
    changes, more = await asyncio.to_thread(hist.read, match, since, limit)
    if not known and not changes:
        raise CameraNotFound(ref or "")
    return {"changes": changes, "more": more, "history": hist.info()}


async def timeline(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """Per camera: uptime, observed share and "slots" (up/down/mixed/unknown) over "window"
    (24h or 7d, default 24h), "slots" 10-400 (default 80), optional "cameras"."""
    from pumaguard_hb.model.uptime import MAX_SLOTS, MIN_SLOTS, WINDOWS

    hist = monitor.history
    if hist is None or not hist.available:
        why = hist.problem if hist is not None else "history not configured"
        raise ProtocolError(CONFLICT, why or "history unavailable")
    window = args.get("window", "24h")
    if not isinstance(window, str) or window not in WINDOWS:
        raise ProtocolError(BAD_ARGS, '"window" must be "24h" or "7d"')
    count = args.get("slots", 80)
    if isinstance(count, bool) or not isinstance(count, int) or not MIN_SLOTS <= count <= MAX_SLOTS:
        raise ProtocolError(
            BAD_ARGS, f'"slots" must be a whole number from {MIN_SLOTS} to {MAX_SLOTS}'
        )
    refs = args.get("cameras")
    if refs is None or refs == []:
        cams = list(monitor.station.cameras.values())
    elif isinstance(refs, list) and len(refs) <= 1024 and all(isinstance(r, str) for r in refs):
        cams = list({cam.id: cam for cam in (monitor.find(r) for r in refs)}.values())
    else:
        raise ProtocolError(BAD_ARGS, '"cameras" must be a list of camera names, MACs or IPs')
    now = time.time()
    rows = []
    for cam in cams:
        row = {
            "id": cam.id,
            "hostname": cam.hostname,
            "ip_address": cam.ip_address,
            "status": cam.status,
        }
        row.update(hist.camera_timeline(cam.id, window, count, now))
        rows.append(row)
    return {
        "window": window,
        "start": now - WINDOWS[window],
        "end": now,
        "slots": count,
        "slot_s": WINDOWS[window] / count,
        "cameras": rows,
    }


async def metrics_cmd(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """Prometheus metrics in the text exposition format."""
    return {"content_type": metrics.CONTENT_TYPE, "text": metrics_text(monitor)}


def metrics_text(monitor: Monitor) -> str:
    """The exposition text of ``monitor`` (also served by the HTTP listener)."""
    return metrics.render(_status(monitor), monitor.changes, monitor.power)


async def check_now(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """Probe now (all cameras, or those named in "cameras") and return after the sweep."""
    refs = args.get("cameras")
    if refs is None or refs == []:
        ids = None
    elif isinstance(refs, list) and all(isinstance(r, str) for r in refs):
        ids = frozenset(monitor.find(r).id for r in refs)
    else:
        raise ProtocolError(BAD_ARGS, '"cameras" must be a list of camera names, MACs or IPs')
    return await monitor.schedule.check_now(ids)


async def camera_add(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """Add a camera by hand: hostname, ip_address, optional mac_address."""
    cam = await monitor.add_camera(
        _str(args, "hostname") or "",
        _str(args, "ip_address") or "",
        _str(args, "mac_address", required=False),
    )
    return cam.to_dict()


async def camera_remove(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """Remove the camera named by "camera" (id, MAC, IP or hostname)."""
    cam = await monitor.remove_camera(_str(args, "camera") or "")
    return cam.to_dict()


async def config_get(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """The heartbeat settings, or the one named by "key"; secrets as their scheme and ***
    unless "show_secrets" is true (root only)."""
    name = _str(args, "key", required=False)
    show = args.get("show_secrets", False)
    if not isinstance(show, bool):
        raise ProtocolError(BAD_ARGS, '"show_secrets" must be true or false')
    if show and not peer.root:
        raise PermissionDenied(
            "permission denied: only root may read secrets back (--show-secrets); "
            "without it, secrets show as their scheme and ***"
        )
    values = monitor.settings.as_dict() if show else monitor.settings.public_dict()
    if name is None:
        return {"settings": values, "help": {k.name: k.help for k in KEYS}}
    key = lookup_key(name)
    return {"key": key.name, "value": values[key.name]}


async def config_set(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """Validate, persist and apply one heartbeat setting: "key" and "value"."""
    name = _str(args, "key") or ""
    if "value" not in args:
        raise ProtocolError(BAD_ARGS, '"value" is required')
    settings = await monitor.set_config(name, args["value"], by_root=peer.root)
    key = lookup_key(name)
    return {"key": key.name, "value": settings.public_dict()[key.name]}


async def dhcp_event(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """Apply a dnsmasq event: "action", "mac", "ip", optional "hostname"."""
    message = await monitor.dhcp_event(
        _str(args, "action") or "",
        _str(args, "mac") or "",
        _str(args, "ip") or "",
        _str(args, "hostname", required=False),
    )
    return {"message": message}


async def reload(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """Re-read the settings file now (like SIGHUP)."""
    problem = await monitor.reload("reload command")
    if problem:
        raise ProtocolError(CONFLICT, problem + "; keeping the last good settings")
    return {"message": "settings reloaded", "settings": monitor.settings.public_dict()}


async def alert_test(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """Send a test alert through every configured channel (mail, Apprise); each result."""
    from pumaguard_hb.outputs import alerts  # docs/alerts.md

    found = alerts.find(monitor)
    if found is None or not found.enabled(monitor.settings):
        raise ProtocolError(
            CONFLICT,
            "no alert channel is configured: set camera_heartbeat_smtp_host and "
            "camera_heartbeat_smtp_to, or camera_heartbeat_apprise_urls (docs/alerts.md)",
        )
    return {"results": await found.test()}


async def power_cycle(monitor: Monitor, args: dict[str, Any], peer: Peer) -> Any:
    """Cut the power of the camera named by "camera" through its heartbeat_plug now, under
    the safety rules but the wait, and answer with the outcome (docs/power-cycle.md)."""
    cam = monitor.find(_str(args, "camera") or "")
    if monitor.power is None:
        raise ProtocolError(CONFLICT, "this daemon runs without power cycling")
    return await monitor.power.cycle_now(cam)


COMMANDS: dict[str, Command] = {
    "hello": Command(hello, False, hello.__doc__ or ""),
    "ping": Command(ping, False, ping.__doc__ or ""),
    "status": Command(status, False, status.__doc__ or ""),
    "config_get": Command(config_get, False, config_get.__doc__ or ""),
    "history": Command(history_cmd, False, history_cmd.__doc__ or ""),
    "timeline": Command(timeline, False, timeline.__doc__ or ""),
    "metrics": Command(metrics_cmd, False, metrics_cmd.__doc__ or ""),
    "check_now": Command(check_now, True, check_now.__doc__ or ""),
    "camera_add": Command(camera_add, True, camera_add.__doc__ or ""),
    "camera_remove": Command(camera_remove, True, camera_remove.__doc__ or ""),
    "config_set": Command(config_set, True, config_set.__doc__ or ""),
    "dhcp_event": Command(dhcp_event, True, dhcp_event.__doc__ or ""),
    "reload": Command(reload, True, reload.__doc__ or ""),
    "alert_test": Command(alert_test, True, alert_test.__doc__ or ""),
    "power_cycle": Command(power_cycle, True, power_cycle.__doc__ or ""),
}


def to_protocol_error(err: Exception) -> ProtocolError | None:
    """Map the project's errors to reply codes; None for anything else (a bug)."""
    if isinstance(err, ProtocolError):
        return err
    if isinstance(err, CameraNotFound):
        return ProtocolError(NOT_FOUND, str(err))
    if isinstance(err, InvalidValue):
        return ProtocolError(INVALID_VALUE, str(err))
    if isinstance(err, Disabled):
        return ProtocolError(DISABLED, str(err))
    if isinstance(err, Conflict):
        return ProtocolError(CONFLICT, str(err))
    if isinstance(err, PermissionDenied):
        return ProtocolError(PERMISSION_DENIED, str(err))
    return None
