"""Stream health: one check that video flows from a camera (method ``stream``).

RTSP 1.0 over one TCP connection, as PRODUCT.md "Stream health" describes it:
``DESCRIBE`` (``Accept: application/sdp``) -> the first video media of the SDP ->
``SETUP`` with ``RTP/AVP/TCP;unicast;interleaved=0-1`` -> ``PLAY`` -> success when the
first RTP packet of that media's channel arrives -> ``TEARDOWN`` (best effort, bounded) ->
close. Basic and Digest (MD5, SHA-256, their ``-sess`` forms; ``qop=auth`` or none)
answer a 401 challenge, one retry per request.

Everything read is capped (a header line, the number of headers, a reply body, the bytes
of the whole check) and the whole check has one deadline, so a hostile or broken server
costs one bounded check and a reason that names the step. Video is never decoded: the
check stops reading at the first RTP header. The reasons show the URL without its
credentials (and without password-like query values); text from the server in a reason is
made printable and short.

Standard library only, and of this project only ``model.digest`` (the Basic and Digest
answers, shared with the smart-plug client).
The number of checks at once is the caller's: :class:`StreamLimiter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import time
import urllib.parse
from dataclasses import dataclass, field

from pumaguard_hb.model.digest import Auth, parse_challenges

DEFAULT_PORT = 554
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONCURRENCY = 4
MAX_LINE = 4096  # one status or header line
MAX_HEADERS = 64  # header lines in one reply
MAX_BODY = 32 * 1024  # a reply body (the SDP; real ones are 0.3-2 KB)
MAX_BYTES = 256 * 1024  # everything read in one check
MAX_FRAME = 0xFFFF  # an interleaved frame (its length field is 16 bits)
RTP_HEADER = 12
TEARDOWN_TIMEOUT = 1.0  # waiting for the TEARDOWN reply, after the verdict
RECV_CHUNK = 16 * 1024
USER_AGENT = "pumaguard-heartbeat-stream/1"

#: Steps, in order; ``StreamResult.step`` is the last one that succeeded.
STEPS = ("", "connect", "DESCRIBE", "SETUP", "PLAY", "RTP")

_SECRET_QUERY = re.compile(r"pass|pwd|user|token|key|auth|secret|sig|cred", re.IGNORECASE)


@dataclass(frozen=True)
class StreamResult:
    """The outcome of one stream check.

    ``step`` is the last step that succeeded (see :data:`STEPS`: ``"RTP"`` when video
    flows, ``"PLAY"`` for a frozen stream); ``rtt_ms`` the time of the DESCRIBE exchange
    that got the SDP; ``first_packet_ms`` the time from the start of the check (connect
    included) to the first RTP packet; ``bytes_read`` everything read from the socket.
    """

    reachable: bool
    step: str
    rtt_ms: float | None
    first_packet_ms: float | None
    reason: str
    bytes_read: int
    method: str = field(default="stream")


class _Fail(Exception):
    """A check that ends here: the text after ``stream URL``."""


def printable(text: str, limit: int = 60) -> str:
    """Text from a server, fit for a log line: printable ASCII only, at most ``limit``."""
    out = "".join(c if " " <= c <= "~" else "?" for c in text).strip()
    return out if len(out) <= limit else out[: limit - 3] + "..."


def redact_url(url: str) -> str:
    """The URL as reasons show it: no user or password, password-like query values as
    ``***``, printable and at most 200 characters."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        query = "&".join(
            f"{k}=***" if _SECRET_QUERY.search(k) else (f"{k}={v}" if v or "=" in pair else k)
            for pair in parts.query.split("&")
            if pair
            for k, _, v in [pair.partition("=")]
        )
        shown = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        shown = "(invalid URL)"
    return printable(shown, 200)


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    url: str  # the request URL: no credentials, no fragment
    username: str
    password: str = field(repr=False)


def _target(url: str, username: str, password: str) -> _Target:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError as err:
        raise _Fail(f"invalid URL ({printable(str(err), 40)})") from None
    if parts.scheme.lower() != "rtsp" or not parts.hostname:
        raise _Fail("not an rtsp:// URL with a host")
    if not username and parts.username:
        username = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
    if any(c in username + password for c in "\r\n\0"):
        raise _Fail("credentials contain a line break")
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    if any(c in clean for c in " \r\n\0"):
        raise _Fail("URL contains a space or a line break")
    return _Target(host, port, clean, username, password)


# ---------------------------------------------------------------- SDP and transport


def first_video_control(sdp: str) -> str | None:
    """The ``a=control`` of the SDP's first ``m=video`` media ("" when it has none);
    None when there is no video media."""
    in_video = False
    found = False
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if found:
                break
            in_video = line[2:].split(" ", 1)[0].lower() == "video"
            found = in_video
        elif in_video and line.startswith("a=control:"):
            return line[len("a=control:") :].strip()
    return "" if found else None


def control_url(base: str, control: str) -> str:
    """The URL of a media from its ``a=control`` and the base (Content-Base, then
    Content-Location, then the request URL); RFC 2326 C.1.1."""
    if not control or control == "*":
        return base
    if re.match(r"(?i)rtsps?://", control):
        return control
    if control.startswith("/"):
        parts = urllib.parse.urlsplit(base)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, control, "", ""))
    return base if base.endswith("/") and not control else (base.rstrip("/") + "/" + control)


def interleaved_channel(transport: str) -> int | None:
    """The RTP channel of a SETUP reply's ``Transport`` (``interleaved=N-M``), 0 when it
    names none; None when it is not RTP over TCP."""
    lower = transport.lower()
    if lower and "/tcp" not in lower.split(";", 1)[0] and "interleaved=" not in lower:
        return None
    m = re.search(r"interleaved=(\d{1,3})", lower)
    return int(m.group(1)) if m else 0


# ---------------------------------------------------------------- the connection


@dataclass
class _Reply:
    code: int
    phrase: str
    headers: dict[str, list[str]]
    body: bytes

    def get(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""


class _Conn:
    """One RTSP connection with a capped buffer: every byte read is counted."""

    def __init__(self, sock: socket.socket, target: _Target, max_bytes: int) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.target = target
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.read = 0
        self.cseq = 0
        self.session = ""
        self.rtp_channel = 0
        self.auth = Auth(target.username, target.password)
        self.rtp_seen = False  # an RTP header arrived on rtp_channel
        self.partial = False  # some bytes of the awaited reply arrived

    async def fill(self, what: str) -> None:
        room = self.max_bytes - self.read
        if room <= 0:
            raise _Fail(f"{what}: read {self.read} bytes, over the {self.max_bytes}-byte cap")
        data = await self.loop.sock_recv(self.sock, min(RECV_CHUNK, room))
        if not data:
            raise _Fail(f"{what}: connection closed by the camera")
        self.read += len(data)
        self.buf += data

    async def send(self, method: str, url: str, extra: dict[str, str]) -> int:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}", f"User-Agent: {USER_AGENT}"]
        if self.session:
            lines.append(f"Session: {self.session}")
        auth = self.auth.header(method, url)
        if auth:
            lines.append(f"Authorization: {auth}")
        lines += [f"{k}: {v}" for k, v in extra.items()]
        await self.loop.sock_sendall(self.sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
        return self.cseq

    async def skip_frame(self, what: str) -> None:
        """Read past one interleaved frame at the start of the buffer (noting RTP)."""
        while len(self.buf) < 4:
            await self.fill(what)
        channel, length = self.buf[1], struct.unpack("!H", self.buf[2:4])[0]
        if length > MAX_FRAME:  # cannot happen with 16 bits; kept as the stated cap
            raise _Fail(f"{what}: interleaved frame of {length} bytes")
        if channel == self.rtp_channel and length >= RTP_HEADER:
            while len(self.buf) < 4 + RTP_HEADER:
                await self.fill(what)
            if self.buf[4] >> 6 != 2:
                raise _Fail(
                    f"{what}: channel {channel} carried a frame that is not RTP "
                    f"(first byte 0x{self.buf[4]:02x})"
                )
            self.rtp_seen = True
        elif channel == self.rtp_channel:
            raise _Fail(f"{what}: channel {channel} carried a {length}-byte frame, not RTP")
        if self.rtp_seen and what == "RTP":
            return  # the verdict: no need for the rest of the frame
        need = 4 + length
        while len(self.buf) < need:
            need -= len(self.buf)
            self.buf.clear()
            await self.fill(what)
        del self.buf[:need]

    async def line(self, what: str) -> bytes:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                if end > MAX_LINE:
                    break
                line = bytes(self.buf[: end + 1])
                del self.buf[: end + 1]
                return line.rstrip(b"\r\n")
            if len(self.buf) > MAX_LINE:
                break
            await self.fill(what)
        raise _Fail(f"{what}: header line longer than {MAX_LINE} bytes")

    async def reply(self, what: str, cseq: int) -> _Reply:
        """The reply to request ``cseq``; interleaved frames before it are skipped."""
        self.partial = False
        while True:
            while not self.buf:
                await self.fill(what)
            if self.buf[0] == 0x24:  # "$": a frame (RTP may start before the PLAY reply)
                await self.skip_frame(what)
                continue
            break
        self.partial = True
        status = (await self.line(what)).decode("latin-1")
        parts = status.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("RTSP/") or not parts[1].isdigit():
            raise _Fail(f"{what}: not an RTSP reply ({printable(status, 40)!r})")
        headers: dict[str, list[str]] = {}
        for count in range(MAX_HEADERS + 1):
            raw = await self.line(what)
            if not raw:
                break
            if count == MAX_HEADERS:
                raise _Fail(f"{what}: more than {MAX_HEADERS} header lines")
            name, sep, value = raw.decode("latin-1").partition(":")
            if sep:
                headers.setdefault(name.strip().lower(), []).append(value.strip())
        length_text = (headers.get("content-length") or ["0"])[0]
        if not length_text.isdigit():
            raise _Fail(f"{what}: bad Content-Length {printable(length_text, 20)!r}")
        length = int(length_text)
        if length > MAX_BODY:
            raise _Fail(f"{what}: reply body of {length} bytes, over the {MAX_BODY}-byte cap")
        while len(self.buf) < length:
            await self.fill(what)
        body = bytes(self.buf[:length])
        del self.buf[:length]
        got = (headers.get("cseq") or [""])[0]
        if got and got != str(cseq):
            raise _Fail(f"{what}: reply for CSeq {printable(got, 12)}, expected {cseq}")
        return _Reply(
            int(parts[1]), printable(parts[2] if len(parts) > 2 else "", 40), headers, body
        )

    async def request(self, method: str, url: str, extra: dict[str, str]) -> _Reply:
        """One request, answering one 401 challenge with the credentials."""
        reply = await self.reply(method, await self.send(method, url, extra))
        if reply.code == 401 and self.auth.has_credentials:
            if self.auth.choose(parse_challenges(reply.headers.get("www-authenticate", []))):
                reply = await self.reply(method, await self.send(method, url, extra))
            else:
                raise _Fail(
                    f"{method} 401 unauthorized (no Basic or Digest challenge we can answer)"
                )
        if reply.code == 401:
            hint = "" if self.auth.has_credentials else " (no credentials set)"
            raise _Fail(f"{method} 401 unauthorized{hint}")
        if reply.code != 200:
            phrase = reply.phrase.lower() or "error"
            raise _Fail(f"{method} {reply.code} {phrase}")
        return reply


# ---------------------------------------------------------------- the check


async def check_stream(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    username: str = "",
    password: str = "",
    max_bytes: int = MAX_BYTES,
    teardown_timeout: float = TEARDOWN_TIMEOUT,
) -> StreamResult:
    """Prove that video flows from ``url`` within ``timeout`` seconds (connect to first RTP
    packet); never raises. The TEARDOWN after the verdict adds at most
    ``teardown_timeout``. Credentials in the URL are used when none are given."""
    shown = redact_url(url)
    try:
        target = _target(url, username, password)
        info = socket.getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
        )
        family, _, _, _, addr = info[0]
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    except _Fail as err:
        return StreamResult(False, "", None, None, f"stream {shown} {err}", 0)
    except (OSError, UnicodeError) as err:
        detail = printable(getattr(err, "strerror", None) or str(err), 60)
        return StreamResult(False, "", None, None, f"stream {shown} connect failed: {detail}", 0)
    run = _Check(_Conn(sock, target, max_bytes), timeout)
    try:
        ok, text = await run.run(addr)
        await _teardown(run.conn, run.base or target.url, min(teardown_timeout, timeout))
    finally:
        sock.close()
    first = run.first_ms if ok else None
    return StreamResult(ok, run.step, run.rtt_ms, first, f"stream {shown} {text}", run.conn.read)


class _Check:
    """The steps of one check on one connection, and how far they got."""

    def __init__(self, conn: _Conn, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self.step = ""  # the last step that succeeded
        self.doing = "connect"
        self.rtt_ms: float | None = None
        self.first_ms: float | None = None
        self.base = ""

    async def run(self, addr: tuple[object, ...]) -> tuple[bool, str]:
        """(video flows, the reason after ``stream URL``)."""
        timeout, conn = self.timeout, self.conn
        try:
            async with asyncio.timeout(timeout):
                await self._steps(addr)
        except TimeoutError:
            if self.doing == "connect":
                return False, f"connect timed out after {timeout:.1f}s"
            if self.doing == "RTP":
                return False, f"PLAY ok but no RTP packet in {timeout:.1f}s (video frozen)"
            if conn.partial:
                return False, f"{self.doing} reply not complete in {timeout:.1f}s"
            return False, f"{self.doing}: no reply in {timeout:.1f}s"
        except _Fail as err:
            text = str(err)
            if self.doing == "RTP":
                text = "PLAY ok but " + text.removeprefix("RTP: ")
            return False, text
        except ConnectionRefusedError:
            return False, "connect refused"
        except OSError as err:
            return False, f"{self.doing} failed: {printable(err.strerror or str(err), 60)}"
        return True, f"PLAY ok, first RTP {self.first_ms:.0f} ms"

    async def _steps(self, addr: tuple[object, ...]) -> None:
        conn, target = self.conn, self.conn.target
        start = time.monotonic()
        await conn.loop.sock_connect(conn.sock, addr)
        self.step, self.doing = "connect", "DESCRIBE"
        reply = await conn.request("DESCRIBE", target.url, {"Accept": "application/sdp"})
        self.rtt_ms = (time.monotonic() - start) * 1000
        kind = reply.get("content-type").split(";")[0].strip().lower()
        if kind and kind != "application/sdp":
            raise _Fail(f"DESCRIBE reply is {printable(kind, 40)}, not SDP")
        control = first_video_control(reply.body.decode("latin-1"))
        if control is None:
            raise _Fail("no video track in SDP")
        self.step, self.doing = "DESCRIBE", "SETUP"
        self.base = reply.get("content-base") or reply.get("content-location") or target.url
        media = control_url(self.base, control)
        if any(c in media for c in " \r\n\0"):
            raise _Fail(f"SDP control {printable(media, 40)!r} is not a URL")
        reply = await conn.request(
            "SETUP", media, {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        )
        session = reply.get("session").split(";")[0].strip()
        if not session or len(session) > 256 or not session.isprintable():
            raise _Fail("SETUP reply has no usable Session")
        channel = interleaved_channel(reply.get("transport"))
        if channel is None:
            raise _Fail("SETUP: the camera did not accept RTP over TCP")
        conn.session, conn.rtp_channel = session, channel
        self.step, self.doing = "SETUP", "PLAY"
        await conn.request("PLAY", self.base, {"Range": "npt=0.000-"})
        self.step, self.doing = "PLAY", "RTP"
        while not conn.rtp_seen:
            while not conn.buf:
                await conn.fill("RTP")
            if conn.buf[0] == 0x24:  # "$"
                await conn.skip_frame("RTP")
            elif conn.buf[0] == 0x52:  # "R": an RTSP reply (validated by reply())
                await conn.reply("RTP", conn.cseq)
            else:
                head = bytes(conn.buf[:4]).hex()
                raise _Fail(f"garbage instead of RTP frames (0x{head})")
        self.first_ms = (time.monotonic() - start) * 1000
        self.step = "RTP"


async def _teardown(conn: _Conn, url: str, timeout: float) -> None:
    """Best effort, bounded: send TEARDOWN, close our side (FIN), and read on until its
    reply or the camera's close, so that the camera reads the TEARDOWN before the
    connection ends (a close with unread data is a reset, which can discard it)."""
    if not conn.session:
        return
    mark = re.compile(rb"(?i)\nCSeq:[ \t]*%d[ \t]*\r?\n" % (conn.cseq + 1))
    with contextlib.suppress(_Fail, OSError, TimeoutError, ValueError):
        async with asyncio.timeout(timeout):
            await conn.send("TEARDOWN", url, {})
            conn.session = ""
            conn.sock.shutdown(socket.SHUT_WR)
            window = bytes(conn.buf[-4096:])
            conn.buf.clear()
            while not mark.search(window):  # the reply (frames before it are not parsed)
                await conn.fill("TEARDOWN")
                window = window[-64:] + bytes(conn.buf)
                conn.buf.clear()
    conn.session = ""


class StreamLimiter:
    """At most ``limit`` stream checks at once (a Pi cannot pull 50 streams at once); the
    time spent waiting for a turn is not part of a check's timeout."""

    def __init__(self, limit: int = DEFAULT_CONCURRENCY) -> None:
        if limit < 1:
            raise ValueError("the stream concurrency must be at least 1")
        self.limit = limit
        self._semaphore = asyncio.Semaphore(limit)
        self.running = 0

    async def check(
        self, url: str, *, timeout: float, username: str = "", password: str = ""
    ) -> StreamResult:
        """:func:`check_stream` when a turn is free."""
        async with self._semaphore:
            self.running += 1
            try:
                return await check_stream(
                    url, timeout=timeout, username=username, password=password
                )
            finally:
                self.running -= 1


async def check_stream_limited(
    semaphore: asyncio.Semaphore,
    url: str,
    *,
    timeout: float,
    username: str = "",
    password: str = "",
) -> StreamResult:
    """:func:`check_stream` under the caller's semaphore (its waiting time not counted)."""
    async with semaphore:
        return await check_stream(url, timeout=timeout, username=username, password=password)
