"""The sweep schedule: a sweep every interval, and sweeps on demand (check_now).

One sweep runs at a time. A ``check_now`` that arrives while a sweep covering its
cameras is still probing joins it; requests that arrive meanwhile are merged into
the next sweep. So overlapping requests never double the probes or the writes.
A sweep covers exactly the cameras it was started with: a camera added since is
checked by the next one, never reported "not checked".

The schedule knows nothing of cameras or stores: it is given callables (:class:`Hooks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .errors import Disabled, HeartbeatError
from .icmp import IcmpMode
from .probe import ProbeResult
from .settings import Settings
from .sweep import Target, run_sweep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hooks:
    """What the schedule needs from the rest of the daemon."""

    settings: Callable[[], Settings]
    icmp_mode: Callable[[], IcmpMode]
    before: Callable[[], Awaitable[None]]  # refresh the camera list (the web UI's)
    targets: Callable[[frozenset[str] | None], list[Target]]
    record: Callable[[Target, ProbeResult], None]
    after: Callable[[], Awaitable[None]]  # persist / publish what the sweep found
    report: Callable[[frozenset[str] | None, dict[str, ProbeResult]], dict[str, Any]]


@dataclass
class _Sweep:
    ids: frozenset[str] | None  # None: every camera
    done: asyncio.Future[dict[str, Any]]
    probing: bool = True  # False once its probes are over: later requests need a new sweep
    fixed: frozenset[str] | None = None  # the cameras it probes, once known


def _covers(sweep: _Sweep, wanted: frozenset[str]) -> bool:
    if sweep.fixed is not None:
        return wanted <= sweep.fixed
    return sweep.ids is None or wanted <= sweep.ids


class Schedule:
    """When the cameras are swept, and who waits for which sweep."""

    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks
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
        interval = self.hooks.settings().interval
        self.next_due = min(self.next_due, time.monotonic() + interval)
        self._wake.set()

    def next_check_in(self) -> float | None:
        """Seconds until the next scheduled sweep, or None when monitoring is off."""
        if not self.hooks.settings().enabled:
            return None
        return max(0.0, self.next_due - time.monotonic())

    async def check_now(self, ids: frozenset[str] | None = None) -> dict[str, Any]:
        """Run (or join) a sweep covering ``ids`` and return the PumaGuard-shaped report."""
        if not self.hooks.settings().enabled:
            raise Disabled(
                "monitoring is disabled (camera_heartbeat_enabled: false); "
                "enable it with: pumaguard-hb config set camera_heartbeat_enabled true"
            )
        wanted = ids if ids is not None else frozenset(t.id for t in self.hooks.targets(None))
        if self._current and self._current.probing and _covers(self._current, wanted):
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
                    timeout = delay if self.hooks.settings().enabled else None
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
        if self.hooks.settings().enabled and time.monotonic() >= self.next_due:
            return _Sweep(None, asyncio.get_running_loop().create_future())
        return None

    async def _sweep(self, sweep: _Sweep) -> None:
        started_wall, started = time.time(), time.monotonic()
        hooks = self.hooks
        if sweep.ids is None:
            self.next_due = started + hooks.settings().interval
        results: dict[str, ProbeResult] = {}
        try:
            await hooks.before()
            targets = hooks.targets(sweep.ids)
            sweep.fixed = frozenset(t.id for t in targets)
            by_id = {t.id: t for t in targets}

            def on_result(cid: str, result: ProbeResult) -> None:
                results[cid] = result
                hooks.record(by_id[cid], result)

            await run_sweep(targets, hooks.icmp_mode(), on_result)
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
        await hooks.after()
        self.sweeps += 1
        self.last_sweep = {
            "started_at": started_wall,
            "duration_s": round(duration, 3),
            "cameras": len(targets),
            "reachable": sum(r.reachable for r in results.values()),
        }
        if not sweep.done.done():
            sweep.done.set_result(hooks.report(sweep.ids, results))
