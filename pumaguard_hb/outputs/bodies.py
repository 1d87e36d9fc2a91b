"""What the on-change actions send (docs/actions.md): the versioned JSON body of a webhook,
the command's environment, for a change of state and for a power event. Pure: no I/O but
the host name; :mod:`.actions` queues and delivers them."""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

from pumaguard_hb import __version__
from pumaguard_hb.model.camera import CONNECTED
from pumaguard_hb.model.events import (
    NEEDS_VISIT,
    POWER_CYCLED,
    RECOVERED_AFTER_CYCLE,
    PowerEvent,
    StateChange,
)

BODY_VERSION = 1
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KEPT_ENV = ("PATH", "LANG", "LC_ALL")  # all the command gets of the daemon's environment

#: a power event's kind (model/events.py) → the ``event`` of its webhook body
POWER_EVENT_NAMES = {
    POWER_CYCLED: "camera_power_cycled",
    RECOVERED_AFTER_CYCLE: "camera_recovered_after_power_cycle",
    NEEDS_VISIT: "camera_needs_visit",
}


def iso_utc(ts: float) -> str:
    """Unix seconds as ISO 8601 UTC with a Z, whole seconds (as ``last_seen``)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_name(change: StateChange) -> str:
    return "camera_up" if change.new == CONNECTED else "camera_down"


def _camera(event: StateChange | PowerEvent) -> dict[str, str]:
    return {
        "id": event.camera_id,
        "hostname": event.hostname,
        "ip_address": event.ip_address,
        "mac_address": event.mac_address,
    }


def event_body(change: StateChange, host: str | None = None) -> dict[str, Any]:
    """The versioned JSON body of a webhook (and ``$PUMAGUARD_HB_JSON``)."""
    name = change.hostname or change.camera_id
    where = f" ({change.ip_address})" if change.ip_address else ""
    verb = "up" if change.new == CONNECTED else "down"
    return {
        "version": BODY_VERSION,
        "event": event_name(change),
        "event_id": uuid.uuid4().hex,
        "camera": _camera(change),
        "status": change.new,
        "previous_status": change.old,
        "at": iso_utc(change.at),
        "reason": change.reason,
        "method": change.method,
        "rtt_ms": change.rtt_ms,
        "message": f"camera {name}{where} is {verb}: {change.reason}",
        "station": host if host is not None else socket.gethostname(),
        "daemon_version": __version__,
    }


def power_sentence(kind: str, who: str, reason: str) -> str:
    """A power event in words: ``Gate-Cam (192.0.2.7): power-cycled — power off for 10 s:
    …``, ``Gate-Cam (192.0.2.7) needs a visit: 3 power cycles in 24 h did not …``. The
    caller makes ``who`` and ``reason`` fit where they go (JSON, a mail, a terminal)."""
    if kind == NEEDS_VISIT:
        return f"{who} needs a visit: {reason}"
    return f"{who}: {kind} — {reason}"


def power_body(event: PowerEvent, host: str | None = None) -> dict[str, Any]:
    """The webhook body (version 1) of a power event (docs/actions.md, "Power events")."""
    where = f" ({event.ip_address})" if event.ip_address else ""
    who = f"{event.hostname or event.camera_id}{where}"
    return {
        "version": BODY_VERSION,
        "event": POWER_EVENT_NAMES.get(event.kind, "camera_power_event"),
        "event_id": uuid.uuid4().hex,
        "camera": _camera(event),
        "at": iso_utc(event.at),
        "reason": event.reason,
        "cycles_today": event.cycles_today,
        "message": "camera " + power_sentence(event.kind, who, event.reason),
        "station": host if host is not None else socket.gethostname(),
        "daemon_version": __version__,
    }


def event_env(body: dict[str, Any]) -> dict[str, str]:
    """The event as environment variables for the command. A power event's body has no
    status, method or RTT: those are empty; it adds ``PUMAGUARD_HB_CYCLES_TODAY``."""
    cam = body["camera"]
    rtt = body.get("rtt_ms")
    env = {
        "PUMAGUARD_HB_EVENT": body["event"],
        "PUMAGUARD_HB_EVENT_ID": body["event_id"],
        "PUMAGUARD_HB_CAMERA_ID": cam["id"],
        "PUMAGUARD_HB_HOSTNAME": cam["hostname"],
        "PUMAGUARD_HB_IP": cam["ip_address"],
        "PUMAGUARD_HB_MAC": cam["mac_address"],
        "PUMAGUARD_HB_STATUS": body.get("status") or "",
        "PUMAGUARD_HB_PREVIOUS_STATUS": body.get("previous_status") or "",
        "PUMAGUARD_HB_AT": body["at"],
        "PUMAGUARD_HB_REASON": body["reason"],
        "PUMAGUARD_HB_METHOD": body.get("method") or "",
        "PUMAGUARD_HB_RTT_MS": "" if rtt is None else f"{rtt:g}",
        "PUMAGUARD_HB_MESSAGE": body["message"],
        "PUMAGUARD_HB_STATION": body["station"],
        "PUMAGUARD_HB_JSON": json.dumps(body, separators=(",", ":")),
    }
    if "cycles_today" in body:
        env["PUMAGUARD_HB_CYCLES_TODAY"] = str(body["cycles_today"])
    # an environment cannot hold NUL: one would stop the command from starting at all
    return {k: v.replace("\0", "\ufffd") for k, v in env.items()}


def command_env(body: dict[str, Any]) -> dict[str, str]:
    """The command's whole environment: PATH, LANG and LC_ALL (when set) and the event.

    Nothing else of the daemon's environment is inherited (no NOTIFY_SOCKET, credentials
    directory, or whatever the service manager or an admin put there)."""
    env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(event_env(body))
    return env
