"""Per-camera intervals vs today's single interval: CPU, checks, wake-ups and writes per hour.

    .venv/bin/python bench/bench_intervals.py [--duration 90] [--scale 10]
    .venv-debian/bin/python bench/bench_intervals.py      # Debian's packages

A real daemon (``python -m pumaguard_hb``, this interpreter) watches 50 cameras: TCP
listeners on 127.0.72.2-51 (loopback only) that count each connection. Two set-ups run
one after the other on the same machine, intervals divided by ``--scale`` so that a run
lasts a few minutes:

- single 60: every camera on ``camera_heartbeat_interval`` 60 s (today's default);
- single 30: every camera on 30 s (what today takes to check the gate every 30 s);
- mixed:  10 cameras at 30 s (gate), 20 at 60 s, 20 at 300 s (battery), by
  ``heartbeat_interval`` in the camera entries.

Each set-up first runs a warm-up (start, first sweep of every camera: not counted), then
counts for ``--duration`` seconds: the daemon's CPU time (utime + stime of the process,
/proc), the probes the listeners received, its sweeps (wake-ups that probe) and its
writes of the settings file (``status``). Figures per hour are per hour *of the station*
(measured × 3600 / (duration × scale)); CPU per check does not depend on the scaling.
Time-driven costs of an idle daemon (its event loop, the file watch) are compressed
by the scaling too, so CPU per hour is an upper bound; CPU per check is the figure to
compare (the goal: mixed no higher than single). Prints a table and the ratios; no
assertions; everything it starts is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from harness import Daemon, camera, wait_for  # noqa: E402

MIXED = ((10, 30.0), (20, 60.0), (20, 300.0))  # (cameras, interval in seconds)
SINGLE = 60.0


class Cameras:
    """50 listeners on loopback in one thread: each accepted connection counts as a probe."""

    def __init__(self, n: int) -> None:
        self.sel = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.count = 0
        for i in range(n):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((f"127.0.72.{i + 2}", 0))
            s.listen(128)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
            self.socks.append(s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def addr(self, i: int) -> tuple[str, int]:
        host, port = self.socks[i].getsockname()
        return str(host), int(port)

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.sel.select(0.2):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                self.count += 1
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self.socks:
            s.close()
        self.sel.close()


def cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settings_doc(cams: Cameras, single: float | None, scale: float) -> dict[str, Any]:
    entries = []
    mixed = single is None
    plan = MIXED if single is None else ((len(cams.socks), single),)
    i = 0
    for n, interval in plan:
        for _ in range(n):
            ip, port = cams.addr(i)
            extra: dict[str, Any] = {"heartbeat_port": port}
            if mixed:
                extra["heartbeat_interval"] = interval / scale
            entries.append(camera(f"Microseven-{i:02d}", ip, f"02:00:00:72:00:{i:02x}", **extra))
            i += 1
    return {
        "camera-heartbeat-interval": (single or SINGLE) / scale,
        "camera-heartbeat-tcp-timeout": 1,
        "cameras": entries,
    }


def run(single: float | None, duration: float, scale: float) -> dict[str, float]:
    """One set-up: warm up, then count for ``duration`` seconds."""
    cams = Cameras(sum(n for n, _ in MIXED))
    with tempfile.TemporaryDirectory(prefix="pg-bench-intervals-") as tmp:
        d = Daemon(Path(tmp))
        d.settings.write_text(yaml.safe_dump(settings_doc(cams, single, scale)))
        try:
            d.start()
            assert d.proc is not None
            wait_for(lambda: cams.count >= len(cams.socks), timeout=60)  # every camera once
            time.sleep(1.0)
            s0, c0, p0, t0 = d.call("status")["daemon"], cpu_s(d.proc.pid), cams.count, time.time()
            time.sleep(duration)
            s1, c1, p1, t1 = d.call("status")["daemon"], cpu_s(d.proc.pid), cams.count, time.time()
        finally:
            d.stop()
            cams.close()
    hours = (t1 - t0) * scale / 3600  # of the station
    checks = p1 - p0
    cpu = c1 - c0
    return {
        "cpu_s": cpu,
        "checks": checks,
        "sweeps": s1["sweeps"] - s0["sweeps"],
        "writes": s1["writes"] - s0["writes"],
        "cpu_per_hour": cpu / hours,
        "checks_per_hour": checks / hours,
        "sweeps_per_hour": (s1["sweeps"] - s0["sweeps"]) / hours,
        "writes_per_hour": (s1["writes"] - s0["writes"]) / hours,
        "cpu_ms_per_check": 1000 * cpu / checks if checks else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=90.0, help="seconds counted per set-up")
    parser.add_argument("--scale", type=float, default=10.0, help="intervals divided by this")
    args = parser.parse_args()
    print(f"# per-camera intervals: python {sys.version.split()[0]} ({sys.executable}), "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; intervals / {args.scale:g}, "
          f"{args.duration:g} s counted per set-up")  # fmt: skip
    results = {}
    for name, single in (("single 60", SINGLE), ("single 30", 30.0), ("mixed", None)):
        print(f"running {name} ...", flush=True)
        results[name] = run(single, args.duration, args.scale)
    rows = [
        ("CPU seconds per hour", "cpu_per_hour", "{:.2f}"),
        ("checks per hour", "checks_per_hour", "{:.0f}"),
        ("CPU ms per check", "cpu_ms_per_check", "{:.3f}"),
        ("wake-ups (sweeps) per hour", "sweeps_per_hour", "{:.0f}"),
        ("settings writes per hour", "writes_per_hour", "{:.0f}"),
    ]
    print()
    print(f"| {'50 cameras, per station hour':<30} | {'single 60 s':>11} | {'single 30 s':>11} | "
          f"{'mixed 30/60/300 s':>17} | {'mixed / 60 s':>12} | {'mixed / 30 s':>12} |")  # fmt: skip
    print(f"|{'-' * 32}|{'-' * 12}:|{'-' * 12}:|{'-' * 18}:|{'-' * 13}:|{'-' * 13}:|")
    for label, key, fmt in rows:
        a, b, m = (results[n][key] for n in ("single 60", "single 30", "mixed"))
        ra, rb = (f"{m / x:.2f}" if x else "-" for x in (a, b))
        print(f"| {label:<30} | {fmt.format(a):>11} | {fmt.format(b):>11} | "
              f"{fmt.format(m):>17} | {ra:>12} | {rb:>12} |")  # fmt: skip
    for name, r in results.items():
        print(f"{name}: measured {r['cpu_s']:.2f} s CPU, {r['checks']:.0f} checks, "
              f"{r['sweeps']:.0f} sweeps, {r['writes']:.0f} writes")  # fmt: skip
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
