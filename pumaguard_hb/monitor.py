"""The monitor: the cameras, their status, sweeps on schedule or on demand, and persistence.

Everything here runs on the daemon's event loop. The view of the cameras is the
last good settings document plus the daemon's pending :class:`~.store.Patch`;
a flush writes that patch (at most once per sweep, never when nothing changed)
and adopts whatever else the file now holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from dataclasses import dataclass
from typing import Any

from . import __version__
from .camera import (
    CONNECTED,
    DISCONNECTED,
    Camera,
    camera_from_entry,
    clean_hostname,
    label,
    normalize_ip,
    normalize_mac,
    now_iso,
)
from .dhcp import plan_event
from .errors import CameraNotFound, HeartbeatError, InvalidValue, SettingsError
from .events import Listener, StateChange
from .icmp import IcmpAccess, IcmpMode
from .logs import NOTICE
from .probe import DEFAULT_PORTS, ProbeResult
from .settings import Settings, lookup_key, parse_settings, spelling_for
from .store import Patch, SettingsFile, Snapshot, StoreError
from .sweep import Target, run_sweep

log = logging.getLogger(__name__)


class Conflict(HeartbeatError):
    """The request contradicts the current state (e.g. the camera already exists)."""


class Disabled(HeartbeatError):
    """Monitoring is switched off in the settings."""


@dataclass
class _Sweep:
    ids: frozenset[str] | None  # None: every camera
    done: asyncio.Future[dict[str, Any]]
    probing: bool = True  # False once its probes are over: later requests need a new sweep


def _covers(running: frozenset[str] | None, wanted: frozenset[str] | None) -> bool:
    return running is None or (wanted is not None and wanted <= running)


class Monitor:
    """Keeps each camera's status current and the settings file in step with it."""

    def __init__(self, store: SettingsFile, icmp: IcmpAccess) -> None:
        self.store = store
        self.icmp = icmp
        self.settings = Settings()
        self.doc: dict[str, Any] = {}
        self.identity: tuple[int, int, int, int] | None = None
        self.cameras: dict[str, Camera] = {}
        self.pending = Patch()
        self.problems: dict[str, str] = {}
        self.started = time.time()
        self.next_due = time.monotonic()
        self.last_sweep: dict[str, Any] | None = None
        self.sweeps = 0
        self._current: _Sweep | None = None
        self._next: _Sweep | None = None
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self.listeners: list[Listener] = []
        self._duplicates: set[str] = set()  # camera ids already warned about as listed twice

    # -- settings -------------------------------------------------------------------------

    def load(self) -> None:
        """Read and validate the settings file; SettingsError if it cannot be used."""
        snap = self.store.read()
        settings = parse_settings(snap.doc, str(self.store.path))
        self._adopt(snap, settings)

    def reload(self, why: str) -> str | None:
        """Re-read the file after an outside change; keep the old settings if it is bad."""
        try:
            snap = self.store.read()
            settings = parse_settings(snap.doc, str(self.store.path))
        except SettingsError as err:
            if self.identity is not None:  # remember the bad version: no retry until it changes
                self.identity = self._stat_quietly()
            self._problem("settings", f"{err}; keeping the last good settings")
            return str(err)
        if snap.identity is None and self.identity is not None:
            self._problem(
                "settings",
                f"{self.store.path}: was deleted; keeping the last good settings",  # as flush()
            )
            return "settings file missing"
        old = self.settings
        self._adopt(snap, settings)
        self._solved("settings")
        if settings != old:
            changes = ", ".join(
                f"{k}: {v!r} -> {settings.as_dict()[k]!r}"
                for k, v in old.as_dict().items()
                if settings.as_dict()[k] != v
            )
            log.info("settings reloaded (%s): %s", why, changes)
            if settings.interval != old.interval or settings.enabled != old.enabled:
                self.next_due = min(self.next_due, time.monotonic() + settings.interval)
            self._wake.set()
        else:
            log.debug("settings reloaded (%s): heartbeat settings unchanged", why)
        return None

    def _stat_quietly(self) -> tuple[int, int, int, int] | None:
        try:
            return self.store.identity()
        except SettingsError:
            return None

    def file_changed(self) -> bool:
        """True when the file is not the version last read or written (checked by stat)."""
        try:
            return self.store.identity() != self.identity
        except SettingsError as err:
            self._problem("settings", f"{err}; keeping the last good settings")
            return False

    def _adopt(self, snap: Snapshot, settings: Settings) -> None:
        self.doc = snap.doc
        self.identity = snap.identity
        self.settings = settings
        self._rebuild()

    def _rebuild(self) -> None:
        """Cameras = last good document + pending changes; runtime facts are kept."""
        doc = copy.deepcopy(self.doc) if self.pending else self.doc
        self.pending.apply(doc)
        cameras: dict[str, Camera] = {}
        entries = doc.get("cameras")
        for entry in entries if isinstance(entries, list) else []:
            cam = camera_from_entry(entry)
            if cam is None:
                continue
            if cam.id in cameras:
                if cam.id not in self._duplicates:  # a fact about the file: say it once
                    log.warning("settings: camera %s is listed twice; using the first", cam.id)
                    self._duplicates.add(cam.id)
                continue
            old = self.cameras.get(cam.id)
            if old is not None:
                cam.rtt_ms, cam.reason, cam.method = old.rtt_ms, old.reason, old.method
                cam.checked_at, cam.fails, cam.successes = old.checked_at, old.fails, old.successes
                cam.since = old.since if old.status == cam.status else time.time()
            cameras[cam.id] = cam
        self.cameras = cameras

    # -- problems shown in status, logged once -------------------------------------------

    def _problem(self, kind: str, message: str) -> None:
        if self.problems.get(kind) != message:
            log.error("%s", message)
            self.problems[kind] = message

    def _solved(self, kind: str) -> None:
        if self.problems.pop(kind, None) is not None:
            log.log(NOTICE, "%s problem resolved", kind)

    # -- results of probes ---------------------------------------------------------------

    def record(self, cid: str, result: ProbeResult) -> None:
        """Apply one probe result: status, last_seen, RTT, and a log line on a change."""
        cam = self.cameras.get(cid)
        if cam is None:
            return
        cam.checked_at = time.time()
        cam.reason = result.reason
        cam.method = result.method
        s = self.settings
        if result.reachable:
            cam.successes, cam.fails = cam.successes + 1, 0
            cam.rtt_ms = result.rtt_ms
            cam.last_seen = now_iso()  # a contact is a contact, even before recovery counts
            recovered = cam.status == CONNECTED or cam.successes >= s.recovery_threshold
            new = CONNECTED if recovered else DISCONNECTED
            self.pending.set_fields(cid, status=new, last_seen=cam.last_seen)
        else:
            cam.fails, cam.successes = cam.fails + 1, 0
            failed = cam.status == DISCONNECTED or cam.fails >= s.failure_threshold
            new = DISCONNECTED if failed else CONNECTED
            self.pending.set_fields(cid, status=new)
        if new != cam.status:
            old = cam.status
            cam.status = new
            cam.since = cam.checked_at
            self._changed(cam, old, result.reason, result.method)
        elif cam.since is None:
            cam.since = cam.checked_at

    def _changed(self, cam: Camera, old: str | None, reason: str, method: str) -> None:
        """Log a change of state once, and tell the listeners."""
        if cam.status == CONNECTED:
            log.log(NOTICE, "camera %s is up: %s", label(cam), reason)
        else:
            log.warning("camera %s is down: %s", label(cam), reason)
        change = StateChange(
            cam.id,
            cam.hostname,
            cam.ip_address,
            cam.mac_address,
            old,
            cam.status,
            cam.since or time.time(),
            reason,
            method,
            cam.rtt_ms if cam.status == CONNECTED else None,
        )
        for listener in self.listeners:
            try:
                listener(change)
            except Exception:
                log.exception("state change listener failed")

    async def flush(self) -> None:
        """Write pending changes (one write at most); on failure keep them for the next try."""
        async with self._flush_lock:
            if not self.pending:
                return
            if "settings" in self.problems:
                return  # the file does not parse, or vanished: never write over it
            patch, self.pending = self.pending, Patch()
            try:
                snap = await asyncio.to_thread(self.store.update, patch, self.identity is not None)
            except (SettingsError, StoreError) as err:
                patch.merge(self.pending)
                self.pending = patch
                if isinstance(err, SettingsError):  # same sentence as reload(): logged once
                    self._problem("settings", f"{err}; keeping the last good settings")
                else:
                    self._problem("write", f"{err}; changes kept in memory and retried")
                return
            self._solved("write")
            try:
                settings = parse_settings(snap.doc, str(self.store.path))
            except SettingsError as err:
                self._problem("settings", f"{err}; keeping the last good settings")
                settings = self.settings
            self._adopt(snap, settings)

    # -- sweeps -------------------------------------------------------------------------

    def targets(self, ids: frozenset[str] | None) -> list[Target]:
        """What to probe for the given cameras (all when None), with the current settings."""
        return [
            self._target(cam, ip)
            for cam in self.cameras.values()
            if (ids is None or cam.id in ids) and (ip := cam.probe_ip)
        ]

    def _target(self, cam: Camera, ip: str) -> Target:
        """The camera's check: the global settings unless its entry overrides them."""
        s, o = self.settings, cam.overrides
        method = o.get("method", s.method)
        port = o.get("port") or DEFAULT_PORTS.get(method, s.tcp_port)
        timeout = o.get("timeout")
        return Target(
            cam.id,
            ip,
            method,
            port,
            timeout or s.tcp_timeout,
            timeout or s.icmp_timeout,
            s.icmp_count,
            o.get("path", s.http_path),
        )

    async def check_now(self, ids: frozenset[str] | None = None) -> dict[str, Any]:
        """Run (or join) a sweep covering ``ids`` and return the PumaGuard-shaped report."""
        if not self.settings.enabled:
            raise Disabled(
                "monitoring is disabled (camera_heartbeat_enabled: false); "
                "enable it with: pumaguard-hb config set camera_heartbeat_enabled true"
            )
        if self._current and self._current.probing and _covers(self._current.ids, ids):
            return await asyncio.shield(self._current.done)
        if self._next is None:
            self._next = _Sweep(ids, asyncio.get_running_loop().create_future())
        elif self._next.ids is not None:
            self._next.ids = None if ids is None else self._next.ids | ids
        self._wake.set()
        return await asyncio.shield(self._next.done)

    async def run(self) -> None:
        """Sweep on schedule and on demand until cancelled."""
        while True:
            sweep = self._take_due()
            if sweep is None:
                delay = max(0.0, self.next_due - time.monotonic())
                self._wake.clear()
                if self._next is None:
                    timeout = delay if self.settings.enabled else None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
                continue
            self._current = sweep
            try:
                await self._sweep(sweep)
            finally:
                self._current = None

    def _take_due(self) -> _Sweep | None:
        if self._next is not None:
            sweep, self._next = self._next, None
            return sweep
        if self.settings.enabled and time.monotonic() >= self.next_due:
            return _Sweep(None, asyncio.get_running_loop().create_future())
        return None

    async def _sweep(self, sweep: _Sweep) -> None:
        started_wall, started = time.time(), time.monotonic()
        if sweep.ids is None:
            self.next_due = started + self.settings.interval
        targets = self.targets(sweep.ids)
        results: dict[str, ProbeResult] = {}

        def on_result(cid: str, result: ProbeResult) -> None:
            results[cid] = result
            self.record(cid, result)

        try:
            await run_sweep(targets, self.icmp.mode, on_result)
        except Exception as err:  # a bug in a sweep must not stop monitoring
            log.exception("sweep failed")
            if not sweep.done.done():
                sweep.done.set_exception(HeartbeatError(f"sweep failed: {err}"))
            return
        finally:
            sweep.probing = False
            if not sweep.done.done() and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                sweep.done.cancel()
        duration = time.monotonic() - started
        log.debug("sweep of %d cameras took %.3fs", len(targets), duration)
        await self.flush()
        self.sweeps += 1
        self.last_sweep = {
            "started_at": started_wall,
            "duration_s": round(duration, 3),
            "cameras": len(targets),
            "reachable": sum(r.reachable for r in results.values()),
        }
        if not sweep.done.done():
            sweep.done.set_result(self.report(sweep.ids, results))

    def report(self, ids: frozenset[str] | None, results: dict[str, ProbeResult]) -> dict[str, Any]:
        """The reply of check_now, in the shape PumaGuard's web API used."""
        cameras: dict[str, Any] = {}
        for cam in self.cameras.values():
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
                "rtt_ms": None
                if result is None or result.rtt_ms is None
                else round(result.rtt_ms, 3),
                "reason": result.reason if result else (cam.problem or "not checked"),
            }
        return {"status": "success", "message": "Heartbeat check completed", "cameras": cameras}

    # -- commands that change the camera list or settings ------------------------------

    def find(self, ref: str) -> Camera:
        """The camera named by id, MAC, IP or hostname; CameraNotFound otherwise."""
        if ref in self.cameras:
            return self.cameras[ref]
        for normalize, attr in ((normalize_mac, "mac_address"), (normalize_ip, "ip_address")):
            try:
                wanted = normalize(ref)
            except InvalidValue:
                continue
            for cam in self.cameras.values():
                if getattr(cam, attr) == wanted:
                    return cam
        named = [c for c in self.cameras.values() if c.hostname.lower() == ref.lower()]
        if len(named) == 1:
            return named[0]
        if named:
            raise Conflict(f"{len(named)} cameras are called {ref!r}; name one by MAC or IP")
        raise CameraNotFound(ref)

    async def change(self, patch: Patch) -> None:
        """Apply a patch from a command or DHCP event now, and persist it at once."""
        self.pending.merge(patch)
        self._rebuild()
        await self.flush()

    async def add_camera(self, hostname: str, ip: str, mac: str | None) -> Camera:
        """Add a camera by hand; it is checked right away."""
        entry: dict[str, Any] = {
            "hostname": clean_hostname(hostname),
            "ip_address": normalize_ip(ip),
            "last_seen": None,
        }
        if mac:
            entry["mac_address"] = normalize_mac(mac)
        entry["status"] = DISCONNECTED
        cam = camera_from_entry(entry)
        assert cam is not None
        for other in self.cameras.values():
            if other.id == cam.id or (other.ip_address == cam.ip_address and not mac):
                raise Conflict(f"camera {label(other)} already has that {cam.id.split(':')[0]}")
        patch = Patch()
        patch.add_camera(cam.id, entry)
        await self.change(patch)
        log.info("camera %s added by hand", label(cam))
        if self.settings.enabled:
            asyncio.get_running_loop().create_task(self._check_quietly(frozenset({cam.id})))
        return self.cameras[cam.id]

    async def _check_quietly(self, ids: frozenset[str]) -> None:
        try:
            await self.check_now(ids)
        except HeartbeatError as err:
            log.debug("check after add failed: %s", err)

    async def remove_camera(self, ref: str) -> Camera:
        """Remove a camera from the settings file."""
        cam = self.find(ref)
        patch = Patch()
        patch.remove_camera(cam.id)
        await self.change(patch)
        log.info("camera %s removed", label(cam))
        return cam

    async def dhcp_event(self, action: str, mac: str, ip: str, hostname: str | None) -> str:
        """Apply one dnsmasq event; returns what it did."""
        outcome = plan_event(
            action, mac, ip, hostname, self.cameras, self.settings.hostname_patterns, now_iso()
        )
        if outcome.patch is not None:
            before = self.cameras.get(outcome.camera_id or "")
            old_status = before.status if before else None
            await self.change(outcome.patch)
            cam = self.cameras.get(outcome.camera_id or "")
            if cam is not None and cam.status != old_status:
                cam.since = time.time()
                self._changed(cam, old_status, outcome.message, "dhcp")
                return outcome.message
        log.info("%s", outcome.message)
        return outcome.message

    async def set_config(self, name: str, value: Any) -> Settings:
        """Validate and persist one heartbeat setting; it takes effect at once."""
        key = lookup_key(name)
        checked = key.check(key.name, value)
        if "settings" in self.problems:
            raise Conflict(f"cannot change settings: {self.problems['settings']}")
        stored = list(checked) if isinstance(checked, tuple) else value
        patch = Patch(settings={spelling_for(self.doc, key): stored})
        try:
            async with self._flush_lock:
                snap = await asyncio.to_thread(self.store.update, patch, self.identity is not None)
        except (SettingsError, StoreError) as err:
            raise Conflict(f"not saved: {err}") from None
        self._adopt(snap, parse_settings(snap.doc, str(self.store.path)))
        log.info("setting %s changed to %r", key.name, stored)
        self.next_due = min(self.next_due, time.monotonic() + self.settings.interval)
        self._wake.set()
        return self.settings

    # -- status -------------------------------------------------------------------------

    def next_check_in(self) -> float | None:
        """Seconds until the next scheduled sweep, or None when monitoring is off."""
        if not self.settings.enabled:
            return None
        return max(0.0, self.next_due - time.monotonic())

    def status(self) -> dict[str, Any]:
        """Everything ``pumaguard-hb status`` shows."""
        cams = list(self.cameras.values())
        connected = sum(c.status == CONNECTED for c in cams)
        nxt = self.next_check_in()
        return {
            "daemon": {
                "version": __version__,
                "started_at": self.started,
                "uptime_s": round(time.time() - self.started, 1),
                "enabled": self.settings.enabled,
                "method": self.settings.method,
                "effective_method": self.effective_method(),
                "interval_s": self.settings.interval,
                "next_check_in_s": None if nxt is None else round(nxt, 1),
                "sweeping": self._current is not None,
                "icmp_mode": self.icmp.mode.value,
                "icmp_problem": self.icmp.problem or None,
                "settings_path": str(self.store.path),
                "settings_error": self.problems.get("settings"),
                "write_error": self.problems.get("write"),
                "last_sweep": self.last_sweep,
                "sweeps": self.sweeps,
                "writes": self.store.writes,
                "settings": self.settings.as_dict(),
            },
            "summary": {
                "total": len(cams),
                "connected": connected,
                "disconnected": len(cams) - connected,
            },
            "cameras": [c.to_dict() for c in cams],
        }

    def effective_method(self) -> str:
        """The method really used: ``both`` and ``icmp`` fall back when ICMP is not permitted."""
        if self.icmp.mode is IcmpMode.UNAVAILABLE and self.settings.method != "tcp":
            return "tcp" if self.settings.method == "both" else "none (icmp not permitted)"
        return self.settings.method

    def summary_line(self) -> str:
        """The one-line STATUS= text for systemd (ASCII only)."""
        if "settings" in self.problems:
            head = "settings error, running on last good settings"
        elif "write" in self.problems:
            head = "cannot write settings file"
        else:
            head = ""
        if not self.settings.enabled:
            body = f"monitoring disabled, {len(self.cameras)} cameras"
        else:
            connected = sum(c.status == CONNECTED for c in self.cameras.values())
            nxt = self.next_check_in()
            body = f"{connected}/{len(self.cameras)} cameras connected"
            if self._current is not None:
                body += ", checking now"
            elif nxt is not None:
                body += f", next check in {nxt:.0f}s"
            if self.icmp.mode is IcmpMode.UNAVAILABLE and self.settings.method != "tcp":
                body += ", ICMP not permitted"
        return f"{head}; {body}" if head else body
