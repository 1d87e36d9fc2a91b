"""Test harness: a real daemon process on temp files, real TCP listeners on loopback.

Imported by the tests as ``harness`` (tests/conftest.py registers its fixtures).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pumaguard_hb.control.client import Client, ClientError  # noqa: E402


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
# Daemons started while a test ran (None between tests: module fixtures' daemons go to
# MODULE_STARTED); each is checked when the test ends (docs/testing.md).
TEST_STARTED: list[Daemon] | None = None
MODULE_STARTED: list[Daemon] = []

# What a daemon's log may not contain unless the test declares it: an ERROR (or worse) line
# of logs.setup()'s formats (timestamped, or <N> syslog prefixes under journald), and any
# Python traceback. One finding is the line and the lines that follow it up to the next log
# line (a log.exception's traceback belongs to its ERROR line).
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+ |<\d>)")
_BAD_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (ERROR|CRITICAL) |<[0-3]>)|^Traceback \(most recent"
)


def log_findings(text: str, allow: Iterable[str] = ()) -> list[str]:
    """The ERROR lines and tracebacks in a daemon's log (each with the lines that belong to
    it) that no regular expression of ``allow`` matches (``re.search`` over the finding)."""
    patterns = [re.compile(a) for a in allow]
    found: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if current is not None and line.startswith("<") and current[-1][:3] == line[:3]:
            current.append(line)  # under journald every line of one message has the prefix
        elif current is not None and line.startswith("Traceback (most recent"):
            current.append(line)  # log.exception: the ERROR line, then its traceback
        elif _BAD_LINE.match(line):
            current = [line]
            found.append(current)
        elif _LOG_LINE.match(line):
            current = None
        elif current is not None:
            current.append(line)
    blocks = ["\n".join(f) for f in found]
    return [b for b in blocks if not any(p.search(b) for p in patterns)]


class Expect:
    """What a test declares about how its daemons end: the exit statuses it expects (default
    0, after SIGTERM) and regular expressions for the ERROR lines and tracebacks it provokes."""

    def __init__(self, exit: int | Iterable[int] = 0, allow: Iterable[str] = ()) -> None:
        self.exit = {exit} if isinstance(exit, int) else set(exit)
        self.allow = list(allow)

    @classmethod
    def of(cls, node: Any) -> Expect:
        """The ``daemon_log`` marker closest to a test (or module): what it declares."""
        marker = node.get_closest_marker("daemon_log") if node is not None else None
        if marker is None:
            return cls()
        return cls(marker.kwargs.get("exit", 0), marker.kwargs.get("allow", ()))

    def merged(self, other: Expect | None) -> Expect:
        if other is None:
            return self
        return Expect(self.exit | other.exit, [*self.allow, *other.allow])


class Daemon:
    """A real ``pumaguard-heartbeat`` process on a temp settings file and socket."""

    def __init__(self, tmp: Path, settings: Path | None = None) -> None:
        self.tmp = tmp
        self.settings = settings or tmp / "pumaguard-settings.yaml"
        self.socket = tmp / "hb.sock"
        self.log_path = tmp / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs: list[subprocess.Popen[bytes]] = []  # every process started, for the check
        self.expected: Expect | None = None  # set by expect()
        self.checked = False

    def expect(self, exit: int | Iterable[int] = 0, allow: Iterable[str] = ()) -> Daemon:
        """Declare how this daemon may end: exit statuses (0 is always fine after SIGTERM
        unless ``exit`` leaves it out) and regexes of the ERROR lines/tracebacks the test
        provokes. Without it the teardown check wants exit 0 and a log free of both."""
        self.expected = Expect(exit, allow)
        return self

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
        self.track()
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

    def track(self) -> None:
        """Register ``self.proc`` (just started) for cleanup and for the teardown check; for
        tests that start the process themselves (under ``setpriv``, say)."""
        assert self.proc is not None
        RUNNING.add(self)
        self._register()

    def _register(self) -> None:
        """Note this run for the check at the end of the test (or module)."""
        assert self.proc is not None
        if self.proc not in self.runs:
            self.runs.append(self.proc)
        started = MODULE_STARTED if TEST_STARTED is None else TEST_STARTED
        if self not in started:
            started.append(self)
        self.checked = False

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def problems(self, expect: Expect) -> list[str]:
        """Why this daemon did not end as expected (empty: it did): an exit status not
        declared, an ERROR line or a traceback not declared."""
        want = expect.merged(self.expected) if self.expected else expect
        found = []
        for n, proc in enumerate(self.runs, 1):
            code = proc.poll()
            if code is None:
                found.append(f"run {n} (pid {proc.pid}) is still running")
            elif code not in want.exit:
                how = f"signal {-code}" if code < 0 else f"exit status {code}"
                found.append(f"run {n} (pid {proc.pid}) ended with {how}, expected {want.exit}")
        found += [f"unexpected in the log:\n{f}" for f in log_findings(self.log(), want.allow)]
        return found

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time (a loaded machine: generous; the
        check then reports signal 9); returns the exit status."""
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
        self._register()  # also a process the test started itself and put in RUNNING
        return self.proc.returncode


def check_daemons(daemons: Iterable[Daemon], expect: Expect) -> None:
    """Fail (``pytest.fail``) when one of ``daemons`` did not end clean (see
    :meth:`Daemon.problems`); the message names each problem and the log's tail."""
    report = []
    for d in daemons:
        if d.checked or d in RUNNING:
            continue
        d.checked = True
        problems = d.problems(expect)
        if problems:
            report.append(
                f"daemon on {d.socket}:\n  "
                + "\n  ".join(problems)
                + f"\n--- its log (tail):\n{d.log()[-3000:]}"
            )
    if report:
        pytest.fail(
            "a daemon did not end clean (exit 0 on SIGTERM, no ERROR line, no traceback); "
            "if the test provokes it, declare it: @pytest.mark.daemon_log(exit=..., "
            "allow=[regex, ...]) or daemon.expect(...) (docs/testing.md)\n" + "\n".join(report),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def no_daemon_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop every daemon a test started, even when the test failed before stopping it; then
    check that each ended clean (:func:`check_daemons`, docs/testing.md).

    Daemons of module- or session-scoped fixtures were started before this fixture and
    are left to their own teardown (and :func:`module_daemons_checked`).
    """
    global TEST_STARTED
    before = set(RUNNING)
    started: list[Daemon] = []
    TEST_STARTED = started
    try:
        yield
        for d in RUNNING - before:
            d.stop()  # registers it in started
    finally:
        for d in RUNNING - before:
            d.stop()
        TEST_STARTED = None
    check_daemons(started, Expect.of(request.node))


@pytest.fixture(autouse=True, scope="module")
def module_daemons_checked(request: pytest.FixtureRequest) -> Iterator[None]:
    """The check of :func:`no_daemon_left_behind` for daemons that module-scoped fixtures
    start (set up before them, so torn down after them)."""
    MODULE_STARTED.clear()
    yield
    mine = list(MODULE_STARTED)
    MODULE_STARTED.clear()
    for d in mine:
        if d in RUNNING:
            d.stop()
    check_daemons(mine, Expect.of(request.node))


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
