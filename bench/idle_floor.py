"""The floor under the daemon's idle CPU: an empty asyncio loop with the daemon's timers.

Run by bench/bench_daemon.py beside the idle daemons
(``python bench/idle_floor.py WINDOWS SECONDS``); prints JSON. Until issue 21 the idle
daemon woke up for three periodic tasks (pumaguard_hb/daemon.py): the settings file check
every 2 s (one stat()), the metrics listener check every 2 s, the STATUS= refresh every
5 s. This loop keeps those three timers and does one stat() every 2 s, nothing else: what
it costs is what those wake-ups cost on this machine. Since issue 21 the daemon has no
timer between sweeps outside systemd (inotify tells it of edits; the watchdog ping is its
one timer under systemd), so an idle daemon now costs less than this floor;
bench/bench_idle.py measures it against a baseline tree. CPU time of each window, after
a 1 s warm-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

TIMERS = ((2.0, True), (2.0, False), (5.0, False))  # (period s, does a stat()): before #21
WARMUP = 1.0


async def tick(period: float, stat: bool) -> None:
    while True:
        await asyncio.sleep(period)
        if stat:
            os.stat(__file__)


async def main(windows: int, seconds: float) -> dict[str, object]:
    tasks = [asyncio.create_task(tick(p, s)) for p, s in TIMERS]
    await asyncio.sleep(WARMUP)
    rates: list[float] = []
    for _ in range(windows):
        c0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        c1, t1 = time.process_time(), time.monotonic()
        rates.append((c1 - c0) / (t1 - t0))
    for task in tasks:
        task.cancel()
    return {"rates": rates, "wakeups_per_s": sum(1 / p for p, _ in TIMERS)}


if __name__ == "__main__":
    n = min(max(int(sys.argv[1]) if len(sys.argv) > 1 else 1, 1), 10)
    secs = min(max(float(sys.argv[2]) if len(sys.argv) > 2 else 10.0, 1.0), 60.0)
    json.dump(asyncio.run(main(n, secs)), sys.stdout)
