"""Sweep wall time: the product's run_sweep vs a sequential baseline vs fping, same targets.

    sudo .venv/bin/python bench/bench_sweep.py [--timeout 1.0]   # alone (own lab)
    sudo bench/run_all.sh                                         # with the other benchmarks

For 10, 100 and 1000 cameras, with 0 % and 25 % of them silent, per method (tcp, icmp,
both) and per interpreter (icmplib 3.x from PyPI, icmplib 2.1.1 from Debian):

- ``run_sweep``: the product's sweep (median of 3 runs, 2 with silent cameras);
- ``sequential``: one camera at a time, as the original PumaGuard heartbeat thread
  (bench/sweep_worker.py). Answering cameras are all probed; silent ones cost one
  timeout each (two for ``both``), so only the first two silent cameras are probed
  and the rest is extrapolated linearly: answering time + silent x (mean of the two).
  The n=10 rows are therefore measured in full, the others say "extrapolated".
- ``fping -c1`` (default 10 ms pacing) and ``fping -c1 -i1`` over the same ICMP targets.

An extra set repeats 100 answering cameras with 5 ms added to every round trip (a camera
network's rather than a veth's ~0.05 ms; bench/delayline.py, a user-space netem).
Prints figures only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PORT,
    Interp,
    Pool,
    build_pool,
    entry,
    find_interpreters,
    fmt_ratio,
    fmt_s,
    interruptible,
    median,
    open_lab,
    print_table,
    require_root,
    run_worker,
    verdict,
)
from delayline import DelayLine
from netlab import Lab, NetlabError

COUNTS = (10, 100, 1000)
SHARES = (0.0, 0.25)
METHODS = ("tcp", "icmp", "both")
SILENT_SAMPLE = 2  # silent cameras the sequential baseline really probes per method
DELAY_MS = 5.0  # the extra "camera network" set
FPING_MODES = {"fping -c1": ["-c1"], "fping -c1 -i1": ["-c1", "-i1"]}

Scenario = tuple[int, float, float]  # cameras, silent share, added reply delay (ms)


def _tasks(pool: Pool, scenarios: list[Scenario]) -> tuple[list[dict[str, Any]], list[Any]]:
    """The worker's tasks and, for each, the key its result belongs to."""
    tasks: list[dict[str, Any]] = []
    keys: list[Any] = []
    for sc in scenarios:
        n, share, _ = sc
        ans, sil = pool.pick(n, share)
        for method in METHODS:
            reps = 2 if sil else 3
            tasks.append(
                {"kind": "sweep", "method": method, "answering": ans, "silent": sil, "reps": reps}
            )
            keys.append(("sweep", sc, method))
            tasks.append({"kind": "sequential", "method": method, "answering": ans, "silent": []})
            keys.append(("seq-answering", sc, method))
    if any(share for _, share, _ in scenarios):
        for method in METHODS:
            tasks.append(
                {
                    "kind": "sequential",
                    "method": method,
                    "answering": [],
                    "silent": pool.silent[:SILENT_SAMPLE],
                }
            )
            keys.append(("seq-silent", scenarios[0][2], method))
    return tasks, keys


def _fping_tasks(pool: Pool, scenarios: list[Scenario], timeout: float) -> tuple[list[Any], ...]:
    tasks: list[dict[str, Any]] = []
    keys: list[Any] = []
    for sc in scenarios:
        ans, sil = pool.pick(sc[0], sc[1])
        for name, args in FPING_MODES.items():
            tasks.append(
                {
                    "kind": "fping",
                    "args": ["-q", "-t", str(int(timeout * 1000)), *args],
                    "answering": ans,
                    "silent": sil,
                }
            )
            keys.append(("fping", sc, name))
    return tasks, keys


def _run(
    lab: Lab,
    pool: Pool,
    interps: list[Interp],
    scenarios: list[Scenario],
    timeout: float,
    results: dict[Any, Any],
) -> None:
    for it in interps:
        tasks, keys = _tasks(pool, scenarios)
        job = {"timeout": timeout, "port": PORT, "warmup": pool.answering[:10], "tasks": tasks}
        print(f"  sweeps + sequential baseline, {it.label}: {len(tasks)} tasks ...", flush=True)
        out = run_worker(lab, it, job, timeout=600)
        results[("icmp_mode", it.name)] = out["icmp_mode"]
        for key, value in zip(keys, out["results"], strict=True):
            results[(it.name, *key)] = value
    tasks, keys = _fping_tasks(pool, scenarios, timeout)
    print(f"  fping: {len(tasks)} runs ...", flush=True)
    job = {"timeout": timeout, "port": PORT, "warmup": pool.answering[:10], "tasks": tasks}
    out = run_worker(lab, interps[0], job, timeout=600)
    for key, value in zip(keys, out["results"], strict=True):
        results[key] = value


def measure(lab: Lab, pool: Pool, interps: list[Interp], timeout: float) -> dict[Any, Any]:
    """Run every sweep measurement; returns raw results keyed by (interp, kind, scenario, x)."""
    results: dict[Any, Any] = {"timeout": timeout}
    plain: list[Scenario] = [(n, s, 0.0) for s in SHARES for n in COUNTS]
    _run(lab, pool, interps, plain, timeout, results)
    delayed = pool.answering[:100]
    try:
        line = DelayLine(lab, delayed, DELAY_MS / 1000)
    except (OSError, NetlabError, subprocess.SubprocessError) as err:
        print(f"  [skip] the {DELAY_MS:g} ms camera-network set: {err}")
        return results
    with line:
        _run(lab, pool, interps, [(100, 0.0, DELAY_MS)], timeout, results)
    return results


def _sequential(results: dict[Any, Any], it: str, sc: Scenario, method: str) -> tuple[float, str]:
    """Baseline time of one scenario: measured, or answering + extrapolated silent part."""
    n, share, delay = sc
    ans = results[(it, "seq-answering", sc, method)]
    s = int(n * share)
    if s == 0:
        return ans["t_answering"], "measured"
    sample = results[(it, "seq-silent", delay, method)]
    per_silent = sample["t_silent"] / SILENT_SAMPLE
    how = "measured" if s <= SILENT_SAMPLE else f"extrapolated ({s}x{per_silent:.2f}s)"
    return ans["t_answering"] + s * per_silent, how


def report(results: dict[Any, Any], interps: list[Interp]) -> list[list[object]]:
    """Print the tables; return the rows of the targets table."""
    timeout = results["timeout"]
    scenarios = sorted(
        {k[2] for k in results if isinstance(k, tuple) and len(k) == 4 and k[1] == "sweep"},
        key=lambda sc: (sc[2], sc[1], sc[0]),
    )
    rows: list[list[object]] = []
    verdicts: dict[str, Any] = {"rows": []}
    for sc in scenarios:
        n, share, delay = sc
        s = int(n * share)
        for method in METHODS:
            for it in interps:
                runs = results[(it.name, "sweep", sc, method)]["runs"]
                wall = median([r["wall"] for r in runs])
                wrong = sum((n - s - r["up_ok"]) + r["false_up"] + r["missing"] for r in runs)
                seq, how = _sequential(results, it.name, sc, method)
                fp = {
                    name: results.get(("fping", sc, name)) if method == "icmp" else None
                    for name in FPING_MODES
                }
                fp1 = fp["fping -c1"]["wall"] if fp["fping -c1"] else None
                fpi = fp["fping -c1 -i1"]["wall"] if fp["fping -c1 -i1"] else None
                rows.append(
                    [
                        f"{n}" + (f" +{delay:g}ms" if delay else ""),
                        f"{s} ({share:.0%})",
                        method,
                        it.label,
                        fmt_s(wall),
                        f"{wall / timeout:.2f}",
                        fmt_s(seq),
                        fmt_ratio(seq / wall),
                        "" if fp1 is None else f"{fmt_s(fp1)} ({fmt_ratio(fp1 / wall)})",
                        "" if fpi is None else f"{fmt_s(fpi)} ({fmt_ratio(fpi / wall)})",
                        wrong,
                        how,
                    ]
                )
                verdicts["rows"].append(
                    {
                        "n": n,
                        "silent": s,
                        "delay": delay,
                        "method": method,
                        "interp": it.name,
                        "wall": wall,
                        "seq": seq,
                        "fping": fp1,
                        "fping_i1": fpi,
                        "wrong": wrong,
                    }
                )
    print_table(
        f"Sweep wall time (timeout {timeout:g} s; ratios: baseline time / run_sweep time)",
        ["cameras", "silent", "method", "interpreter", "run_sweep", "x timeout", "sequential",
         "speed-up", "fping -c1 (ratio)", "fping -c1 -i1 (ratio)", "wrong", "sequential is"],
        rows,
    )  # fmt: skip
    fping_rows = []
    for sc in scenarios:
        for name in FPING_MODES:
            r = results.get(("fping", sc, name))
            if r:
                fping_rows.append(
                    [
                        f"{sc[0]}" + (f" +{sc[2]:g}ms" if sc[2] else ""),
                        int(sc[0] * sc[1]),
                        name,
                        fmt_s(r["wall"]),
                        f"{r['up_ok']}/{sc[0] - int(sc[0] * sc[1])}",
                        r["false_up"],
                    ]
                )
    print_table("fping over the same ICMP targets",
                ["cameras", "silent", "command", "wall", "answering found", "silent found"],
                fping_rows)  # fmt: skip
    print("\n'wrong' = answering cameras not found + silent cameras found + cameras without a")
    print("result, summed over the runs. 'x timeout' = run_sweep / probe timeout.")
    return _targets(verdicts, interps, timeout)


def _targets(verdicts: dict[str, Any], interps: list[Interp], timeout: float) -> list[list[object]]:
    rows: list[list[object]] = []
    by = {(r["n"], r["silent"], r["delay"], r["method"], r["interp"]): r for r in verdicts["rows"]}
    for it in interps:
        for method in METHODS:
            r = by.get((1000, 250, 0.0, method, it.name))
            if r:
                limit = 1.5 * timeout
                inherent = 2 * timeout if method == "both" else timeout
                rows.append([
                    "1000 cameras, 25 % silent: sweep <= 1.5 x timeout", method, it.label,
                    f"{fmt_s(r['wall'])} = {r['wall'] / timeout:.2f} x timeout",
                    f"<= {fmt_s(limit)}", verdict(r["wall"] <= limit),
                    f"{r['wall'] / inherent:.2f} x the method's own worst case "
                    f"({'icmp+tcp timeout' if method == 'both' else 'one timeout'})",
                ])  # fmt: skip
        r = by.get((1000, 0, 0.0, "icmp", it.name))
        if r and r["fping"]:
            rows.append([
                "ICMP, 1000 answering: no slower than fping -c1", "icmp", it.label,
                fmt_s(r["wall"]), f"<= {fmt_s(r['fping'])}", verdict(r["wall"] <= r["fping"]),
                f"{fmt_ratio(r['fping'] / r['wall'])} faster than fping -c1, "
                f"{fmt_ratio(r['fping_i1'] / r['wall'])} than -c1 -i1",
            ])  # fmt: skip
        for share_s, delay in ((0, 0.0), (25, 0.0), (0, DELAY_MS)):
            for method in METHODS:
                r = by.get((100, share_s, delay, method, it.name))
                if r:
                    if delay:
                        what = f"100 answering, {delay:g} ms RTT"
                    elif share_s:
                        what = f"100 cameras, {share_s} silent"
                    else:
                        what = "100 answering, veth RTT (~0.05 ms)"
                    speed = r["seq"] / r["wall"]
                    note = f"sequential {fmt_s(r['seq'])} vs {fmt_s(r['wall'])}"
                    if not share_s and not delay:
                        note += f" ({r['seq'] / 100 * 1e6:.0f} us per camera, nothing to overlap)"
                    rows.append([
                        f"{what}: >= 10x faster than sequential", method, it.label,
                        fmt_ratio(speed), ">= 10x", verdict(speed >= 10), note,
                    ])  # fmt: skip
    print_table("Sweep targets", ["target", "method", "interpreter", "measured", "target",
                                  "", "note"], rows)  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=1.0, help="probe timeout (s)")
    parser.add_argument("--interp", action="append", choices=("pypi", "debian"))
    args = parser.parse_args()
    require_root()
    interps = find_interpreters(args.interp or ("pypi", "debian"))
    if not interps:
        return 1
    with interruptible(), open_lab() as lab:
        pool = build_pool(lab)
        results = measure(lab, pool, interps, args.timeout)
    report(results, interps)
    return 0


if __name__ == "__main__":
    entry(main)
