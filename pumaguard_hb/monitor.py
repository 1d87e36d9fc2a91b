"""The monitor: the cameras, their status, sweeps on schedule or on demand, and persistence.

Everything here runs on the daemon's event loop. The view of the cameras is the
last good settings document plus the daemon's pending :class:`~.store.Patch`;
a flush writes that patch (at most once per sweep, never when nothing changed)
and adopts whatever else the file now holds.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import TYPE_CHECKING, Any

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
from .errors import CameraNotFound, Conflict, HeartbeatError, InvalidValue, SettingsError
from .events import Listener, StateChange
from .filestore import Patch
from .icmp import IcmpAccess, IcmpMode
from .logs import NOTICE
from .probe import DEFAULT_PORTS, ProbeResult
from .schedule import Schedule
from .settings import Settings, lookup_key, parse_settings, spelling_for
from .settings_file import SettingsFile, Snapshot, StoreError
from .sweep import Target

if TYPE_CHECKING:
    from .history import History

log = logging.getLogger(__name__)


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
        self.schedule = Schedule(self)
        self._flush_lock = asyncio.Lock()
        self.listeners: list[Listener] = []
        self.changes: dict[str, int] = {}  # state changes per camera since start (metrics)
        self.history: History | None = None
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
            self.schedule.settings_changed()
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

    def use_history(self, history: History) -> None:
        """Record state changes in ``history``; take each camera's "since" from it."""
        self.history = history
        self.listeners.append(history.record)
        for cam in self.cameras.values():
            last = history.last_change(cam.id)
            if last is not None and last[1] == cam.status:
                cam.since = last[0]

    def _changed(self, cam: Camera, old: str | None, reason: str, method: str) -> None:
        """Log a change of state once, count it, and tell the listeners."""
        self.changes[cam.id] = self.changes.get(cam.id, 0) + 1
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
                snap = await asyncio.to_thread(
                    self.store.update, patch.apply, self.identity is not None
                )
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
            await self.schedule.check_now(ids)
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
                snap = await asyncio.to_thread(
                    self.store.update, patch.apply, self.identity is not None
                )
        except (SettingsError, StoreError) as err:
            raise Conflict(f"not saved: {err}") from None
        self._adopt(snap, parse_settings(snap.doc, str(self.store.path)))
        log.info("setting %s changed to %r", key.name, stored)
        self.schedule.settings_changed()
        return self.settings

    # -- status -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Everything ``pumaguard-hb status`` shows."""
        cams = list(self.cameras.values())
        connected = sum(c.status == CONNECTED for c in cams)
        nxt = self.schedule.next_check_in()
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
                "sweeping": self.schedule.sweeping,
                "icmp_mode": self.icmp.mode.value,
                "icmp_problem": self.icmp.problem or None,
                "settings_path": str(self.store.path),
                "settings_error": self.problems.get("settings"),
                "write_error": self.problems.get("write"),
                "last_sweep": self.schedule.last_sweep,
                "sweeps": self.schedule.sweeps,
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
            nxt = self.schedule.next_check_in()
            body = f"{connected}/{len(self.cameras)} cameras connected"
            if self.schedule.sweeping:
                body += ", checking now"
            elif nxt is not None:
                body += f", next check in {nxt:.0f}s"
            if self.icmp.mode is IcmpMode.UNAVAILABLE and self.settings.method != "tcp":
                body += ", ICMP not permitted"
        return f"{head}; {body}" if head else body
