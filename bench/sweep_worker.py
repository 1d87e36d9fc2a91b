"""The measured side of bench/bench_sweep.py; runs inside the lab's prober namespace.

Started by the driver as ``ip netns exec <prober> <python> bench/sweep_worker.py`` under
the interpreter being measured; reads one job (JSON) on stdin, prints the results
(JSON) on stdout. Task kinds:

- ``sweep``:      the product's ``run_sweep`` (asyncio; ICMP through one icmplib socket
                  per family in a worker thread), ``reps`` times, wall time of each;
- ``sequential``: the baseline, one camera at a time like the original PumaGuard
                  heartbeat thread: TCP ``connect_ex`` with a socket timeout, ICMP one
                  ``icmplib.ping(count=1)``, ``both`` = ICMP then TCP if ICMP failed;
- ``fping``:      ``fping <args> <targets>`` as a subprocess, wall time.

Every result also counts how many answering cameras were found reachable and how many
silent ones were (wrongly) found reachable, so a fast but wrong sweep cannot hide.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from typing import Any

import icmplib

from pumaguard_hb.model.probing import ProbeResult, Target
from pumaguard_hb.probes.icmp import IcmpMode, detect_access
from pumaguard_hb.probes.sweep import run_sweep


def sweep_once(
    method: str,
    answering: list[str],
    silent: list[str],
    timeout: float,
    port: int,
    mode: IcmpMode,
) -> dict[str, Any]:
    targets = [
        Target(id=ip, ip=ip, method=method, port=port, timeout=timeout, icmp_timeout=timeout)
        for ip in answering + silent
    ]
    results: dict[str, ProbeResult] = {}

    def on_result(cid: str, result: ProbeResult) -> None:
        results[cid] = result

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.wait_for(run_sweep(targets, mode, on_result), timeout * 4 + 30)
        return time.perf_counter() - start

    wall = asyncio.run(main())
    return {
        "wall": wall,
        "up_ok": sum(1 for ip in answering if results.get(ip) and results[ip].reachable),
        "false_up": sum(1 for ip in silent if results.get(ip) and results[ip].reachable),
        "missing": sum(1 for ip in answering + silent if ip not in results),
    }


def seq_tcp(ip: str, port: int, timeout: float) -> bool:
    """The original PumaGuard thread's TCP check: connect_ex with a socket timeout."""
    sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        return sock.connect_ex((ip, port)) == 0
    except OSError:
        return False
    finally:
        sock.close()


def seq_icmp(ip: str, timeout: float, privileged: bool) -> bool:
    """One icmplib ping() of one address (the baseline's ICMP check)."""
    try:
        host = icmplib.ping(ip, count=1, timeout=timeout, privileged=privileged)
    except icmplib.exceptions.ICMPLibError:
        return False
    return bool(host.is_alive)


def sequential(
    method: str,
    answering: list[str],
    silent: list[str],
    timeout: float,
    port: int,
    privileged: bool,
) -> dict[str, Any]:
    def check(ip: str) -> bool:
        if method == "tcp":
            return seq_tcp(ip, port, timeout)
        if method == "icmp":
            return seq_icmp(ip, timeout, privileged)
        return seq_icmp(ip, timeout, privileged) or seq_tcp(ip, port, timeout)

    out: dict[str, Any] = {"up_ok": 0, "false_up": 0, "t_answering": 0.0, "t_silent": 0.0}
    for kind, ips in (("answering", answering), ("silent", silent)):
        start = time.perf_counter()
        up = sum(1 for ip in ips if check(ip))
        out[f"t_{kind}"] = time.perf_counter() - start
        out["up_ok" if kind == "answering" else "false_up"] = up
    out["wall"] = out["t_answering"] + out["t_silent"]
    return out


def fping(args: list[str], answering: list[str], silent: list[str]) -> dict[str, Any]:
    start = time.perf_counter()
    proc = subprocess.run(
        ["fping", *args, *answering, *silent], capture_output=True, text=True, timeout=120
    )
    wall = time.perf_counter() - start
    alive: set[str] = set()
    for line in proc.stderr.splitlines():  # "ip : xmt/rcv/%loss = 1/1/0%, min/avg/max = ..."
        if "xmt/rcv" in line:
            ip, _, stats = line.partition(" : ")
            counts = stats.split("=", 1)[1].split(",")[0].strip().split("/")
            if int(counts[1]) > 0:
                alive.add(ip.strip())
    return {
        "wall": wall,
        "up_ok": len(alive & set(answering)),
        "false_up": len(alive & set(silent)),
        "rc": proc.returncode,
    }


def main() -> int:
    job = json.load(sys.stdin)
    timeout = float(job["timeout"])
    port = int(job["port"])
    access = detect_access()
    privileged = access.mode is IcmpMode.PRIVILEGED
    # warm up: imports, the event loop, the executor thread, the first sockets
    sweep_once("both", job["warmup"], [], timeout, port, access.mode)
    out: list[dict[str, Any]] = []
    for task in job["tasks"]:
        kind, ans, sil = task["kind"], task["answering"], task["silent"]
        if kind == "sweep":
            runs = [
                sweep_once(task["method"], ans, sil, timeout, port, access.mode)
                for _ in range(task["reps"])
            ]
            out.append({"runs": runs})
        elif kind == "sequential":
            out.append(sequential(task["method"], ans, sil, timeout, port, privileged))
        elif kind == "fping":
            out.append(fping(task["args"], ans, sil))
        else:
            raise ValueError(f"unknown task {kind!r}")
    json.dump({"icmp_mode": access.mode.value, "results": out}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
