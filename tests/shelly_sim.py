"""A simulated Shelly Gen2+ smart plug (a fake: a real plug cannot be here) for the tests.

It follows the public description of the Gen2 API (https://shelly-api-docs.shelly.cloud/gen2/,
pages ComponentsAndServices/Switch, ComponentsAndServices/Shelly, General/RPCProtocol and
General/Authentication) as far as pumaguard-heartbeat uses it:

- RPC over HTTP in both forms: ``GET /rpc/<Method>?k=v`` (answer: the bare result; an error
  is an HTTP 4xx/5xx with ``{"code", "message"}``) and JSON-RPC ``POST /rpc`` with
  ``{"id", "method", "params"}`` (answer: ``{"id", "src", "result"}`` or
  ``{"id", "src", "error": {"code", "message"}}``).
- ``Shelly.GetDeviceInfo`` (a Plug S Gen3: model ``S3PL-00112EU``, gen 3, app ``PlugSG3``),
  ``Switch.GetStatus`` (``id``, ``source``, ``output``; ``timer_started_at`` and
  ``timer_duration`` while a ``toggle_after`` timer runs) and ``Switch.Set`` (``on``,
  optional ``toggle_after``: the plug flips back by itself; answers ``{"was_on"}``).
- With a password, HTTP Digest as the page says: SHA-256, realm = the device id, user
  ``admin``, ``qop="auth"``, a fresh nonce in every challenge; wrong credentials are
  answered 401 again. ``Shelly.GetDeviceInfo`` stays open, as on a real plug (it tells
  ``auth_en`` and ``auth_domain``), unless ``protect_device_info``.

Test knobs: ``on`` (the initial output), ``answering`` (False: connections are accepted and
never answered, a hung plug), ``on_power`` (called with the new output on every change,
the timer's included, one call at a time, in order), ``calls`` ((method, params) received,
authenticated or not), ``close()`` (stops the server, every connection and timer).
Standard library only; the Digest check is written out here, not taken from the code
under test.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import re
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

MODEL = "S3PL-00112EU"
APP = "PlugSG3"
VERSION = "1.4.4"
FW_ID = "20241011-114455/1.4.4-g6d2a586"
USER = "admin"
MAX_BODY = 16 * 1024  # a JSON-RPC request body
HANDLER_TIMEOUT = 10.0  # seconds a connection may take to send its request
_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


class RpcError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _value(text: str) -> Any:
    """A GET parameter as the plug reads it: true/false, a number, or text."""
    if text in ("true", "false"):
        return text == "true"
    with contextlib.suppress(ValueError):
        return int(text)
    with contextlib.suppress(ValueError):
        return float(text)
    return text.strip('"')


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = HANDLER_TIMEOUT

    def log_message(self, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.plug._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.plug._track(self.connection, False)

    def handle(self) -> None:
        plug = self.server.plug
        if not plug.answering:
            plug._stopped.wait()  # a hung plug: holds the connection until close()
            return
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.handle_one_request()

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        if not parts.path.startswith("/rpc/"):
            self._send(404, {"code": 404, "message": "Not found"})
            return
        method = parts.path[len("/rpc/") :]
        params = {k: _value(v) for k, v in urllib.parse.parse_qsl(parts.query)}
        status, body = self._dispatch(method, params)
        if status == 200:
            self._send(200, body["result"])
        else:
            self._send(status, body["error"])

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length", "")
        if self.path != "/rpc" or not length.isdigit() or int(length) > MAX_BODY:
            self._send(400, {"code": -103, "message": "Bad request"})
            return
        try:
            request = json.loads(self.rfile.read(int(length)))
        except ValueError:
            self._send(400, {"code": -103, "message": "Invalid JSON"})
            return
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            self._send(400, {"code": -103, "message": "No method"})
            return
        params = request.get("params") or {}
        if not isinstance(params, dict):
            params = {}
        status, body = self._dispatch(request["method"], params)
        if status == 401:
            self._send(401, body["error"])
            return
        self._send(200, {"id": request.get("id"), "src": self.server.plug.device_id, **body})

    def _dispatch(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        plug = self.server.plug
        with plug._lock:
            plug.calls.append((method, dict(params)))
        if not self._authorized(method):
            return 401, {"error": {"code": 401, "message": "Unauthorized"}}
        try:
            return 200, {"result": plug._rpc(method, params)}
        except RpcError as err:
            return err.status, {"error": {"code": err.code, "message": err.message}}

    def _authorized(self, method: str) -> bool:
        plug = self.server.plug
        if not plug.password or (method == "Shelly.GetDeviceInfo" and not plug.protect_device_info):
            return True
        given = self.headers.get("Authorization", "")
        if given[:7].lower() == "digest " and plug._digest_ok(self.command, self.path, given[7:]):
            return True
        self._challenge = plug._new_nonce()
        return False

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        nonce = getattr(self, "_challenge", None)
        if status == 401 and nonce:
            realm = self.server.plug.device_id
            self.send_header(
                "WWW-Authenticate",
                f'Digest qop="auth", realm="{realm}", nonce="{nonce}", algorithm=SHA-256',
            )
        self.end_headers()
        self.wfile.write(data)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    plug: ShellyPlug


class ShellyPlug:
    """A simulated Shelly Gen2+ plug on ``sock`` (listening, e.g. made in a namespace) or
    on 127.0.0.1 with a free port. ``url`` is ``http://HOST:PORT``."""

    def __init__(
        self,
        sock: socket.socket | None = None,
        *,
        on: bool = True,
        password: str = "",
        answering: bool = True,
        on_power: Callable[[bool], None] | None = None,
        protect_device_info: bool = False,
        mac: str | None = None,
    ) -> None:
        self.output = on
        self.password = password
        self.answering = answering
        self.on_power = on_power
        self.protect_device_info = protect_device_info
        self.mac = (mac or secrets.token_hex(6)).replace(":", "").upper()
        self.device_id = f"shellyplugsg3-{self.mac.lower()}"
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.source = "init"
        self.timer_started_at: float | None = None
        self.timer_duration: float | None = None
        self._lock = threading.Lock()  # the state
        self._power_lock = threading.Lock()  # one output change (and its on_power) at a time
        self._timer: threading.Timer | None = None
        self._nonces: dict[str, float] = {}
        self._conns: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._closed = False
        if sock is None:
            sock = socket.create_server(("127.0.0.1", 0))
        else:
            sock.listen(64)
        sock.setblocking(True)
        self._server = _Server(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self._server.socket.close()
        self._server.socket = sock
        self._server.server_address = sock.getsockname()
        self._server.plug = self
        host, port = sock.getsockname()[:2]
        self.host, self.port = host, port
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    def __enter__(self) -> ShellyPlug:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ShellyPlug {self.url} output={self.output}>"

    def methods(self) -> list[str]:
        """The methods called so far, in order."""
        with self._lock:
            return [m for m, _ in self.calls]

    def close(self) -> None:
        """Stop serving, end every connection and the timer; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            timer, self._timer = self._timer, None
        self._stopped.set()
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join(5)
        self._server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins the handler threads (each ends now)
        self._thread.join(5)

    # -- the device ----------------------------------------------------------------------

    def _rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "Shelly.GetDeviceInfo":
            return {
                "name": None,
                "id": self.device_id,
                "mac": self.mac,
                "slot": 0,
                "model": MODEL,
                "gen": 3,
                "fw_id": FW_ID,
                "ver": VERSION,
                "app": APP,
                "auth_en": bool(self.password),
                "auth_domain": self.device_id if self.password else None,
            }
        if method == "Switch.GetStatus":
            self._switch_id(params)
            with self._lock:
                status: dict[str, Any] = {"id": 0, "source": self.source, "output": self.output}
                if self.timer_started_at is not None:
                    status["timer_started_at"] = self.timer_started_at
                    status["timer_duration"] = self.timer_duration
            return status
        if method == "Switch.Set":
            self._switch_id(params)
            on = params.get("on")
            if not isinstance(on, bool):
                raise RpcError(400, -103, "Invalid argument 'on'!")
            after = params.get("toggle_after")
            if after is not None and (
                isinstance(after, bool) or not isinstance(after, int | float) or after <= 0
            ):
                raise RpcError(400, -103, "Invalid argument 'toggle_after'!")
            return {"was_on": self._set(on, after, "http")}
        raise RpcError(404, 404, f"No handler for {method}")

    @staticmethod
    def _switch_id(params: dict[str, Any]) -> None:
        if "id" not in params:
            raise RpcError(400, -103, "Missing required argument 'id'!")
        if params["id"] != 0 or isinstance(params["id"], bool):
            raise RpcError(404, -105, f"Argument 'id', value {params['id']} not found!")

    def _set(self, on: bool, after: float | None, source: str) -> bool:
        """Switch to ``on`` (a new timer replaces the old); the previous output."""
        with self._power_lock:
            with self._lock:
                if self._closed:
                    return self.output
                was_on, self.output, self.source = self.output, on, source
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                self.timer_started_at = self.timer_duration = None
                if after is not None:
                    self._timer = threading.Timer(after, self._flip_back)
                    self._timer.daemon = True
                    self.timer_started_at, self.timer_duration = time.time(), float(after)
                    self._timer.start()
            if was_on != on and self.on_power is not None:
                self.on_power(on)
        return was_on

    def _flip_back(self) -> None:
        with self._power_lock:
            with self._lock:
                if self._closed or self._timer is not threading.current_thread():
                    return
                self._timer = None
                self.timer_started_at = self.timer_duration = None
                self.output = not self.output
                self.source = "timer"
                now = self.output
            if self.on_power is not None:
                self.on_power(now)

    # -- Digest ----------------------------------------------------------------------------

    def _new_nonce(self) -> str:
        nonce = secrets.token_hex(16)
        with self._lock:
            self._nonces[nonce] = time.monotonic()
            while len(self._nonces) > 64:
                self._nonces.pop(next(iter(self._nonces)))
        return nonce

    def _digest_ok(self, command: str, path: str, header: str) -> bool:
        """The RFC 7616 check of an ``Authorization: Digest`` (SHA-256, qop auth)."""
        got = {}
        for key, raw in _PARAM.findall(header):
            got[key.lower()] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw[:1] == '"' else raw
        with self._lock:
            known = got.get("nonce", "") in self._nonces
        if (
            not known
            or got.get("username") != USER
            or got.get("realm") != self.device_id
            or got.get("uri") != path
            or got.get("qop") != "auth"
            or got.get("algorithm", "").upper() != "SHA-256"
        ):
            return False
        ha1 = _sha256(f"{USER}:{self.device_id}:{self.password}")
        ha2 = _sha256(f"{command}:{path}")
        want = _sha256(
            f"{ha1}:{got['nonce']}:{got.get('nc', '')}:{got.get('cnonce', '')}:auth:{ha2}"
        )
        return secrets.compare_digest(want, got.get("response", ""))

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)
