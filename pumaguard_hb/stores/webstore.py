"""The PumaGuard web UI as the place where cameras live (web UI mode).

The web UI keeps the station's camera list in its memory and is the one writer of the
shared settings file: it rewrites the whole file from memory, deleting what it does not
know. So in this mode the daemon never writes that file. It reads the web UI's camera
list before every sweep (cameras added or removed there are noticed within one
interval) and reports what it observed through the web UI's own DHCP event API, which
the web UI shows, announces on its event stream and saves:

- a camera that came up: ``add`` with ``timestamp`` = its last_seen (now);
- a camera that went down: ``del`` with ``timestamp`` = its last good contact, so that
  ``last_seen`` keeps meaning the last good contact;
- a connected camera's last_seen is refreshed at most every ``camera_heartbeat_webui_refresh``
  seconds (each report is a save of the web UI's file: an SD card's wear);
- before each report the daemon compares what the web UI shows with what it observed and
  sends only the differences, so a web UI that restarted (and read an old file) or was
  down shows the truth again within one interval.

A web UI that does not answer never stops monitoring: it is logged once, shown in
``status``, and the differences are sent when it is back. DHCP events are queued (a
bounded queue) and sent by the publisher; those it could not take are sent when it is back.

Trust (docs/security.md): anybody on the station's network can edit the web UI's camera
records, so a record gives a camera's hostname, IP and MAC and nothing else: per-camera
probe overrides (``heartbeat_port``, ``heartbeat_path``, …) found in one are ignored, with
one log line per camera and key; they come from the daemon's own file only
(``camera_heartbeat_cameras``). At most ``MAX_CAMERAS`` records are taken.

All talk with the web UI runs in this store's own two threads (never the loop's default
executor, where ICMP sweeps run): the monitor calls :meth:`listing` and :meth:`publish`
from its publisher task, beside the sweeps, never inside one.

The last list the web UI gave is kept in the state folder (``webui-cameras.json``, 0600,
written atomically, only when it changed): a daemon started while the web UI is down
monitors those cameras (or the shared file's, whichever is newer) from its first sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pumaguard_hb.logs import NOTICE
from pumaguard_hb.model.camera import (
    CONNECTED,
    DISCONNECTED,
    Camera,
    iso_seconds,
    normalize_mac,
    now_iso,
)
from pumaguard_hb.model.checks import MAX_CAMERAS
from pumaguard_hb.model.errors import Conflict, InvalidValue
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.model.station import DhcpOutcome, Station
from pumaguard_hb.stores.own_files import write_json
from pumaguard_hb.stores.settings_file import Snapshot
from pumaguard_hb.stores.webui import WebUI, WebUIError

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_QUEUED = 256  # DHCP events kept while the web UI does not answer
#: PumaGuard 25.x learns a DHCP device as a camera by these prefixes (case-sensitive)
WEBUI_CAMERA_PREFIXES = ("Microseven", "Reolink")
#: the fields of a web UI camera record the daemon takes (all the web UI itself keeps)
RECORD_FIELDS = ("hostname", "ip_address", "mac_address", "last_seen", "status")
CACHE = "webui-cameras.json"  # in the state folder: the last list the web UI gave
MAX_CACHE = 8 << 20  # bytes of the cache read at start
#: seconds between rewrites of the cache when only status or last_seen changed (a change
#: of the list itself, a camera added, removed or renamed, is written at once)
CACHE_REFRESH = 3600.0
MAX_SAID = 4096  # (camera, key) pairs remembered as already logged


def is_override(key: object) -> bool:
    """True for a per-camera probe override key (``heartbeat_port``, ``heartbeat-path``, …)."""
    return isinstance(key, str) and key.replace("-", "_").startswith("heartbeat_")


class WebUIStore:
    """Cameras in the PumaGuard web UI; see the module's docstring."""

    kind = "webui"

    def __init__(
        self, client: WebUI, settings: Callable[[], Settings], cache: Path | None = None
    ) -> None:
        self.client = client
        self.settings = settings
        self.cache = cache  # where the last list the web UI gave is kept (None: nowhere)
        self.shown: dict[str, dict[str, Any]] = {}  # MAC -> the web UI's record, as last seen
        self.reachable: bool | None = None
        self.problem: str | None = None
        self.list_problem: str | None = None  # e.g. more than MAX_CAMERAS cameras
        self.list_from: str | None = None  # where the cameras monitored now were listed
        self.last_sync: float | None = None
        self.reports = 0
        self._queue: deque[tuple[Any, ...]] = deque(maxlen=MAX_QUEUED)
        self._said: set[tuple[str, str]] = set()  # (camera, override key) already logged
        self._cached: list[dict[str, Any]] | None = None  # what the cache file holds
        self._cached_at = -float("inf")  # monotonic time of its last write
        # two threads of its own: a hung web UI never takes the loop's default executor,
        # where the ICMP sweeps run (one for the publisher, one for commands by hand)
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="webui")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    # -- the camera list --------------------------------------------------------------------

    async def listing(self, doc: Mapping[str, Any] | None) -> list[Any] | None:
        if doc is not None:
            return None  # the file is the web UI's to write and read; its memory counts
        try:
            records = await self._run(self.client.cameras)
        except WebUIError as err:
            self._down(err)
            return None
        self._up()
        self.last_sync = time.time()
        entries = self.trusted(records, f"the web UI at {self.client.url}")
        shown = {}
        for record in entries:
            try:
                shown[normalize_mac(record.get("mac_address"))] = record
            except InvalidValue:
                continue  # a record without a usable MAC: the station model skips it too
        self.shown = shown
        self.list_from = "web UI"
        self._said = {(cid, key) for cid, key in self._said if cid in shown}  # gone: forgotten
        await self._keep(entries)
        return entries

    def trusted(self, records: list[Any], where: str) -> list[dict[str, Any]]:
        """What the daemon takes of camera records from the web UI (or its file): the
        fields the web UI keeps, of at most MAX_CAMERAS records. Probe overrides in a record
        are ignored (anybody on the network can edit one): one line per camera and key."""
        if len(records) > MAX_CAMERAS:
            problem = (
                f"{where} lists {len(records)} cameras: at most {MAX_CAMERAS} are monitored "
                f"(the first {MAX_CAMERAS}); remove some there"
            )
            if self.list_problem != problem:
                log.error("%s", problem)
            self.list_problem = problem
            records = records[:MAX_CAMERAS]
        elif self.list_problem is not None:
            log.log(NOTICE, "%s lists %d cameras again: all monitored", where, len(records))
            self.list_problem = None
        out = []
        for record in records:
            if not isinstance(record, dict):
                continue
            entry = {k: record[k] for k in RECORD_FIELDS if k in record}
            ignored = sorted(k for k in record if is_override(k))
            if ignored:
                self._say_ignored(entry, ignored, where)
            out.append(entry)
        return out

    def _say_ignored(self, entry: dict[str, Any], keys: list[str], where: str) -> None:
        mac = entry.get("mac_address")
        cid = (mac if isinstance(mac, str) else "")[:40] or "?"
        name = _printable(entry.get("hostname")) or cid
        for key in keys[:8]:  # a record with a thousand such keys is not a thousand lines
            fact = (cid, key[:40])
            if fact in self._said or len(self._said) >= MAX_SAID:
                continue
            self._said.add(fact)
            log.warning(
                "camera %s: %s ignored: from %s, which anybody on the network can edit, "
                "a camera takes its hostname, IP and MAC only; set it in the daemon's own "
                "file (camera_heartbeat_cameras, docs/security.md)",
                name,
                _printable(key),
                where,
            )

    # -- the list kept for a start while the web UI is down -----------------------------------

    def start_listing(self, shared: Mapping[str, Any], shared_path: Path) -> list[Any] | None:
        """The cameras to monitor from the first sweep, before the web UI has answered: the
        shared file's (read-only) or the cached list, whichever is newer; None: neither."""
        found: list[tuple[float, str, list[Any]]] = []
        cameras = shared.get("cameras")
        if isinstance(cameras, list):
            with contextlib.suppress(OSError):
                found.append((os.stat(shared_path).st_mtime, str(shared_path), cameras))
        cached = self._read_cache()
        if cached is not None:
            found.append(cached)
        if not found:
            return None
        _, where, records = max(found, key=lambda f: f[0])
        entries = self.trusted(records, where)
        self.list_from = where
        log.info(
            "web UI mode: monitoring the %d cameras listed in %s until the web UI answers",
            len(entries),
            where,
        )
        return entries

    def _read_cache(self) -> tuple[float, str, list[Any]] | None:
        if self.cache is None:
            return None
        try:
            fd = os.open(self.cache, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as err:
            log.warning("cannot read %s: %s", self.cache, err.strerror)
            return None
        try:
            with os.fdopen(fd, "rb") as f:
                mtime = os.fstat(f.fileno()).st_mtime
                data = f.read(MAX_CACHE + 1)
            if len(data) > MAX_CACHE:
                raise ValueError(f"larger than {MAX_CACHE >> 20} MiB")
            doc = json.loads(data)
            cameras = doc.get("cameras") if isinstance(doc, dict) else None
            if not isinstance(cameras, list):
                raise ValueError("no camera list")
        except (OSError, ValueError, RecursionError) as err:
            log.warning("%s not used: %s", self.cache, err)
            return None
        self._cached = cameras
        return mtime, str(self.cache), cameras

    async def _keep(self, entries: list[dict[str, Any]]) -> None:
        """Write the list to the cache when it changed (the list itself at once; only
        status or last_seen at most every CACHE_REFRESH)."""
        if self.cache is None or entries == self._cached:
            return
        same_list = self._cached is not None and _specs(entries) == _specs(self._cached)
        if same_list and time.monotonic() - self._cached_at < CACHE_REFRESH:
            return
        doc = {"url": self.client.url, "cameras": entries}
        try:
            await self._run(write_json, self.cache, doc)
        except OSError as err:
            log.warning("cannot keep the web UI's camera list in %s: %s", self.cache, err)
            return
        self._cached, self._cached_at = entries, time.monotonic()

    # -- reports ------------------------------------------------------------------------------

    async def publish(self, station: Station) -> Snapshot | None:
        if self.reachable is False:
            return None  # the next listing tells when it is back; then the differences go
        if not await self._drain_queue():
            return None
        refresh = self.settings().webui_refresh
        for cam in list(station.cameras.values()):
            report = self._report_for(cam, refresh)
            if report is None:
                continue
            action, timestamp = report
            try:
                await self._run(
                    self.client.event,
                    action,
                    cam.mac_address,
                    cam.ip_address,
                    cam.hostname,
                    timestamp,
                )
            except WebUIError as err:
                self._down(err)
                return None
            self.reports += 1
            record = self.shown.setdefault(cam.mac_address, {})
            record["status"] = CONNECTED if action == "add" else DISCONNECTED
            if timestamp:
                record["last_seen"] = timestamp
        self._up()
        return None

    def _report_for(self, cam: Camera, refresh: float) -> tuple[str, str | None] | None:
        """What to tell the web UI about ``cam``: (action, timestamp), or None."""
        if not cam.seen.known or not cam.mac_address:
            return None
        record = self.shown.get(cam.mac_address)
        if record is None:
            return None  # not in its list (removed there): the next listing drops it here
        if cam.status == DISCONNECTED:
            if record.get("status") == DISCONNECTED:
                return None
            # keep the last good contact: the web UI sets last_seen to the event's timestamp
            return "del", cam.last_seen or _text(record.get("last_seen"))
        ours, theirs = iso_seconds(cam.last_seen), iso_seconds(record.get("last_seen"))
        if record.get("status") != CONNECTED:
            return "add", cam.last_seen or now_iso()
        if ours is not None and (theirs is None or ours - theirs >= refresh):
            return "add", cam.last_seen
        return None

    # -- by hand and DHCP -----------------------------------------------------------------------

    async def add(self, camera: Camera) -> None:
        if not camera.mac_address:
            raise Conflict(
                "the web UI identifies cameras by MAC address: add it with --mac aa:bb:cc:dd:ee:ff"
            )
        mac, ip, name = camera.mac_address, camera.ip_address, camera.hostname
        try:
            await self._run(self.client.add_camera, name, ip, mac, DISCONNECTED)
            # it sets last_seen to now whatever it is told; a camera never seen has none
            await self._run(self.client.event, "del", mac, ip, name, None)
        except WebUIError as err:
            self._down(err)
            raise Conflict(f"not added: {err}") from None
        except InvalidValue as err:
            raise Conflict(f"the web UI would not take it: {err}") from None
        self._up()
        self.shown[mac] = {
            "hostname": name,
            "ip_address": ip,
            "mac_address": mac,
            "status": DISCONNECTED,
            "last_seen": None,
        }

    async def remove(self, camera: Camera) -> None:
        if not camera.mac_address:
            return
        try:
            await self._run(self.client.remove_camera, camera.mac_address)
        except WebUIError as err:
            self._down(err)
            raise Conflict(f"not removed: {err}") from None
        self._up()
        self.shown.pop(camera.mac_address, None)

    async def dhcp(self, outcome: DhcpOutcome) -> None:
        """Pass the event on, so that one dnsmasq dhcp-script serves both: queued (bounded)
        and sent by the next publish, so a slow web UI never holds up the hook."""
        event, cam = outcome.event, outcome.camera
        if event is None:
            return
        timestamp = now_iso() if event.action != "del" else (cam.last_seen if cam else None)
        # the last field: our hostname patterns call it a camera (the web UI's rule may not)
        self._queue.append(
            (event.action, event.mac, event.ip, event.hostname, timestamp, cam is not None)
        )

    async def _drain_queue(self) -> bool:
        """Send the queued DHCP events in order; False when the web UI failed."""
        while self._queue:
            item = self._queue[0]
            action, mac, ip, hostname, timestamp = item[:5]
            camera = bool(item[5]) if len(item) > 5 else False
            try:
                if (
                    camera
                    and action != "del"
                    and mac not in self.shown
                    and not str(hostname).startswith(WEBUI_CAMERA_PREFIXES)
                ):
                    # our hostname patterns call it a camera, the web UI's rule would not
                    await self._run(self.client.add_camera, hostname or mac, ip, mac)
                await self._run(self.client.event, action, mac, ip, hostname, timestamp)
            except WebUIError as err:
                self._down(err)
                return False
            except InvalidValue as err:  # e.g. restored garbage: dropped, not retried forever
                log.warning("DHCP event for %s not sent to the web UI: %s", mac, err)
            self._queue.popleft()
            if camera and mac in self.shown:
                record = self.shown[mac]
                record["status"] = DISCONNECTED if action == "del" else CONNECTED
                if timestamp:
                    record["last_seen"] = timestamp
        return True

    # -- how the web UI is doing ---------------------------------------------------------------

    def _down(self, err: WebUIError) -> None:
        if self.reachable is not False:
            log.warning("%s; monitoring goes on, results are sent when it answers again", err)
        self.reachable = False
        self.problem = str(err)

    def _up(self) -> None:
        if self.reachable is False:
            log.log(NOTICE, "web UI at %s answers again; sending what changed", self.client.url)
        self.reachable = True
        self.problem = None

    def unsaved(self) -> dict[str, Any]:
        return {"webui_events": [list(item) for item in self._queue]} if self._queue else {}

    def restore(self, unsaved: Mapping[str, Any]) -> None:
        for item in unsaved.get("webui_events") or []:
            if isinstance(item, list) and len(item) in (5, 6):
                self._queue.append(tuple(item))

    def close(self) -> None:
        """Let go of the threads (one still waiting on the web UI ends by its deadline)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def info(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.client.url,
            "reachable": self.reachable,
            "problem": self.problem,
            "list_problem": self.list_problem,
            "cameras_from": self.list_from,
            "reports": self.reports,
            "last_sync": self.last_sync,
            "queued_events": len(self._queue),
        }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _printable(value: Any, limit: int = 80) -> str:
    """Text from a stranger fit for one log line."""
    text = "".join(c if c.isprintable() else "?" for c in str(value or ""))
    return text[:limit]


def _specs(entries: list[Any]) -> list[tuple[Any, ...]]:
    """The list without status and last_seen: which cameras, named how, where."""
    return [
        tuple(e.get(k) for k in ("hostname", "ip_address", "mac_address"))
        for e in entries
        if isinstance(e, dict)
    ]
