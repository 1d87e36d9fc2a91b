"""Test harness: a real daemon process on temp files, real TCP listeners on loopback.

Imported by the tests as ``harness`` (tests/conftest.py registers its fixtures).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pumaguard_hb.client import Client, ClientError  # noqa: E402


def wait_for(predicate: Any, timeout: float = 10.0, step: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(step)


RUNNING: set[Daemon] = set()  # started and not yet stopped; conftest stops them after a test


class Daemon:
    """A real ``pumaguard-heartbeat`` process on a temp settings file and socket."""

    def __init__(self, tmp: Path, settings: Path | None = None) -> None:
        self.tmp = tmp
        self.settings = settings or tmp / "pumaguard-settings.yaml"
        self.socket = tmp / "hb.sock"
        self.log_path = tmp / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(
        self,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        wait: bool = True,
        args: list[str] | None = None,
    ) -> Daemon:
        """Start the daemon (optionally under a prefix such as ``ip netns exec NS``)."""
        full_env = {
            k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")
        }
        full_env["PYTHONPATH"] = str(REPO)
        full_env.update(env or {})
        args = list(args or [])
        if "--state-dir" not in args:  # never the host's /var/lib/pumaguard-heartbeat
            args += ["--state-dir", str(self.tmp / "state")]
        cmd = [
            *(prefix or []),
            sys.executable,
            "-m",
            "pumaguard_hb",
            "--settings",
            str(self.settings),
            "--socket",
            str(self.socket),
            *args,
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, env=full_env, stdout=self._log, stderr=self._log, cwd=REPO
        )
        RUNNING.add(self)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Poll the socket until the daemon answers ``ping``."""

        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            try:
                with Client(self.socket, timeout=2) as client:
                    return bool(client.call("ping") == "pong")
            except ClientError:
                return False

        wait_for(answers, timeout)

    def call(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        """One request over the real socket."""
        with Client(self.socket, timeout=timeout) as client:
            return client.call(cmd, args)

    def log(self) -> str:
        """Everything the daemon wrote to stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        RUNNING.discard(self)
        return self.proc.returncode


@pytest.fixture(autouse=True)
def no_daemon_left_behind() -> Iterator[None]:
    """Stop every daemon a test started, even when the test failed before stopping it.

    Daemons of module- or session-scoped fixtures were started before this fixture and
    are left to their own teardown.
    """
    before = set(RUNNING)
    yield
    for d in RUNNING - before:
        d.stop()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    """Make daemons that are always stopped at the end of the test."""
    made: list[Daemon] = []

    def make(settings: Path | None = None, subdir: str = "") -> Daemon:
        folder = tmp_path / subdir if subdir else tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        d = Daemon(folder, settings)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def write_settings(path: Path, doc: dict[str, Any]) -> Path:
    """Write a settings file the way the web UI does (PyYAML dump, sorted keys)."""
    path.write_text(yaml.safe_dump(doc, default_flow_style=False))
    return path


def camera(name: str, ip: str, mac: str, **extra: Any) -> dict[str, Any]:
    """A camera entry as PumaGuard writes it."""
    entry = {
        "hostname": name,
        "ip_address": ip,
        "last_seen": "2024-01-15T14:32:15Z",
        "mac_address": mac,
        "status": "disconnected",
    }
    entry.update(extra)
    return entry


class Listeners:
    """Real TCP listeners on loopback addresses; closing one makes its port refuse."""

    def __init__(self) -> None:
        self.socks: dict[tuple[str, int], socket.socket] = {}

    def open(self, ip: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(512)
        addr = (ip, sock.getsockname()[1])
        self.socks[addr] = sock
        threading.Thread(target=_accept_forever, args=(sock,), daemon=True).start()
        return addr

    def silent(self, ip: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """A port whose accept queue is full and never drained: connects time out, as to a
        camera that has gone silent, without leaving loopback."""
        sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(0)
        addr = (ip, sock.getsockname()[1])
        filler = socket.socket(sock.family)
        filler.settimeout(2)
        filler.connect(addr)  # takes the only slot of the queue
        self.socks[addr] = sock
        self.socks[("filler", id(filler))] = filler
        return addr

    def close(self, addr: tuple[str, int]) -> None:
        _shut(self.socks.pop(addr))

    def close_all(self) -> None:
        for sock in self.socks.values():
            _shut(sock)
        self.socks.clear()


def _shut(sock: socket.socket) -> None:
    """Close a listener so that its accept thread wakes up and ends."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _accept_forever(sock: socket.socket) -> None:
    """Accept and drop connections (as a camera's web server would) until the socket closes."""
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        conn.close()


@pytest.fixture
def listeners() -> Iterator[Listeners]:
    """TCP listeners closed at the end of the test."""
    ls = Listeners()
    yield ls
    ls.close_all()


def free_port(ip: str = "127.0.0.1") -> int:
    """A port with nothing listening (connects are refused)."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def is_root() -> bool:
    return os.geteuid() == 0
