"""The running daemon: memory, CPU time per hour, settings writes and bytes written per day.

    sudo .venv/bin/python bench/bench_daemon.py      # alone (own lab), also runs bench_cli
    sudo bench/run_all.sh                            # with the other benchmarks

The real ``pumaguard-heartbeat`` runs in the lab's prober namespace under each
interpreter, on a settings file in the web UI's form (tests/fixtures) holding the
benchmark's cameras, on the local disk (so /proc/PID/io counts real writes); timeouts
are 1 s.

- Memory: 10 and 1000 cameras, a quarter of them silent, methods ``both`` and ``tcp``,
  and ``tcp`` with the libyaml experiment (below); the four daemons of one interpreter
  run side by side. VmRSS and VmHWM from /proc/PID/status after at least 3 sweeps,
  read before any ``status`` request; then VmHWM again after one ``status`` request
  (the reply for 1000 cameras is big).
- CPU: 50 answering cameras. The idle cost is measured on daemons whose next sweep is
  an hour away (one per interpreter, side by side with bench/idle_floor.py, an empty
  asyncio loop with the daemon's timers; the lowest of two 10 s windows); the cost of a
  sweep on daemons sweeping every second (5 s window; each sweep writes the file, as
  at 60 s): (CPU - idle rate x window) / sweeps. CPU s/h at a 60 s interval =
  60 x per-sweep + 3600 x idle rate. CPU time is the sum of the process's threads'
  /proc/PID/task/*/schedstat (nanoseconds), checked against utime+stime of
  /proc/PID/stat (10 ms ticks).
- Writes: the status fields ``sweeps`` and ``writes`` over the measuring window;
  bytes/day = settings file size x writes per sweep x 1440 (60 s interval), and the
  bytes the kernel accounted to storage for the process (/proc/PID/io write_bytes,
  whole pages, everything the daemon wrote: settings, temp file, history) x 1440/sweep.
- Cause of the sweep's CPU: bench/yaml_cost.py times the settings file's parse and
  dump (what each write does) with PyYAML's pure-Python and libyaml classes; the
  "+ libyaml" rows run the unchanged daemon with yaml.safe_load/safe_dump swapped for
  the libyaml classes before it starts (LIBYAML_PRELUDE): an experiment, not the product.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_cli
from common import (
    REPO,
    Interp,
    Pool,
    bench_env,
    build_pool,
    daemons,
    entry,
    find_interpreters,
    interruptible,
    open_lab,
    print_table,
    require_root,
    verdict,
)
from netlab import Lab

MEMORY_RUNS = (
    (10, "both", False),
    (1000, "both", False),
    (1000, "tcp", False),
    (1000, "tcp", True),
)  # (cameras, method, with the libyaml experiment)
MEMORY_INTERVAL = 2.0
CPU_CAMERAS = 50
CPU_METHODS = ("tcp", "icmp", "both")
CPU_INTERVAL = 1.0  # >= 1 s: last_seen (whole seconds) changes, so every sweep writes
CPU_WINDOW = 5.0
IDLE_WINDOWS = 2  # of 10 s each
SWEEPS_PER_DAY = 86400 // 60
MEMORY_TARGET_MB = 40.0
CPU_TARGET_S_PER_H = 2.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def cpu_ns(pid: int) -> int:
    """CPU time of all live threads of ``pid`` in ns (schedstat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
            total += int(fh.read().split()[0])
    return total


def cpu_ticks_s(pid: int) -> float:
    """utime + stime of the process (exited threads included), seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as fh:
        for line in fh:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


# The same daemon with PyYAML's libyaml loader and dumper put in place of safe_load and
# safe_dump (pumaguard_hb/stores/settings_file.py calls yaml.safe_load and safe_dump): an
# experiment that shows what that change would save, without touching the product.
LIBYAML_PRELUDE = """
import runpy, sys, yaml
def _load(stream):
    return yaml.load(stream, Loader=yaml.CSafeLoader)
def _dump(data, stream=None, **kw):
    return yaml.dump(data, stream, Dumper=yaml.CSafeDumper, **kw)
if yaml.__with_libyaml__:
    yaml.safe_load, yaml.safe_dump = _load, _dump
sys.argv[0] = "pumaguard_hb"
runpy.run_module("pumaguard_hb", run_name="__main__", alter_sys=True)
"""


def measure_idle(lab: Lab, pool: Pool, interps: list[Interp]) -> dict[str, Any]:
    """Idle CPU of one daemon per interpreter and of the empty loop, side by side.

    All of them run at once, so they see the same machine: IDLE_WINDOWS windows of 10 s
    (a multiple of every idle timer's period); the lowest window counts, as other work
    on the machine only ever adds to it.
    """
    ips = pool.answering[:CPU_CAMERAS]
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        idle = [
            stack.enter_context(daemons(lab, it, [(ips, "tcp", 3600.0, None)]))[0] for it in interps
        ]
        for d in idle:
            d.wait_sweeps(1)
        time.sleep(1.0)
        floors = []
        for it in interps:
            floor = subprocess.Popen(
                [it.python, str(REPO / "bench/idle_floor.py"), str(IDLE_WINDOWS), "10"],
                stdout=subprocess.PIPE, text=True, env=bench_env(), cwd=str(REPO),
            )  # fmt: skip
            stack.callback(_reap, floor)
            floors.append(floor)
        time.sleep(1.1)  # the empty loops' warm-up
        rates: list[list[tuple[float, float]]] = [[] for _ in idle]
        for _ in range(IDLE_WINDOWS):
            c0 = [(cpu_ns(d.pid), cpu_ticks_s(d.pid)) for d in idle]
            t0 = time.monotonic()
            time.sleep(10.0)
            c1 = [(cpu_ns(d.pid), cpu_ticks_s(d.pid)) for d in idle]
            t1 = time.monotonic()
            for r, a, b in zip(rates, c0, c1, strict=True):
                r.append(((b[0] - a[0]) / 1e9 / (t1 - t0), (b[1] - a[1]) / (t1 - t0)))
        for it, r, floor in zip(interps, rates, floors, strict=True):
            stdout, _ = floor.communicate(timeout=30)
            out[it.name] = {
                "idle_rate": min(x[0] for x in r),
                "idle_rates": [x[0] for x in r],
                "idle_rate_ticks": sum(x[1] for x in r) / len(r),
                "floor": json.loads(stdout),
            }
    return out


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)


def measure_cpu(lab: Lab, pool: Pool, interp: Interp, idle: dict[str, Any]) -> dict[str, Any]:
    """CPU per sweep (idle rate subtracted) for each method, and the libyaml experiment."""
    ips = pool.answering[:CPU_CAMERAS]
    out: dict[str, Any] = {**idle, "per_sweep": {}}
    runs = [(m, m, None) for m in CPU_METHODS] + [("tcp + libyaml", "tcp", LIBYAML_PRELUDE)]
    for label, method, prelude in runs:
        with daemons(lab, interp, [(ips, method, CPU_INTERVAL, prelude)]) as (d,):
            d.wait_sweeps(2)
            time.sleep(0.2)
            s0 = d.status()["daemon"]
            c0, k0, t0 = cpu_ns(d.pid), cpu_ticks_s(d.pid), time.monotonic()
            time.sleep(CPU_WINDOW)
            c1, k1, t1 = cpu_ns(d.pid), cpu_ticks_s(d.pid), time.monotonic()
            s1 = d.status()["daemon"]
            sweeps = s1["sweeps"] - s0["sweeps"]
            window = t1 - t0
            per = ((c1 - c0) / 1e9 - out["idle_rate"] * window) / max(sweeps, 1)
            per_ticks = ((k1 - k0) - out["idle_rate"] * window) / max(sweeps, 1)
            out["per_sweep"][label] = {
                "sweeps": sweeps, "window": window, "cpu": (c1 - c0) / 1e9, "per": per,
                "per_ticks": per_ticks, "writes": s1["writes"] - s0["writes"],
                "reachable": (s1.get("last_sweep") or {}).get("reachable"),
            }  # fmt: skip
    return out


def measure_memory(lab: Lab, pool: Pool, interp: Interp) -> list[dict[str, Any]]:
    specs = []
    for n, method, libyaml in MEMORY_RUNS:
        ans, sil = pool.pick(n, 0.25)
        specs.append((ans + sil, method, MEMORY_INTERVAL, LIBYAML_PRELUDE if libyaml else None))
    out: list[dict[str, Any]] = []
    with daemons(lab, interp, specs) as ds:
        time.sleep(3 * MEMORY_INTERVAL + 2.5)  # >= 3 sweeps (each <= 2 s), no status asked
        mem = [proc_status(d.pid) for d in ds]
        first = [(d.status()["daemon"], write_bytes(d.pid)) for d in ds]
        time.sleep(2 * MEMORY_INTERVAL + 0.5)
        for d, m, (st0, wb0) in zip(ds, mem, first, strict=True):
            wb1 = write_bytes(d.pid)
            st1 = d.status()["daemon"]
            after = proc_status(d.pid)
            sweeps = st1["sweeps"] - st0["sweeps"]
            out.append(
                {
                    "n": len(d.ips), "method": d.method + (" + libyaml" if d.prelude else ""),
                    "rss_kb": m["VmRSS"], "hwm_kb": m["VmHWM"],
                    "hwm_after_status_kb": after["VmHWM"],
                    "sweeps_before": st0["sweeps"], "sweeps": sweeps,
                    "writes": st1["writes"] - st0["writes"],
                    "write_bytes": wb1 - wb0, "file_size": d.settings.stat().st_size,
                    "last_sweep_s": (st1.get("last_sweep") or {}).get("duration_s"),
                }
            )  # fmt: skip
    return out


def yaml_cost(interp: Interp) -> dict[str, Any]:
    proc = subprocess.run(
        [interp.python, str(REPO / "bench/yaml_cost.py")],
        capture_output=True, text=True, timeout=120, env=bench_env(), cwd=str(REPO), check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def measure(lab: Lab, pool: Pool, interps: list[Interp], cli: bool = True) -> dict[Any, Any]:
    results: dict[Any, Any] = {}
    print("  daemon idle CPU beside an empty loop, every interpreter at once ...", flush=True)
    idle = measure_idle(lab, pool, interps)
    for it in interps:
        print(f"  daemon memory and writes, {it.label} ...", flush=True)
        results[("memory", it.name)] = measure_memory(lab, pool, it)
        print(f"  daemon CPU per sweep, {it.label} ...", flush=True)
        results[("cpu", it.name)] = measure_cpu(lab, pool, it, idle[it.name])
        results[("yaml", it.name)] = yaml_cost(it)
        if cli:
            print(f"  CLI latency, {it.label} ...", flush=True)
            results[("cli", it.name)] = bench_cli.measure_with_daemons(lab, pool, it)
    return results


def report(results: dict[Any, Any], interps: list[Interp]) -> list[list[object]]:
    mem_rows: list[list[object]] = []
    write_rows: list[list[object]] = []
    targets: list[list[object]] = []
    for it in interps:
        for r in results[("memory", it.name)]:
            mem_rows.append([r["n"], r["method"], it.label, f"{r['rss_kb'] / 1024:.1f}",
                             f"{r['hwm_kb'] / 1024:.1f}", f"{r['hwm_after_status_kb'] / 1024:.1f}",
                             r["sweeps_before"]])  # fmt: skip
            per_sweep = r["writes"] / max(r["sweeps"], 1)
            wb_sweep = r["write_bytes"] / max(r["sweeps"], 1)
            write_rows.append([
                r["n"], r["method"], it.label, f"{r['writes']}/{r['sweeps']}",
                f"{per_sweep:.2f}", f"{r['file_size'] / 1024:.1f} KiB",
                f"{r['file_size'] * per_sweep * SWEEPS_PER_DAY / 1e6:.1f} MB",
                f"{wb_sweep / 1024:.0f} KiB", f"{wb_sweep * SWEEPS_PER_DAY / 1e6:.0f} MB",
            ])  # fmt: skip
            if r["n"] == 1000 and "libyaml" not in r["method"]:
                peak = r["hwm_after_status_kb"]
                for what, kb in (("VmRSS", r["rss_kb"]), ("peak VmHWM incl. a status", peak)):
                    mib = kb / 1024
                    targets.append([f"memory ({what}), 1000 cameras, {r['method']}", it.label,
                                    f"{mib:.1f} MiB = {kb * 1024 / 1e6:.1f} MB",
                                    f"<= {MEMORY_TARGET_MB:g} MiB",
                                    verdict(mib <= MEMORY_TARGET_MB)])  # fmt: skip
    print_table(
        "Daemon memory (MiB; a quarter of the cameras silent, timeouts 1 s, every 2 s)",
        ["cameras", "method", "interpreter", "VmRSS", "VmHWM", "VmHWM after 1 status",
         "sweeps before"], mem_rows,
    )  # fmt: skip
    cpu_rows: list[list[object]] = []
    for it in interps:
        c = results[("cpu", it.name)]
        for method, p in c["per_sweep"].items():
            per_hour = p["per"] * 60 + c["idle_rate"] * 3600
            cpu_rows.append([
                CPU_CAMERAS, method, it.label, f"{p['per'] * 1000:.1f} ms",
                f"{p['per_ticks'] * 1000:.0f} ms", f"{p['writes']}/{p['sweeps']}",
                f"{c['idle_rate'] * 1000:.2f} ms/s", f"{p['per'] * 60:.2f}",
                f"{c['idle_rate'] * 3600:.2f}", f"{per_hour:.2f}",
            ])  # fmt: skip
            if method in CPU_METHODS:
                targets.append([f"CPU at {CPU_CAMERAS} cameras, 60 s interval, {method}",
                                it.label, f"{per_hour:.2f} s/h", f"<= {CPU_TARGET_S_PER_H:g} s/h",
                                verdict(per_hour <= CPU_TARGET_S_PER_H)])  # fmt: skip
    print_table(
        f"Daemon CPU ({CPU_CAMERAS} answering cameras; s/h at a 60 s interval = 60 sweeps + idle)",
        ["cameras", "method", "interpreter", "CPU per sweep", "(from ticks)", "writes/sweeps",
         "idle", "sweeps s/h", "idle s/h", "total s/h"], cpu_rows,
    )  # fmt: skip
    print(
        "\n'tcp + libyaml' is an experiment, not the product: the same daemon with yaml.safe_load"
        "\nand yaml.safe_dump replaced by PyYAML's CSafeLoader/CSafeDumper before it starts."
    )
    floor_rows = []
    for it in interps:
        c = results[("cpu", it.name)]
        f = c["floor"]
        floor = min(f["rates"])
        rates = "/".join(f"{r * 1000:.2f}" for r in c["idle_rates"])
        frates = "/".join(f"{r * 1000:.2f}" for r in f["rates"])
        floor_rows.append([it.label, f"{c['idle_rate'] * 1000:.3f} ms/s ({rates})",
                           f"{c['idle_rate_ticks'] * 1000:.1f} ms/s",
                           f"{floor * 1000:.3f} ms/s ({frates})",
                           f"{f['wakeups_per_s']:.1f}/s",
                           f"{floor / f['wakeups_per_s'] * 1e6:.0f} us",
                           f"{c['idle_rate'] / floor:.2f}"])  # fmt: skip
    print_table(
        f"Idle CPU: the daemon vs an empty asyncio loop with its timers, side by side "
        f"(lowest of {IDLE_WINDOWS} x 10 s)",
        ["interpreter", "daemon idle (windows)", "(from ticks)", "empty loop (windows)",
         "wake-ups", "per wake-up", "daemon / empty loop"], floor_rows,
    )  # fmt: skip
    print_table(
        "Settings writes (a quarter silent; per day at a 60 s interval = 1440 sweeps)",
        ["cameras", "method", "interpreter", "writes/sweeps", "writes per sweep", "file size",
         "file bytes/day", "storage bytes/sweep", "storage bytes/day"], write_rows,
    )  # fmt: skip
    print("\nstorage bytes = /proc/PID/io write_bytes: whole 4 KiB pages dirtied by the daemon")
    print("(settings temp file, history, ...), before the file system's journal.")
    yaml_rows: list[list[object]] = []
    for it in interps:
        y = results[("yaml", it.name)]
        for n in ("50", "1000"):
            r = y[n]
            c = (
                (
                    f"{r['c_load']:.1f}",
                    f"{r['c_dump']:.1f}",
                    f"{r['c_load'] + r['c_dump']:.1f}",
                    "yes" if r["identical"] else "NO",
                )
                if y["libyaml"]
                else ("-",) * 4
            )
            yaml_rows.append(
                [
                    n,
                    it.label,
                    f"{r['size'] / 1024:.1f} KiB",
                    f"{r['load']:.1f}",
                    f"{r['dump']:.1f}",
                    f"{r['load'] + r['dump']:.1f}",
                    *c,
                ]
            )
    print_table(
        "Cause: the settings file's parse + dump, done by every write (CPU ms, best of 3)",
        ["cameras", "interpreter", "file", "safe_load", "safe_dump", "pure total",
         "CSafeLoader", "CSafeDumper", "libyaml total", "same result"], yaml_rows,
    )  # fmt: skip
    print_table("Daemon targets", ["target", "interpreter", "measured", "target", ""], targets)
    return targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interp", action="append", choices=("pypi", "debian"))
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI latency benchmark")
    args = parser.parse_args()
    require_root()
    interps = find_interpreters(args.interp or ("pypi", "debian"))
    if not interps:
        return 1
    with interruptible(), open_lab() as lab:
        pool = build_pool(lab)
        results = measure(lab, pool, interps, cli=not args.no_cli)
    report(results, interps)
    if not args.no_cli:
        bench_cli.report(results, interps)
    return 0


if __name__ == "__main__":
    entry(main)
