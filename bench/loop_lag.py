"""Worst event-loop lag of the daemon during sweeps of 1000 cameras, with a fast and a slow disk.

    .venv/bin/python bench/loop_lag.py [--cameras 1000] [--seconds 75] [--fsync-delay 0.5]

Prints figures only (no assertions). A real daemon (this source tree) checks 1000
cameras on loopback addresses (127.1.x.y, one TCP listener each, all in this process;
traffic stays on ``lo``); every 10th camera flaps (its listener is closed and reopened
every other sweep), so every sweep writes the settings file and records state changes in
the history, which starts just under its 5 MiB cap so that a prune by size happens
during the run. Meanwhile a client sends ``ping`` over the control socket every 20 ms
and measures each round trip: a reply waits for whatever holds the event loop, so the
worst round trip is the worst loop lag a client (or the watchdog, fed from the same loop)
sees. Two runs side by side:

- ``baseline``: the disk as it is;
- ``slow disk``: **simulated** — a ``sitecustomize`` module on the daemon's ``PYTHONPATH``
  wraps ``os.fsync``/``os.fdatasync`` to sleep ``--fsync-delay`` seconds first (an SD card
  flushing a full write cache takes that long and more). Nothing is really slow here;
  the daemon only believes so.

Loopback only (any user may bind 127.0.0.0/8 on Linux: root is not needed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from pumaguard_hb.control.client import Client, ClientError  # noqa: E402

SITECUSTOMIZE = """\
# bench/loop_lag.py: a SIMULATED slow disk. Every fsync/fdatasync of this process sleeps first.
import os
import time

_DELAY = float(os.environ.get("LOOP_LAG_FSYNC_DELAY", "0"))
_fsync, _fdatasync = os.fsync, os.fdatasync


def _slow_fsync(fd):
    time.sleep(_DELAY)
    return _fsync(fd)


def _slow_fdatasync(fd):
    time.sleep(_DELAY)
    return _fdatasync(fd)


if _DELAY > 0:
    os.fsync = _slow_fsync
    os.fdatasync = _slow_fdatasync
"""


class Cameras:
    """``n`` TCP listeners on 127.1.x.y:port, served by one selector thread (accept, close)."""

    def __init__(self, n: int) -> None:
        self.ips = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(n)]
        self.port = 0
        self.sel = selectors.DefaultSelector()
        self.socks: dict[str, socket.socket] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        for ip in self.ips:
            self.open(ip)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def open(self, ip: str) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, self.port))
        if not self.port:
            self.port = sock.getsockname()[1]
        sock.listen(64)
        sock.setblocking(False)
        with self.lock:
            self.socks[ip] = sock
            self.sel.register(sock, selectors.EVENT_READ)

    def close(self, ip: str) -> None:
        with self.lock:
            sock = self.socks.pop(ip, None)
            if sock is not None:
                self.sel.unregister(sock)
                sock.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                ready = self.sel.select(0.05) if self.socks else []
            for key, _ in ready:
                with contextlib.suppress(OSError):
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    conn.close()
            if not ready:
                time.sleep(0.001)

    def close_all(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for ip in list(self.socks):
            self.close(ip)


def write_files(folder: Path, cams: Cameras, interval: float) -> Path:
    settings = folder / "pumaguard-settings.yaml"
    doc = {
        "camera-heartbeat-interval": interval,
        "camera-heartbeat-method": "tcp",
        "camera-heartbeat-tcp-port": cams.port,
        "camera-heartbeat-tcp-timeout": 1,
        "cameras": [
            {
                "hostname": f"Microseven-{i}",
                "ip_address": ip,
                "last_seen": "2026-01-01T00:00:00Z",
                "mac_address": f"02:00:00:00:{i // 256:02x}:{i % 256:02x}",
                "status": "connected",
            }
            for i, ip in enumerate(cams.ips)
        ],
    }
    settings.write_text(yaml.safe_dump(doc, sort_keys=False))
    state = folder / "state"
    state.mkdir()
    # a history just under its 5 MiB cap (recent entries: kept by age), so that the
    # state changes of the run push it over and a prune by size runs meanwhile
    now = time.time()
    line = {"camera_id": "02:00:00:00:00:00", "hostname": "Microseven-0",
            "ip_address": cams.ips[0], "mac_address": "02:00:00:00:00:00", "old": "connected",
            "new": "disconnected", "at": now - 3600, "reason": "old news " + "x" * 60,
            "method": "tcp", "rtt_ms": None}  # fmt: skip
    raw = (json.dumps(line) + "\n").encode()
    with open(state / "history.jsonl", "wb") as f:
        f.write(raw * ((5 * 1024 * 1024 - 20_000) // len(raw)))
    return settings


def run(label: str, n: int, seconds: float, delay: float, interval: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="phb-looplag-"))
    cams = Cameras(n)
    proc: subprocess.Popen[bytes] | None = None
    try:
        settings = write_files(folder, cams, interval)
        site = folder / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        sock = folder / "hb.sock"
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
        env.update(PYTHONPATH=f"{site}:{REPO}", LOOP_LAG_FSYNC_DELAY=str(delay))
        log = open(folder / "daemon.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "pumaguard_hb", "--settings", str(settings),
             "--socket", str(sock), "--state-dir", str(folder / "state")],
            env=env, stdout=log, stderr=log, cwd="/",
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(sock, timeout=5) as c:
                    if c.call("ping") == "pong":
                        break
            except ClientError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = (folder / "daemon.log").read_text()
                    raise SystemExit(f"daemon did not start:\n{why}") from None
                time.sleep(0.1)
        flapping = cams.ips[::10]
        stop = threading.Event()

        def flap() -> None:
            down = False
            while not stop.wait(interval * 2):
                for ip in flapping:
                    with contextlib.suppress(OSError):
                        cams.open(ip) if down else cams.close(ip)
                down = not down

        flapper = threading.Thread(target=flap, daemon=True)
        flapper.start()
        rtts: list[float] = []
        with Client(sock, timeout=30) as c:
            start = time.monotonic()
            first = c.call("status")["daemon"]
            while time.monotonic() - start < seconds:
                t0 = time.perf_counter()
                c.call("ping")
                rtts.append(time.perf_counter() - t0)
                time.sleep(0.02)
            last = c.call("status")["daemon"]
        stop.set()
        flapper.join(10)
        rtts.sort()
        prunes = (folder / "daemon.log").read_text(errors="replace").count("history: dropped")
        return {
            "label": label,
            "delay": delay,
            "pings": len(rtts),
            "median_ms": statistics.median(rtts) * 1000,
            "p99_ms": rtts[int(len(rtts) * 0.99) - 1] * 1000,
            "worst_ms": rtts[-1] * 1000,
            "sweeps": last.get("sweeps", 0) - first.get("sweeps", 0),
            "writes": last.get("writes", 0) - first.get("writes", 0),
            "prunes": prunes,
        }
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        cams.close_all()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=1000)
    ap.add_argument(
        "--seconds",
        type=float,
        default=75.0,
        help="per run (> 60: the daemon checks the history size once a minute)",
    )
    ap.add_argument("--interval", type=float, default=2.0, help="sweep interval (s)")
    ap.add_argument("--fsync-delay", type=float, default=0.5, help="simulated fsync delay (s)")
    a = ap.parse_args()
    print(f"loop lag: {a.cameras} cameras on loopback, a sweep every {a.interval:g}s, "
          f"{a.seconds:g}s per run, ping every 20 ms over the control socket")  # fmt: skip
    rows = [
        run("baseline", a.cameras, a.seconds, 0.0, a.interval),
        run(f"slow disk (simulated: fsync +{a.fsync_delay:g}s)", a.cameras, a.seconds,
            a.fsync_delay, a.interval),
    ]  # fmt: skip
    header = ["run", "pings", "median", "p99", "worst", "sweeps", "writes", "prunes"]
    table = [header] + [
        [r["label"], str(r["pings"]), f"{r['median_ms']:.1f} ms", f"{r['p99_ms']:.1f} ms",
         f"{r['worst_ms']:.0f} ms", str(r["sweeps"]), str(r["writes"]), str(r["prunes"])]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print("worst = the longest a ping waited for the event loop (the watchdog is fed from it)")


if __name__ == "__main__":
    main()
