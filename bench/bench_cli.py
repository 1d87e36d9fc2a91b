"""CLI latency: ``pumaguard-hb status --json`` and the table, against ``python3 -c pass``.

    sudo .venv/bin/python bench/bench_cli.py        # alone (own lab)
    sudo bench/run_all.sh                           # with the other benchmarks

A real daemon (50 answering cameras, checked once, next sweep an hour away) runs in the
lab's prober namespace; the CLI talks to it over its Unix socket. Per interpreter, the
commands run in turns (round-robin, 2 warm-up rounds not counted, then ``ROUNDS``
rounds), output to a pipe (so plain text, no colour). Wall time per run from just
before the fork to the exit; the median is reported, and the median minus that of
``python -c pass`` on the same interpreter (the part the product controls).
``.venv/bin/pumaguard-hb`` (the installed console script) is measured when present.
A second, short set runs against 1000 cameras (the reply is ~100 times bigger).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

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

ROUNDS = 15
ROUNDS_1000 = 5
TARGET_MS = 150.0


def _commands(interp: Interp, sock: Path) -> dict[str, list[str]]:
    py = interp.python
    cli = [py, "-m", "pumaguard_hb_cli", "--socket", str(sock)]
    cmds = {
        "python -c pass": [py, "-c", "pass"],
        "python -m pumaguard_hb_cli status --json": [*cli, "status", "--json"],
        "python -m pumaguard_hb_cli status": [*cli, "status"],
    }
    script = Path(py).parent / "pumaguard-hb"
    if script.exists():
        cmds["pumaguard-hb status --json"] = [str(script), "--socket", str(sock), "status",
                                             "--json"]  # fmt: skip
        cmds["pumaguard-hb status"] = [str(script), "--socket", str(sock), "status"]
    return cmds


def time_commands(cmds: dict[str, list[str]], rounds: int) -> dict[str, dict[str, Any]]:
    """Median wall time of each command (seconds), run in turns; exit status 0 or 1 only."""
    times: dict[str, list[float]] = {name: [] for name in cmds}
    sizes: dict[str, int] = {}
    env = bench_env()
    for r in range(rounds + 2):
        for name, argv in cmds.items():
            start = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, env=env, cwd=str(REPO), timeout=60)
            wall = time.perf_counter() - start
            if proc.returncode not in (0, 1):
                raise RuntimeError(f"{name} exited {proc.returncode}: {proc.stderr[-2000:]!r}")
            sizes[name] = len(proc.stdout)
            if r >= 2:
                times[name].append(wall)
    return {
        name: {"median": statistics.median(t), "min": min(t), "max": max(t), "runs": len(t),
               "bytes": sizes[name]}
        for name, t in times.items()
    }  # fmt: skip


def measure_with_daemons(lab: Lab, pool: Pool, interp: Interp) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for n, rounds in ((50, ROUNDS), (1000, ROUNDS_1000)):
        ans, sil = pool.pick(n, 0.0 if n == 50 else 0.25)
        with daemons(lab, interp, [(ans + sil, "tcp", 3600.0, None)]) as (d,):
            d.wait_sweeps(1)
            cmds = _commands(interp, d.socket)
            if n != 50:
                cmds = {k: v for k, v in cmds.items() if k.startswith("python -m")}
            out[n] = time_commands(cmds, rounds)
    return out


def report(results: dict[Any, Any], interps: list[Interp]) -> list[list[object]]:
    rows: list[list[object]] = []
    targets: list[list[object]] = []
    for it in interps:
        for n, figures in results[("cli", it.name)].items():
            base = results[("cli", it.name)][50]["python -c pass"]["median"]
            for name, f in figures.items():
                extra = "" if name == "python -c pass" else f"+{(f['median'] - base) * 1000:.0f}"
                rows.append([n, name, it.label, f"{f['median'] * 1000:.0f}",
                             f"{f['min'] * 1000:.0f}-{f['max'] * 1000:.0f}", extra, f["runs"],
                             f"{f['bytes'] / 1024:.1f} KiB"])  # fmt: skip
                if name.endswith("--json") and n == 50:
                    ms = f["median"] * 1000
                    targets.append([name, it.label, f"{ms:.0f} ms", f"<= {TARGET_MS:g} ms",
                                    verdict(ms <= TARGET_MS)])  # fmt: skip
    print_table(
        "CLI latency (ms, wall; a running daemon; median of the runs)",
        ["cameras", "command", "interpreter", "median", "min-max", "vs -c pass", "runs",
         "output"], rows,
    )  # fmt: skip
    print_table("CLI target (50 cameras)", ["command", "interpreter", "median", "target", ""],
                targets)  # fmt: skip
    return targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interp", action="append", choices=("pypi", "debian"))
    args = parser.parse_args()
    require_root()
    interps = find_interpreters(args.interp or ("pypi", "debian"))
    if not interps:
        return 1
    results: dict[Any, Any] = {}
    with interruptible(), open_lab() as lab:
        pool = build_pool(lab)
        for it in interps:
            results[("cli", it.name)] = measure_with_daemons(lab, pool, it)
    report(results, interps)
    return 0


if __name__ == "__main__":
    entry(main)
