"""The sweep schedule: a sweep every interval, and sweeps on demand (check_now).

One sweep runs at a time. A ``check_now`` that arrives while a sweep covering its
cameras is still probing joins it; requests that arrive meanwhile are merged into
the next sweep. So overlapping requests never double the probes or the writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import Disabled, HeartbeatError
from .probe import ProbeResult
from .sweep import run_sweep

if TYPE_CHECKING:
    from .monitor import Monitor

log = logging.getLogger(__name__)


@dataclass
class _Sweep:
    ids: frozenset[str] | None  # None: every camera
    done: asyncio.Future[dict[str, Any]]
    probing: bool = True  # False once its probes are over: later requests need a new sweep


def _covers(running: frozenset[str] | None, wanted: frozenset[str] | None) -> bool:
    return running is None or (wanted is not None and wanted <= running)


class Schedule:
    """When the monitor's cameras are swept, and who waits for which sweep."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.next_due = time.monotonic()
        self.last_sweep: dict[str, Any] | None = None
        self.sweeps = 0
        self._current: _Sweep | None = None
        self._next: _Sweep | None = None
        self._wake = asyncio.Event()

    @property
    def sweeping(self) -> bool:
        """True while a sweep runs."""
        return self._current is not None

    def settings_changed(self) -> None:
        """The interval or the enabled switch may have changed: re-plan the next sweep."""
        interval = self.monitor.settings.interval
        self.next_due = min(self.next_due, time.monotonic() + interval)
        self._wake.set()

    def next_check_in(self) -> float | None:
        """Seconds until the next scheduled sweep, or None when monitoring is off."""
        if not self.monitor.settings.enabled:
            return None
        return max(0.0, self.next_due - time.monotonic())

    async def check_now(self, ids: frozenset[str] | None = None) -> dict[str, Any]:
        """Run (or join) a sweep covering ``ids`` and return the PumaGuard-shaped report."""
        if not self.monitor.settings.enabled:
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
                    timeout = delay if self.monitor.settings.enabled else None
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
        if self.monitor.settings.enabled and time.monotonic() >= self.next_due:
            return _Sweep(None, asyncio.get_running_loop().create_future())
        return None

    async def _sweep(self, sweep: _Sweep) -> None:
        started_wall, started = time.time(), time.monotonic()
        if sweep.ids is None:
            self.next_due = started + self.monitor.settings.interval
        targets = self.monitor.targets(sweep.ids)
        results: dict[str, ProbeResult] = {}

        def on_result(cid: str, result: ProbeResult) -> None:
            results[cid] = result
            self.monitor.record(cid, result)

        try:
            await run_sweep(targets, self.monitor.icmp.mode, on_result)
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
        await self.monitor.flush()
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
        for cam in self.monitor.cameras.values():
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
