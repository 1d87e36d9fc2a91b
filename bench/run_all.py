"""Every benchmark in one run, on one lab, under both interpreters; prints the figures.

    sudo bench/run_all.sh              # what docs/performance.md was made with
    sudo bench/run_all.sh --quick      # sweeps only (about 2 minutes)

Order: sweeps (run_sweep, the sequential baseline, fping), then the daemon (memory,
writes, CPU, the settings file's parse/dump cost), then the CLI's latency. One Lab
(tests/netlab.py) holds 1000 answering and 250 silent cameras for all of them; it is
removed at the end, also on an error or Ctrl-C. Nothing asserts a time: the targets are
printed with "met" or "MISSED" next to the measured figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_cli
import bench_daemon
import bench_sweep
from common import (
    build_pool,
    entry,
    find_interpreters,
    interruptible,
    loadavg,
    machine_info,
    open_lab,
    print_table,
    require_root,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=1.0, help="probe timeout (s)")
    parser.add_argument("--interp", action="append", choices=("pypi", "debian"),
                        help="only this interpreter (repeatable; default both)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="sweeps only")
    args = parser.parse_args()
    require_root()
    interps = find_interpreters(args.interp or ("pypi", "debian"))
    if not interps:
        return 1
    started = time.monotonic()
    info = machine_info(interps)
    print("# pumaguard-heartbeat benchmarks\n")
    for key, value in info.items():
        print(f"- {key}: {value}")
    sweep: dict[Any, Any] = {}
    daemon: dict[Any, Any] = {}
    with interruptible(), open_lab() as lab:
        print(f"\nlab: namespaces {lab.prober} / {lab.cameras}", flush=True)
        pool = build_pool(lab)
        print(f"  {len(pool.answering)} answering + {len(pool.silent)} silent cameras "
              f"({time.monotonic() - started:.1f} s)", flush=True)  # fmt: skip
        sweep = bench_sweep.measure(lab, pool, interps, args.timeout)
        if not args.quick:
            daemon = bench_daemon.measure(lab, pool, interps)
    targets = [["sweep", *row[:6]] for row in bench_sweep.report(sweep, interps)]
    if daemon:
        for row in bench_daemon.report(daemon, interps):
            targets.append(["daemon", row[0], "", row[1], row[2], row[3], row[4]])
        for row in bench_cli.report(daemon, interps):
            targets.append(["cli", f"{row[0]} (50 cameras)", "", row[1], row[2], row[3], row[4]])
    print_table("Summary of the targets",
                ["area", "target", "method", "interpreter", "measured", "target", ""],
                targets)  # fmt: skip
    missed = sum(1 for row in targets if row[-1] != "met")
    took = time.monotonic() - started
    print(f"\n{len(targets) - missed} met, {missed} missed; whole run {took:.0f} s; "
          f"load average at the end {loadavg()}")  # fmt: skip
    return 0


if __name__ == "__main__":
    entry(main)
