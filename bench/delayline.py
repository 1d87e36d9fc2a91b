"""A user-space delay line: requests to chosen lab cameras arrive ``delay`` seconds late.

The lab's veth has a round trip of a few microseconds; a camera on Wi-Fi or a long
cable has milliseconds. The kernels this runs on often lack ``sch_netem``, so this does
what ``tc ... netem delay`` would for the request direction: in the prober namespace
the chosen camera addresses are routed (as /32s, more specific than the lab's /16) into
a TUN device; a thread of this process reads each packet and writes it, ``delay`` later,
into a second TUN device in the cameras namespace, where the kernel delivers it to the
camera address as if it had come over the wire. Replies take the lab's veth back, so
the round trip is ``delay`` plus the veth's. TCP handshakes and ICMP echoes both see it.

Only packets routed into the TUN device by this module (lab camera addresses) pass
through it; closing the TUN devices removes them and their routes.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import selectors
import struct
import threading
import time
from collections.abc import Sequence

from netlab import PROBER_LINK4, Lab, run_in_netns

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_QUEUED = 100_000  # packets held at once; more are dropped (a bounded delay line)


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def _no_rp_filter(dev: str) -> None:
    for key in ("all", "default", dev):
        with open(f"/proc/sys/net/ipv4/conf/{key}/rp_filter", "w") as fh:
            fh.write("0\n")


class DelayLine:
    """Delay every packet from the prober to ``ips`` by ``delay`` seconds; use with ``with``."""

    def __init__(self, lab: Lab, ips: Sequence[str], delay: float) -> None:
        self.delay = delay
        self.moved = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._fds: list[int] = []
        self._thread: threading.Thread | None = None
        try:
            self._fds.append(run_in_netns(lab.prober, lambda: _open_tun("phb-delay0")))
            self._fds.append(run_in_netns(lab.cameras, lambda: _open_tun("phb-delay1")))
            routes = "".join(f"route add {ip}/32 dev phb-delay0 src {PROBER_LINK4}\n" for ip in ips)
            lab.run(["ip", "link", "set", "phb-delay0", "up"], check=True, timeout=30)
            lab.run(["ip", "-batch", "-"], input=routes, text=True, check=True, timeout=30)
            lab.run(["ip", "link", "set", "phb-delay1", "up"], ns=lab.cameras, check=True,
                    timeout=30)  # fmt: skip
            run_in_netns(lab.cameras, lambda: _no_rp_filter("phb-delay1"))
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._relay, name="delayline", daemon=True)
        self._thread.start()

    def __enter__(self) -> DelayLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop relaying and delete both TUN devices (and with them the routes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    def _relay(self) -> None:
        src, dst = self._fds
        queue: list[tuple[float, int, bytes]] = []
        seq = 0
        with selectors.DefaultSelector() as sel:
            sel.register(src, selectors.EVENT_READ)
            while not self._stop.is_set():
                now = time.monotonic()
                while queue and queue[0][0] <= now:
                    _, _, packet = heapq.heappop(queue)
                    with contextlib.suppress(OSError):
                        os.write(dst, packet)
                        self.moved += 1
                wait = 0.05 if not queue else max(0.0, queue[0][0] - time.monotonic())
                if not sel.select(min(wait, 0.05)):
                    continue
                for _ in range(4096):  # drain what is there, bounded
                    try:
                        packet = os.read(src, 65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        return
                    if len(queue) >= MAX_QUEUED:
                        self.dropped += 1
                        continue
                    seq += 1
                    heapq.heappush(queue, (time.monotonic() + self.delay, seq, packet))
