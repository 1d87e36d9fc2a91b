"""The monitor: a thin facade that wires the station, its store, the settings and the schedule.

- the truth about the cameras is the :class:`~.station.Station` (one model, pure transitions);
- where cameras live is a :class:`~.store.CameraStore` (the settings file, or the web UI),
  written and listed by the :class:`~.publisher.Publisher`;
- the settings are the shared settings file's heartbeat keys, overridden by the daemon's
  own config file (:class:`~.monitor_settings.MonitorSettings`);
- sweeps are the :class:`~.schedule.Schedule`'s, given callables from here.

Every change of state is made here: probe results, DHCP events, camera lists read from
outside, cameras added and removed by hand. Everything runs on the daemon's event loop;
file work runs in threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pumaguard_hb import status as status_view
from pumaguard_hb.inputs.discovery import Discoveries
from pumaguard_hb.logs import NOTICE
from pumaguard_hb.model.camera import (
    CONNECTED,
    Camera,
    Spec,
    clean_hostname,
    label,
    normalize_ip,
    normalize_mac,
    now_iso,
)
from pumaguard_hb.model.errors import Conflict, HeartbeatError
from pumaguard_hb.model.events import Forget, Listener, StateChange
from pumaguard_hb.model.probing import ProbeResult, Target
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.model.station import MAX_LEARNED, Change, Station, check_event
from pumaguard_hb.monitor_settings import MonitorSettings
from pumaguard_hb.probes.icmp import IcmpAccess
from pumaguard_hb.problems import Problems
from pumaguard_hb.publisher import UNSAVED, Publisher
from pumaguard_hb.schedule import Hooks, Schedule
from pumaguard_hb.stores.cameras import CameraStore
from pumaguard_hb.stores.settings_file import SettingsFile
from pumaguard_hb.stores.webstore import CACHE as WEBUI_CACHE
from pumaguard_hb.stores.webstore import WebUIStore

if TYPE_CHECKING:
    from pumaguard_hb.devices.power_cycle import PowerCycles
    from pumaguard_hb.notify import Notifier
    from pumaguard_hb.stores.history import History

__all__ = ["UNSAVED", "Monitor"]  # UNSAVED: the daemon names the spool file with it

log = logging.getLogger(__name__)


class Monitor:
    """Keeps each camera's status current and its store in step with it."""

    def __init__(
        self,
        shared: SettingsFile,
        icmp: IcmpAccess,
        store: CameraStore | None = None,
        own: SettingsFile | None = None,
    ) -> None:
        from pumaguard_hb.stores.filestore import FileStore

        self.shared = shared
        self.own = own
        self.icmp = icmp
        self.store: CameraStore = store or FileStore(
            shared, lambda: self.config.shared_id is not None
        )
        self.webui = self.store.kind == "webui"
        self.station = Station()
        self.problems = Problems()  # shown in status, each logged once
        self.config = MonitorSettings(
            shared, own, self.webui, self.problems, self._listing, self._settings_changed
        )
        self.publisher = Publisher(
            self.store,
            self.station,
            self.problems,
            lambda: self.settings,
            self._apply_listing,
            self.config.adopt_written,
        )
        self.started = time.time()
        self.listeners: list[Listener] = []
        self.forgetters: list[Forget] = []  # told when a camera is gone (events.Forget)
        self.changes: dict[str, int] = {}  # state changes per camera since start (metrics)
        self.history: History | None = None
        self.notifier: Notifier | None = None
        self.discoveries = Discoveries()  # what periodic ONVIF discovery found (discovery.py)
        self.power: PowerCycles | None = None  # power cycling (devices/power_cycle.py)
        self.swept: list[Callable[[], None]] = []  # told on the loop after every sweep
        self._said: set[str] = set()  # facts about the inputs already logged once
        self.schedule = Schedule(
            Hooks(
                settings=lambda: self.settings,
                icmp_mode=lambda: self.icmp.mode,
                before=self.publisher.before_sweep,
                targets=lambda ids: self.station.targets(self.settings, ids),
                record=self.record,
                after=self._after_sweep,
                report=self.report,
            )
        )

    async def _after_sweep(self, scheduled: bool) -> None:
        await self.publisher.after_sweep(scheduled)
        for told in self.swept:
            told()

    @property
    def cameras(self) -> dict[str, Camera]:
        """The station's cameras by id."""
        return self.station.cameras

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self.config.settings

    @property
    def held(self) -> int:
        """Publishes held back: last_seen-only news (docs/intervals.md)."""
        return self.publisher.held

    @property
    def spool(self) -> Path | None:
        """Where what the last stop could not save waits for the next start."""
        return self.publisher.spool

    @spool.setter
    def spool(self, path: Path | None) -> None:
        self.publisher.spool = path

    # -- settings -------------------------------------------------------------------------

    def load(self) -> None:
        """Read and validate the settings at start; SettingsError if they cannot be used."""
        self.config.load()
        if not self.webui:
            self._listing(self.config.shared_doc)
        elif isinstance(self.store, WebUIStore):
            # the web UI may be down, late or broken: monitor from the first sweep the
            # cameras it listed last (kept in the state folder) or its file lists
            if self.spool is not None and self.store.cache is None:
                self.store.cache = self.spool.with_name(WEBUI_CACHE)
            entries = self.store.start_listing(self.config.shared_doc, self.shared.path)
            if entries is not None:
                self._apply_listing(entries)
        if self.publisher.restore_unsaved():
            self._listing(self.config.shared_doc)

    async def reload(self, why: str, notify: bool = True) -> str | None:
        """Re-read the settings after an outside change; bad values keep the old settings
        (:meth:`MonitorSettings.reload`). A reload asked for (SIGHUP, ``pumaguard-hb
        reload``) tells systemd RELOADING=1 and READY=1; one after an edit noticed by the
        file watch does not.
        """
        if not notify or self.notifier is None:
            return await self.config.reload(why)
        self.notifier.reloading()
        try:
            return await self.config.reload(why)
        finally:
            self.notifier.reloaded(self.summary_line())

    def file_changed(self) -> bool:
        """True when a settings file is not the version last read or written (by stat)."""
        return self.config.file_changed()

    def _settings_changed(self) -> None:
        self.schedule.settings_changed()

    # -- the camera list from outside -----------------------------------------------------

    def _listing(self, doc: dict[str, Any] | None) -> None:
        from pumaguard_hb.stores.filestore import FileStore

        if isinstance(self.store, FileStore) and doc is not None:
            self._apply_listing(self.store.entries(doc))

    def _apply_listing(self, entries: list[Any]) -> None:
        outcome = self.station.listing(entries, time.time())
        for cid in outcome.duplicates:
            self._say_once(f"dup:{cid}", "camera %s is listed twice; using the first", cid)
        for cam in outcome.added:
            if self.history is not None:
                self._since_from_history(cam)
            log.debug("camera %s listed", label(cam))
        for cam in outcome.removed:
            log.info("camera %s is no longer listed", label(cam))
            self._forget(cam)
        for cam in outcome.added + outcome.respecced:
            if cam.spec.notice:
                fact = f"notice:{cam.id}:{cam.spec.notice}"
                self._say_once(fact, "camera %s: %s", label(cam), cam.spec.notice)
        if outcome.added or outcome.respecced or outcome.removed:
            self.schedule.settings_changed()  # new cameras are due at once; intervals re-planned

    # -- facts logged once ----------------------------------------------------------------

    def _forget(self, cam: Camera) -> None:
        """A camera is gone: drop what is kept for it (memory stays flat; security.md)."""
        self.changes.pop(cam.id, None)
        self._said.discard(f"dup:{cam.id}")
        self._said.discard(f"notice:{cam.id}:{cam.spec.notice}")
        for forget in self.forgetters:
            try:
                forget(cam.id)
            except Exception:
                log.exception("forgetting camera %s failed", cam.id)

    def _say_once(self, fact: str, message: str, *args: Any) -> None:
        if fact not in self._said:
            self._said.add(fact)
            log.warning(message, *args)

    # -- results of probes ---------------------------------------------------------------

    def record(self, target: Target, result: ProbeResult) -> None:
        """Apply one probe result to the station; log and announce a change of state."""
        change = self.station.observe(target, result, self.settings, time.time(), now_iso())
        if change is not None:
            self._changed(change)
        else:
            self._observed(target.id)

    def _observed(self, camera_id: str) -> None:
        """A judgement that changed nothing: the history learns it if it holds another state
        (a status adopted from the file, a camera learned by DHCP: history.observed)."""
        cam = self.station.cameras.get(camera_id)
        if self.history is not None and cam is not None and cam.seen.known:
            self.history.observed(cam.id, cam.status, time.time())

    def use_history(self, history: History) -> None:
        """Record state changes in ``history``; take each camera's "since" from it."""
        self.history = history
        self.listeners.append(history.record)
        self.forgetters.append(history.forget)  # a camera gone: its index goes too
        for cam in self.station.cameras.values():
            self._since_from_history(cam)

    def _since_from_history(self, cam: Camera) -> None:
        assert self.history is not None
        last = self.history.last_change(cam.id)
        if last is not None and last[1] == cam.status:
            cam.seen.since = last[0]

    def _changed(self, change: Change) -> None:
        """Log a change of state once, count it, and tell the listeners."""
        cam = change.camera
        self.publisher.urgent = True
        self.changes[cam.id] = self.changes.get(cam.id, 0) + 1
        if cam.status == CONNECTED:
            log.log(NOTICE, "camera %s is up: %s", label(cam), change.reason)
        else:
            log.warning("camera %s is down: %s", label(cam), change.reason)
        event = StateChange(
            cam.id,
            cam.hostname,
            cam.ip_address,
            cam.mac_address,
            change.old,
            cam.status,
            cam.seen.since or time.time(),
            change.reason,
            change.method,
            cam.seen.rtt_ms if cam.status == CONNECTED else None,
        )
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("state change listener failed")

    # -- publishing (publisher.py) ---------------------------------------------------------

    async def flush(self) -> None:
        """Publish what the daemon knows to its store (:meth:`Publisher.flush`)."""
        await self.publisher.flush()

    async def stop(self) -> None:
        """The last save, bounded well inside systemd's stop timeout; what it could not
        write waits in the state directory for the next start."""
        await self.publisher.stop(self.shared)

    # -- commands that change the camera list or settings ------------------------------

    def find(self, ref: str) -> Camera:
        """The camera named by id, MAC, IP or hostname; CameraNotFound otherwise."""
        return self.station.find(ref)

    async def add_camera(self, hostname: str, ip: str, mac: str | None) -> Camera:
        """Add a camera by hand; it is checked right away."""
        mac = normalize_mac(mac) if mac else ""
        ip = normalize_ip(ip)
        spec = Spec(mac or f"ip:{ip}", clean_hostname(hostname), ip, mac)
        if self.webui and not mac:
            raise Conflict(
                "the web UI identifies cameras by MAC address: add it with --mac aa:bb:cc:dd:ee:ff"
            )
        async with self.publisher.lock:
            for other in self.station.cameras.values():
                if other.id == spec.id or (other.ip_address == ip and not mac):
                    what = "MAC" if mac else "IP"
                    raise Conflict(f"camera {label(other)} already has that {what}")
            if self.webui:
                await self.store.add(Camera(spec))  # Conflict when the web UI does not take it
            cam = self.station.add(spec)
            if not self.webui:
                await self.store.add(cam)
        await self.flush()
        log.info("camera %s added by hand", label(cam))
        if self.settings.enabled:
            asyncio.get_running_loop().create_task(self._check_quietly(frozenset({cam.id})))
        return cam

    async def _check_quietly(self, ids: frozenset[str]) -> None:
        try:
            await self.schedule.check_now(ids)
        except HeartbeatError as err:
            log.debug("check after add failed: %s", err)

    async def remove_camera(self, ref: str) -> Camera:
        """Remove a camera from the station (and its store)."""
        cam = self.station.find(ref)
        async with self.publisher.lock:
            await self.store.remove(cam)
            self.station.remove(cam.id)
            self._forget(cam)
        await self.flush()
        log.info("camera %s removed", label(cam))
        return cam

    async def dhcp_event(self, action: str, mac: str, ip: str, hostname: str | None) -> str:
        """Apply one dnsmasq event; returns what it did."""
        event = check_event(action, mac, ip, hostname)
        if event is None:
            return f"dhcp {action}: ignored"
        outcome = self.station.dhcp(event, self.settings.hostname_patterns, time.time(), now_iso())
        if outcome.refused:
            self._say_once("learning-full", "%s; further ones are not logged", outcome.message)
        elif len(self.station) < MAX_LEARNED * 0.9:
            self._said.discard("learning-full")
        await self.store.dhcp(outcome)
        if outcome.change is not None:
            self._changed(outcome.change)
        elif outcome.camera is not None:
            self._observed(outcome.camera.id)
        if outcome.camera is not None:
            await self.flush()
        if outcome.change is None and not outcome.refused:  # a refusal is said once above
            log.info("%s", outcome.message)
        return outcome.message

    async def set_config(self, name: str, value: Any, by_root: bool = True) -> Settings:
        """Validate and persist one heartbeat setting; it takes effect at once."""
        return await self.config.set(name, value, by_root, self.publisher.lock)

    # -- what status shows (status.py) -----------------------------------------------------

    def report(self, ids: frozenset[str] | None, results: dict[str, ProbeResult]) -> dict[str, Any]:
        """The reply of check_now, in the shape PumaGuard's web API used."""
        return status_view.check_report(self.station, ids, results)

    def status(self) -> dict[str, Any]:
        """Everything ``pumaguard-hb status`` shows."""
        return status_view.status(self)

    def summary_line(self) -> str:
        """The one-line STATUS= text for systemd (ASCII only)."""
        return status_view.summary_line(self)
