"""The real PumaGuard web UI (PyPI ``pumaguard`` 25.x) as a test fixture, on loopback.

``tests/webui/install.sh`` (run by ``./dev setup``) installs it into ``.cache/webui-venv``
as ``../shared/notes/pumaguard-webui.md`` says. This module starts it as a station would
(``python -m pumaguard.web_ui --host 127.0.0.1 --port PORT --no-mdns --settings FILE``)
with a throwaway ``HOME`` and ``XDG_*`` folders, waits (bounded) until ``GET /api/status``
answers, and always stops it, even when the test failed. docs/webui.md has the facts about
its API that the tests rely on.

- ``webui_factory`` (fixture): ``make(settings_path, **kw) -> WebUIServer``, started;
  every server it made is stopped at the end of the test.
- ``running_webui(settings_path)``: the same as a context manager.
- ``WebUIServer.restart()``: stop and start again on the same port and file.
- ``WebUIServer.cameras()``: its camera list (``GET /api/dhcp/cameras``).
- ``SSEReader``: collects its event stream (``GET /api/dhcp/cameras/events``) in a thread.

Without the web UI installed the tests skip with a message saying how to install it, but
under ``CI=true`` a missing web UI is a failure: CI must run them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WEBUI_VENV = Path(os.environ.get("PUMAGUARD_WEBUI_VENV", REPO / ".cache" / "webui-venv"))
WEBUI_PYTHON = WEBUI_VENV / "bin" / "python"
INSTALL_HINT = "run `sh tests/webui/install.sh` (./dev setup does)"

# what the web UI needs in its file to start and to stay harmless on a test machine
REQUIRED_KEYS: dict[str, Any] = {
    # without it, start-up fails with "image dimensions need to be positive"
    "image-dimensions": [299, 299],
}

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def webui_installed() -> bool:
    """True when the web UI's venv exists and can import ``pumaguard.web_ui``."""
    if not WEBUI_PYTHON.exists():
        return False
    done = subprocess.run(
        [str(WEBUI_PYTHON), "-c", "import pumaguard.web_ui"],
        capture_output=True,
        timeout=60,
        cwd="/",
    )
    return done.returncode == 0


_installed: bool | None = None


def require_webui() -> None:
    """Skip (or under CI fail) the test when the real web UI is not installed."""
    global _installed
    if _installed is None:
        _installed = webui_installed()
    if _installed:
        return
    message = f"the real PumaGuard web UI is not installed in {WEBUI_VENV}: {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI must run the web UI tests)", pytrace=False)
    pytest.skip(message)


def webui_version() -> str:
    """The installed pumaguard version (e.g. ``25.post66``)."""
    done = subprocess.run(
        [
            str(WEBUI_PYTHON),
            "-c",
            "import importlib.metadata as m; print(m.version('pumaguard'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd="/",
    )
    return done.stdout.strip()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def camera_record(
    hostname: str,
    ip: str,
    mac: str,
    status: str = "disconnected",
    last_seen: str | None = "2024-01-15T14:32:15Z",
) -> dict[str, Any]:
    """A camera as the web UI writes it (exactly these five fields)."""
    return {
        "hostname": hostname,
        "ip_address": ip,
        "mac_address": mac,
        "last_seen": last_seen,
        "status": status,
    }


def webui_settings(cameras: list[dict[str, Any]] | None = None, **keys: Any) -> dict[str, Any]:
    """A settings document the web UI starts on (hyphenated keys; ``_`` in ``keys`` become ``-``).

    Its own heartbeat is off by default (the documented setup beside our daemon); pass
    ``camera_heartbeat_enabled=True`` for the other case. Its plug heartbeat is off too
    (no plugs are probed), so its saves come from cameras only.
    """
    doc: dict[str, Any] = {
        "image-dimensions": [299, 299],
        "camera-heartbeat-enabled": False,
        "plug-heartbeat-enabled": False,
        "cameras": list(cameras or []),
    }
    for key, value in keys.items():
        doc[key.replace("_", "-")] = value
    return doc


def write_webui_settings(path: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` the way the web UI does (in place, PyYAML dump, sorted keys)."""
    with open(path, "w", encoding="utf-8") as f:
        yaml.dump(doc, f, default_flow_style=False)
    return path


def prepare_settings(path: Path) -> None:
    """Make ``path`` a file the web UI can start on, changing it only where it must.

    A missing or empty file becomes the defaults of ``webui_settings()``; a file without
    ``image-dimensions`` gets it (in place, keeping the inode). A non-empty
    ``wifi-networks`` is refused: the web UI would rewrite wpa_supplicant's configuration.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    doc = yaml.safe_load(text) if text.strip() else None
    if doc is None:
        write_webui_settings(path, webui_settings())
        return
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: the web UI needs a mapping at the top of its file")
    if doc.get("wifi-networks"):
        raise ValueError(f"{path}: wifi-networks must stay out of a test's file")
    missing = {k: v for k, v in REQUIRED_KEYS.items() if k not in doc}
    if missing:
        doc.update(missing)
        write_webui_settings(path, doc)


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """One JSON request without proxies; returns (HTTP status, decoded body or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _NO_PROXY.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


RUNNING: set[WebUIServer] = set()


class PortTaken(AssertionError):
    """The web UI could not bind its port (its process then lives on without a server)."""


class WebUIServer:
    """One real web UI process on a loopback port, with its own throwaway home."""

    def __init__(
        self,
        settings: Path,
        port: int | None = None,
        home: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.settings = Path(settings)
        self._fixed_port = port is not None
        self.port = port or free_port()
        self._own_home = home is None
        self.home = home or Path(tempfile.mkdtemp(prefix="phb-webui-home-"))
        self.log_path = self.home / "webui.log"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        home = self.home
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_STATE_HOME": str(home / "state"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            # loopback only: no proxy may catch 127.0.0.1
            "NO_PROXY": "*",
            "no_proxy": "*",
        }
        for d in ("config", "data", "cache", "state"):
            (home / d).mkdir(parents=True, exist_ok=True)
        return env

    def start(self) -> WebUIServer:
        """Start it and wait (bounded) until ``GET /api/status`` answers ``running``.

        A port chosen here that somebody else took in the meantime is replaced by another
        (at the first start only: a restart keeps its port).
        """
        for attempt in range(3):
            try:
                return self._start()
            except PortTaken:
                if self._fixed_port or self.starts > 0 or attempt == 2:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self) -> WebUIServer:
        require_webui()
        if self.proc is not None and self.proc.poll() is None:
            raise AssertionError("the web UI is already running")
        prepare_settings(self.settings)
        self.home.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(WEBUI_PYTHON),
            "-m",
            "pumaguard.web_ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-mdns",
            "--settings",
            str(self.settings),
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.home,
                start_new_session=True,  # its own process group: stop() ends all of it
            )
        RUNNING.add(self)
        try:
            self.wait_ready(self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.starts += 1
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the web UI exited with status {self.proc.returncode}:\n{self.log()}"
                )
            with contextlib.suppress(OSError, ValueError):
                status, body = http_json("GET", self.url + "/api/status", timeout=2)
                if status == 200 and isinstance(body, dict) and body.get("status") == "running":
                    return
            log = self.log()
            if "Address already in use" in log.rsplit("--- start ", 1)[-1]:
                raise PortTaken(f"port {self.port} is taken:\n{log}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the web UI did not answer GET /api/status within {timeout}s:\n{log}"
                )
            time.sleep(0.1)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM to its process group, SIGKILL if it does not end in time."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        # anything it left in its group (e.g. a ping of its own heartbeat)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        RUNNING.discard(self)
        return proc.returncode

    def restart(self) -> WebUIServer:
        """Stop, then start again on the same port and settings file."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop it and remove its throwaway home."""
        self.stop()
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- its API ---------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http_json(method, self.url + path, body)

    def status(self) -> dict[str, Any]:
        code, body = self.request("GET", "/api/status")
        assert code == 200, (code, body)
        assert isinstance(body, dict)
        return body

    def cameras(self) -> list[dict[str, Any]]:
        """Its camera list (``GET /api/dhcp/cameras``), from its memory."""
        code, body = self.request("GET", "/api/dhcp/cameras")
        assert code == 200, (code, body)
        assert isinstance(body, dict)
        return list(body["cameras"])

    def cameras_by_mac(self) -> dict[str, dict[str, Any]]:
        return {c["mac_address"]: c for c in self.cameras()}

    def events(self, timeout: float = 120.0) -> SSEReader:
        """A started reader of its event stream (close it, or use it as a context manager)."""
        return SSEReader(self.url, max_duration=timeout).start()


def _stop_leftovers() -> None:
    for server in list(RUNNING):
        server.stop()


atexit.register(_stop_leftovers)


@contextlib.contextmanager
def running_webui(settings: Path, **kw: Any) -> Iterator[WebUIServer]:
    """A started web UI on ``settings``, always stopped (and its home removed) afterwards."""
    server = WebUIServer(settings, **kw)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def webui_factory() -> Iterator[Callable[..., WebUIServer]]:
    """``make(settings_path, **kw)``: started web UIs, all stopped at the end of the test."""
    require_webui()
    made: list[WebUIServer] = []

    def make(settings: Path, start: bool = True, **kw: Any) -> WebUIServer:
        server = WebUIServer(settings, **kw)
        made.append(server)
        return server.start() if start else server

    try:
        yield make
    finally:
        for server in made:
            server.close()


class SSEReader:
    """Reads ``GET /api/dhcp/cameras/events`` in a thread and keeps every event it got.

    Bounded: the thread ends on ``close()``, when the server closes the stream, or after
    ``max_duration`` seconds, whatever comes first. The web UI drops a client whose queue
    (10 events) is full, so the thread reads all the time.
    """

    def __init__(self, base_url: str, max_duration: float = 120.0) -> None:
        host_port = base_url.split("://", 1)[1].rstrip("/")
        host, _, port = host_port.rpartition(":")
        self.addr = (host, int(port))
        self.max_duration = max_duration
        self.events: list[dict[str, Any]] = []
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sse-reader")

    def start(self, timeout: float = 15.0) -> SSEReader:
        """Connect, and return once the web UI sent its first ("connected") message."""
        self._thread.start()
        if not self._connected.wait(timeout):
            self.close()
            raise AssertionError(f"no event stream from the web UI within {timeout}s: {self.error}")
        return self

    def __enter__(self) -> SSEReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [e for e in self.snapshot() if e.get("type") in types]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first event (already received or to come) for which ``predicate`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.snapshot():
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no matching event within {timeout}s; got {self.snapshot()!r}"
                    + (f" (stream error: {self.error})" if self.error else "")
                )
            time.sleep(0.05)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_duration
        try:
            with socket.create_connection(self.addr, timeout=5) as sock:
                sock.sendall(
                    b"GET /api/dhcp/cameras/events HTTP/1.0\r\n"
                    + f"Host: {self.addr[0]}:{self.addr[1]}\r\n".encode()
                    + b"Accept: text/event-stream\r\n\r\n"
                )
                sock.settimeout(0.25)
                buf = b""
                header_done = False
                chunked = False
                body = b""
                while not self._stop.is_set() and time.monotonic() < deadline:
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        return
                    buf += data
                    if not header_done:
                        if b"\r\n\r\n" not in buf:
                            continue
                        head, buf = buf.split(b"\r\n\r\n", 1)
                        header_done = True
                        chunked = b"transfer-encoding: chunked" in head.lower()
                        if b" 200 " not in head.split(b"\r\n", 1)[0]:
                            self.error = head.decode(errors="replace")
                            return
                    if chunked:
                        more, buf = _dechunk(buf)
                        body += more
                    else:
                        body, buf = body + buf, b""
                    body = self._parse(body)
        except OSError as e:
            self.error = str(e)

    def _parse(self, body: bytes) -> bytes:
        """Take complete SSE messages (blank-line separated) off ``body``; return the rest."""
        while b"\n\n" in body:
            message, body = body.split(b"\n\n", 1)
            data = [line[5:].lstrip() for line in message.split(b"\n") if line.startswith(b"data:")]
            if not data:
                continue  # a ": keepalive" comment
            try:
                event = json.loads(b"\n".join(data))
            except ValueError:
                event = {"type": "unparsable", "raw": b"\n".join(data).decode(errors="replace")}
            if not isinstance(event, dict):
                event = {"type": "unparsable", "raw": event}
            with self._lock:
                self.events.append(event)
            if event.get("type") == "connected":
                self._connected.set()
        return body


def _dechunk(buf: bytes) -> tuple[bytes, bytes]:
    """Decode the complete chunks at the start of ``buf``; return (data, what is left)."""
    out = b""
    while True:
        line_end = buf.find(b"\r\n")
        if line_end < 0:
            return out, buf
        size = int(buf[:line_end].split(b";")[0] or b"0", 16)
        if size == 0:
            return out, b""
        start = line_end + 2
        if len(buf) < start + size + 2:
            return out, buf
        out += buf[start : start + size]
        buf = buf[start + size + 2 :]
