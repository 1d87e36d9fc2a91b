"""Publishing what the monitor knows to where cameras live, and taking their list from it.

- Standalone (the settings file): after a sweep the station is written (one write at
  most); a sweep whose only news is newer ``last_seen`` times is held back a while
  (docs/intervals.md); what a write could not publish is kept and retried.
- Web UI mode: one task talks to the web UI, beside the sweeps; each round takes the
  camera list (when a sweep asked for it) and sends what the web UI shows wrongly. However
  slow the web UI, the sweeps keep their schedule (docs/webui.md).
- At stop, one last bounded save; what it could not write waits in the state folder
  (``unsaved-changes.json``) for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pumaguard_hb.model.errors import SettingsError
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.model.station import Station
from pumaguard_hb.problems import Problems
from pumaguard_hb.schedule import slack
from pumaguard_hb.stores.cameras import CameraStore
from pumaguard_hb.stores.own_files import write_json
from pumaguard_hb.stores.settings_file import SettingsFile, Snapshot, StoreError
from pumaguard_hb.stores.webstore import WebUIStore
from pumaguard_hb.stores.webui import WebUIError

log = logging.getLogger(__name__)

STOP_LOCK_TIMEOUT = 2.0  # seconds the final save may wait for the lock (TimeoutStopSec is 10)
STOP_SETTLE_TIMEOUT = 0.5  # ... and for a file being written in place to settle
LAST_SEEN_HOLD_MAX = 300.0  # seconds a last_seen-only change may wait to be written
UNSAVED = "unsaved-changes.json"  # in the state dir: what the last stop could not write


class Publisher:
    """The station's way out to its store, and the store's camera list in.

    ``listed`` applies a camera list read from the store; ``written`` takes the shared
    file as a write left it; ``settings`` gives the settings in force.
    """

    def __init__(
        self,
        store: CameraStore,
        station: Station,
        problems: Problems,
        settings: Callable[[], Settings],
        listed: Callable[[list[Any]], None],
        written: Callable[[Snapshot], None],
    ) -> None:
        self.store = store
        self.station = station
        self.webui = store.kind == "webui"
        self.problems = problems
        self._settings = settings
        self._listed = listed
        self._written = written
        self.spool: Path | None = None  # where unsaved changes wait over a stop
        self.lock = asyncio.Lock()  # one write to the store at a time
        self.urgent = False  # a change of state since the last publish (after_sweep)
        self._published_at = -math.inf  # monotonic time of after_sweep's last publish
        self.held = 0  # publishes held back: last_seen-only news (intervals.md)
        # web UI mode: one task talks to the web UI, beside the sweeps (publish_beside)
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._list_wanted = False

    async def before_sweep(self) -> None:
        """Before a sweep: take the camera list from a store that is polled. The web UI's is
        asked for by the publisher, beside the sweep: a new list is applied when it comes."""
        if self.webui:
            self._list_wanted = True
            self._wake()
            return
        entries = await self.store.listing(None)
        if entries is not None:
            self._listed(entries)

    def _wake(self) -> None:
        """Web UI mode: have the publisher task run a round (started on first use)."""
        if self._task is None or self._task.done():
            self._kick = asyncio.Event()  # of this loop
            self._task = asyncio.get_running_loop().create_task(
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
                        self._listed(entries)
                await self.store.publish(self.station)
            except WebUIError:
                pass  # the store says so once and shows it in status
            except Exception:  # a bug here must not end the reports for good
                log.exception("publishing to the web UI failed")
                await asyncio.sleep(1)

    async def after_sweep(self, scheduled: bool) -> None:
        """After a sweep: publish what it found. A scheduled sweep whose only news is newer
        ``last_seen`` times (cameras on a ``heartbeat_interval`` shorter than the global one)
        is written at most once per min(camera_heartbeat_interval, 300 s); changes of state,
        check_now and anything pending are published at once (docs/intervals.md)."""
        if self.webui:
            self._wake()  # beside the sweep: a slow web UI never delays a probe
            return
        interval = min(self._settings().interval, LAST_SEEN_HOLD_MAX)
        recent = time.monotonic() - self._published_at < interval - slack(interval)
        news = self.urgent or "write" in self.problems or bool(self.store.unsaved())
        if scheduled and recent and not news:
            self.held += 1
            return
        self.urgent = False
        self._published_at = time.monotonic()
        await self.flush()

    async def flush(self) -> None:
        """Publish what the daemon knows to its store (one write at most); on failure the
        unpublished part is kept for the next try. In web UI mode it wakes the publisher
        task instead (returns at once)."""
        if self.webui:
            self._wake()
            return
        async with self.lock:
            if "settings" in self.problems:
                return  # the file does not parse, or vanished: never write over it
            try:
                snap = await self.store.publish(self.station)
            except SettingsError as err:  # same sentence as reload(): logged once
                self.problems.problem("settings", f"{err}; keeping the last good settings")
                return
            except StoreError as err:
                self.problems.problem("write", f"{err}; changes kept in memory and retried")
                return
            self.problems.solved("write")
            if snap is not None:
                self._written(snap)

    async def stop(self, shared: SettingsFile) -> None:
        """The last save, bounded well inside systemd's stop timeout; what it could not
        write waits in the state directory for the next start."""
        shared.lock_timeout = STOP_LOCK_TIMEOUT
        shared.settle_timeout = min(shared.settle_timeout, STOP_SETTLE_TIMEOUT)
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
            await asyncio.to_thread(write_json, self.spool, unsaved)
            log.warning("could not save every change; kept in %s for the next start", self.spool)
        except OSError as err:
            log.error("could not keep unsaved changes in %s: %s", self.spool, err.strerror)

    async def _last_publish(self) -> None:
        """Web UI mode: stop the publisher; one last round, bounded (what it cannot send,
        the next start finds different and sends; queued DHCP events are kept)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(TimeoutError, WebUIError):
            await asyncio.wait_for(self.store.publish(self.station), STOP_LOCK_TIMEOUT)
        if isinstance(self.store, WebUIStore):
            self.store.close()

    def restore_unsaved(self) -> bool:
        """At start: hand the store what the last stop could not save. True if there was."""
        if self.spool is None:
            return False
        try:
            unsaved = json.loads(self.spool.read_text())
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as err:
            log.error("cannot read %s: %s", self.spool, err)
            return False
        restored = isinstance(unsaved, dict)
        if restored:
            self.store.restore(unsaved)
            log.info("took back the changes the last stop could not save (%s)", self.spool)
        with contextlib.suppress(OSError):
            self.spool.unlink()
        return restored
