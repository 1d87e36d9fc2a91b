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
``status``, and the differences are sent when it is back. DHCP events it could not take
are kept (a bounded queue) and sent then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from .camera import CONNECTED, DISCONNECTED, Camera, iso_seconds, normalize_mac, now_iso
from .errors import Conflict, InvalidValue
from .logs import NOTICE
from .settings import Settings
from .settings_file import Snapshot
from .station import DhcpOutcome, Station
from .webui import WebUI, WebUIError

log = logging.getLogger(__name__)

MAX_QUEUED = 256  # DHCP events kept while the web UI does not answer
#: PumaGuard 25.x learns a DHCP device as a camera by these prefixes (case-sensitive)
WEBUI_CAMERA_PREFIXES = ("Microseven", "Reolink")


class WebUIStore:
    """Cameras in the PumaGuard web UI; see the module's docstring."""

    kind = "webui"

    def __init__(self, client: WebUI, settings: Callable[[], Settings]) -> None:
        self.client = client
        self.settings = settings
        self.shown: dict[str, dict[str, Any]] = {}  # MAC -> the web UI's record, as last seen
        self.reachable: bool | None = None
        self.problem: str | None = None
        self.last_sync: float | None = None
        self.reports = 0
        self._queue: deque[tuple[str, str, str, str, str | None]] = deque(maxlen=MAX_QUEUED)

    # -- the camera list --------------------------------------------------------------------

    async def listing(self, doc: Mapping[str, Any] | None) -> list[Any] | None:
        if doc is not None:
            return None  # the file is the web UI's to write and read; its memory counts
        try:
            records = await asyncio.to_thread(self.client.cameras)
        except WebUIError as err:
            self._down(err)
            return None
        self._up()
        self.last_sync = time.time()
        shown = {}
        for record in records:
            try:
                shown[normalize_mac(record.get("mac_address"))] = record
            except InvalidValue:
                continue  # a record without a usable MAC: the station model skips it too
        self.shown = shown
        return records

    # -- reports ------------------------------------------------------------------------------

    async def publish(self, station: Station) -> Snapshot | None:
        if self.reachable is False:
            return None  # the next listing tells when it is back; then the differences go
        await self._drain_queue()
        refresh = self.settings().webui_refresh
        for cam in list(station.cameras.values()):
            report = self._report_for(cam, refresh)
            if report is None:
                continue
            action, timestamp = report
            try:
                await asyncio.to_thread(
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
            await asyncio.to_thread(self.client.add_camera, name, ip, mac, DISCONNECTED)
            # it sets last_seen to now whatever it is told; a camera never seen has none
            await asyncio.to_thread(self.client.event, "del", mac, ip, name, None)
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
            await asyncio.to_thread(self.client.remove_camera, camera.mac_address)
        except WebUIError as err:
            self._down(err)
            raise Conflict(f"not removed: {err}") from None
        self._up()
        self.shown.pop(camera.mac_address, None)

    async def dhcp(self, outcome: DhcpOutcome) -> None:
        """Pass the event on, so that one dnsmasq dhcp-script serves both."""
        event, cam = outcome.event, outcome.camera
        if event is None:
            return
        if (
            cam is not None
            and cam.mac_address not in self.shown
            and not event.hostname.startswith(WEBUI_CAMERA_PREFIXES)
        ):
            # our hostname patterns call it a camera, the web UI's rule would not: tell it
            try:
                await asyncio.to_thread(
                    self.client.add_camera, cam.hostname, cam.ip_address, cam.mac_address
                )
            except WebUIError as err:
                self._down(err)
        timestamp = now_iso() if event.action != "del" else (cam.last_seen if cam else None)
        item = (event.action, event.mac, event.ip, event.hostname, timestamp)
        if self.reachable is False:
            self._queue.append(item)
            return
        try:
            await asyncio.to_thread(self.client.event, *item)
        except WebUIError as err:
            self._down(err)
            self._queue.append(item)
            return
        self._up()
        if cam is not None and cam.mac_address in self.shown:
            record = self.shown[cam.mac_address]
            record["status"] = DISCONNECTED if event.action == "del" else CONNECTED
            if timestamp:
                record["last_seen"] = timestamp

    async def _drain_queue(self) -> None:
        while self._queue:
            item = self._queue[0]
            try:
                await asyncio.to_thread(self.client.event, *item)
            except WebUIError as err:
                self._down(err)
                return
            self._queue.popleft()

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
            if isinstance(item, list) and len(item) == 5:
                self._queue.append(tuple(item))

    def info(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.client.url,
            "reachable": self.reachable,
            "problem": self.problem,
            "reports": self.reports,
            "last_sync": self.last_sync,
            "queued_events": len(self._queue),
        }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
