"""The stream check (pumaguard_hb/probes/stream.py) against a real RTSP server and faults.

The server is GStreamer's gst-rtsp-server (tests/rtsp_server.py, run by Debian's
/usr/bin/python3 so both venvs can test against it), with no auth, Basic and Digest. The
fault proxy (tests/rtsp_faults.py) sits between the check and that server. Without
GStreamer the server tests skip, and a skip fails the run under --hb-ci / CI (it is not in
tests/parallel.py ALLOWED_SKIPS): ``./dev`` installs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time

import pytest
from harness import wait_for
from rtsp_faults import FaultProxy
from rtsp_fixture import rtsp as rtsp  # the fixture, shared by the stream tests
from rtsp_server import PASSWORD, USER, RtspServer

from pumaguard_hb.model.digest import Auth, digest_response, parse_challenges
from pumaguard_hb.probes import stream
from pumaguard_hb.probes.stream import (
    MAX_BYTES,
    StreamLimiter,
    check_stream,
    check_stream_limited,
    control_url,
    first_video_control,
    interleaved_channel,
    redact_url,
)

FAULT_TIMEOUT = 2.0
# generous for a loaded machine: the check's own deadline plus its TEARDOWN bound, and slack
BOUND = FAULT_TIMEOUT + stream.TEARDOWN_TIMEOUT + 20.0

# ---------------------------------------------------------------- pure functions


def test_digest_rfc7616_examples() -> None:
    """RFC 7616 section 3.9.1: the same request answered with MD5 and with SHA-256."""
    params = {
        "realm": "http-auth@example.org",
        "qop": "auth, auth-int",
        "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    }
    common = {
        "username": "Mufasa",
        "password": "Circle of Life",
        "method": "GET",
        "uri": "/dir/index.html",
        "nc": 1,
        "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    }
    md5 = digest_response({**params, "algorithm": "MD5"}, **common)  # type: ignore[arg-type]
    sha = digest_response({**params, "algorithm": "SHA-256"}, **common)  # type: ignore[arg-type]
    assert md5 is not None and 'response="8ca523f5e9506fed4657c9700eebdbec"' in md5
    assert sha is not None
    assert 'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"' in sha
    assert "qop=auth, nc=00000001" in sha and "algorithm=SHA-256" in sha
    assert "Circle of Life" not in md5 + sha


def test_digest_without_qop_is_rfc2069() -> None:
    """gst-rtsp-server's challenge: realm and nonce only, response = H(HA1:nonce:HA2)."""
    got = digest_response(
        {"realm": "r", "nonce": "n"},
        username="u",
        password="p",
        method="DESCRIBE",
        uri="rtsp://h/x",
        nc=1,
        cnonce="c",
    )
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    want = md5(f"{md5('u:r:p')}:n:{md5('DESCRIBE:rtsp://h/x')}")
    assert got is not None and f'response="{want}"' in got and "qop" not in got
    assert digest_response({"nonce": "n", "algorithm": "SHA-512"}, **_args()) is None
    assert digest_response({"nonce": "n", "qop": "auth-int"}, **_args()) is None


def _args() -> dict[str, object]:
    return {"username": "u", "password": "p", "method": "M", "uri": "/", "nc": 1, "cnonce": "c"}


def test_challenges_strongest_first() -> None:
    found = parse_challenges(
        [
            'Basic realm="cam"',
            'Digest realm="cam", nonce="a,b", algorithm=MD5, Digest realm="cam", '
            'nonce="z", algorithm=SHA-256, qop="auth"',
        ]
    )
    assert [s for s, _ in found] == ["basic", "digest", "digest"]
    assert found[1][1]["nonce"] == "a,b"
    auth = Auth("u", "p")
    assert auth.choose(found) and auth.scheme == "digest"
    header = auth.header("DESCRIBE", "rtsp://h/")
    assert header is not None and "algorithm=SHA-256" in header and 'nonce="z"' in header
    assert "p" not in repr(auth).replace("scheme", "")
    assert not Auth("u", "p").choose(parse_challenges(['Bearer realm="x"']))


def test_sdp_and_urls() -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\na=control:*\r\n"
        "m=audio 0 RTP/AVP 0\r\na=control:trackID=1\r\n"
        "m=video 0 RTP/AVP 26\r\na=rtpmap:26 JPEG/90000\r\na=control:trackID=2\r\n"
        "m=video 0 RTP/AVP 96\r\na=control:trackID=3\r\n"
    )
    assert first_video_control(sdp) == "trackID=2"
    assert first_video_control("v=0\nm=audio 0 RTP/AVP 0\na=control:a\n") is None
    assert first_video_control("v=0\nm=video 0 RTP/AVP 26\n") == ""
    base = "rtsp://10.0.0.5:554/live/ch0/"
    assert control_url(base, "trackID=2") == "rtsp://10.0.0.5:554/live/ch0/trackID=2"
    assert control_url("rtsp://h/s", "stream=0") == "rtsp://h/s/stream=0"
    assert control_url(base, "rtsp://h/other") == "rtsp://h/other"
    assert control_url(base, "/abs/t") == "rtsp://10.0.0.5:554/abs/t"
    assert control_url(base, "*") == base and control_url(base, "") == base
    assert interleaved_channel("RTP/AVP/TCP;unicast;interleaved=4-5") == 4
    assert interleaved_channel("RTP/AVP;unicast;client_port=5000-5001") is None
    assert interleaved_channel("") == 0


def test_redacted_url_hides_credentials() -> None:
    shown = redact_url("rtsp://admin:hunter2@192.168.1.9:554/cam?user=admin&password=hunter2&ch=1")
    assert shown == "rtsp://192.168.1.9:554/cam?user=***&password=***&ch=1"
    assert redact_url("rtsp://[fe80::1]/x\x1b[31m") == "rtsp://[fe80::1]/x?[31m"


async def _one_reply_server(reply: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with_suppress = await reader.readuntil(b"\r\n\r\n")
        assert with_suppress
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(30)  # hold the connection: the check must end on its own

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            b"RTSP/1.0 404 \x1b[2J\x1b]0;pwn\x07Gone\r\nCSeq: 1\r\n\r\n",
            r"DESCRIBE 404 \?\[2j\?\]0;pwn\?gone$",
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", r"DESCRIBE: not an RTSP reply \('HTTP/1.1 200 OK'\)$"),
        (b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: -5\r\n\r\n", r"bad Content-Length"),
        (b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Type: text/html\r\n\r\n", r"text/html, not SDP"),
    ],
)
def test_hostile_replies_make_printable_reasons(reply: bytes, reason: str) -> None:
    """Text from the camera reaches the reason printable and short (no escapes, no BEL)."""

    async def main() -> stream.StreamResult:
        server, port = await _one_reply_server(reply)
        async with server:
            return await check_stream(f"rtsp://127.0.0.1:{port}/x", timeout=10)

    result = asyncio.run(main())
    assert not result.reachable and result.step == "connect"
    assert re.search(reason, result.reason), result.reason
    assert result.reason.isprintable() and "\x1b" not in result.reason


def test_refused_and_bad_urls() -> None:
    async def main() -> list[stream.StreamResult]:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return [
            await check_stream(f"rtsp://127.0.0.1:{port}/", timeout=5),
            await check_stream("http://127.0.0.1/", timeout=5),
            await check_stream("rtsp://u:pw%0d%0aX:1@127.0.0.1/", timeout=5),
        ]

    refused, http, crlf = asyncio.run(main())
    assert refused.reason.endswith("/ connect refused") and refused.step == ""
    assert http.reason.endswith("not an rtsp:// URL with a host")
    assert crlf.reason.endswith("credentials contain a line break") and "pw" not in crlf.reason


# ---------------------------------------------------------------- against the real server




def _no_sessions(rtsp: RtspServer) -> None:
    wait_for(lambda: not any(rtsp.sessions().values()), timeout=20, step=0.2)


def _secret_free(result: stream.StreamResult) -> None:
    for text in (result.reason, repr(result)):
        assert PASSWORD not in text and "bad-guess" not in text and USER not in text


@pytest.mark.parametrize("auth", ["none", "basic", "digest"])
def test_healthy_stream(rtsp: RtspServer, auth: str) -> None:
    """Video flows: DESCRIBE, SETUP, PLAY, the first RTP packet, then TEARDOWN."""
    before = rtsp.events.count(f"{auth} teardown")
    result = asyncio.run(check_stream(rtsp.url(auth), timeout=15, username=USER, password=PASSWORD))
    assert result.reachable, result.reason
    assert result.step == "RTP" and result.first_packet_ms and result.rtt_ms
    assert re.fullmatch(
        r"stream rtsp://127\.0\.0\.1:\d+/test PLAY ok, first RTP \d+ ms", result.reason
    )
    assert 0 < result.bytes_read < 64 * 1024
    _secret_free(result)
    _no_sessions(rtsp)
    assert rtsp.events.count(f"{auth} teardown") == before + 1


def test_credentials_from_the_url(rtsp: RtspServer) -> None:
    url = rtsp.url("digest").replace("rtsp://", f"rtsp://{USER}:{PASSWORD}@")
    result = asyncio.run(check_stream(url, timeout=15))
    assert result.reachable, result.reason
    _secret_free(result)


@pytest.mark.parametrize("auth", ["basic", "digest"])
def test_wrong_password(rtsp: RtspServer, auth: str) -> None:
    result = asyncio.run(
        check_stream(rtsp.url(auth), timeout=15, username=USER, password="bad-guess")
    )
    assert not result.reachable and result.step == "connect"
    assert result.reason == f"stream {rtsp.url(auth)} DESCRIBE 401 unauthorized"
    _secret_free(result)
    nocreds = asyncio.run(check_stream(rtsp.url(auth), timeout=15))
    assert nocreds.reason.endswith("DESCRIBE 401 unauthorized (no credentials set)")


def test_no_video_track_and_not_found(rtsp: RtspServer) -> None:
    audio = asyncio.run(check_stream(rtsp.url("none", "/audio"), timeout=15))
    assert audio.reason == f"stream {rtsp.url('none', '/audio')} no video track in SDP"
    assert audio.step == "connect" and audio.rtt_ms is not None
    missing = asyncio.run(check_stream(rtsp.url("none", "/nope"), timeout=15))
    assert missing.reason.endswith("/nope DESCRIBE 404 not found")


FAULTS = [
    ("pass", r"PLAY ok, first RTP \d+ ms$", "RTP"),
    ("frozen", r"PLAY ok but no RTP packet in 2\.0s \(video frozen\)$", "PLAY"),
    ("drip", r"DESCRIBE reply not complete in 2\.0s$", "connect"),
    ("huge-body", r"DESCRIBE: reply body of 10485760 bytes, over the 32768-byte cap$", "connect"),
    ("huge-headers", r"DESCRIBE: more than 64 header lines$", "connect"),
    ("long-line", r"DESCRIBE: header line longer than 4096 bytes$", "connect"),
    ("garbage", r"PLAY ok but channel 0 carried a frame that is not RTP \(first byte 0x0", "PLAY"),
    ("garbage-raw", r"PLAY ok but garbage instead of RTP frames \(0x1703", "PLAY"),
    ("noplay", r"PLAY: no reply in 2\.0s$", "SETUP"),
    ("wrong-cseq", r"DESCRIBE: reply for CSeq 101, expected 1$", "connect"),
]


@pytest.mark.parametrize(("mode", "reason", "step"), FAULTS, ids=[f[0] for f in FAULTS])
def test_fault(rtsp: RtspServer, mode: str, reason: str, step: str) -> None:
    """Each fault costs one bounded check, a reason naming the step, and capped reads; a
    session the check opened is torn down."""

    async def main() -> tuple[stream.StreamResult, float, FaultProxy]:
        async with FaultProxy(rtsp.ports["digest"], mode) as proxy:
            start = time.monotonic()
            result = await check_stream(
                proxy.url(), timeout=FAULT_TIMEOUT, username=USER, password=PASSWORD
            )
            return result, time.monotonic() - start, proxy

    result, took, proxy = asyncio.run(main())
    assert re.search(reason, result.reason), result.reason
    assert result.reason.startswith(f"stream rtsp://127.0.0.1:{proxy.port}/test ")
    assert result.step == step and result.reachable == (mode == "pass")
    assert result.bytes_read <= MAX_BYTES
    assert took < BOUND
    if mode.startswith("huge") or mode == "long-line":
        assert proxy.sent_to_clients > result.bytes_read  # the proxy offered more than read
    if "SETUP" in proxy.methods:
        assert "TEARDOWN" in proxy.methods
    _secret_free(result)
    _no_sessions(rtsp)


def test_concurrency_limit(rtsp: RtspServer) -> None:
    """8 checks under a limit of 2: never more than 2 sessions at once, each torn down."""

    async def main(limit: int | None) -> tuple[list[stream.StreamResult], FaultProxy]:
        async with FaultProxy(rtsp.ports["none"]) as proxy:
            if limit is None:
                sem = asyncio.Semaphore(8)
                coros = [check_stream_limited(sem, proxy.url(), timeout=30) for _ in range(8)]
            else:
                limiter = StreamLimiter(limit)
                coros = [limiter.check(proxy.url(), timeout=30) for _ in range(8)]
            return list(await asyncio.gather(*coros)), proxy

    results, proxy = asyncio.run(main(2))
    assert all(r.reachable for r in results), [r.reason for r in results]
    assert proxy.max_open <= 2
    assert proxy.methods.count("TEARDOWN") == 8
    _no_sessions(rtsp)
    # the same 8 unlimited do overlap, so the bound above is the limiter's doing
    results, proxy = asyncio.run(main(None))
    assert all(r.reachable for r in results) and proxy.max_open > 2
    _no_sessions(rtsp)
