"""The ICMP method: echo requests to many cameras at once through one icmplib socket.

One socket per address family sends every request of a sweep and collects the
replies, like fping does; replies are matched on identifier, sequence and source
address, so concurrent sweeps or other ping programs cannot make a silent
camera look alive. Only icmplib's socket API is used, which icmplib 2.1
(Debian's) and 3.x share.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from icmplib import ICMPRequest, ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import ICMPLibError, SocketPermissionError, TimeoutExceeded

from pumaguard_hb.model.probing import ProbeResult

log = logging.getLogger(__name__)

BATCH = 64  # requests sent before draining replies, so the receive buffer never overflows
POLL = 0.05  # longest blocking wait, so a cancel is seen quickly
ECHO_REPLY = {4: 0, 6: 129}
UNREACHABLE = {4: 3, 6: 1}


class IcmpMode(enum.Enum):
    """Which kind of ICMP socket this process may open."""

    PRIVILEGED = "privileged"
    UNPRIVILEGED = "unprivileged"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class IcmpAccess:
    """The ICMP mode found at start, and why ICMP is unavailable when it is."""

    mode: IcmpMode
    problem: str = ""


def detect_access() -> IcmpAccess:
    """Try a raw socket (CAP_NET_RAW), then the unprivileged datagram socket."""
    for privileged, mode in ((True, IcmpMode.PRIVILEGED), (False, IcmpMode.UNPRIVILEGED)):
        try:
            ICMPv4Socket(privileged=privileged).close()
            return IcmpAccess(mode)
        except SocketPermissionError:
            continue
        except (ICMPLibError, OSError) as err:
            log.debug("ICMP socket (privileged=%s) failed: %s", privileged, err)
    return IcmpAccess(
        IcmpMode.UNAVAILABLE,
        "ICMP not permitted: no CAP_NET_RAW and net.ipv4.ping_group_range excludes this "
        "process's group; cameras are checked by TCP instead",
    )


def _family(ip: str) -> int:
    return 6 if ":" in ip else 4


def _bare(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(ip.split("%", 1)[0])


def ping_many(
    ips: Iterable[str],
    timeout: float,
    privileged: bool,
    count: int = 1,
    cancel: threading.Event | None = None,
    spacing: float = 0.2,
    report: Callable[[str, ProbeResult], None] | None = None,
) -> dict[str, ProbeResult]:
    """Send ``count`` echo requests to each address and wait up to ``timeout`` for a reply.

    Blocking; run it in a worker thread. Returns a result per address, and hands
    each reply to ``report`` (from this thread) the moment it arrives; when
    ``cancel`` is set it returns early with what it has (unanswered addresses
    missing).
    """
    cancel = cancel or threading.Event()
    targets = sorted(set(ips))
    results = _Results(report)
    for fam in (4, 6):
        group = [ip for ip in targets if _family(ip) == fam]
        for start in range(0, len(group), 60000 // count):
            chunk = group[start : start + 60000 // count]
            _ping_family(fam, chunk, timeout, privileged, count, cancel, spacing, results)
    return dict(results)


class _Results(dict[str, ProbeResult]):
    """Results by address; each one is also reported as soon as it is known."""

    def __init__(self, report: Callable[[str, ProbeResult], None] | None) -> None:
        super().__init__()
        self.report = report

    def __setitem__(self, ip: str, result: ProbeResult) -> None:
        super().__setitem__(ip, result)
        if self.report is not None:
            self.report(ip, result)


def _ping_family(
    fam: int,
    targets: list[str],
    timeout: float,
    privileged: bool,
    count: int,
    cancel: threading.Event,
    spacing: float,
    results: _Results,
) -> None:
    if not targets:
        return
    cls = ICMPv4Socket if fam == 4 else ICMPv6Socket
    try:
        sock = cls(privileged=privileged)
    except (ICMPLibError, OSError) as err:
        for ip in targets:
            results[ip] = ProbeResult(False, "icmp", None, f"icmp socket failed: {err}")
        return
    try:
        raw = getattr(sock, "_sock", None)
        if isinstance(raw, socket.socket):
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        ident = random.randrange(1, 0xFFFF)
        pending: dict[tuple[int, int], tuple[str, ICMPRequest]] = {}
        bare = {ip: _bare(ip) for ip in targets}
        seq = 0
        last_send = time.monotonic()
        for round_ in range(count):
            if round_:
                _receive(sock, fam, pending, bare, results, time.monotonic() + spacing, cancel)
            for n, ip in enumerate(targets):
                if ip in results:
                    continue
                request = ICMPRequest(destination=ip, id=ident, sequence=seq)
                seq += 1
                try:
                    sock.send(request)
                except (ICMPLibError, OSError) as err:
                    results[ip] = ProbeResult(False, "icmp", None, f"icmp {ip} send failed: {err}")
                    continue
                pending[(request.id, request.sequence)] = (ip, request)
                if n % BATCH == BATCH - 1:
                    _receive(sock, fam, pending, bare, results, 0.0, cancel)
            last_send = time.monotonic()
        _receive(sock, fam, pending, bare, results, last_send + timeout, cancel)
        # replies already queued count even if this thread was slow to look (a busy machine)
        _receive(sock, fam, pending, bare, results, 0.0, cancel)
        if cancel.is_set():
            return
        for ip in targets:
            if ip not in results:
                reason = f"icmp {ip} no reply within {timeout:.1f}s"
                results[ip] = ProbeResult(False, "icmp", None, reason)
    finally:
        sock.close()


def _receive(
    sock: ICMPv4Socket | ICMPv6Socket,
    fam: int,
    pending: dict[tuple[int, int], tuple[str, ICMPRequest]],
    bare: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address],
    results: _Results,
    until: float,
    cancel: threading.Event,
) -> None:
    """Collect replies until ``until`` (monotonic), or only what is queued when it is 0."""
    waiting = {ip for ip, _ in pending.values()} - set(results)
    raw = getattr(sock, "_sock", None)
    while waiting and not cancel.is_set():
        wait = 0.0 if until == 0.0 else min(POLL, until - time.monotonic())
        if wait < 0:
            return
        if isinstance(raw, socket.socket):
            # Wait here, not inside icmplib: its receive() throws away a packet it read just
            # after its own deadline, which on a busy machine loses replies that did arrive.
            if not select.select([raw], [], [], wait)[0]:
                if until == 0.0:
                    return
                continue
            wait = 5.0  # a reply is queued: receive() returns it at once
        try:
            reply = sock.receive(None, max(wait, 0.0005))
        except TimeoutExceeded:
            if until == 0.0:
                return
            continue
        except (ICMPLibError, OSError) as err:
            log.debug("icmp receive failed: %s", err)
            return
        match = pending.get((reply.id, reply.sequence))
        if match is None:
            continue
        ip, request = match
        if ip in results:
            continue
        try:
            source_ok = _bare(reply.source) == bare[ip]
        except ValueError:
            source_ok = False
        if reply.type == ECHO_REPLY[fam] and source_ok:
            rtt = max(0.0, (reply.time - request.time) * 1000)
            results[ip] = ProbeResult(True, "icmp", rtt, f"icmp {ip} replied in {rtt:.1f} ms")
            waiting.discard(ip)
        elif reply.type == UNREACHABLE[fam]:
            results[ip] = ProbeResult(
                False, "icmp", None, f"icmp {ip} destination unreachable (from {reply.source})"
            )
            waiting.discard(ip)
