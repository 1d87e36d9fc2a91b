"""What ``pumaguard-hb status`` and ``check-now`` show, and systemd's STATUS= line: views of
the monitor's state, built here so that the monitor stays the wiring."""

from __future__ import annotations

import time
from typing import Any, Protocol

from pumaguard_hb import __version__
from pumaguard_hb.inputs.discovery import Discoveries
from pumaguard_hb.model.events import Listener
from pumaguard_hb.model.probing import ProbeResult
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.model.station import Station
from pumaguard_hb.outputs import alerts
from pumaguard_hb.outputs.metrics import Powered
from pumaguard_hb.probes.icmp import IcmpAccess, IcmpMode
from pumaguard_hb.schedule import Schedule
from pumaguard_hb.stores.cameras import CameraStore
from pumaguard_hb.stores.settings_file import SettingsFile


class Monitor(Protocol):
    """What these views read of the monitor (:class:`pumaguard_hb.monitor.Monitor`)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def station(self) -> Station: ...
    @property
    def schedule(self) -> Schedule: ...
    @property
    def icmp(self) -> IcmpAccess: ...
    @property
    def store(self) -> CameraStore: ...
    @property
    def shared(self) -> SettingsFile: ...
    @property
    def own(self) -> SettingsFile | None: ...
    @property
    def problems(self) -> dict[str, str]: ...
    @property
    def discoveries(self) -> Discoveries: ...
    @property
    def webui(self) -> bool: ...
    @property
    def started(self) -> float: ...
    @property
    def held(self) -> int: ...
    @property
    def listeners(self) -> list[Listener]: ...
    @property
    def power(self) -> Powered | None: ...  # None: the daemon runs without power cycling


def check_report(
    station: Station, ids: frozenset[str] | None, results: dict[str, ProbeResult]
) -> dict[str, Any]:
    """The reply of check_now, in the shape PumaGuard's web API used."""
    cameras: dict[str, Any] = {}
    for cam in station.cameras.values():
        if ids is not None and cam.id not in ids:
            continue
        result = results.get(cam.id)
        cameras[cam.id] = {
            "hostname": cam.hostname,
            "ip_address": cam.ip_address,
            "mac_address": cam.mac_address,
            "reachable": None if result is None else result.reachable,
            "status": cam.status,
            "last_seen": cam.last_seen,
            "rtt_ms": None if result is None or result.rtt_ms is None else round(result.rtt_ms, 3),
            "reason": result.reason if result else (cam.problem or "not checked"),
            "method": result.method if result else None,
            # stream (docs/stream.md): the last step that succeeded, time to the first packet
            "step": result.step if result else None,
            "first_packet_ms": None
            if result is None or result.first_packet_ms is None
            else round(result.first_packet_ms, 3),
        }
    return {"status": "success", "message": "Heartbeat check completed", "cameras": cameras}


def status(m: Monitor) -> dict[str, Any]:
    """Everything ``pumaguard-hb status`` shows."""
    cams = list(m.station.cameras.values())
    connected = m.station.connected()
    nxt = m.schedule.next_check_in()
    store = m.store.info()
    return {
        "daemon": {
            "version": __version__,
            "started_at": m.started,
            "uptime_s": round(time.time() - m.started, 1),
            "enabled": m.settings.enabled,
            "mode": "webui" if m.webui else "standalone",
            "webui": store if m.webui else None,
            "method": m.settings.method,
            "effective_method": effective_method(m),
            "interval_s": m.settings.interval,
            "next_check_in_s": None if nxt is None else round(nxt, 1),
            "sweeping": m.schedule.sweeping,
            "icmp_mode": m.icmp.mode.value,
            "icmp_problem": m.icmp.problem or None,
            "settings_path": str(m.shared.path),
            "config_path": str(m.own.path) if m.own else None,
            "settings_error": m.problems.get("settings") or m.problems.get("values"),
            "write_error": m.problems.get("write"),
            "last_sweep": m.schedule.last_sweep,
            "sweeps": m.schedule.sweeps,
            "list_polls": m.schedule.polls,
            "writes_held": m.held,
            "writes": m.shared.writes,
            "settings": m.settings.public_dict(),  # secrets redacted
        },
        "summary": {
            "total": len(cams),
            "connected": connected,
            "disconnected": len(cams) - connected,
        },
        "cameras": _cameras(m),
        "alerts": _alerts(m),
        "discovered": m.discoveries.info(m.settings.discovery_interval, m.settings.discovery_add),
    }


def _alerts(m: Monitor) -> dict[str, Any] | None:
    """Mail and Apprise alerts (docs/alerts.md); None where the daemon runs none."""
    found = alerts.find(m)
    return found.info() if found else None


def _cameras(m: Monitor) -> list[dict[str, Any]]:
    """Each camera as the protocol shows it, with its interval and next check (intervals.md)
    and, where it has any, its power cycles (``power``: docs/power-cycle.md)."""
    plan = m.schedule.plan()
    unplanned = {"interval_s": None, "next_check_in_s": None}  # not probed (no usable IP)
    cams = [c.to_dict() | plan.get(c.id, unplanned) for c in m.station.cameras.values()]
    if m.power is not None:
        for cam in cams:
            view = m.power.view(cam["id"])
            if view is not None:
                cam["power"] = view
    return cams


def effective_method(m: Monitor) -> str:
    """The method really used: ``both`` and ``icmp`` fall back when ICMP is not permitted."""
    if m.icmp.mode is IcmpMode.UNAVAILABLE and m.settings.method != "tcp":
        return "tcp" if m.settings.method == "both" else "none (icmp not permitted)"
    return m.settings.method


def summary_line(m: Monitor) -> str:
    """The one-line STATUS= text for systemd (ASCII only)."""
    if "settings" in m.problems:
        head = "settings error, running on last good settings"
    elif "values" in m.problems:
        head = "invalid setting, running on last good settings"
    elif "write" in m.problems:
        head = "cannot write settings file"
    elif m.webui and m.store.info().get("problem"):
        head = "web UI not answering"
    else:
        head = ""
    n = len(m.station)
    if not m.settings.enabled:
        body = f"monitoring disabled, {n} cameras"
    else:
        nxt = m.schedule.next_check_in()
        body = f"{m.station.connected()}/{n} cameras connected"
        if m.schedule.sweeping:
            body += ", checking now"
        elif nxt is not None:
            body += f", next check in {nxt:.0f}s"
        if m.icmp.mode is IcmpMode.UNAVAILABLE and m.settings.method != "tcp":
            body += ", ICMP not permitted"
    return f"{head}; {body}" if head else body
