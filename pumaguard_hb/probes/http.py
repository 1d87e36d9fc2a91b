"""The http, https and rtsp probes: one request of one camera by a TCP-based method.

- tcp (probes/tcp.py): a connect to ip:port within the timeout; success is an established
  connection, which is then reset at once (nothing is sent, nothing lingers).
- http/https: ``GET <path>``; any HTTP status below 500 means the camera's web
  server is alive (401 and 404 included: it answered); 5xx or no HTTP reply is down.
  Certificates are not verified (cameras use self-signed ones).
- rtsp: ``OPTIONS rtsp://ip:port/``; any RTSP status below 500 (``RTSP/1.0 200``,
  ``401``) means the streaming service is alive. A camera can answer ping while
  its stream is dead; this catches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

from pumaguard_hb import __version__
from pumaguard_hb.model.probing import ProbeResult
from pumaguard_hb.probes.tcp import endpoint

MAX_STATUS_LINE = 1024


def _tls_context() -> ssl.SSLContext:
    """The TLS client context of every https check: certificates are not verified (cameras
    use self-signed ones), so no CA store is loaded. ``ssl.create_default_context()`` per
    probe loaded the CA store on the event loop each time (~20-30 ms: 50 https cameras
    blocked the loop about a second per sweep)."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    return tls


TLS_CONTEXT = _tls_context()  # built once, at import (about 1 ms), shared by all https checks


def _url_host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


async def probe_request(
    method: str, ip: str, port: int, timeout: float, path: str = "/"
) -> ProbeResult:
    """An http, https or rtsp check: one request, judged by the reply's status line."""
    where = f"{method} {endpoint(ip, port)}"
    if method == "rtsp":
        verb = "OPTIONS"
        request = (
            f"OPTIONS rtsp://{_url_host(ip)}:{port}/ RTSP/1.0\r\nCSeq: 1\r\n"
            f"User-Agent: pumaguard-heartbeat/{__version__}\r\n\r\n"
        )
        protocol = "RTSP/"
    else:
        verb = f"GET {path}"
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {_url_host(ip)}\r\n"
            f"User-Agent: pumaguard-heartbeat/{__version__}\r\nAccept: */*\r\n"
            "Connection: close\r\n\r\n"
        )
        protocol = "HTTP/"
    tls = TLS_CONTEXT if method == "https" else None
    writer = None
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                ip, port, ssl=tls, server_hostname="" if tls else None, limit=MAX_STATUS_LINE
            )
            writer.write(request.encode("ascii"))
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        return ProbeResult(False, method, None, f"{where} {verb}: no answer within {timeout:.1f}s")
    except ConnectionRefusedError:
        return ProbeResult(False, method, None, f"{where} refused")
    except (OSError, ValueError, ssl.SSLError) as err:
        detail = getattr(err, "strerror", None) or str(err) or type(err).__name__
        return ProbeResult(False, method, None, f"{where} {verb} failed: {detail}")
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 0.5)
    rtt = (time.monotonic() - start) * 1000
    text = line.decode("latin-1").strip()
    parts = text.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith(protocol) or not parts[1].isdigit():
        shown = text[:40] or "nothing"
        return ProbeResult(
            False, method, None, f"{where} {verb}: not a {protocol[:-1]} reply ({shown!r})"
        )
    code = int(parts[1])
    if code >= 500:
        return ProbeResult(False, method, None, f"{where} {verb} -> {code}")
    return ProbeResult(True, method, rtt, f"{where} {verb} -> {code} in {rtt:.1f} ms")
