"""The demo: the real daemon watching simulated cameras on loopback, some going down and back.

Run it with ``sudo ./dev demo`` (or ``python3 demo/demo.py`` with the package importable).
Each simulated camera is a real TCP listener on its own 127.0.0.x address; the demo stops
and restarts them (refused), or makes them silent (connects time out), and shows the live
``pumaguard-hb status`` table. It stops by itself after ``--duration`` seconds or on Ctrl-C,
and removes everything it made.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

CAMERAS = [
    ("Microseven-M7B77-Gate", "127.0.0.101", "02:00:00:00:00:01"),
    ("Microseven-M7B77-Barn", "127.0.0.102", "02:00:00:00:00:02"),
    ("Microseven-Creek", "127.0.0.103", "02:00:00:00:00:03"),
    ("Microseven-Ridge", "127.0.0.104", "02:00:00:00:00:04"),
    ("Microseven-Pond", "127.0.0.105", "02:00:00:00:00:05"),
]


class SimulatedCamera:
    """A camera's web server: up (accepts), down (refuses) or silent (connects time out)."""

    def __init__(self, ip: str, port: int) -> None:
        self.ip, self.port = ip, port
        self.sock: socket.socket | None = None
        self.fillers: list[socket.socket] = []
        self.state = "down"

    def up(self) -> None:
        self.down()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.ip, self.port))
        self.sock.listen(64)
        threading.Thread(target=self._accept, args=(self.sock,), daemon=True).start()
        self.state = "up"

    def silent(self) -> None:
        self.down()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.ip, self.port))
        self.sock.listen(0)
        filler = socket.create_connection((self.ip, self.port), timeout=2)
        self.fillers.append(filler)  # fills the queue: later connects get no answer
        self.state = "silent"

    def down(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
            self.sock = None
        for f in self.fillers:
            f.close()
        self.fillers.clear()
        self.state = "down"

    @staticmethod
    def _accept(sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=90, help="seconds to run (default 90)")
    parser.add_argument("--interval", type=float, default=2, help="check interval (default 2)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pumaguard-hb-demo-"))
    settings = tmp / "pumaguard-settings.yaml"
    sock = tmp / "heartbeat.sock"
    port = free_port()
    cams = {mac: SimulatedCamera(ip, port) for _, ip, mac in CAMERAS}
    settings.write_text(yaml.safe_dump({
        "camera-heartbeat-enabled": True,
        "camera-heartbeat-interval": args.interval,
        "camera-heartbeat-method": "tcp",
        "camera-heartbeat-tcp-port": port,
        "camera-heartbeat-tcp-timeout": 1,
        "cameras": [{"hostname": n, "ip_address": ip, "last_seen": None, "mac_address": mac,
                     "status": "disconnected"} for n, ip, mac in CAMERAS],
    }))
    for cam in list(cams.values())[:4]:
        cam.up()
    env = {**os.environ, "PUMAGUARD_HB_SOCKET": str(sock)}
    log = open(tmp / "daemon.log", "w")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(
        [sys.executable, "-m", "pumaguard_hb", "--settings", str(settings), "--socket", str(sock),
         "--state-dir", str(tmp / "state")],
        stdout=log, stderr=log, env=env)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rng = random.Random(7)
    start = time.monotonic()
    next_change = start + 5
    try:
        while not stop.is_set() and time.monotonic() - start < args.duration:
            if daemon.poll() is not None:
                print((tmp / "daemon.log").read_text(), file=sys.stderr)
                return 1
            if time.monotonic() >= next_change:
                cam = rng.choice(list(cams.values()))
                {"up": rng.choice([cam.down, cam.silent]), "down": cam.up,
                 "silent": cam.up}[cam.state]()
                next_change = time.monotonic() + 6
            screen = subprocess.run(
                [sys.executable, "-m", "pumaguard_hb_cli.main", "status"],
                env=env, capture_output=True, text=True, timeout=10)
            lines = (tmp / "daemon.log").read_text().splitlines()[-6:]
            if sys.stdout.isatty():
                print("\x1b[H\x1b[2J", end="")
            left = args.duration - (time.monotonic() - start)
            print(f"pumaguard-heartbeat demo: 5 simulated cameras on 127.0.0.101-105:{port}; "
                  f"ends in {left:.0f}s (Ctrl-C to stop)\n")
            print(screen.stdout or screen.stderr)
            print("simulation: " + ", ".join(f"{ip}={c.state}" for (_, ip, _), c in
                                             zip(CAMERAS, cams.values(), strict=True)))
            print("\ndaemon log (journalctl -u pumaguard-heartbeat shows the same lines):")
            print("\n".join(lines), flush=True)
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(5)
        except subprocess.TimeoutExpired:
            daemon.kill()
        for cam in cams.values():
            cam.down()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("demo finished; everything it started has been stopped and removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
