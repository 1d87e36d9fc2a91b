"""What a stream check costs, beside an RTSP OPTIONS check of the same server.

    .venv/bin/python bench/bench_stream.py [--runs 30]
    .venv-debian/bin/python bench/bench_stream.py [--runs 30]

Against a real gst-rtsp-server on loopback (tests/rtsp_server.py, run by /usr/bin/python3):

- per check: CPU time of the checking thread (``time.thread_time``: the fault proxy runs in
  its own thread and the server in its own process, so neither is counted), bytes read,
  and wall time to the verdict;
- stream checks of ``/test`` (160x120 JPEG, 10 fps), ``/hd`` (960x540 JPEG, 25 fps: its
  bit rate is measured and printed) with Digest auth, and a frozen ``/hd`` (the fault
  proxy drops every RTP frame after PLAY; its verdict takes the whole timeout);
- the ``rtsp`` method's OPTIONS check (pumaguard_hb.probes.http.probe_request) of the same server.

Goal (issue 23): <= 20 ms CPU and <= 256 KB read per stream check. Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from rtsp_faults import FaultProxy  # noqa: E402
from rtsp_server import PASSWORD, USER, RtspServer  # noqa: E402

from pumaguard_hb.probes.http import probe_request  # noqa: E402
from pumaguard_hb.probes.stream import check_stream  # noqa: E402

GOAL_CPU_MS = 20.0
GOAL_BYTES = 256 * 1024


class ProxyThread:
    """A FaultProxy on its own event loop in its own thread (its CPU is not the check's)."""

    def __init__(self, upstream: int, mode: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.proxy = FaultProxy(upstream, mode)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.__aenter__(), self.loop).result(30)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.__aexit__(None), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


def measure(runs: int, check: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    cpu, wall, reads, oks = [], [], [], 0

    async def main() -> None:
        nonlocal oks
        for _ in range(runs):
            c0, w0 = time.thread_time(), time.monotonic()
            result = await check()
            cpu.append((time.thread_time() - c0) * 1000)
            wall.append((time.monotonic() - w0) * 1000)
            reads.append(getattr(result, "bytes_read", -1))  # -1: OPTIONS does not count
            oks += bool(result.reachable)

    asyncio.run(main())
    return {
        "cpu_ms": statistics.median(cpu),
        "cpu_max": max(cpu),
        "wall_ms": statistics.median(wall),
        "bytes": statistics.median(reads),
        "bytes_max": max(reads),
        "ok": f"{oks}/{runs}",
    }


def bitrate(url: str, seconds: float = 3.0) -> float:
    """The stream's bit rate: a full RTSP session read for ``seconds`` (Mbit/s)."""

    async def main() -> float:
        import re

        host, port = re.match(r"rtsp://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection(host, int(port))

        async def ask(text: str) -> str:
            writer.write(text.encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            m = re.search(r"(?i)content-length:\s*(\d+)", head)
            body = await reader.readexactly(int(m.group(1))) if m else b""
            return head + body.decode("latin-1")

        sdp = await ask(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        base = re.search(r"(?i)content-base:\s*(\S+)", sdp).group(1)  # type: ignore[union-attr]
        control = re.search(r"a=control:(\S+)", sdp.split("m=video", 1)[1]).group(1)  # type: ignore[union-attr]
        setup = await ask(
            f"SETUP {base.rstrip('/')}/{control} RTSP/1.0\r\nCSeq: 2\r\n"
            "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        )
        session = re.search(r"(?i)session:\s*([^;\r\n]+)", setup).group(1)  # type: ignore[union-attr]
        writer.write(f"PLAY {base} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n".encode())
        got, end = 0, time.monotonic() + seconds
        start = time.monotonic()
        while time.monotonic() < end:
            got += len(await reader.read(65536))
        took = time.monotonic() - start
        writer.write(f"TEARDOWN {base} RTSP/1.0\r\nCSeq: 4\r\nSession: {session}\r\n\r\n".encode())
        writer.close()
        return got * 8 / took / 1e6

    return asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--frozen-runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    server = RtspServer()
    frozen = None
    try:
        none, digest = server.ports["none"], server.ports["digest"]
        hd = server.url("digest", "/hd")
        print(f"python {sys.version.split()[0]} ({sys.executable})")
        print(f"/hd stream: {bitrate(server.url('none', '/hd')):.2f} Mbit/s on the wire")
        frozen = ProxyThread(digest, "frozen")
        rows = [
            (
                "stream /test (none)",
                measure(args.runs, lambda: check_stream(server.url(), timeout=args.timeout)),
            ),
            (
                "stream /hd (Digest)",
                measure(
                    args.runs,
                    lambda: check_stream(
                        hd, timeout=args.timeout, username=USER, password=PASSWORD
                    ),
                ),
            ),
            (
                "stream /hd frozen",
                measure(
                    args.frozen_runs,
                    lambda: check_stream(
                        frozen.proxy.url("/hd"),  # type: ignore[union-attr]
                        timeout=args.timeout,
                        username=USER,
                        password=PASSWORD,
                    ),
                ),
            ),
            (
                "rtsp OPTIONS",
                measure(args.runs, lambda: probe_request("rtsp", "127.0.0.1", none, args.timeout)),
            ),
        ]
    finally:
        if frozen is not None:
            frozen.close()
        server.close()
    print(
        f"{'check':22} {'ok':>6} {'CPU ms':>8} {'CPU max':>8} {'read B':>8} {'max B':>8} "
        f"{'verdict ms':>11}"
    )
    for name, r in rows:
        read = "-" if r["bytes"] < 0 else f"{r['bytes']:.0f}"
        most = "-" if r["bytes_max"] < 0 else f"{r['bytes_max']:.0f}"
        print(
            f"{name:22} {r['ok']:>6} {r['cpu_ms']:8.2f} {r['cpu_max']:8.2f} "
            f"{read:>8} {most:>8} {r['wall_ms']:11.1f}"
        )
    options = rows[-1][1]
    for name, r in rows[:-1]:
        print(
            f"{name}: {r['cpu_ms'] / options['cpu_ms']:.1f}x the CPU of OPTIONS, "
            f"{r['wall_ms'] / options['wall_ms']:.0f}x its time to a verdict"
        )
    worst_cpu = max(r["cpu_ms"] for _, r in rows[:-1])
    worst_bytes = max(r["bytes_max"] for _, r in rows[:-1])
    print(
        f"goal <= {GOAL_CPU_MS:.0f} ms CPU: median worst {worst_cpu:.2f} ms "
        f"({'met' if worst_cpu <= GOAL_CPU_MS else 'MISSED'}); "
        f"<= {GOAL_BYTES // 1024} KB read: max {worst_bytes / 1024:.1f} KB "
        f"({'met' if worst_bytes <= GOAL_BYTES else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
