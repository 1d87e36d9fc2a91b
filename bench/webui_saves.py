"""Saves per hour of the PumaGuard web UI's settings file: its own heartbeat vs ours.

    .venv/bin/python bench/webui_saves.py [--cameras 20] [--down 5] [--interval 5]
                                          [--duration 90] [--refresh 30]

Every save of the real web UI (pumaguard 25.x, ``sh tests/webui/install.sh``) truncates
and rewrites its whole settings file; on a station that file is on an SD card. This
counts the saves, with N fake cameras (TCP listeners on 127.0.70.x, ``--down`` of them
refused) in two set-ups at the same interval:

(a) the web UI's own heartbeat on (``camera-heartbeat-enabled: true``), no daemon;
(b) its heartbeat off and ``pumaguard-heartbeat --webui`` beside it (web UI mode).

A save is one ``IN_CLOSE_WRITE`` of the file (inotify; the web UI opens it with "w",
writes, closes), checked against the web UI's own log line "Settings saved to". Each
set-up first runs one interval plus the daemon's first report (not counted: a start-up
cost, printed apart), then counts for ``--duration`` seconds; figures are scaled to one
hour. In (b) no camera changes state while counting, so every save counted is a
``last_seen`` refresh of a connected camera: they scale with 1/refresh, and the figure
at the default refresh (300 s) is printed too. No assertions; loopback only; everything
it starts is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from helpers_cli import Listeners  # noqa: E402
from webui_harness import (  # noqa: E402
    WEBUI_VENV,
    WebUIServer,
    camera_record,
    webui_installed,
    webui_settings,
    write_webui_settings,
)

from pumaguard_hb.control.client import Client, ClientError  # noqa: E402

IN_CLOSE_WRITE = 0x00000008
DEFAULT_REFRESH = 300  # camera_heartbeat_webui_refresh's default


class SaveCounter:
    """Counts IN_CLOSE_WRITE events of one file (Linux inotify, through libc)."""

    def __init__(self, path: Path) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), IN_CLOSE_WRITE)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        self.count = 0

    def drain(self, seconds: float) -> int:
        """Count events for ``seconds``; returns how many came in that time."""
        got = 0
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if not ready:
                continue
            with contextlib.suppress(BlockingIOError):
                data = os.read(self.fd, 65536)
                offset = 0
                while offset + 16 <= len(data):
                    _, mask, _, length = struct.unpack_from("iIII", data, offset)
                    offset += 16 + length
                    if mask & IN_CLOSE_WRITE:
                        got += 1
        self.count += got
        return got

    def close(self) -> None:
        os.close(self.fd)


def saved_lines(server: WebUIServer) -> int:
    return server.log().count(f"Settings saved to {server.settings}")


def cameras(n: int, down: int) -> tuple[list[tuple[str, str, str]], list[str]]:
    cams = [
        (f"Microseven-{i:03d}", f"127.0.70.{i + 2}", f"aa:bb:cc:70:{i // 256:02x}:{i % 256:02x}")
        for i in range(n)
    ]
    return cams, [ip for _, ip, _ in cams[: n - down]]


@contextlib.contextmanager
def daemon(folder: Path, shared: Path, url: str, own: Path) -> Iterator[subprocess.Popen[bytes]]:
    sock = folder / "hb.sock"
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    env["PYTHONPATH"] = f"{REPO}:{REPO / 'cli'}"
    cmd = [
        sys.executable,
        "-m",
        "pumaguard_hb",
        "--settings",
        str(shared),
        "--socket",
        str(sock),
        "--state-dir",
        str(folder / "state"),
        "--webui",
        url,
        "--config",
        str(own),
    ]
    with open(folder / "daemon.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the daemon exited {proc.returncode}:\n{(folder / 'daemon.log').read_text()}"
                )
            with contextlib.suppress(ClientError, OSError), Client(sock, timeout=2) as client:
                if client.call("ping") == "pong":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon did not answer within 30 s")
            time.sleep(0.1)
        proc.sock = sock  # type: ignore[attr-defined]
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def daemon_status(proc: subprocess.Popen[bytes]) -> dict[str, object]:
    with Client(proc.sock, timeout=10) as client:  # type: ignore[attr-defined]
        status: dict[str, object] = client.call("status")
        return status


def run(args: argparse.Namespace) -> None:
    cams, answering = cameras(args.cameras, args.down)
    listeners = Listeners()
    folder = Path(tempfile.mkdtemp(prefix="phb-bench-webui-"))
    try:
        port = listeners.open_same_port(answering)
        records = [camera_record(*c, status="disconnected") for c in cams]
        common = {
            "camera-heartbeat-interval": args.interval,
            "camera-heartbeat-method": "tcp",
            "camera-heartbeat-tcp-port": port,
            "camera-heartbeat-tcp-timeout": 1,
            # its auto-removal would drop the cameras 'last seen' in 2024 (runs with its heartbeat)
            "device-auto-remove-enabled": False,
        }
        print(
            f"{args.cameras} cameras ({args.down} refused), interval {args.interval}s, "
            f"counting {args.duration:g}s per set-up; web UI pumaguard from {WEBUI_VENV}"
        )

        # (a) the web UI's own heartbeat
        a_dir = folder / "a"
        a_dir.mkdir()
        a_file = write_webui_settings(
            a_dir / "pumaguard-settings.yaml",
            webui_settings(records, camera_heartbeat_enabled=True, **_dashed(common)),
        )
        counter = SaveCounter(a_file)
        server = WebUIServer(a_file, home=a_dir / "home")
        try:
            server.start()
            warm = counter.drain(args.interval + 2)
            logged0 = saved_lines(server)
            a = counter.drain(args.duration)
            a_logged = saved_lines(server) - logged0
        finally:
            server.stop()
            counter.close()
        a_hour = a * 3600 / args.duration
        print(
            f"(a) its own heartbeat:  {a} saves in {args.duration:g}s "
            f"(its log: {a_logged}; start-up {warm}) = {a_hour:,.0f} saves/hour "
            "(expected about cameras x 3600 / interval = "
            f"{args.cameras * 3600 / args.interval:,.0f})"
        )

        # (b) its heartbeat off, our daemon in web UI mode
        b_dir = folder / "b"
        b_dir.mkdir()
        b_file = write_webui_settings(
            b_dir / "pumaguard-settings.yaml",
            webui_settings(records, camera_heartbeat_enabled=False, **_dashed(common)),
        )
        own = b_dir / "heartbeat.yaml"
        own.write_text(
            yaml.safe_dump(
                {
                    "camera_heartbeat_interval": args.interval,
                    "camera_heartbeat_method": "tcp",
                    "camera_heartbeat_tcp_port": port,
                    "camera_heartbeat_tcp_timeout": 1,
                    "camera_heartbeat_webui_refresh": args.refresh,
                }
            )
        )
        counter = SaveCounter(b_file)
        server = WebUIServer(b_file, home=b_dir / "home")
        try:
            server.start()
            with daemon(b_dir, b_file, server.url, own) as proc:
                # start-up: the first sweep reports every camera's state (one save each)
                warm = counter.drain(args.interval + 2)
                warm += counter.drain(min(args.interval, 5))
                logged0 = saved_lines(server)
                sweeps0 = int(daemon_status(proc)["daemon"]["sweeps"])  # type: ignore[index]
                b = counter.drain(args.duration)
                b_logged = saved_lines(server) - logged0
                status = daemon_status(proc)
                sweeps = int(status["daemon"]["sweeps"]) - sweeps0  # type: ignore[index]
                connected = sum(
                    1
                    for c in status["cameras"]  # type: ignore[attr-defined]
                    if c["status"] == "connected"
                )
        finally:
            server.stop()
            counter.close()
        b_hour = b * 3600 / args.duration
        at_default = b_hour * args.refresh / DEFAULT_REFRESH
        print(
            f"(b) ours, web UI mode:  {b} saves in {args.duration:g}s over {sweeps} sweeps "
            f"(its log: {b_logged}; start-up {warm}) = {b_hour:,.0f} saves/hour at refresh "
            f"{args.refresh:g}s (expected about connected x 3600 / refresh = "
            f"{connected * 3600 / args.refresh:,.0f}); "
            f"at the default refresh {DEFAULT_REFRESH}s: {at_default:,.0f} saves/hour"
        )
        ratio = f"{a_hour / b_hour:,.1f}x" if b_hour else "inf (no save at all)"
        ratio_default = f"{a_hour / at_default:,.1f}x" if at_default else "inf"
        print(
            f"ratio (a)/(b): {ratio} at refresh {args.refresh:g}s, "
            f"{ratio_default} at the default {DEFAULT_REFRESH}s "
            "(plus one save per change of a camera's state, in both)"
        )
    finally:
        listeners.close_all()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")


def _dashed(keys: dict[str, object]) -> dict[str, object]:
    """webui_settings() turns ``_`` into ``-``: pass the hyphenated keys through it."""
    return {k.replace("-", "_"): v for k, v in keys.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--down", type=int, default=5, help="cameras whose port refuses")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds, both set-ups")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds counted per set-up")
    parser.add_argument(
        "--refresh", type=float, default=30.0, help="our camera_heartbeat_webui_refresh in (b)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs)")
    args = parser.parse_args()
    if not 0 <= args.down <= args.cameras or args.cameras > 250:
        parser.error("--cameras 1..250 and --down 0..cameras")
    if not webui_installed():
        print(f"the real web UI is not installed in {WEBUI_VENV}: run sh tests/webui/install.sh")
        return 1
    try:
        run(args)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
