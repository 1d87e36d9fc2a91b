"""The demo: the real daemon watching simulated cameras on loopback, some going down and back.

Run it with ``sudo ./dev demo`` (or ``python3 demo/demo.py`` with the package importable).
Each simulated camera is a real TCP listener on its own 127.0.0.x address; the demo stops
and restarts them (refused), or makes them silent (connects time out), and shows what
``pumaguard-hb status --json`` reports, as a table that fits 80 columns, with the daemon's
log. The first changes come on a fixed schedule (a camera goes silent after 4 s, one goes
down, ones come back), so that even a short run shows each kind; then at random. It stops
by itself after ``--duration`` seconds, on Ctrl-C, SIGTERM or SIGHUP (its terminal closed),
and removes everything it made.

With ``--webui`` the real PumaGuard web UI runs beside it (installed by ``./dev demo
--webui``), its own heartbeat off, and the daemon runs in web UI mode: the cameras come
from the web UI, our results go to it, and the frame shows its ``GET /api/dhcp/cameras``
under ours.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
import urllib.request
from pathlib import Path
from typing import Any

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


#: (seconds after start, camera index, what happens): every kind of change in 30 s
SCRIPT = [
    (4, 3, "silent"),  # Ridge stops answering: connects time out
    (10, 4, "up"),  # Pond comes (back) up
    (16, 1, "down"),  # Barn refuses connections
    (22, 3, "up"),  # Ridge is back
    (28, 1, "up"),  # Barn is back
]
WIDTH = 80


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(path: Path, daemon: subprocess.Popen[bytes], timeout: float = 20) -> bool:
    """Until the daemon accepts on its socket (so the first frame shows it running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and daemon.poll() is None:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(path))
                return True
            except OSError:
                time.sleep(0.1)
    return False


def ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    s = max(0, int(now - ts))
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago"


def span(since: float | None, now: float) -> str:
    if since is None:
        return "-"
    s = max(0, int(now - since))
    return f"{s}s" if s < 120 else f"{s // 60}m"


def cut(line: str, width: int = WIDTH) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


def frame(status: dict[str, Any], now: float) -> list[str]:
    """The status as lines of at most 80 characters."""
    d = status.get("daemon", {})
    summary = status.get("summary", {})
    lines = [
        f"daemon   pumaguard-heartbeat {d.get('version', '?')}"
        f", up {span(now - d.get('uptime_s', 0), now)}"
        f", {d.get('method', '?')} every {d.get('interval_s', '?')}s"
        f", next check in {d.get('next_check_in_s') or 0:.0f}s",
        f"cameras  {summary.get('connected', 0)}/{summary.get('total', 0)} connected",
        "",
        f"{'NAME':22}{'IP':13}{'STATUS':14}{'LAST SEEN':11}{'RTT':9}{'IN STATE':8}",
    ]
    down = []
    for cam in status.get("cameras", []):
        last = cam.get("last_seen")
        last_ts = None
        if last:
            with contextlib.suppress(ValueError):
                last_ts = time.mktime(time.strptime(last, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        rtt = cam.get("rtt_ms")
        up = cam.get("status") == "connected"
        rtt_text = f"{rtt:.1f} ms" if up and isinstance(rtt, (int, float)) else "-"
        lines.append(
            f"{str(cam.get('hostname', ''))[:21]:22}{cam.get('ip_address', '')!s:13}"
            f"{cam.get('status', '')!s:14}{ago(last_ts, now):11}{rtt_text:9}"
            f"{span(cam.get('since'), now)}"
        )
        if cam.get("status") != "connected" and cam.get("reason"):
            down.append(cut(f"  {cam.get('hostname')}: {cam.get('reason')}"))
    if down:
        lines += ["", "why disconnected:", *down]
    return [cut(line) for line in lines]


REPO = Path(__file__).resolve().parent.parent
WEBUI_PYTHON = REPO / ".cache" / "webui-venv" / "bin" / "python"


def webui_get(url: str, path: str) -> Any:
    """One JSON GET of the web UI on loopback (no proxies)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url + path, timeout=5) as answer:
        return json.loads(answer.read(1 << 20))


def start_webui(tmp: Path, settings: Path, log: Any) -> tuple[subprocess.Popen[bytes], str]:
    """The real PumaGuard web UI on a free loopback port, with a home of its own."""
    port = free_port()
    home = tmp / "webui-home"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache")}
    home.mkdir()
    proc = subprocess.Popen(
        [str(WEBUI_PYTHON), "-m", "pumaguard.web_ui", "--host", "127.0.0.1", "--port",
         str(port), "--no-mdns", "--settings", str(settings)],
        stdout=log, stderr=log, env=env, stdin=subprocess.DEVNULL, cwd=home,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            webui_get(url, "/api/status")
            return proc, url
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the web UI did not start; its log is {tmp / 'webui.log'}")


def webui_frame(url: str, now: float) -> list[str]:
    """The web UI's own view of the cameras, as lines of at most 80 characters."""
    try:
        cameras = webui_get(url, "/api/dhcp/cameras").get("cameras", [])
    except (OSError, ValueError) as err:
        return [cut(f"the web UI does not answer: {err}")]
    lines = [f"{'NAME':22}{'IP':13}{'STATUS':14}{'LAST SEEN':11}"]
    for cam in cameras:
        last = cam.get("last_seen")
        last_ts = None
        if last:
            with contextlib.suppress(ValueError):
                last_ts = time.mktime(time.strptime(last, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        lines.append(
            f"{str(cam.get('hostname', ''))[:21]:22}{cam.get('ip_address', '')!s:13}"
            f"{cam.get('status', '')!s:14}{ago(last_ts, now):11}"
        )
    return [cut(line) for line in lines]


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Stop(Exception):
    """SIGTERM or SIGHUP: end the demo the way Ctrl-C does."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=90, help="seconds to run (default 90)")
    parser.add_argument("--interval", type=float, default=2, help="check interval (default 2)")
    parser.add_argument(
        "--webui",
        action="store_true",
        help="run the real PumaGuard web UI beside it and the daemon in web UI mode",
    )
    args = parser.parse_args()
    if args.webui and not WEBUI_PYTHON.exists():
        print("the web UI is not installed: run sudo ./dev demo --webui", file=sys.stderr)
        return 2

    def stop_on(signum: int, _frame: object) -> None:
        raise Stop(signal.Signals(signum).name)

    # A closed terminal (SIGHUP) or a kill (SIGTERM) cleans up like Ctrl-C.
    signal.signal(signal.SIGTERM, stop_on)
    signal.signal(signal.SIGHUP, stop_on)
    # Ctrl-C too, even when started in the background by a shell (which ignores SIGINT
    # for its background jobs, and Python then keeps ignoring it).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    tmp = Path(tempfile.mkdtemp(prefix="pumaguard-hb-demo-"))
    settings = tmp / "pumaguard-settings.yaml"
    sock = tmp / "heartbeat.sock"
    port = free_port()
    cams = [SimulatedCamera(ip, port) for _, ip, _ in CAMERAS]
    daemon: subprocess.Popen[bytes] | None = None
    webui: subprocess.Popen[bytes] | None = None
    url = ""
    log = webui_log = None
    reason = "finished"
    try:
        heartbeat = {
            "camera-heartbeat-enabled": True,
            "camera-heartbeat-interval": args.interval,
            "camera-heartbeat-method": "tcp",
            "camera-heartbeat-tcp-port": port,
            "camera-heartbeat-tcp-timeout": 1,
        }
        cameras = [{"hostname": n, "ip_address": ip, "last_seen": None, "mac_address": mac,
                    "status": "disconnected"} for n, ip, mac in CAMERAS]
        extra: list[str] = []
        if args.webui:
            # the web UI's file: its own heartbeat off; ours takes its settings from a
            # config file of its own, which the web UI never touches
            settings.write_text(yaml.safe_dump({
                "camera-heartbeat-enabled": False, "image-dimensions": [299, 299],
                "cameras": cameras}))
            # a last_seen refresh every 5 s instead of 300: the web UI's view moves in a demo
            (tmp / "heartbeat.yaml").write_text(
                yaml.safe_dump({**heartbeat, "camera-heartbeat-webui-refresh": 5})
            )
            webui_log = open(tmp / "webui.log", "w")  # noqa: SIM115 - closed below
            webui, url = start_webui(tmp, settings, webui_log)
            extra = ["--webui", url, "--config", str(tmp / "heartbeat.yaml")]
        else:
            settings.write_text(yaml.safe_dump({**heartbeat, "cameras": cameras}))
        for cam in cams[:4]:
            cam.up()
        env = {**os.environ, "PUMAGUARD_HB_SOCKET": str(sock)}
        log = open(tmp / "daemon.log", "w")  # noqa: SIM115 - closed below
        # Its own session: a closed terminal's SIGHUP reaches the demo, which stops it.
        daemon = subprocess.Popen(
            [sys.executable, "-m", "pumaguard_hb", "--settings", str(settings), "--socket",
             str(sock), "--state-dir", str(tmp / "state"), *extra],
            stdout=log, stderr=log, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        if not wait_listening(sock, daemon):
            print((tmp / "daemon.log").read_text(), file=sys.stderr)
            return 1
        rng = random.Random(7)
        start = time.monotonic()
        script = list(SCRIPT)
        next_random = start + (SCRIPT[-1][0] + 6 if SCRIPT else 5)
        while time.monotonic() - start < args.duration:
            if daemon.poll() is not None:
                print((tmp / "daemon.log").read_text(), file=sys.stderr)
                return 1
            elapsed = time.monotonic() - start
            while script and script[0][0] <= elapsed:
                _, index, what = script.pop(0)
                getattr(cams[index], what)()
            if not script and time.monotonic() >= next_random:
                cam = rng.choice(cams)
                {"up": rng.choice([cam.down, cam.silent]), "down": cam.up,
                 "silent": cam.up}[cam.state]()
                next_random = time.monotonic() + 6
            shown = subprocess.run(
                [sys.executable, "-m", "pumaguard_hb_cli.main", "status", "--json"],
                env=env, capture_output=True, text=True, timeout=10)
            try:
                body = frame(json.loads(shown.stdout), time.time())
            except ValueError:
                body = [cut(ln) for ln in (shown.stderr or shown.stdout).splitlines()]
            lines = (tmp / "daemon.log").read_text().splitlines()[-6:]
            if sys.stdout.isatty():
                print("\x1b[H\x1b[2J", end="")
            left = args.duration - (time.monotonic() - start)
            print(f"pumaguard-heartbeat demo: 5 simulated cameras on 127.0.0.101-105:{port}")
            print(f"ends in {left:.0f}s (Ctrl-C to stop); `pumaguard-hb status --json` says:\n")
            print("\n".join(body))
            if args.webui:
                print(f"\nthe PumaGuard web UI ({url}/api/dhcp/cameras) says:")
                print("\n".join(webui_frame(url, time.time())))
            print("\n" + cut("simulation: " + ", ".join(
                f"{ip.rsplit('.', 1)[1]}={c.state}" for (_, ip, _), c in
                zip(CAMERAS, cams, strict=True))))
            print("\ndaemon log (journalctl -u pumaguard-heartbeat shows the same lines):")
            print("\n".join(cut(ln[11:]) for ln in lines), flush=True)  # without the date
            time.sleep(1.0)
    except KeyboardInterrupt:
        reason = "stopped (Ctrl-C)"
    except Stop as exc:
        reason = f"stopped ({exc})"
    finally:
        # Nothing here may be cut short by a second signal.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_process(daemon)
        stop_process(webui)
        for cam in cams:
            cam.down()
        for opened in (log, webui_log):
            if opened is not None:
                opened.close()
        shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.suppress(OSError):  # the terminal may be gone
        print(f"demo {reason}; everything it started has been stopped and removed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
