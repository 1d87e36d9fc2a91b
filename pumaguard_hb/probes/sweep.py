"""A sweep: one check of many cameras at once, bounded, costing about one timeout.

TCP-based checks (tcp, http, https, rtsp) run as concurrent connections (at most
``limit`` at a time); ICMP checks of the whole sweep go through one socket per
address family in a worker thread. ``both`` sends ICMP first and checks by TCP
only the cameras ICMP did not reach. ``stream`` checks (docs/stream.md) run outside that
limit, under their own limiter (camera_heartbeat_stream_concurrency; the schedule keeps one).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable

from pumaguard_hb.model.probing import STREAM_METHODS, ProbeResult, Target
from pumaguard_hb.probes.http import probe_request
from pumaguard_hb.probes.icmp import IcmpMode, ping_many
from pumaguard_hb.probes.stream import DEFAULT_CONCURRENCY, StreamLimiter
from pumaguard_hb.probes.tcp import probe_tcp

OnResult = Callable[[str, ProbeResult], None]


async def probe_stream(target: Target, limiter: StreamLimiter) -> ProbeResult:
    """One stream check of ``target`` when the limiter gives it a turn."""
    found = await limiter.check(
        target.url, timeout=target.timeout, username=target.username, password=target.password
    )
    return ProbeResult(
        found.reachable,
        "stream",
        found.rtt_ms,
        found.reason,
        step=found.step,
        first_packet_ms=found.first_packet_ms,
    )


async def run_sweep(
    targets: list[Target],
    icmp_mode: IcmpMode,
    on_result: OnResult,
    limit: int = 1024,
    stream_limiter: StreamLimiter | None = None,
) -> None:
    """Check every target; report each result through ``on_result`` as soon as it is known.

    Cancelling the task stops at once: results already reported stay reported.
    A target whose only method (icmp) cannot run here gets no result at all, so
    a local permission problem never marks a camera disconnected.
    """
    icmp_ok = icmp_mode is not IcmpMode.UNAVAILABLE
    by_icmp = [t for t in targets if icmp_ok and t.method in ("icmp", "both")]
    by_tcp = [
        t for t in targets if t.method in STREAM_METHODS or (t.method == "both" and not icmp_ok)
    ]
    by_stream = [t for t in targets if t.method == "stream"]
    gate = asyncio.Semaphore(limit)
    limiter = stream_limiter or StreamLimiter(DEFAULT_CONCURRENCY)

    async def stream(target: Target) -> None:
        on_result(target.id, await probe_stream(target, limiter))

    async def tcp(target: Target) -> None:
        async with gate:
            if target.method in ("http", "https", "rtsp"):
                result = await probe_request(
                    target.method, target.ip, target.port, target.timeout, target.path
                )
            else:
                result = await probe_tcp(target.ip, target.port, target.timeout)
        on_result(target.id, result)

    async def icmp_then_fallback() -> None:
        by_ip: dict[str, list[Target]] = {}
        for target in by_icmp:
            by_ip.setdefault(target.ip, []).append(target)

        def arrived(ip: str, result: ProbeResult) -> None:
            # success, or the final word for icmp-only cameras, is reported at once;
            # failures of "both" cameras wait for their TCP check
            for target in by_ip.get(ip, ()):
                if result.reachable or target.method == "icmp":
                    on_result(target.id, result)

        results = await _ping(by_icmp, icmp_mode is IcmpMode.PRIVILEGED, arrived)
        fallback = [
            t
            for t in by_icmp
            if t.method == "both" and t.ip in results and not results[t.ip].reachable
        ]
        async with asyncio.TaskGroup() as group:
            for target in fallback:
                group.create_task(tcp(target))

    async with asyncio.TaskGroup() as group:
        if by_icmp:
            group.create_task(icmp_then_fallback())
        for target in by_tcp:
            group.create_task(tcp(target))
        for target in by_stream:
            group.create_task(stream(target))


async def _ping(
    targets: list[Target], privileged: bool, arrived: OnResult
) -> dict[str, ProbeResult]:
    """Run the blocking ICMP sweeps (one per timeout/count) in threads, streaming results.

    Results reach ``arrived`` on the event loop as they come; a cancel stops the
    threads within a fraction of a second.
    """
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    groups: dict[tuple[float, int], list[str]] = {}
    for t in targets:
        groups.setdefault((t.icmp_timeout, t.icmp_count), []).append(t.ip)

    def report(ip: str, result: ProbeResult) -> None:
        loop.call_soon_threadsafe(arrived, ip, result)

    futures = [
        loop.run_in_executor(
            None,
            functools.partial(ping_many, ips, timeout, privileged, count, cancel, report=report),
        )
        for (timeout, count), ips in groups.items()
    ]
    try:
        done = await asyncio.shield(asyncio.gather(*futures))
    except asyncio.CancelledError:
        cancel.set()
        raise
    await asyncio.sleep(0)  # let results queued by call_soon_threadsafe run first
    return {ip: result for part in done for ip, result in part.items()}
