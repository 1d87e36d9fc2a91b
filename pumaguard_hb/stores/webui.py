"""Client of the PumaGuard web UI's HTTP API (web UI mode).

Synchronous (the daemon calls it through ``asyncio.to_thread``), standard library only.
Every request:

- goes straight to the web UI: no proxy, whatever ``http_proxy``/``HTTP_PROXY`` say
  (``ProxyHandler({})``), and no redirect is followed (an answer 3xx is an error);
- is bounded in time as a whole, not per socket operation: a watchdog shuts the socket
  down once ``timeout`` seconds have passed since the request started, so a server that
  never answers, or trickles one byte at a time, costs at most about ``timeout``;
- reads at most ``MAX_RESPONSE`` bytes (the camera list: ``MAX_LIST_RESPONSE``, room for
  ``MAX_CAMERAS`` records with long names): a broken or hostile server cannot exhaust memory;
- expects JSON back and checks its shape before anything of it is used.

Failures raise ``WebUIError``, whose message is one sentence naming the web UI:
``web UI at http://127.0.0.1:5000: connection refused``.

The facts about the web UI's API this relies on (PyPI ``pumaguard`` 25.x) are in
docs/webui.md; the most important: it keys cameras by the MAC *as sent* (only its
``DELETE``/``GET /api/dhcp/cameras/<mac>`` lower-case the MAC), so this client sends a
known camera's MAC in the spelling the web UI holds and new ones in lower case; and it
stores an event's ``timestamp`` verbatim as ``last_seen`` (``null`` included).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from pumaguard_hb import __version__
from pumaguard_hb.model.errors import HeartbeatError, InvalidValue

DEFAULT_TIMEOUT = 5.0
MAX_RESPONSE = 1 << 20  # bytes of one answer (other than the camera list)
#: bytes of the camera list: 4096 cameras (settings.MAX_CAMERAS) with 253-character names
#: are about 1.7 MB; more is refused before it is parsed
MAX_LIST_RESPONSE = 4 << 20
USER_AGENT = f"pumaguard-heartbeat/{__version__}"
URL_KEY = "camera_heartbeat_webui_url"
STATUSES = ("connected", "disconnected")
_ACTION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz-_")


class WebUIError(HeartbeatError):
    """The web UI could not be reached, or its answer cannot be used."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"web UI at {url}: {problem}")


def utc_now() -> str:
    """Now as the web UI writes ``last_seen``: ISO 8601 UTC to the second, with ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_url(url: object) -> str:
    """``url`` as the base of every request (no trailing slash); ``InvalidValue`` otherwise.

    Allowed: ``http://`` or ``https://``, a host, an optional port (1-65535) and an
    optional path prefix (a reverse proxy's). Not allowed: user names or passwords (the
    URL is shown in logs and ``status``), a query or a fragment.
    """
    allowed = (
        "an http:// or https:// URL with a host and an optional port, e.g. http://127.0.0.1:5000"
    )
    if not isinstance(url, str) or not url.strip() or any(ord(c) < 33 for c in url.strip()):
        raise InvalidValue(URL_KEY, url, allowed)
    text = url.strip()
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise InvalidValue(URL_KEY, url, allowed + " (the port must be 1-65535)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValue(URL_KEY, url, allowed)
    if parts.username is not None or parts.password is not None:
        raise InvalidValue(URL_KEY, url, allowed + " (no user name or password)")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise InvalidValue(URL_KEY, url, allowed + " (no query or fragment)")
    if port == 0:
        raise InvalidValue(URL_KEY, url, allowed + " (the port must be 1-65535)")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turn every redirect into the HTTPError it is: the web UI API never redirects."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Watchdog:
    """Shuts down the request's socket once its deadline has passed (one timer per request)."""

    def __init__(self, timeout: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._done = False
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            self._sock = None

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            if self.fired and sock is not None:
                _shutdown(sock)
            elif not self._done:
                self._sock = sock

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            if self._sock is not None:
                _shutdown(self._sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _connection_class(base: type[http.client.HTTPConnection], dog: _Watchdog) -> Any:
    """``base`` whose socket is handed to the watchdog as soon as it is connected."""

    class Watched(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            dog.watch(self.sock)

    return Watched


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, dog: _Watchdog) -> None:
        super().__init__()
        self._dog = dog

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connection_class(http.client.HTTPConnection, self._dog), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, dog: _Watchdog, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self._dog = dog

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            _connection_class(http.client.HTTPSConnection, self._dog),
            req,
            context=self._context,  # type: ignore[attr-defined]
        )


_SSL: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()  # system CAs, host name checked
    return _SSL


def _clean(text: str, limit: int = 200) -> str:
    """Text from the server fit for one log line: printable, bounded."""
    out = "".join(c if c.isprintable() else " " for c in text).strip()
    return out if len(out) <= limit else out[: limit - 1] + "…"


class WebUI:
    """The PumaGuard web UI at ``url``: its camera list, camera add/remove and DHCP events."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url: str = check_url(url)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise InvalidValue("timeout", timeout, "seconds, a number > 0")
        self.timeout = float(timeout)
        self.saves: int = 0  # calls that made the web UI save its settings file
        self.last_device_type: str | None = None  # what the web UI called the last event's device
        self._lock = threading.Lock()
        self._spelling: dict[str, str] = {}  # lower-case MAC -> the MAC as the web UI keys it

    def __repr__(self) -> str:
        return f"WebUI({self.url!r})"

    # -- the API ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``GET /api/status``: ``{"status": "running", "version", "uptime_seconds", …}``."""
        _, body = self._call("GET", "/api/status")
        if not isinstance(body, dict):
            raise self._unexpected("GET", "/api/status", "not an object")
        return body

    def cameras(self) -> list[dict[str, Any]]:
        """``GET /api/dhcp/cameras``: the web UI's camera records (objects only), as returned."""
        _, body = self._call("GET", "/api/dhcp/cameras", limit=MAX_LIST_RESPONSE)
        records = body.get("cameras") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise self._unexpected("GET", "/api/dhcp/cameras", "no camera list")
        cams = [c for c in records if isinstance(c, dict)]
        spelling = {}
        for cam in cams:
            mac = cam.get("mac_address")
            if isinstance(mac, str) and mac:
                spelling[mac.strip().lower()] = mac
        with self._lock:
            self._spelling = spelling
        return cams

    def plugs(self) -> list[dict[str, Any]]:
        """``GET /api/dhcp/plugs``: the web UI's smart plugs (objects only), as returned:
        ``hostname``, ``ip_address``, ``mac_address``, ``last_seen``, ``status``, ``mode``."""
        _, body = self._call("GET", "/api/dhcp/plugs", limit=MAX_LIST_RESPONSE)
        records = body.get("plugs") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise self._unexpected("GET", "/api/dhcp/plugs", "no plug list")
        return [p for p in records if isinstance(p, dict)]

    def add_camera(self, hostname: str, ip: str, mac: str, status: str | None = None) -> None:
        """``POST /api/dhcp/cameras``. The web UI sets ``last_seen`` to now and ``status`` to
        ``status`` (its default: connected). A MAC it has already is overwritten, not refused
        (an "already exists" answer, should a version give one, is not an error either)."""
        for key, value in (("hostname", hostname), ("ip_address", ip), ("mac_address", mac)):
            if not isinstance(value, str) or not value.strip():
                # the web UI answers 400 "Missing required fields" to an empty one
                raise InvalidValue(key, value, "the web UI needs a non-empty value")
        if status is not None and status not in STATUSES:
            raise InvalidValue("status", status, "connected or disconnected")
        body: dict[str, Any] = {
            "hostname": hostname,
            "ip_address": ip,
            "mac_address": self._mac(mac),
        }
        if status is not None:
            body["status"] = status
        code, _ = self._call("POST", "/api/dhcp/cameras", body, ok=(200, 201), also=(409,))
        if code in (200, 201):
            self._saved()
            with self._lock:
                self._spelling.setdefault(body["mac_address"].lower(), body["mac_address"])

    def remove_camera(self, mac: str) -> bool:
        """``DELETE /api/dhcp/cameras/<mac>``; False when the web UI did not know the camera."""
        if not isinstance(mac, str) or not mac.strip():
            raise InvalidValue("mac_address", mac, "a MAC address")
        path = "/api/dhcp/cameras/" + quote(mac.strip().lower(), safe=":")
        code, _ = self._call("DELETE", path, ok=(200, 204), also=(404,))
        if code == 404:
            return False
        self._saved()
        with self._lock:
            self._spelling.pop(mac.strip().lower(), None)
        return True

    def event(self, action: str, mac: str, ip: str, hostname: str, timestamp: str | None) -> None:
        """``POST /api/dhcp/event``, as dnsmasq's script would.

        ``add``/``old``: the web UI marks the camera connected with ``last_seen`` =
        ``timestamp`` (None: now, since it would store null). ``del``: disconnected with
        ``last_seen`` = ``timestamp`` verbatim (None: null, "never seen"). A device the
        web UI does not call a camera or plug (hostname not ``Microseven*``/``Reolink*``,
        MAC unknown and not in its device history) is ignored: ``last_device_type`` is
        then ``"unknown"``. Other actions (``init``, ``arp-add``, …) are ignored too.
        """
        if (
            not isinstance(action, str)
            or not action
            or not set(action) <= _ACTION_CHARS
            or len(action) > 32
        ):
            raise InvalidValue("action", action, "add, old or del (as dnsmasq sends them)")
        if not isinstance(mac, str) or not mac.strip():
            raise InvalidValue("mac_address", mac, "a MAC address")
        if timestamp is None and action in ("add", "old"):
            timestamp = utc_now()
        body = {
            "action": action,
            "mac_address": self._mac(mac),
            "ip_address": ip,
            "hostname": hostname,
            "timestamp": timestamp,
        }
        _, answer = self._call("POST", "/api/dhcp/event", body)
        data = answer.get("data") if isinstance(answer, dict) else None
        kind = data.get("device_type") if isinstance(data, dict) else None
        self.last_device_type = kind if isinstance(kind, str) else None
        if self.last_device_type in ("camera", "plug") and action in ("add", "old", "del"):
            # an upper bound: a del for a camera it does not hold saves nothing
            self._saved()

    # -- plumbing ---------------------------------------------------------------------

    def _mac(self, mac: str) -> str:
        """The MAC as the web UI keys the camera, or in lower case for one it does not hold."""
        key = mac.strip().lower()
        with self._lock:
            return self._spelling.get(key, key)

    def _saved(self) -> None:
        with self._lock:
            self.saves += 1

    def _unexpected(self, method: str, path: str, what: str) -> WebUIError:
        return WebUIError(self.url, f"sent an unexpected answer to {method} {path} ({what})")

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        ok: tuple[int, ...] = (200,),
        also: tuple[int, ...] = (),
        limit: int = MAX_RESPONSE,
    ) -> tuple[int, Any]:
        """One request; (status, decoded JSON). ``also``: statuses that are answers, not
        errors (their body is not required to be JSON); ``limit``: bytes read at most."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("User-Agent", USER_AGENT)
        req.add_header("Accept", "application/json")
        req.add_header("Connection", "close")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        dog = _Watchdog(self.timeout)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            _NoRedirect(),
            _HTTPHandler(dog),
            _HTTPSHandler(dog, _ssl_context()),
        )
        where = f"{method} {path}"
        started = time.monotonic()
        with dog:
            try:
                try:
                    resp = opener.open(req, timeout=self.timeout)
                except urllib.error.HTTPError as e:
                    resp = e  # an answer with a status that is not 2xx: still read it (capped)
                with resp:
                    status = int(resp.status or 0)
                    raw = self._read(resp, where, limit)
            except WebUIError:
                raise
            except Exception as e:  # every failure becomes one sentence
                if dog.fired or time.monotonic() - started >= self.timeout:
                    raise WebUIError(self.url, f"timed out after {self.timeout:g}s") from None
                raise WebUIError(self.url, self._describe(e)) from None
        if status in also:
            return status, None
        if status not in ok:
            detail = ""
            with contextlib.suppress(ValueError, RecursionError, UnicodeDecodeError):
                answer = json.loads(raw)
                if isinstance(answer, dict) and isinstance(answer.get("error"), str):
                    detail = f" ({_clean(answer['error'])})"
            raise WebUIError(self.url, f"answered HTTP {status} to {where}{detail}")
        try:
            return status, json.loads(raw)
        except (ValueError, RecursionError, UnicodeDecodeError):
            raise WebUIError(
                self.url, f"sent something that is not JSON in answer to {where}"
            ) from None

    def _read(self, resp: Any, where: str, limit: int) -> bytes:
        too_much = WebUIError(self.url, f"sent more than {limit >> 20} MiB in answer to {where}")
        length = resp.headers.get("Content-Length") if resp.headers else None
        if length and length.strip().isdigit() and int(length) > limit:
            raise too_much
        raw: bytes = resp.read(limit + 1)
        if len(raw) > limit:
            raise too_much
        return raw

    def _describe(self, e: BaseException) -> str:
        """One short phrase for a failure of the request itself."""
        reason: object = e.reason if isinstance(e, urllib.error.URLError) else e
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused"
        if isinstance(reason, TimeoutError):
            return f"timed out after {self.timeout:g}s"
        if isinstance(reason, socket.gaierror):
            return f"cannot resolve {urlsplit(self.url).hostname}"
        if isinstance(reason, ssl.SSLError | ssl.CertificateError):
            return f"TLS failed ({_clean(str(reason))})"
        if isinstance(reason, http.client.RemoteDisconnected | ConnectionResetError):
            return "closed the connection without answering"
        if isinstance(reason, http.client.IncompleteRead):
            return "closed the connection in the middle of its answer"
        if isinstance(reason, http.client.HTTPException):
            return "sent something that is not HTTP"
        if isinstance(reason, OSError) and reason.strerror:
            return reason.strerror[0].lower() + reason.strerror[1:]
        return _clean(str(reason)) or type(reason).__name__
