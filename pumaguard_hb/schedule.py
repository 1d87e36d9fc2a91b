"""The sweep schedule: each camera checked when it is due, and sweeps on demand (check_now).

Each camera has its own interval (``heartbeat_interval``, else
``camera_heartbeat_interval``) and is due one interval after its last check; a camera
never checked is due at once. The schedule sleeps until the earliest due time, then
sweeps, concurrently, every camera due by then *or within its gathering slack*
(:func:`slack`: 10 % of its interval, at least 1 s, at most half of it), so cameras that
fall due close together share one sweep, one wake-up and one write. The cameras of a
sweep are then due again one interval after the time the sweep was planned for, so
groups whose intervals are multiples of each other stay in step (docs/intervals.md).

The camera list is polled (``before()``: the web UI's list) before every check_now and
before a scheduled sweep when the list is due (every ``camera_heartbeat_interval``, in
step with the cameras) or :data:`POLL_GAP` seconds have passed since the last poll; so a
camera on a short interval does not make the daemon ask the web UI more often than that.
A station without cameras still gets an (empty) sweep every interval, as before.

One sweep runs at a time. A ``check_now`` that arrives while a sweep covering its
cameras is still probing joins it; requests that arrive meanwhile are merged into
the next sweep. So overlapping requests never double the probes or the writes.
A sweep covers exactly the cameras it was started with: a camera added since is
checked by the next one, never reported "not checked". A camera checked by check_now
counts as checked: its next scheduled check is one interval later.

The schedule knows nothing of cameras or stores: it is given callables (:class:`Hooks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pumaguard_hb.model.errors import Disabled, HeartbeatError
from pumaguard_hb.model.probing import ProbeResult, Target
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.probes.icmp import IcmpMode
from pumaguard_hb.probes.stream import StreamLimiter
from pumaguard_hb.probes.sweep import run_sweep

log = logging.getLogger(__name__)

GATHER_MIN = 1.0  # seconds: a camera due this soon joins the sweep under way ...
GATHER_SHARE = 0.1  # ... or this share of its interval, whichever is longer
POLL_GAP = 5.0  # seconds: scheduled sweeps poll the camera list at most this often (or when due)


def slack(interval: float) -> float:
    """How early a camera on ``interval`` may be checked to share a sweep with others."""
    return min(max(GATHER_MIN, GATHER_SHARE * interval), interval / 2)


@dataclass(frozen=True)
class Hooks:
    """What the schedule needs from the rest of the daemon."""

    settings: Callable[[], Settings]
    icmp_mode: Callable[[], IcmpMode]
    before: Callable[[], Awaitable[None]]  # refresh the camera list (the web UI's)
    targets: Callable[[frozenset[str] | None], list[Target]]
    record: Callable[[Target, ProbeResult], None]
    after: Callable[[bool], Awaitable[None]]  # publish what the sweep found (True: scheduled)
    report: Callable[[frozenset[str] | None, dict[str, ProbeResult]], dict[str, Any]]


@dataclass
class _Sweep:
    ids: frozenset[str] | None  # None: every camera
    done: asyncio.Future[dict[str, Any]]
    probing: bool = True  # False once its probes are over: later requests need a new sweep
    fixed: frozenset[str] | None = None  # the cameras it probes, once known
    planned: float | None = None  # a scheduled sweep: the (monotonic) time it was due


def sweep_ids(targets: list[Target]) -> frozenset[str]:
    """The ids of the cameras of ``targets``."""
    return frozenset(t.id for t in targets)


def _covers(sweep: _Sweep, wanted: frozenset[str]) -> bool:
    if sweep.fixed is not None:
        return wanted <= sweep.fixed
    if sweep.planned is not None:
        return False  # a scheduled sweep's cameras are chosen once the list is polled
    return sweep.ids is None or wanted <= sweep.ids


class Schedule:
    """When each camera is checked, and who waits for which sweep."""

    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks
        self.last_sweep: dict[str, Any] | None = None
        self.sweeps = 0
        self._streams: StreamLimiter | None = None  # stream checks at once, every sweep
        self.polls = 0  # times the camera list was polled (before())
        self._checked: dict[str, float] = {}  # camera id -> when its last check counts from
        self._polled = -math.inf  # ... and the camera list's last poll
        self._current: _Sweep | None = None
        self._next: _Sweep | None = None
        self._wake = asyncio.Event()
        # told when a sweep starts or ends and on every re-plan (the daemon's housekeeping
        # runs then: STATUS=, the settings files; nothing of it runs on a clock)
        self.watchers: list[Callable[[], None]] = []

    def _tell(self) -> None:
        for watcher in self.watchers:
            watcher()

    def _stream_limiter(self, limit: int) -> StreamLimiter:
        """The daemon's one limit on stream checks at once, shared by every sweep (and by a
        check_now that joins one); a new one when the setting changes (checks admitted under
        the old one finish under it)."""
        if self._streams is None or self._streams.limit != limit:
            self._streams = StreamLimiter(limit)
        return self._streams

    @property
    def sweeping(self) -> bool:
        """True while a sweep runs."""
        return self._current is not None

    def settings_changed(self) -> None:
        """Intervals, overrides, the camera list or the enabled switch may have changed:
        re-plan (due times follow each camera's current interval; new cameras are due)."""
        self._wake.set()
        self._tell()

    def _due(self, target: Target) -> float:
        return self._checked.get(target.id, -math.inf) + target.interval

    def _list_due(self) -> float:
        return self._polled + self.hooks.settings().interval

    def next_check_in(self) -> float | None:
        """Seconds until the next scheduled check of any camera, or None when monitoring is
        off. A station without cameras: until its next (empty) sweep."""
        if not self.hooks.settings().enabled:
            return None
        targets = self.hooks.targets(None)
        due = min((self._due(t) for t in targets), default=self._list_due())
        return max(0.0, due - time.monotonic())

    def plan(self) -> dict[str, dict[str, float | None]]:
        """Each probed camera's ``interval_s`` and ``next_check_in_s`` (None when off)."""
        enabled = self.hooks.settings().enabled
        now = time.monotonic()
        return {
            t.id: {
                "interval_s": t.interval,
                "next_check_in_s": round(max(0.0, self._due(t) - now), 1) if enabled else None,
            }
            for t in self.hooks.targets(None)
        }

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
            sweep, delay = self._take_due()
            if sweep is None:
                self._wake.clear()
                if self._next is None:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancel
                    # that comes as the event is set, and the daemon would never stop
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
                continue
            self._current = sweep
            self._tell()
            try:
                await self._sweep(sweep)
            finally:
                self._current = None
                self._tell()

    def _take_due(self) -> tuple[_Sweep | None, float | None]:
        """The sweep to run now, or None and how long to sleep (None: until woken)."""
        if self._next is not None:
            sweep, self._next = self._next, None
            return sweep, None
        if not self.hooks.settings().enabled:
            return None, None
        due = min((self._due(t) for t in self.hooks.targets(None)), default=math.inf)
        wake = min(due, self._list_due())
        now = time.monotonic()
        if now >= wake:
            return _Sweep(None, asyncio.get_running_loop().create_future(), planned=wake), None
        return None, wake - now

    def _gather(self, targets: list[Target], now: float) -> list[Target]:
        """The cameras due now or within their slack."""
        return [t for t in targets if self._due(t) <= now + slack(t.interval)]

    async def _sweep(self, sweep: _Sweep) -> None:
        started_wall, started = time.time(), time.monotonic()
        hooks = self.hooks
        interval = hooks.settings().interval
        # on time: count from when it was due, so cameras keep in step; late: from now
        anchor = started
        if sweep.planned is not None and started - sweep.planned <= GATHER_MIN:
            anchor = sweep.planned
        results: dict[str, ProbeResult] = {}
        targets: list[Target] = []
        try:
            scheduled = sweep.planned is not None
            list_due = self._list_due() <= started + slack(interval)
            if not scheduled or list_due or started - self._polled >= POLL_GAP:
                self._polled = anchor if list_due else started
                self.polls += 1
                await hooks.before()
            if scheduled:
                everything = hooks.targets(None)
                known = {t.id for t in everything}
                for cid in [c for c in self._checked if c not in known]:
                    del self._checked[cid]  # gone: due at once should it come back
                targets = self._gather(everything, time.monotonic())
                # all due: a report like check_now's of everything (cameras not probed too)
                sweep.ids = None if len(targets) == len(everything) else sweep_ids(targets)
                if everything and not targets:  # the list was due, no camera is
                    sweep.fixed = frozenset()
                    sweep.probing = False
                    if not sweep.done.done():
                        sweep.done.set_result(hooks.report(sweep.ids, results))
                    return
            else:
                targets = hooks.targets(sweep.ids)
            sweep.fixed = frozenset(t.id for t in targets)
            for target in targets:
                self._checked[target.id] = anchor
            by_id = {t.id: t for t in targets}

            def on_result(cid: str, result: ProbeResult) -> None:
                results[cid] = result
                hooks.record(by_id[cid], result)

            limiter = self._stream_limiter(hooks.settings().stream_concurrency)
            await run_sweep(targets, hooks.icmp_mode(), on_result, stream_limiter=limiter)
        except Exception as err:  # a bug in a sweep must not stop monitoring
            log.exception("sweep failed")
            if not sweep.done.done():
                sweep.done.set_exception(HeartbeatError(f"sweep failed: {err}"))
                # logged above: asyncio must not log it again ("Future exception was never
                # retrieved") when nobody waits for this sweep; waiters still get it
                sweep.done.exception()
            return
        finally:
            sweep.probing = False
            if not sweep.done.done() and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                sweep.done.cancel()
        duration = time.monotonic() - started
        log.debug("sweep of %d cameras took %.3fs", len(targets), duration)
        await hooks.after(sweep.planned is not None)
        self.sweeps += 1
        self.last_sweep = {
            "started_at": started_wall,
            "duration_s": round(duration, 3),
            "cameras": len(targets),
            "reachable": sum(r.reachable for r in results.values()),
        }
        if not sweep.done.done():
            sweep.done.set_result(hooks.report(sweep.ids, results))
