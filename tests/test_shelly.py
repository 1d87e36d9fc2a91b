"""The Shelly Gen2+ plug client (pumaguard_hb/devices/shelly.py) against the simulated plug
(tests/shelly_sim.py) and hostile servers on 127.0.0.1, and the simulated plug powering a
camera in network namespaces (tests/power_lab.py).

No timed assertions on speed: the machine is shared. Bounds are generous and only say
"within the timeout, not forever".
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from harness import wait_for
from netlab import Lab, lab_fixture, requires_root_netns, run_in_netns
from power_lab import PoweredCamera
from shelly_sim import MODEL, ShellyPlug

from pumaguard_hb.devices.shelly import (
    MAX_REPLY,
    Plug,
    PlugError,
    SwitchStatus,
    device_info,
    parse_plug,
    switch_set,
    switch_status,
)
from pumaguard_hb.model.errors import HeartbeatError, InvalidValue

T = TypeVar("T")
lab = lab_fixture()
MARGIN = 15.0  # slack on a loaded machine, on top of a call's own timeout


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def plugs() -> Iterator[Callable[..., ShellyPlug]]:
    """``make(**kw)``: a simulated plug on 127.0.0.1; every one is closed after the test."""
    made: list[ShellyPlug] = []

    def make(**kw: Any) -> ShellyPlug:
        made.append(ShellyPlug(**kw))
        return made[-1]

    try:
        yield make
    finally:
        for sim in made:
            sim.close()


# -- against the simulated plug ------------------------------------------------------------


def test_device_info_status_and_set_round_trip(plugs: Callable[..., ShellyPlug]) -> None:
    changes: list[bool] = []
    sim = plugs(on_power=changes.append)
    plug = Plug(sim.url)
    info = run(device_info(plug))
    assert (info["id"], info["gen"], info["model"]) == (sim.device_id, 3, MODEL)
    assert info["auth_en"] is False
    assert run(switch_status(plug)) == SwitchStatus(True, None)
    assert run(switch_set(plug, False)) is True
    assert run(switch_status(plug)) == SwitchStatus(False, None)
    assert run(switch_set(plug, False)) is False  # no change: no power event
    assert run(switch_set(plug, True)) is False
    assert run(switch_status(plug)).on is True
    assert changes == [False, True]
    sets = [params for method, params in sim.calls if method == "Switch.Set"]
    assert sets == [{"id": 0, "on": False}, {"id": 0, "on": False}, {"id": 0, "on": True}]


def test_toggle_after_puts_power_back_by_the_plugs_own_timer(
    plugs: Callable[..., ShellyPlug],
) -> None:
    changes: list[bool] = []
    sim = plugs(on_power=changes.append)
    plug = Plug(sim.url)
    assert run(switch_set(plug, False, toggle_after=1.5)) is True
    assert sim.calls[-1] == ("Switch.Set", {"id": 0, "on": False, "toggle_after": 1.5})
    status = run(switch_status(plug))
    if not status.on:  # (on a very slow machine the timer may already have run)
        assert status.timer_remaining is not None and 0 <= status.timer_remaining <= 1.5
    wait_for(lambda: sim.output, timeout=1.5 + MARGIN)
    assert run(switch_status(plug)) == SwitchStatus(True, None)
    assert changes == [False, True]
    assert sim.source == "timer"


def test_a_new_set_replaces_the_timer(plugs: Callable[..., ShellyPlug]) -> None:
    sim = plugs()
    plug = Plug(sim.url)
    run(switch_set(plug, False, toggle_after=60))
    assert run(switch_set(plug, True)) is False
    status = run(switch_status(plug))
    assert status == SwitchStatus(True, None)


def test_digest_sha256_with_the_right_password(plugs: Callable[..., ShellyPlug]) -> None:
    sim = plugs(password="hunter2 and more")
    plug = Plug(sim.url, password="hunter2 and more")
    assert run(switch_status(plug)).on is True
    assert run(switch_set(plug, False, toggle_after=30)) is True
    assert not sim.output
    # each call: once without credentials (401), once with the Digest answer
    assert sim.methods() == ["Switch.GetStatus"] * 2 + ["Switch.Set"] * 2
    assert run(device_info(Plug(sim.url)))["auth_en"] is True  # open, as on a real plug


def test_wrong_or_no_password(plugs: Callable[..., ShellyPlug]) -> None:
    sim = plugs(password="hunter2", protect_device_info=True)
    with pytest.raises(PlugError, match="password refused") as err:
        run(switch_set(Plug(sim.url, password="hunter3"), False))
    assert "hunter" not in str(err.value)
    assert sim.output is True  # not switched
    for call in (switch_status, device_info):
        with pytest.raises(PlugError, match="needs a password") as err:
            run(call(Plug(sim.url)))
        assert str(err.value).startswith(f"plug at {sim.url}: ")
        assert isinstance(err.value, HeartbeatError)


def test_json_rpc_post_form() -> None:
    with ShellyPlug(on=False) as sim:
        conn = http.client.HTTPConnection(sim.host, sim.port, timeout=10)
        try:
            request = {"id": 7, "method": "Switch.Set", "params": {"id": 0, "on": True}}
            conn.request("POST", "/rpc", json.dumps(request))
            resp = conn.getresponse()
            body = json.loads(resp.read())
        finally:
            conn.close()
        assert resp.status == 200
        assert body == {"id": 7, "src": sim.device_id, "result": {"was_on": False}}
        assert sim.output is True
        conn = http.client.HTTPConnection(sim.host, sim.port, timeout=10)
        try:
            conn.request("POST", "/rpc", json.dumps({"id": 8, "method": "Nope.Nope"}))
            body = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        assert body["id"] == 8 and body["error"]["code"] == 404


def test_over_ipv6() -> None:
    with ShellyPlug(socket.create_server(("::1", 0), family=socket.AF_INET6)) as sim:
        assert sim.url.startswith("http://[::1]:")
        plug = parse_plug(sim.url + "/?id=0")
        assert run(switch_set(plug, False)) is True
        assert run(switch_status(plug)).on is False


def test_a_hung_plug_ends_within_the_timeout(plugs: Callable[..., ShellyPlug]) -> None:
    sim = plugs(answering=False)
    started = time.monotonic()
    with pytest.raises(PlugError, match=r"no complete answer to Switch.GetStatus in 1s"):
        run(switch_status(Plug(sim.url), timeout=1.0))
    assert time.monotonic() - started < 1.0 + MARGIN


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PlugError) as err:
        run(switch_status(Plug(f"http://127.0.0.1:{port}")))
    assert str(err.value) == f"plug at http://127.0.0.1:{port}: connection refused"


def test_an_rpc_error_is_named(plugs: Callable[..., ShellyPlug]) -> None:
    sim = plugs()
    with pytest.raises(PlugError, match=r"refused Switch.GetStatus: .*not found.* \(code -105\)"):
        run(switch_status(Plug(sim.url, switch_id=3)))


# -- hostile servers ---------------------------------------------------------------------


@contextlib.contextmanager
def raw_server(serve: Callable[[socket.socket], None]) -> Iterator[tuple[str, list[bytes]]]:
    """A loopback TCP server handing each connection to ``serve`` after reading its request;
    yields (url, requests received)."""
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(0.1)
    stop = threading.Event()
    requests: list[bytes] = []
    threads: list[threading.Thread] = []
    conns: list[socket.socket] = []

    def one(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(20)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            requests.append(data)
            serve(conn)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conns.append(conn)
            thread = threading.Thread(target=one, args=(conn,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{lsock.getsockname()[1]}", requests
    finally:
        stop.set()
        acceptor.join(5)
        lsock.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)


def answer(status: str, body: bytes, headers: str = "") -> Callable[[socket.socket], None]:
    def serve(conn: socket.socket) -> None:
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
        conn.sendall(head.encode() + body)

    return serve


def huge_headers(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    line = b"X-Junk: " + b"a" * 1000 + b"\r\n"
    for _ in range(10 * 1024):  # 10 MB, unless the client hangs up first
        conn.sendall(line)


def trickle(conn: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n" + b" " * 20:
        conn.sendall(bytes([byte]))
        time.sleep(0.5)


def endless_body(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
    for _ in range(10 * 1024):
        conn.sendall(b"[" * 1024)


def chunked(body: bytes) -> Callable[[socket.socket], None]:
    def serve(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)

    return serve


ESCAPES = "\x1b[31mred\x1b[0m\r\nInjected: yes\x07\u202eevil" + "A" * 500

HOSTILE: list[tuple[str, Callable[[socket.socket], None], str]] = [
    ("10 MB of headers", huge_headers, f"sent more than {MAX_REPLY // 1024} KiB"),
    ("trickle", trickle, "no complete answer to Switch.GetStatus in 2s"),
    ("an endless body", endless_body, "sent more than 64 KiB"),
    ("a redirect", answer("302 Found", b"", "Location: http://127.0.0.1:1/\r\n"), "HTTP 302"),
    ("not JSON", answer("200 OK", b"<html>hello</html>"), "not JSON"),
    ("output is text", answer("200 OK", b'{"output": "yes"}'), "output is not true or false"),
    ("NaN", answer("200 OK", b'{"output": NaN}'), "not JSON"),
    ("deep JSON", answer("200 OK", b"[" * 30000 + b"]" * 30000), "not JSON"),
    ("not UTF-8", answer("200 OK", b'{"output": "\xff"}'), "not JSON"),
    ("not HTTP", lambda c: c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"), "not HTTP"),
    ("closed at once", lambda c: None, "closed the connection without answering"),
    ("cut short", lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"), "in its"),
    (
        "a lying length",
        lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n"),
        "64 KiB",
    ),
    ("a bad length", lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), "bad"),
    ("a bad chunk", chunked(b"zz\r\n{}\r\n0\r\n\r\n"), "bad chunk"),
    (
        "an error with escapes",
        answer("500 Internal", json.dumps({"code": -1, "message": ESCAPES}).encode()),
        r"refused Switch.GetStatus: \x1b[31mred",
    ),
    ("an error without text", answer("500 Internal", b'{"code": 5}'), "answered HTTP 500"),
    ("a 404 of HTML", answer("404 Not Found", b"<h1>no</h1>"), "not a Shelly Gen2+ plug?"),
    (
        "Basic only",
        answer("401 Unauthorized", b"", 'WWW-Authenticate: Basic realm="x"\r\n'),
        "a login other than Digest SHA-256",
    ),
    (
        "a challenge with a line break",
        lambda c: c.sendall(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nWWW-Authenticate: Digest "
            b'realm="a\nInjected: 1", nonce="n", qop="auth", algorithm=SHA-256\r\n\r\n'
        ),
        "a login challenge that cannot be answered",
    ),
    (
        "a challenge in Latin-1",
        answer(
            "401 Unauthorized",
            b"",
            'WWW-Authenticate: Digest realm="caf\xe9", nonce="n", algorithm=SHA-256\r\n',
        ),
        "a login challenge that cannot be answered",
    ),
    (
        "Digest MD5 only",
        answer("401 Unauthorized", b"", 'WWW-Authenticate: Digest realm="x", nonce="n"\r\n'),
        "a login other than Digest SHA-256",
    ),
]


@pytest.mark.parametrize(("serve", "reason"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_servers_end_as_a_plug_error(
    serve: Callable[[socket.socket], None], reason: str
) -> None:
    with raw_server(serve) as (url, requests):
        started = time.monotonic()
        with pytest.raises(PlugError) as err:
            run(switch_status(Plug(url, password="hunter2"), timeout=2.0))
        assert time.monotonic() - started < 2.0 + MARGIN
    text = str(err.value)
    assert text.startswith(f"plug at {url}: ")
    assert reason in text, text
    assert text.isprintable() and len(text) < 300 and "hunter2" not in text
    for request in requests:  # the password never goes on the wire
        assert b"hunter2" not in request and b"Basic" not in request


def test_chunked_answers_are_read() -> None:
    body = b'{"output":' + b" " * 10 + b'true, "id": 0}'
    with raw_server(chunked(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))) as (url, _):
        assert run(switch_status(Plug(url))) == SwitchStatus(True, None)


def test_the_requests_sent() -> None:
    with raw_server(answer("200 OK", b'{"was_on": true}')) as (url, requests):
        assert run(switch_set(Plug(url + "/", switch_id=2), False, toggle_after=10)) is True
    (request,) = requests
    head = request.decode().split("\r\n")
    assert head[0] == "GET /rpc/Switch.Set?id=2&on=false&toggle_after=10 HTTP/1.1"
    assert f"Host: {url.removeprefix('http://')}" in head
    assert "Connection: close" in head


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (b'{"id": "shelly1-1", "gen": 1, "model": "SHSW-1"}', "generation 1"),
        (b'{"id": "x", "model": "y"}', "no gen"),
        (b'{"id": "x", "gen": true, "model": "y"}', "no gen"),
        (b'{"gen": 2, "model": "y"}', "no id"),
        (b'["x"]', "not an object"),
    ],
)
def test_device_info_shape(info: bytes, reason: str) -> None:
    with raw_server(answer("200 OK", info)) as (url, _), pytest.raises(PlugError, match=reason):
        run(device_info(Plug(url)))


def test_switch_set_needs_was_on() -> None:
    with (
        raw_server(answer("200 OK", b'{"was_on": "yes"}')) as (url, _),
        pytest.raises(PlugError, match=r"unexpected answer to Switch.Set \(no was_on\)"),
    ):
        run(switch_set(Plug(url), True))


def test_bad_arguments() -> None:
    plug = Plug("http://127.0.0.1:9")
    for bad in (0, -1, float("nan"), float("inf"), True, "5"):
        with pytest.raises(InvalidValue):
            run(switch_set(plug, False, toggle_after=bad))  # type: ignore[arg-type]
        with pytest.raises(InvalidValue):
            run(switch_status(plug, timeout=bad))  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        run(switch_set(plug, "off"))  # type: ignore[arg-type]


# -- parse_plug ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "url", "switch_id"),
    [
        ("http://10.0.0.5", "http://10.0.0.5", 0),
        ("http://10.0.0.5/", "http://10.0.0.5", 0),
        (" http://10.0.0.5:8080/?id=1 ", "http://10.0.0.5:8080", 1),
        ("http://10.0.0.5?id=15", "http://10.0.0.5", 15),
        ("HTTP://Plug-1.Station.LAN", "http://plug-1.station.lan", 0),
        ("http://shellyplugsg3-a1b2c3", "http://shellyplugsg3-a1b2c3", 0),
        ("http://[fe80::1]", "http://[fe80::1]", 0),
        ("http://[2001:DB8::0001]:81/?id=3", "http://[2001:db8::1]:81", 3),
    ],
)
def test_parse_plug_accepts(value: str, url: str, switch_id: int) -> None:
    plug = parse_plug(value, "pw")
    assert (plug.url, plug.switch_id, plug.password) == (url, switch_id, "pw")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "10.0.0.5",
        "https://10.0.0.5",
        "ftp://10.0.0.5",
        "http://",
        "http:///",
        "http://:80",
        "http://10.0.0.5:",
        "http://10.0.0.5:0",
        "http://10.0.0.5:65536",
        "http://10.0.0.5:http",
        "http://admin:hunter2@10.0.0.5",
        "http://hunter2@10.0.0.5",
        "http://10.0.0.5/rpc",
        "http://10.0.0.5//",
        "http://10.0.0.5?id=16",
        "http://10.0.0.5?id=-1",
        "http://10.0.0.5?id=",
        "http://10.0.0.5?",
        "http://10.0.0.5?x=1",
        "http://10.0.0.5?id=1&x=2",
        "http://10.0.0.5#top",
        "http://10.0.0.5\r\nX-Evil: 1",
        "http://10.0.0.5\x1b[31m",
        "http://10.0.0.5\x00",
        "http://999.1.1.1",
        "http://10.0.0",
        "http://[zz::1]",
        "http://[fe80::1%eth0]",
        "http://fe80::1",
        "http://a b",
        "http://-bad-.local",
        "http://bad_name.local",
        "http://" + "a" * 64 + ".local",
        "http://caf\u00e9.local",
        None,
        5,
    ],
)
def test_parse_plug_refuses(value: Any) -> None:
    with pytest.raises(InvalidValue, match="heartbeat_plug") as err:
        parse_plug(value)
    assert "hunter2" not in str(err.value)
    assert str(err.value).isprintable()


def test_the_password_is_never_shown() -> None:
    plug = parse_plug("http://10.0.0.5?id=2", "hunter2")
    assert "hunter2" not in repr(plug) and "hunter2" not in str(plug)
    assert repr(plug) == "Plug(url='http://10.0.0.5', switch_id=2)"


def test_a_plug_made_directly_is_checked() -> None:
    assert Plug("http://10.0.0.5/").url == "http://10.0.0.5"
    for url, sid in (("http://10.0.0.5/x", 0), ("10.0.0.5", 0), ("http://10.0.0.5", 16)):
        with pytest.raises(InvalidValue):
            Plug(url, switch_id=sid)
    with pytest.raises(InvalidValue):
        Plug("http://10.0.0.5", switch_id=True)


# -- a plug powering a camera, in network namespaces -----------------------------------------


def in_prober(lab: Lab, coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a client call from the prober namespace (where the daemon runs)."""
    return run_in_netns(lab.prober, lambda: asyncio.run(coro()))


def connects(lab: Lab, ip: str, port: int = 80) -> bool:
    try:
        lab.tcp_connect(ip, port, timeout=0.5)
    except OSError:
        return False
    return True


@pytest.mark.netns
@requires_root_netns
def test_a_hung_camera_answers_after_the_plugs_timer_cycles_its_power(lab: Lab) -> None:
    with PoweredCamera(lab, state="hung", boot_time=1.0) as cam:
        assert not connects(lab, cam.camera_ip)
        assert lab.ping(cam.camera_ip, timeout=0.5).rtt is None
        plug = Plug(cam.plug_url)
        assert in_prober(lab, lambda: device_info(plug))["model"] == MODEL
        assert in_prober(lab, lambda: switch_status(plug)).on is True
        assert in_prober(lab, lambda: switch_set(plug, False, toggle_after=1)) is True
        assert cam.powered_off_count == 1
        # the plug's own timer puts power back; the camera boots and answers
        wait_for(lambda: connects(lab, cam.camera_ip), timeout=1 + 1 + 30, step=0.2)
        assert lab.ping(cam.camera_ip, timeout=2).rtt is not None
        assert in_prober(lab, lambda: switch_status(plug)) == SwitchStatus(True, None)
        assert cam.state == "up" and cam.powered_off_count == 1


@pytest.mark.netns
@requires_root_netns
def test_a_dead_camera_never_answers(lab: Lab) -> None:
    with PoweredCamera(lab, state="dead", boot_time=0.5, password="pw") as cam:
        plug = Plug(cam.plug_url, password="pw")
        assert in_prober(lab, lambda: switch_set(plug, False, toggle_after=1)) is True
        assert cam.plug is not None
        wait_for(lambda: cam.plug is not None and cam.plug.output, timeout=1 + 30, step=0.1)
        deadline = time.monotonic() + 0.5 + 3.0  # its boot time, and more
        while time.monotonic() < deadline:
            assert not connects(lab, cam.camera_ip)
        assert cam.powered_off_count == 1


@pytest.mark.netns
@requires_root_netns
def test_an_up_camera_answers_hangs_and_goes_dark_with_its_power(lab: Lab) -> None:
    cam = PoweredCamera(lab, state="up", boot_time=0.5)  # closed by the lab
    assert connects(lab, cam.camera_ip)
    cam.hang()
    assert not connects(lab, cam.camera_ip)
    cam.close()
    cam.close()  # idempotent
    cam2 = PoweredCamera(lab, state="up", boot_time=0.5, port=554)
    assert connects(lab, cam2.camera_ip, 554)
    plug = Plug(cam2.plug_url)
    in_prober(lab, lambda: switch_set(plug, False))
    assert not connects(lab, cam2.camera_ip, 554)  # off: silent at once, and stays so
    in_prober(lab, lambda: switch_set(plug, True))
    wait_for(lambda: connects(lab, cam2.camera_ip, 554), timeout=0.5 + 30, step=0.2)
    assert cam2.powered_off_count == 1
