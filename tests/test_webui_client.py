"""pumaguard_hb.stores.webui against the real PumaGuard web UI, and against broken servers.

The real web UI (pumaguard 25.x, tests/webui/install.sh) runs on a loopback port with a
throwaway home (tests/webui_harness.py). The failures a real web UI does not produce on
demand (no answer, HTTP 500, not JSON, a huge answer, a redirect) come from tiny stdlib
servers on 127.0.0.1. docs/webui.md writes down what these tests pin.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from webui_harness import (
    WebUIServer,
    camera_record,
    free_port,
    webui_factory,
    webui_settings,
    write_webui_settings,
)

from pumaguard_hb.model.errors import HeartbeatError, InvalidValue
from pumaguard_hb.stores.webui import MAX_LIST_RESPONSE, WebUI, WebUIError

__all__ = ["webui_factory"]  # the fixture, imported for pytest

CAM1 = ("Microseven-Gate", "127.0.0.2", "aa:bb:cc:dd:ee:01")
CAM2 = ("Reolink-Barn", "127.0.0.3", "aa:bb:cc:dd:ee:02")
OLD = "2024-01-15T14:32:15Z"


def seconds_ago(stamp: str) -> float:
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - when).total_seconds()


def file_cameras(path: Path) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return {c["mac_address"]: c for c in doc.get("cameras") or []}


@pytest.fixture
def webui(tmp_path: Path, webui_factory: Callable[..., WebUIServer]) -> WebUIServer:
    """The real web UI on a file with one camera, its own heartbeat off."""
    settings = write_webui_settings(
        tmp_path / "pumaguard-settings.yaml",
        webui_settings([camera_record(*CAM1, last_seen=OLD)]),
    )
    return webui_factory(settings)


# -- the real web UI -----------------------------------------------------------------------


def test_status_and_camera_list(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    status = client.status()
    assert status["status"] == "running"
    assert str(status["version"]).startswith("25")
    cams = client.cameras()
    assert cams == [
        {
            "hostname": CAM1[0],
            "ip_address": CAM1[1],
            "mac_address": CAM1[2],
            "last_seen": OLD,
            "status": "disconnected",
        }
    ]
    assert client.saves == 0


def test_add_camera_is_listed_saved_and_announced(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    inode = os.stat(webui.settings).st_ino
    with webui.events() as events:
        client.add_camera(*CAM2, status="disconnected")
        added = events.wait_for(lambda e: e["type"] == "camera_added")
    assert added["data"]["mac_address"] == CAM2[2]
    cam = {c["mac_address"]: c for c in client.cameras()}[CAM2[2]]
    assert (cam["hostname"], cam["ip_address"], cam["status"]) == (CAM2[0], CAM2[1], "disconnected")
    assert seconds_ago(cam["last_seen"]) < 300  # the web UI sets last_seen = now on add
    assert client.saves == 1
    on_disk = file_cameras(webui.settings)
    assert on_disk[CAM2[2]]["status"] == "disconnected"
    assert os.stat(webui.settings).st_ino == inode  # it truncates in place


def test_add_without_status_is_connected_and_existing_mac_is_overwritten(
    webui: WebUIServer,
) -> None:
    client = WebUI(webui.url)
    client.add_camera(*CAM2)
    assert {c["mac_address"]: c for c in client.cameras()}[CAM2[2]]["status"] == "connected"
    # an existing MAC: no error, the record is replaced (last_seen = now, status as given)
    client.add_camera("Microseven-Renamed", CAM1[1], CAM1[2], status="disconnected")
    cam = {c["mac_address"]: c for c in client.cameras()}[CAM1[2]]
    assert cam["hostname"] == "Microseven-Renamed"
    assert cam["status"] == "disconnected"
    assert cam["last_seen"] != OLD
    assert client.saves == 2
    assert len(client.cameras()) == 2


def test_add_refuses_what_the_web_ui_would_refuse(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    with pytest.raises(InvalidValue, match="hostname"):
        client.add_camera("", CAM2[1], CAM2[2])
    with pytest.raises(InvalidValue, match="mac_address"):
        client.add_camera(CAM2[0], CAM2[1], "")
    with pytest.raises(InvalidValue, match="status"):
        client.add_camera(*CAM2, status="weird")
    assert client.saves == 0
    assert len(client.cameras()) == 1


def test_remove_camera(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    with webui.events() as events:
        assert client.remove_camera(CAM1[2].upper()) is True  # it lower-cases the path
        removed = events.wait_for(lambda e: e["type"] == "camera_removed")
    assert removed["data"]["mac_address"] == CAM1[2]
    assert client.cameras() == []
    assert client.remove_camera(CAM1[2]) is False  # 404: it did not know the camera
    assert client.remove_camera("aa:bb:cc:00:00:99") is False
    assert client.saves == 1
    assert file_cameras(webui.settings) == {}


def test_plug_list(webui: WebUIServer) -> None:
    """Its smart plugs (``GET /api/dhcp/plugs``): none at first, then one added by its API
    with the fields the power cycle reads. Its plug heartbeat is off (webui_settings), so
    the made-up address is never contacted."""
    client = WebUI(webui.url)
    assert client.plugs() == []
    plug = {
        "hostname": "shellyplugsg3-a1b2c3",
        "ip_address": "127.0.0.9",
        "mac_address": "aa:bb:cc:dd:ee:50",
        "mode": "on",
    }
    code, _ = webui.request("POST", "/api/dhcp/plugs", plug)
    assert code == 201
    (got,) = client.plugs()
    assert {k: got[k] for k in plug} == plug
    assert got["status"] == "connected"
    assert seconds_ago(got["last_seen"]) < 300
    assert [c["mac_address"] for c in client.cameras()] == [CAM1[2]]  # not a camera


def test_event_add_sets_connected_and_last_seen(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    stamp = "2026-01-02T03:04:05Z"
    with webui.events() as events:
        client.event("add", CAM1[2], CAM1[1], CAM1[0], stamp)
        connected = events.wait_for(lambda e: e["type"] == "camera_connected")
    assert connected["data"]["last_seen"] == stamp
    assert connected["data"]["status"] == "connected"
    cam = client.cameras()[0]
    assert (cam["status"], cam["last_seen"]) == ("connected", stamp)
    assert client.last_device_type == "camera"
    assert client.saves == 1
    assert file_cameras(webui.settings)[CAM1[2]]["last_seen"] == stamp


def test_event_add_without_timestamp_is_now(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    client.event("old", CAM1[2], CAM1[1], CAM1[0], None)
    cam = client.cameras()[0]
    assert cam["status"] == "connected"
    assert cam["last_seen"] is not None and seconds_ago(cam["last_seen"]) < 300


def test_event_del_keeps_the_timestamp_sent_and_null_for_never_seen(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    client.event("add", CAM1[2], CAM1[1], CAM1[0], "2026-01-02T03:04:05Z")
    with webui.events() as events:
        # "del" with the last good contact: the web UI's last_seen is that, not now
        client.event("del", CAM1[2], CAM1[1], CAM1[0], OLD)
        gone = events.wait_for(lambda e: e["type"] == "camera_disconnected")
    assert (gone["data"]["status"], gone["data"]["last_seen"]) == ("disconnected", OLD)
    assert client.cameras()[0]["last_seen"] == OLD
    # a camera never seen: timestamp None is sent as null and kept as null
    client.event("del", CAM1[2], CAM1[1], CAM1[0], None)
    cam = client.cameras()[0]
    assert (cam["status"], cam["last_seen"]) == ("disconnected", None)
    assert file_cameras(webui.settings)[CAM1[2]]["last_seen"] is None
    assert client.saves == 3


def test_null_last_seen_survives_a_restart(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    client.event("del", CAM1[2], CAM1[1], CAM1[0], None)
    webui.restart()
    cam = client.cameras()[0]
    assert (cam["status"], cam["last_seen"]) == ("disconnected", None)


def test_event_for_a_device_it_does_not_call_a_camera_is_ignored(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    before = webui.settings.read_bytes()
    # its rule is case-sensitive: Microseven*/Reolink* prefixes, or a MAC it knows
    for name in ("Axis-Cam", "microseven-lower", ""):
        client.event("add", "aa:bb:cc:00:00:10", "127.0.0.10", name, None)
        assert client.last_device_type == "unknown"
    assert [c["mac_address"] for c in client.cameras()] == [CAM1[2]]
    assert client.saves == 0
    assert webui.settings.read_bytes() == before  # nothing saved
    # the same device once added by the API is a camera for its events
    client.add_camera("Axis-Cam", "127.0.0.10", "aa:bb:cc:00:00:10", status="disconnected")
    client.event("add", "aa:bb:cc:00:00:10", "127.0.0.10", "Axis-Cam", None)
    assert client.last_device_type == "camera"
    by_mac = {c["mac_address"]: c for c in client.cameras()}
    assert by_mac["aa:bb:cc:00:00:10"]["status"] == "connected"


def test_event_hostname_empty_or_unknown_keeps_the_known_name(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    client.event("add", CAM1[2], "127.0.0.20", "", None)
    client.event("old", CAM1[2], "127.0.0.21", "unknown", None)
    cam = client.cameras()[0]
    assert (cam["hostname"], cam["ip_address"], cam["status"]) == (
        CAM1[0],
        "127.0.0.21",
        "connected",
    )


def test_event_other_actions_are_ignored(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    before = webui.settings.read_bytes()
    for action in ("init", "arp-add", "tftp"):
        client.event(action, CAM1[2], CAM1[1], CAM1[0], None)
    assert client.cameras()[0]["status"] == "disconnected"
    assert client.saves == 0
    assert webui.settings.read_bytes() == before
    with pytest.raises(InvalidValue):
        client.event("add;rm", CAM1[2], CAM1[1], CAM1[0], None)


def test_a_mac_held_in_upper_case_is_addressed_as_held(
    tmp_path: Path, webui_factory: Callable[..., WebUIServer]
) -> None:
    settings = write_webui_settings(
        tmp_path / "s.yaml",
        webui_settings([camera_record("Microseven-Up", "127.0.0.2", "AA:BB:CC:DD:EE:0A")]),
    )
    webui = webui_factory(settings)
    client = WebUI(webui.url)
    assert client.cameras()[0]["mac_address"] == "AA:BB:CC:DD:EE:0A"
    client.event("add", "aa:bb:cc:dd:ee:0a", "127.0.0.2", "Microseven-Up", None)
    cams = client.cameras()
    assert len(cams) == 1, cams  # no lower-case twin
    assert cams[0]["status"] == "connected"
    # its DELETE lower-cases the MAC, so a camera it keys in upper case cannot be removed
    assert client.remove_camera("aa:bb:cc:dd:ee:0a") is False
    # a new camera is added in lower case, so that it can be removed later
    client.add_camera("Microseven-New", "127.0.0.3", "AA:BB:CC:DD:EE:0B")
    assert "aa:bb:cc:dd:ee:0b" in {c["mac_address"] for c in client.cameras()}
    assert client.remove_camera("AA:BB:CC:DD:EE:0B") is True


def test_refused_when_stopped_and_back_after_restart(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    webui.stop()
    with pytest.raises(WebUIError) as err:
        client.cameras()
    assert str(err.value) == f"web UI at {webui.url}: connection refused"
    assert isinstance(err.value, HeartbeatError)
    webui.start()
    assert [c["mac_address"] for c in client.cameras()] == [CAM1[2]]


def test_many_saves_keep_the_inode(webui: WebUIServer) -> None:
    client = WebUI(webui.url)
    inode = os.stat(webui.settings).st_ino
    for i in range(20):
        client.event("add" if i % 2 else "del", CAM1[2], CAM1[1], CAM1[0], OLD)
    assert client.saves == 20
    assert os.stat(webui.settings).st_ino == inode


# -- the URL -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "127.0.0.1:5000",
        "ftp://127.0.0.1",
        "http://",
        "http://:5000",
        "http://127.0.0.1:0",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:port",
        "http://user:pw@127.0.0.1:5000",
        "http://127.0.0.1:5000/?x=1",
        "http://127.0.0.1:5000/#frag",
        "http://127.0.0.1:5000/a b",
        None,
        5000,
    ],
)
def test_invalid_urls(url: Any) -> None:
    with pytest.raises(InvalidValue, match="camera_heartbeat_webui_url"):
        WebUI(url)


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("http://127.0.0.1:5000/", "http://127.0.0.1:5000"),
        (" https://pumaguard.local ", "https://pumaguard.local"),
        ("http://[::1]:5000/", "http://[::1]:5000"),
        ("http://127.0.0.1:8080/pumaguard/", "http://127.0.0.1:8080/pumaguard"),
    ],
)
def test_valid_urls(url: str, base: str) -> None:
    assert WebUI(url).url == base


def test_invalid_timeout() -> None:
    for bad in (0, -1, float("nan"), float("inf"), "5", True):
        with pytest.raises(InvalidValue):
            WebUI("http://127.0.0.1:5000", timeout=bad)  # type: ignore[arg-type]


# -- broken servers (tiny stdlib servers on loopback) ----------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    respond: Callable[[http.server.BaseHTTPRequestHandler], None]

    def log_message(self, *args: Any) -> None:
        pass

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        type(self).respond(self)

    do_GET = do_POST = do_DELETE = _any


@contextlib.contextmanager
def http_server(
    respond: Callable[[http.server.BaseHTTPRequestHandler], None],
) -> Iterator[str]:
    """A threading HTTP server on 127.0.0.1 answering every request with ``respond``."""
    handler = type("Handler", (_Handler,), {"respond": staticmethod(respond)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def reply(status: int, body: bytes, content_type: str = "application/json", length: bool = True):
    def respond(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        if length:
            h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)

    return respond


@contextlib.contextmanager
def raw_server(serve: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback TCP server that hands each connection to ``serve`` in a thread."""
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    lsock.settimeout(0.1)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{lsock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        lsock.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()


def test_connection_refused() -> None:
    port = free_port()
    with pytest.raises(WebUIError) as err:
        WebUI(f"http://127.0.0.1:{port}").status()
    assert str(err.value) == f"web UI at http://127.0.0.1:{port}: connection refused"
    assert err.value.url == f"http://127.0.0.1:{port}"


def test_a_server_that_never_answers_times_out() -> None:
    def hold(conn: socket.socket) -> None:
        time.sleep(30)  # reads nothing, says nothing

    with raw_server(hold) as url:
        client = WebUI(url, timeout=1)
        started = time.monotonic()
        with pytest.raises(WebUIError) as err:
            client.cameras()
        took = time.monotonic() - started
    assert str(err.value) == f"web UI at {url}: timed out after 1s"
    assert took < 15  # bounded (generous: a loaded machine)


def test_a_server_that_trickles_is_cut_off_at_the_deadline() -> None:
    """One byte every 0.2 s keeps every single read within any per-read timeout; the
    client's deadline is for the whole request."""

    def trickle(conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 500
        with contextlib.suppress(OSError):
            conn.recv(65536)
            for i in range(len(head)):
                conn.sendall(head[i : i + 1])
                time.sleep(0.2)

    with raw_server(trickle) as url:
        started = time.monotonic()
        with pytest.raises(WebUIError, match="timed out after 1s"):
            WebUI(url, timeout=1).status()
        assert time.monotonic() - started < 15


def test_a_silent_connect_times_out() -> None:
    """A port whose accept queue is full: the connect itself never completes."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    filler = socket.create_connection(lsock.getsockname(), timeout=2)
    extra: list[socket.socket] = []
    try:
        # fill the queue for good (the kernel may allow one more than the backlog)
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                s.connect(lsock.getsockname())
            extra.append(s)
        url = f"http://127.0.0.1:{lsock.getsockname()[1]}"
        with pytest.raises(WebUIError, match=r"timed out after 1s$"):
            WebUI(url, timeout=1).status()
    finally:
        for s in [filler, *extra, lsock]:
            s.close()


def test_http_500() -> None:
    body = json.dumps({"error": "Failed to process DHCP event"}).encode()
    with http_server(reply(500, body)) as url, pytest.raises(WebUIError) as err:
        WebUI(url).event("add", CAM1[2], CAM1[1], CAM1[0], None)
    assert str(err.value).startswith(f"web UI at {url}: answered HTTP 500 to POST /api/dhcp/event")
    assert "Failed to process DHCP event" in str(err.value)


def test_http_500_with_html() -> None:
    with (
        http_server(reply(500, b"<html>oops</html>", "text/html")) as url,
        pytest.raises(WebUIError) as err,
    ):
        WebUI(url).remove_camera(CAM1[2])
    assert str(err.value) == (
        f"web UI at {url}: answered HTTP 500 to DELETE /api/dhcp/cameras/{CAM1[2]}"
    )


def test_not_json() -> None:
    with (
        http_server(reply(200, b"<html>a router's login page</html>", "text/html")) as url,
        pytest.raises(WebUIError) as err,
    ):
        WebUI(url).cameras()
    assert str(err.value) == (
        f"web UI at {url}: sent something that is not JSON in answer to GET /api/dhcp/cameras"
    )


def test_json_of_the_wrong_shape() -> None:
    with (
        http_server(reply(200, b'{"cameras": "none"}')) as url,
        pytest.raises(WebUIError, match="unexpected answer to GET /api/dhcp/cameras"),
    ):
        WebUI(url).cameras()
    with (
        http_server(reply(200, b"[1, 2]")) as url,
        pytest.raises(WebUIError, match="unexpected answer to GET /api/status"),
    ):
        WebUI(url).status()


def test_plug_list_keeps_only_objects_and_checks_its_shape() -> None:
    body = json.dumps({"plugs": [{"mac_address": "aa:bb:cc:dd:ee:50"}, "junk", 7], "count": 3})
    with http_server(reply(200, body.encode())) as url:
        assert WebUI(url).plugs() == [{"mac_address": "aa:bb:cc:dd:ee:50"}]
    for bad in (b'{"plugs": "none"}', b"[]", b'{"count": 0}'):
        with (
            http_server(reply(200, bad)) as url,
            pytest.raises(WebUIError, match="unexpected answer to GET /api/dhcp/plugs"),
        ):
            WebUI(url).plugs()


def test_camera_list_keeps_only_objects() -> None:
    body = json.dumps({"cameras": [{"mac_address": "aa:bb:cc:dd:ee:01"}, "junk", 3, None]})
    with http_server(reply(200, body.encode())) as url:
        assert WebUI(url).cameras() == [{"mac_address": "aa:bb:cc:dd:ee:01"}]


def test_deeply_nested_json_is_not_json() -> None:
    with (
        http_server(reply(200, b"[" * 100000 + b"]" * 100000)) as url,
        pytest.raises(WebUIError, match="not JSON"),
    ):
        WebUI(url).status()


@pytest.mark.parametrize("with_length", [True, False])
def test_an_oversized_answer_is_refused(with_length: bool) -> None:
    big = b'{"cameras": ["' + b"x" * (MAX_LIST_RESPONSE + 10) + b'"]}'
    with (
        http_server(reply(200, big, length=with_length)) as url,
        pytest.raises(WebUIError) as err,
    ):
        WebUI(url).cameras()
    assert (
        str(err.value)
        == f"web UI at {url}: sent more than 4 MiB in answer to GET /api/dhcp/cameras"
    )


def test_an_endless_answer_is_cut_at_the_cap() -> None:
    def endless(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[")
            chunk = b'"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",' * 1000
            for _ in range(10000):  # bounded: at most ~600 MB, cut long before
                conn.sendall(chunk)

    with raw_server(endless) as url, pytest.raises(WebUIError, match="sent more than 1 MiB"):
        WebUI(url, timeout=10).status()


def test_a_redirect_is_not_followed() -> None:
    def respond(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", "http://127.0.0.1:1/elsewhere")
        h.send_header("Content-Length", "0")
        h.end_headers()

    with (
        http_server(respond) as url,
        pytest.raises(WebUIError, match="answered HTTP 302 to POST /api/dhcp/event"),
    ):
        WebUI(url).event("del", CAM1[2], CAM1[1], CAM1[0], None)


def test_closed_without_answering() -> None:
    def hang_up(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.recv(65536)
            conn.close()

    with raw_server(hang_up) as url, pytest.raises(WebUIError) as err:
        WebUI(url).status()
    assert str(err.value) == f"web UI at {url}: closed the connection without answering"


def test_not_http() -> None:
    def garbage(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" * 3)
            conn.close()

    with raw_server(garbage) as url, pytest.raises(WebUIError, match="not HTTP"):
        WebUI(url).status()


def test_proxy_settings_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy in the environment (refusing) must not catch the web UI's loopback address."""
    dead = f"http://127.0.0.1:{free_port()}"
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.setenv(var, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    seen: list[str] = []

    def respond(h: http.server.BaseHTTPRequestHandler) -> None:
        seen.append(h.path)
        reply(200, b'{"status": "running"}')(h)

    with http_server(respond) as url:
        assert WebUI(url).status() == {"status": "running"}
    assert seen == ["/api/status"]  # the path alone: not a proxy-style absolute URL


def test_requests_sent() -> None:
    """What goes over the wire: JSON bodies in the web UI's field names."""
    got: list[tuple[str, str, Any, str]] = []

    class Recording(_Handler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            got.append((self.command, self.path, body, self.headers.get("User-Agent", "")))
            code = 201 if self.command == "POST" and self.path == "/api/dhcp/cameras" else 200
            reply(code, b'{"data": {"device_type": "camera"}}')(self)

        do_GET = do_POST = do_DELETE = _any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        client = WebUI(f"http://127.0.0.1:{server.server_address[1]}/prefix/")
        client.add_camera("Microseven-X", "127.0.0.5", "AA:BB:CC:DD:EE:05")
        client.event("del", "aa:bb:cc:dd:ee:05", "127.0.0.5", "", "2026-01-01T00:00:00Z")
        client.remove_camera("aa:bb:cc:dd:ee:05")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert [(m, p, b) for m, p, b, _ in got] == [
        (
            "POST",
            "/prefix/api/dhcp/cameras",
            {
                "hostname": "Microseven-X",
                "ip_address": "127.0.0.5",
                "mac_address": "aa:bb:cc:dd:ee:05",
            },
        ),
        (
            "POST",
            "/prefix/api/dhcp/event",
            {
                "action": "del",
                "mac_address": "aa:bb:cc:dd:ee:05",
                "ip_address": "127.0.0.5",
                "hostname": "",
                "timestamp": "2026-01-01T00:00:00Z",
            },
        ),
        ("DELETE", "/prefix/api/dhcp/cameras/aa:bb:cc:dd:ee:05", None),
    ]
    assert all(ua.startswith("pumaguard-heartbeat/") for *_, ua in got)
    assert client.saves == 3
