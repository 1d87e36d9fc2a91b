"""The daemon's memory over cameras that come and go: it must stay flat (issue 20, item 6).

    .venv/bin/python bench/bench_memory.py                  # this tree
    .venv/bin/python bench/bench_memory.py --tree /tmp/base # another checkout (a baseline)

A real ``pumaguard-heartbeat`` (standalone mode, method ``tcp``, the history on, the
metrics listener on) runs on a settings file holding 1000 cameras. Each round replaces
the whole list with 1000 *fresh* cameras (new MACs, new 127.x.y.z addresses, listed as
``connected`` on a port that refuses), waits until the daemon has read the new list,
swept it (every camera judged down: 1000 state changes, so every per-camera map the
change reaches gets an entry) and written the file, fetches ``/metrics`` and ``/`` once,
then reads VmRSS from /proc/PID/status. Printed: RSS after each round, and the ratio
last/first (flat: close to 1; a daemon that keeps every id ever seen grows each round).

Traffic goes only to loopback (refused connects to 127.x.y.z port 1). No root needed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from pumaguard_hb.control.client import Client, ClientError  # noqa: E402


def cameras(round_no: int, n: int) -> list[dict[str, Any]]:
    """``n`` cameras no earlier round had: fresh MACs and 127.x.y.z addresses."""
    out = []
    for i in range(n):
        out.append(
            {
                "hostname": f"Cam-{round_no}-{i}",
                "ip_address": f"127.{10 + round_no}.{i // 200}.{i % 200 + 1}",
                "mac_address": f"02:00:00:{round_no:02x}:{i // 256:02x}:{i % 256:02x}",
                "status": "connected",  # judged down by the first sweep: a state change
                "last_seen": "2024-01-15T14:32:15Z",
            }
        )
    return out


def write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc, default_flow_style=False))
    os.replace(tmp, path)


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def status(sock: Path) -> dict[str, Any] | None:
    try:
        with Client(sock, timeout=60) as client:
            result = client.call("status")
            return result if isinstance(result, dict) else None
    except (ClientError, OSError):
        return None


def swept(sock: Path, first_id: str, n: int) -> bool:
    """The new list is read, every camera judged down, and no sweep is running."""
    s = status(sock)
    if s is None:
        return False
    cams = s.get("cameras") or []
    return (
        len(cams) == n
        and cams[0].get("id") == first_id
        and s["summary"]["disconnected"] == n
        and all(c.get("checked_at") for c in cams)
        and not s["daemon"]["sweeping"]
    )


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1.0)
    raise SystemExit(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return len(resp.read())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tree", type=Path, default=REPO, help="the checkout whose daemon runs")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--cameras", type=int, default=1000)
    ap.add_argument("--no-http", action="store_true", help="no GET (a daemon under a profiler)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmpdir:
        tmp = Path(tmpdir)
        settings, sock, port = tmp / "settings.yaml", tmp / "hb.sock", free_port()
        base = {
            "camera-heartbeat-interval": 3600,
            "camera-heartbeat-method": "tcp",
            "camera-heartbeat-tcp-port": 1,
            "camera-heartbeat-tcp-timeout": 1,
            "camera-heartbeat-metrics-listen": f"127.0.0.1:{port}",
        }
        write(settings, {**base, "cameras": cameras(0, a.cameras)})
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
        env["PYTHONPATH"] = str(a.tree)
        log = open(tmp / "daemon.log", "wb")  # noqa: SIM115 - closed below
        cmd = [a.python, "-m", "pumaguard_hb", "--settings", str(settings), "--socket", str(sock)]
        cmd += ["--state-dir", str(tmp / "state")]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=a.tree)
        rows: list[tuple[int, int, int, float]] = []
        try:
            for r in range(a.rounds):
                fresh = cameras(r, a.cameras)
                if r:
                    write(settings, {**base, "cameras": fresh})
                t0 = time.monotonic()
                first = fresh[0]["mac_address"]
                wait(lambda first=first: swept(sock, first, a.cameras), 600, f"round {r + 1}")
                took = time.monotonic() - t0
                t1 = time.monotonic()
                if not a.no_http:
                    get(f"http://127.0.0.1:{port}/metrics")
                t2 = time.monotonic()
                if not a.no_http:
                    get(f"http://127.0.0.1:{port}/")
                t3 = time.monotonic()
                time.sleep(3)  # the write after the sweep, the file watch
                rss, hwm = rss_kib(proc.pid)
                rows.append((r + 1, rss, hwm, took))
                print(
                    f"round {r + 1:2d}: RSS {rss / 1024:6.1f} MiB  (peak {hwm / 1024:6.1f} MiB,"
                    f" list read and swept in {took:4.1f} s; first GET /metrics {t2 - t1:4.2f} s,"
                    f" / {t3 - t2:4.2f} s)",
                    flush=True,
                )
        except BaseException:
            lines = (tmp / "daemon.log").read_text(errors="replace").splitlines()
            told = [x for x in lines if "WARNING camera" not in x and "INFO camera" not in x]
            print("\n".join(told[-40:]), file=sys.stderr)
            raise
        finally:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        first_rss, last_rss = rows[0][1], rows[-1][1]
        print(
            f"tree {a.tree}: RSS last/first = {last_rss / first_rss:.3f} "
            f"({first_rss / 1024:.1f} -> {last_rss / 1024:.1f} MiB over {a.rounds} rounds of "
            f"{a.cameras} fresh cameras); peak {rows[-1][2] / 1024:.1f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
