"""Webhook delivery: a minimal HTTP/1.1 POST of JSON over asyncio streams (TLS via ssl).

No new dependency, and unlike a thread running urllib, a request in flight is
cancelled at once when the daemon stops. Host names are looked up in threads of
their own, so a hanging resolver cannot hold up the daemon's exit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import threading
from urllib.parse import unquote, urlsplit

from pumaguard_hb import __version__

HTTP_TIMEOUT = 5.0  # seconds for one request: connect, send, status and headers
USER_AGENT = f"pumaguard-heartbeat/{__version__}"


def redact(url: str) -> str:
    """A URL fit for the log: scheme, host and port only (paths and queries hold tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}/…"


class HttpError(Exception):
    """The receiver answered with a status that is not 2xx."""

    def __init__(self, status: int, reason: str, snippet: str) -> None:
        super().__init__(f"HTTP {status} {reason}".rstrip() + (f": {snippet}" if snippet else ""))
        self.status = status

    @property
    def retry(self) -> bool:
        return self.status >= 500 or self.status in (408, 429)


_SSL: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()  # system CAs, hostname checked
    return _SSL


def _request(url: str, body: bytes) -> tuple[str, int, bool, bytes]:
    """(host, port, tls, request bytes) for a POST of ``body`` to ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {redact(url)}")
    tls = parts.scheme == "https"
    host = parts.hostname
    port = parts.port or (443 if tls else 80)
    host_header = f"[{host}]" if ":" in host else host
    if parts.port:
        host_header += f":{parts.port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [
        f"POST {target} HTTP/1.1",
        f"Host: {host_header}",
        f"User-Agent: {USER_AGENT}",
        "Content-Type: application/json",
        "Accept: */*",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if parts.username is not None:
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers.append("Authorization: Basic " + base64.b64encode(cred.encode()).decode())
    head = "\r\n".join(headers) + "\r\n\r\n"
    return host, port, tls, head.encode("latin-1") + body


async def post_json(url: str, body: bytes, timeout: float = HTTP_TIMEOUT) -> int:
    """POST ``body`` to ``url``; the 2xx status, else HttpError / OSError / TimeoutError."""
    host, port, tls, request = _request(url, body)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await _connect(host, port, tls)
            writer.write(request)
            await writer.drain()
            status, reason = _status_line(await reader.readline())
            length = None
            for _ in range(100):
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length" and value.strip().isdigit():
                    length = int(value)
            snippet = b""
            if length and not 200 <= status < 300:
                snippet = await reader.read(min(length, 200))
            elif length and length <= 65536:
                await reader.readexactly(length)  # read it all: no reset for the receiver
    except BaseException:
        if writer is not None:
            writer.transport.abort()
        raise
    writer.close()
    if not 200 <= status < 300:
        text = snippet.decode("utf-8", "replace").strip().splitlines()
        raise HttpError(status, reason, text[0][:200] if text else "")
    return status


async def _connect(
    host: str, port: int, tls: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to each address of ``host`` in turn (TLS: the name is checked)."""
    last: OSError = OSError(f"{host} has no address")
    for family, address in await _resolve(host, port):
        try:
            return await asyncio.open_connection(
                address,  # numeric: asyncio does no lookup of its own
                port,
                family=family,
                ssl=_ssl_context() if tls else None,
                server_hostname=host if tls else None,
            )
        except OSError as err:
            last = err
    raise last


_Addr = tuple[int, str]  # family, numeric address
_lookups = 0  # name lookups running in their threads
_lookups_lock = threading.Lock()
MAX_LOOKUPS = 8


def _addresses(host: str, port: int, flags: int) -> list[_Addr]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)
    return [(int(info[0]), str(info[4][0])) for info in infos]


async def _resolve(host: str, port: int) -> list[_Addr]:
    """The addresses of ``host``. A name is looked up in a daemon thread of its own, not in
    the loop's executor: asyncio.run() waits for that executor at exit, and a lookup can
    hang for many seconds when the station's uplink is down."""
    with contextlib.suppress(socket.gaierror):
        return _addresses(host, port, socket.AI_NUMERICHOST)
    global _lookups
    with _lookups_lock:
        if _lookups >= MAX_LOOKUPS:
            raise OSError(f"cannot look up {host}: {MAX_LOOKUPS} lookups already hang")
        _lookups += 1
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[_Addr]] = loop.create_future()

    def settle(result: list[_Addr] | None, err: OSError | None) -> None:
        if done.done():
            return
        if err is not None:
            done.set_exception(err)
        else:
            done.set_result(result or [])

    def lookup() -> None:
        global _lookups
        result: list[_Addr] | None = None
        error: OSError | None = None
        try:
            result = _addresses(host, port, 0)
        except OSError as err:
            error = err
        finally:
            with _lookups_lock:
                _lookups -= 1
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=lookup, name="webhook-dns", daemon=True).start()
    return await done


def _status_line(line: bytes) -> tuple[int, str]:
    parts = line.decode("latin-1").strip().split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP response: {line[:60]!r}" if line else "no response")
    return int(parts[1]), parts[2] if len(parts) > 2 else ""


def describe(err: BaseException) -> str:
    """A delivery failure in a few words, for the log."""
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, asyncio.IncompleteReadError):
        return "connection closed before the end of the response"
    return str(err) or type(err).__name__
