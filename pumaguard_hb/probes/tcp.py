"""The tcp probe: a TCP connect, its address family and its endpoint in a reason."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from pumaguard_hb.model.probing import ProbeResult


def sockaddr(ip: str, port: int) -> tuple[int, tuple[object, ...]]:
    """Address family and socket address for a numeric IP (IPv6 zones included)."""
    info = socket.getaddrinfo(ip, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    family, _, _, _, addr = info[0]
    return family, addr


def endpoint(ip: str, port: int) -> str:
    """``ip:port`` with brackets for IPv6, as log lines show it."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


async def probe_tcp(ip: str, port: int, timeout: float) -> ProbeResult:
    """Try a TCP connection to ``ip:port``; never raises."""
    where = f"tcp {endpoint(ip, port)}"
    loop = asyncio.get_running_loop()
    try:
        family, addr = sockaddr(ip, port)
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    except OSError as err:
        return ProbeResult(False, "tcp", None, f"{where} failed: {err.strerror or err}")
    try:
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, addr)
        except TimeoutError:
            return ProbeResult(False, "tcp", None, f"{where} timed out after {timeout:.1f}s")
        except ConnectionRefusedError:
            return ProbeResult(False, "tcp", None, f"{where} refused")
        except OSError as err:
            return ProbeResult(False, "tcp", None, f"{where} failed: {err.strerror or err}")
        rtt = (time.monotonic() - start) * 1000
        # reset instead of a FIN: the camera gets no half-open socket, we keep no TIME_WAIT
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return ProbeResult(True, "tcp", rtt, f"{where} connected in {rtt:.1f} ms")
    finally:
        sock.close()
