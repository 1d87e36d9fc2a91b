"""The monitor: a thin facade that wires the station, its store, the settings and the schedule.

- the truth about the cameras is the :class:`~.station.Station` (one model, pure transitions);
- where cameras live is a :class:`~.store.CameraStore` (the settings file, or the web UI);
- the settings are the shared settings file's heartbeat keys, overridden by the daemon's
  own config file (:func:`~.settings.layered_settings`);
- sweeps are the :class:`~.schedule.Schedule`'s, given callables from here.

Everything here runs on the daemon's event loop; file work runs in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
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
from pumaguard_hb.model.errors import Conflict, HeartbeatError, PermissionDenied, SettingsError
from pumaguard_hb.model.events import Forget, Listener, StateChange
from pumaguard_hb.model.keys import lookup_key, plain_value
from pumaguard_hb.model.probing import ProbeResult, Target
from pumaguard_hb.model.settings import Settings, layered_settings, raw_value, spelling_for
from pumaguard_hb.model.station import MAX_LEARNED, Change, Station, check_event
from pumaguard_hb.probes.icmp import IcmpAccess
from pumaguard_hb.schedule import Hooks, Schedule, slack
from pumaguard_hb.stores.cameras import CameraStore
from pumaguard_hb.stores.settings_file import SettingsFile, Snapshot, StoreError
from pumaguard_hb.stores.webstore import CACHE as WEBUI_CACHE
from pumaguard_hb.stores.webstore import WebUIStore
from pumaguard_hb.stores.webui import WebUIError

if TYPE_CHECKING:
    from pumaguard_hb.notify import Notifier
    from pumaguard_hb.stores.history import History

log = logging.getLogger(__name__)

STOP_LOCK_TIMEOUT = 2.0  # seconds the final save may wait for the lock (TimeoutStopSec is 10)
STOP_SETTLE_TIMEOUT = 0.5  # ... and for a file being written in place to settle
LAST_SEEN_HOLD_MAX = 300.0  # seconds a last_seen-only change may wait to be written
UNSAVED = "unsaved-changes.json"  # in the state dir: what the last stop could not write


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
        self.store: CameraStore = store or FileStore(shared, lambda: self._shared_id is not None)
        self.webui = self.store.kind == "webui"
        self.station = Station()
        self.settings = Settings()
        self.shared_doc: dict[str, Any] = {}
        self.own_doc: dict[str, Any] = {}
        self._shared_id: tuple[int, int, int, int] | None = None
        self._own_id: tuple[int, int, int, int] | None = None
        self.problems: dict[str, str] = {}
        self.started = time.time()
        self.listeners: list[Listener] = []
        self.forgetters: list[Forget] = []  # told when a camera is gone (events.Forget)
        self.changes: dict[str, int] = {}  # state changes per camera since start (metrics)
        self.history: History | None = None
        self.notifier: Notifier | None = None
        self.spool: Path | None = None  # where unsaved changes wait over a stop
        self.discoveries = Discoveries()  # what periodic ONVIF discovery found (discovery.py)
        self._write_lock = asyncio.Lock()
        self._said: set[str] = set()  # facts about the inputs already logged once
        self._urgent = False  # a change of state since the last publish (after_sweep)
        self._published_at = -math.inf  # monotonic time of after_sweep's last publish
        self.held = 0  # publishes held back: last_seen-only news (intervals.md)
        # web UI mode: one task talks to the web UI, beside the sweeps (publish_beside)
        self._publisher: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._list_wanted = False
        self.schedule = Schedule(
            Hooks(
                settings=lambda: self.settings,
                icmp_mode=lambda: self.icmp.mode,
                before=self.before_sweep,
                targets=lambda ids: self.station.targets(self.settings, ids),
                record=self.record,
                after=self.after_sweep,
                report=self.report,
            )
        )

    @property
    def cameras(self) -> dict[str, Camera]:
        """The station's cameras by id."""
        return self.station.cameras

    # -- settings -------------------------------------------------------------------------

    def load(self) -> None:
        """Read and validate the settings at start; SettingsError if they cannot be used."""
        shared = self.shared.read()
        own = self.own.read() if self.own else None
        settings = self._layered(shared.doc, own.doc if own else None)
        self._take_docs(shared, own)
        self.settings = settings
        if not self.webui:
            self._listing(self.shared_doc)
        elif isinstance(self.store, WebUIStore):
            # the web UI may be down, late or broken: monitor from the first sweep the
            # cameras it listed last (kept in the state folder) or its file lists
            if self.spool is not None and self.store.cache is None:
                self.store.cache = self.spool.with_name(WEBUI_CACHE)
            entries = self.store.start_listing(self.shared_doc, self.shared.path)
            if entries is not None:
                self._apply_listing(entries)
        self._restore_unsaved()

    def _layered(self, shared: dict[str, Any], own: dict[str, Any] | None) -> Settings:
        return layered_settings(
            shared,
            str(self.shared.path),
            own,
            str(self.own.path) if self.own else "<config>",
            webui=self.webui,
            # a file others may write gives no privileged key (docs/security.md)
            shared_untrusted=self.shared.untrusted,
            own_untrusted=self.own.untrusted if self.own else "",
        )

    def _take_docs(self, shared: Snapshot, own: Snapshot | None) -> None:
        self.shared_doc, self._shared_id = shared.doc, shared.identity
        if own is not None:
            self.own_doc, self._own_id = own.doc, own.identity

    def _read(self) -> tuple[Snapshot, Snapshot | None]:
        """Both files (in a thread): SettingsError when one does not parse."""
        shared = self.shared.read()
        own = self.own.read() if self.own else None
        return shared, own

    async def reload(self, why: str, notify: bool = True) -> str | None:
        """Re-read the settings after an outside change; bad values keep the old settings.

        A file that does not parse (or a shared file deleted under a running daemon, in
        standalone mode) also stops writes to it; a readable file with an invalid value
        does not: its cameras are still monitored and their status still written.
        A reload asked for (SIGHUP, ``pumaguard-hb reload``) tells systemd RELOADING=1 and
        READY=1; one after an edit noticed by the file watch does not.
        """
        if not notify or self.notifier is None:
            return await self._reload(why)
        self.notifier.reloading()
        try:
            return await self._reload(why)
        finally:
            self.notifier.reloaded(self.summary_line())

    async def _reload(self, why: str) -> str | None:
        try:
            shared, own = await asyncio.to_thread(self._read)
        except SettingsError as err:
            self._problem("settings", f"{err}; keeping the last good settings")
            self._shared_id, self._own_id = self._stat_quietly()
            return str(err)
        if shared.identity is None and self._shared_id is not None and not self.webui:
            self._problem(
                "settings", f"{self.shared.path}: was deleted; keeping the last good settings"
            )
            return "settings file missing"
        self._take_docs(shared, own)
        self._solved("settings")
        if not self.webui:
            self._listing(self.shared_doc)
        try:
            settings = self._layered(shared.doc, own.doc if own else None)
        except SettingsError as err:
            self._problem("values", f"{err}; keeping the last good settings")
            return str(err)
        self._solved("values")
        old, self.settings = self.settings, settings
        if settings != old:
            new, shown, was = settings.as_dict(), settings.public_dict(), old.public_dict()
            changes = ", ".join(  # secrets redacted (docs/alerts.md)
                f"{k}: {was[k]!r} -> {shown[k]!r}" for k, v in old.as_dict().items() if new[k] != v
            )
            log.info("settings reloaded (%s): %s", why, changes)
            self.schedule.settings_changed()
        else:
            log.debug("settings reloaded (%s): heartbeat settings unchanged", why)
        return None

    def _stat_quietly(self) -> tuple[Any, Any]:
        """Identities now, so that a bad version is not re-read until it changes again."""
        ids = []
        for file in (self.shared, self.own):
            try:
                ids.append(file.identity() if file else None)
            except SettingsError:
                ids.append(None)
        return ids[0], ids[1]

    def file_changed(self) -> bool:
        """True when a settings file is not the version last read or written (by stat)."""
        try:
            if self.shared.identity() != self._shared_id:
                return True
            return self.own is not None and self.own.identity() != self._own_id
        except SettingsError as err:
            self._problem("settings", f"{err}; keeping the last good settings")
            return False

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

    async def before_sweep(self) -> None:
        """Before a sweep: take the camera list from a store that is polled. The web UI's is
        asked for by the publisher, beside the sweep: a new list is applied when it comes."""
        if self.webui:
            self._list_wanted = True
            self._wake_publisher()
            return
        entries = await self.store.listing(None)
        if entries is not None:
            self._apply_listing(entries)

    def _wake_publisher(self) -> None:
        """Web UI mode: have the publisher task run a round (started on first use)."""
        if self._publisher is None or self._publisher.done():
            self._kick = asyncio.Event()  # of this loop
            self._publisher = asyncio.get_running_loop().create_task(
                self._publish_beside(), name="webui-publisher"
            )
        self._kick.set()

    async def _publish_beside(self) -> None:
        """Web UI mode: the one task that talks to the web UI, beside the sweeps. Each round
        takes the camera list (when a sweep asked for it) and sends what the web UI shows
        wrongly, worked out from the station as it is when each report goes: however slow
        the web UI, the sweeps keep their schedule, wake-ups coalesce into one round, and
        the latest state of each camera is what it gets (docs/webui.md)."""
        while True:
            await self._kick.wait()
            self._kick.clear()
            try:
                if self._list_wanted:
                    self._list_wanted = False
                    entries = await self.store.listing(None)
                    if entries is not None:
                        self._apply_listing(entries)
                await self.store.publish(self.station)
            except WebUIError:
                pass  # the store says so once and shows it in status
            except Exception:  # a bug here must not end the reports for good
                log.exception("publishing to the web UI failed")
                await asyncio.sleep(1)

    # -- problems shown in status, logged once -------------------------------------------

    def _problem(self, kind: str, message: str) -> None:
        if self.problems.get(kind) != message:
            log.error("%s", message)
            self.problems[kind] = message

    def _solved(self, kind: str) -> None:
        if self.problems.pop(kind, None) is not None:
            log.log(NOTICE, "%s problem resolved", kind)

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
        self._urgent = True
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

    # -- persistence ---------------------------------------------------------------------

    async def after_sweep(self, scheduled: bool) -> None:
        """After a sweep: publish what it found. A scheduled sweep whose only news is newer
        ``last_seen`` times (cameras on a ``heartbeat_interval`` shorter than the global one)
        is written at most once per min(camera_heartbeat_interval, 300 s); changes of state,
        check_now and anything pending are published at once (docs/intervals.md)."""
        if self.webui:
            self._wake_publisher()  # beside the sweep: a slow web UI never delays a probe
            return
        interval = min(self.settings.interval, LAST_SEEN_HOLD_MAX)
        recent = time.monotonic() - self._published_at < interval - slack(interval)
        news = self._urgent or "write" in self.problems or bool(self.store.unsaved())
        if scheduled and recent and not news and not self.webui:
            self.held += 1
            return
        self._urgent = False
        self._published_at = time.monotonic()
        await self.flush()

    async def flush(self) -> None:
        """Publish what the daemon knows to its store (one write at most); on failure the
        unpublished part is kept for the next try. In web UI mode it wakes the publisher
        task instead (returns at once)."""
        if self.webui:
            self._wake_publisher()
            return
        async with self._write_lock:
            if "settings" in self.problems and not self.webui:
                return  # the file does not parse, or vanished: never write over it
            try:
                snap = await self.store.publish(self.station)
            except SettingsError as err:  # same sentence as reload(): logged once
                self._problem("settings", f"{err}; keeping the last good settings")
                return
            except StoreError as err:
                self._problem("write", f"{err}; changes kept in memory and retried")
                return
            except WebUIError:
                return  # the store says so once and shows it in status
            self._solved("write")
            if snap is not None:
                self._adopt_written(snap)

    def _adopt_written(self, snap: Snapshot) -> None:
        """The file as the daemon just wrote it: new cameras and settings of others in it."""
        self.shared_doc, self._shared_id = snap.doc, snap.identity
        try:
            self.settings = self._layered(snap.doc, self.own_doc if self.own else None)
            self._solved("values")
        except SettingsError as err:
            self._problem("values", f"{err}; keeping the last good settings")
        self._listing(snap.doc)

    async def stop(self) -> None:
        """The last save, bounded well inside systemd's stop timeout; what it could not
        write waits in the state directory for the next start."""
        self.shared.lock_timeout = STOP_LOCK_TIMEOUT
        self.shared.settle_timeout = min(self.shared.settle_timeout, STOP_SETTLE_TIMEOUT)
        if self.webui:
            await self._last_publish()
        else:
            await self.flush()
        unsaved = self.store.unsaved()
        if not unsaved or self.spool is None:
            if unsaved:
                log.warning("stopping with unsaved changes and no state directory to keep them")
            return
        try:
            await asyncio.to_thread(_write_json, self.spool, unsaved)
            log.warning("could not save every change; kept in %s for the next start", self.spool)
        except OSError as err:
            log.error("could not keep unsaved changes in %s: %s", self.spool, err.strerror)

    async def _last_publish(self) -> None:
        """Web UI mode: stop the publisher; one last round, bounded (what it cannot send,
        the next start finds different and sends; queued DHCP events are kept)."""
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._publisher
        with contextlib.suppress(TimeoutError, WebUIError):
            await asyncio.wait_for(self.store.publish(self.station), STOP_LOCK_TIMEOUT)
        if isinstance(self.store, WebUIStore):
            self.store.close()

    def _restore_unsaved(self) -> None:
        if self.spool is None:
            return
        try:
            unsaved = json.loads(self.spool.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            log.error("cannot read %s: %s", self.spool, err)
            return
        if isinstance(unsaved, dict):
            self.store.restore(unsaved)
            log.info("took back the changes the last stop could not save (%s)", self.spool)
            self._listing(self.shared_doc)
        with contextlib.suppress(OSError):
            self.spool.unlink()

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
        async with self._write_lock:
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
        async with self._write_lock:
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
        key = lookup_key(name)
        checked = key.check(key.name, value)
        file = self.own or (None if self.webui else self.shared)
        if key.privileged and not by_root:
            where = file.path if file else "the daemon's config file"
            raise PermissionDenied(
                f"permission denied: {key.name} runs a program or sends data off the machine; "
                f"only root may change it over the socket (or edit {where})"
            )
        if file is None:
            raise Conflict(
                "cannot change settings: in web UI mode the shared file is the web UI's; "
                "start the daemon with --config PATH (its own settings file)"
            )
        if key.name == "camera_heartbeat_webui_url" and file is not self.own:
            raise Conflict(
                f"{key.name} belongs in the daemon's own settings file, which the web UI never "
                "rewrites: start the daemon with --config PATH (the service has one)"
            )
        if file is self.shared and "settings" in self.problems:
            raise Conflict(f"cannot change settings: {self.problems['settings']}")
        if key.privileged and file.untrusted:  # it would be ignored there (docs/security.md)
            raise Conflict(
                f"not saved: {file.path}: {file.untrusted}, so {key.name} would be ignored "
                "there; make it writable by root and the service user only"
            )
        doc = self.own_doc if file is self.own else self.shared_doc
        stored = plain_value(key, checked) if isinstance(checked, tuple) else value
        # our own file: the README's spelling unless it has another; the shared file keeps
        # the spelling it already uses
        found = raw_value(doc, key)
        own_spelling = found[0] if found else key.name
        spelling = own_spelling if file is self.own else spelling_for(doc, key)

        def change(d: dict[str, Any]) -> bool:
            if d.get(spelling, _MISSING) == stored:
                return False
            d[spelling] = stored
            return True

        async with self._write_lock:
            try:
                snap = await asyncio.to_thread(file.update, change, False)
            except (SettingsError, StoreError) as err:
                raise Conflict(f"not saved: {err}") from None
        if file is self.own:
            self.own_doc, self._own_id = snap.doc, snap.identity
            self.settings = self._layered(self.shared_doc, self.own_doc)
        else:
            self._adopt_written(snap)
        shown = self.settings.public_dict()[key.name]  # secrets redacted
        log.info("setting %s changed to %r in %s", key.name, shown, file.path)
        if key.name == "camera_heartbeat_webui_url":
            log.warning("%s takes effect when the daemon restarts", key.name)
        self.schedule.settings_changed()
        return self.settings

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


_MISSING = object()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(data).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
