"""A fault proxy between a stream check and a real RTSP server (asyncio, loopback only).

It understands just enough RTSP to break it on purpose: client requests are whole text
messages (the check never sends frames); the server's bytes are split into RTSP replies
and ``$`` interleaved frames. Modes:

- ``pass``: everything passes (counts sessions and requests).
- ``frozen``: RTSP replies pass, every ``$`` frame is dropped (the camera that answers
  everything but sends no video).
- ``drip``: the server's bytes reach the client one byte every ``drip_s`` seconds.
- ``huge-body``: the reply to DESCRIBE is ``Content-Length: 10 MB`` and 10 MB of body.
- ``huge-headers``: the reply to DESCRIBE is 10 MB of header lines.
- ``long-line``: the reply to DESCRIBE is 10 MB without a line break.
- ``garbage``: after PLAY, the real frames are replaced by ``$`` frames on channel 0
  whose payload is not RTP (version 0).
- ``garbage-raw``: after PLAY, raw bytes that are not frames at all.
- ``noplay``: PLAY is swallowed: never forwarded, never answered.
- ``wrong-cseq``: the DESCRIBE reply carries another CSeq.

The proxy records, for the tests: the most client connections open at once, each request's
method (TEARDOWN included), and how many bytes it sent to clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re

TEN_MB = 10 * 1024 * 1024
MODES = (
    "pass",
    "frozen",
    "drip",
    "huge-body",
    "huge-headers",
    "long-line",
    "garbage",
    "garbage-raw",
    "noplay",
    "wrong-cseq",
)


class FaultProxy:
    """``async with FaultProxy(upstream_port, mode) as proxy``: listens on ``proxy.port``."""

    def __init__(self, upstream_port: int, mode: str = "pass", drip_s: float = 0.05) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.upstream_port = upstream_port
        self.mode = mode
        self.drip_s = drip_s
        self.port = 0
        self.open = 0
        self.max_open = 0
        self.methods: list[str] = []
        self.sent_to_clients = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):  # the client handlers end on their own then
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        for task in list(self._tasks):
            task.cancel()
        await self._server.wait_closed()

    def url(self, path: str = "/test") -> str:
        return f"rtsp://127.0.0.1:{self.port}{path}"

    async def _client(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self._writers.add(cwriter)
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        state = {"play": False, "cseq_describe": ""}
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            try:
                down = asyncio.create_task(self._down(ureader, cwriter, state))
                try:
                    await self._up(creader, uwriter, cwriter, state)
                finally:
                    down.cancel()
                    with contextlib.suppress(BaseException):
                        await down
            finally:
                uwriter.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            cwriter.close()
            self._writers.discard(cwriter)
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def _up(
        self,
        creader: asyncio.StreamReader,
        uwriter: asyncio.StreamWriter,
        cwriter: asyncio.StreamWriter,
        state: dict[str, object],
    ) -> None:
        """Client -> server, one request at a time."""
        while True:
            try:
                head = await creader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            method = head.split(b" ", 1)[0].decode("latin-1")
            self.methods.append(method)
            m = re.search(rb"(?im)^CSeq:\s*(\d+)", head)
            cseq = m.group(1).decode() if m else "0"
            if method == "DESCRIBE":
                state["cseq_describe"] = cseq
            if method == "DESCRIBE" and self.mode in ("huge-body", "huge-headers", "long-line"):
                await self._huge(cwriter, cseq)
                return
            if method == "PLAY":
                if self.mode == "noplay":
                    continue  # swallowed
                state["play"] = True
            uwriter.write(head)
            await uwriter.drain()

    async def _huge(self, cwriter: asyncio.StreamWriter, cseq: str) -> None:
        if self.mode == "huge-body":
            cwriter.write(
                f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Type: application/sdp\r\n"
                f"Content-Length: {TEN_MB}\r\n\r\n".encode()
            )
            chunk = b"a=x-pad:" + b"x" * 1015 + b"\n"
        elif self.mode == "huge-headers":
            cwriter.write(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n".encode())
            chunk = b"X-Pad: " + b"y" * 1015 + b"\r\n"
        else:
            cwriter.write(b"RTSP/1.0 200 OK")
            chunk = b"z" * 1024
        for _ in range(TEN_MB // len(chunk)):
            cwriter.write(chunk)
            self.sent_to_clients += len(chunk)
            await cwriter.drain()  # raises once the client has gone

    async def _down(
        self,
        ureader: asyncio.StreamReader,
        cwriter: asyncio.StreamWriter,
        state: dict[str, object],
    ) -> None:
        """Server -> client, message by message."""
        buf = bytearray()
        while True:
            msg = await self._message(ureader, buf)
            if msg is None:
                return
            if msg[:1] == b"$":
                if self.mode == "frozen":
                    continue
                if self.mode in ("garbage", "garbage-raw") and state["play"]:
                    msg = self._garbage()
            elif self.mode == "wrong-cseq" and state["cseq_describe"]:
                wanted = f"CSeq: {state['cseq_describe']}\r\n".encode()
                if wanted in msg:
                    msg = msg.replace(
                        wanted, f"CSeq: {int(state['cseq_describe']) + 100}\r\n".encode()
                    )  # type: ignore[call-overload]
                    state["cseq_describe"] = ""
            if self.mode == "drip":
                for i in range(len(msg)):
                    cwriter.write(msg[i : i + 1])
                    self.sent_to_clients += 1
                    await cwriter.drain()
                    await asyncio.sleep(self.drip_s)
                continue
            cwriter.write(msg)
            self.sent_to_clients += len(msg)
            await cwriter.drain()

    def _garbage(self) -> bytes:
        payload = bytes([0x00]) + os.urandom(499)  # version 0: not RTP
        if self.mode == "garbage":
            return b"$\x00" + len(payload).to_bytes(2, "big") + payload
        return b"\x17\x03" + os.urandom(300)  # no "$", no "RTSP/"

    @staticmethod
    async def _message(reader: asyncio.StreamReader, buf: bytearray) -> bytes | None:
        """The next whole reply or frame from the server; None at its end."""
        while True:
            if buf[:1] == b"$" and len(buf) >= 4:
                size = 4 + int.from_bytes(buf[2:4], "big")
                if len(buf) >= size:
                    msg = bytes(buf[:size])
                    del buf[:size]
                    return msg
            elif buf and buf[:1] != b"$":
                end = buf.find(b"\r\n\r\n")
                if end >= 0:
                    m = re.search(rb"(?im)^Content-Length:\s*(\d+)", bytes(buf[:end]))
                    size = end + 4 + (int(m.group(1)) if m else 0)
                    if len(buf) >= size:
                        msg = bytes(buf[:size])
                        del buf[:size]
                        return msg
            data = await reader.read(65536)
            if not data:
                return None
            buf += data
