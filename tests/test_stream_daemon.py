"""Method ``stream`` in a real daemon (issue 23, docs/stream.md) against a real RTSP server.

The server is GStreamer's gst-rtsp-server (tests/rtsp_server.py: no auth, Basic, Digest on
loopback ports); the fault proxy (tests/rtsp_faults.py) runs in a thread of its own event
loop between the daemon and that server. The daemon, the CLI and /metrics are the real ones.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Daemon, camera, free_port, wait_for, write_settings
from helpers_cli import clean_env, run_cli
from rtsp_faults import FaultProxy
from rtsp_fixture import rtsp as rtsp  # the fixture, shared by the stream tests
from rtsp_server import PASSWORD, USER, RtspServer

BOUND = 90.0  # seconds: generous, a loaded machine with GStreamer on it




class ProxyThread:
    """A :class:`FaultProxy` on an event loop in a thread of its own (the daemon is another
    process, the test is synchronous)."""

    def __init__(self, upstream: int, mode: str = "pass") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = FaultProxy(upstream, mode)
        try:
            self._run(self.proxy.__aenter__())
        except BaseException:
            self._stop()
            raise

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def _stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()

    def close(self) -> None:
        try:
            self._run(self.proxy.__aexit__(None, None, None))
        finally:
            self._stop()


@pytest.fixture
def proxies() -> Iterator[Any]:
    made: list[ProxyThread] = []

    def make(upstream: int, mode: str = "pass") -> FaultProxy:
        made.append(ProxyThread(upstream, mode))
        return made[-1].proxy

    yield make
    for p in made:
        p.close()


def cams(d: Daemon) -> dict[str, dict[str, Any]]:
    return {c["hostname"]: c for c in d.call("status")["cameras"]}


def checked(d: Daemon, name: str, status: str) -> dict[str, Any] | None:
    """The camera once a stream check gave it ``status`` (not the file's report)."""
    cam = cams(d).get(name)
    if cam and cam["status"] == status and cam["method"] == "stream":
        return cam
    return None


def events(rtsp: RtspServer, what: str) -> int:
    """How many ``what`` events the no-auth server has reported so far."""
    rtsp.sessions()  # reads the events it wrote before its answer
    return rtsp.events.count(f"none {what}")


def http(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())
    except (urllib.error.URLError, OSError):
        return ""


def test_healthy_and_frozen_cameras_and_check_now(
    rtsp: RtspServer, proxies: Any, daemon_factory: Any
) -> None:
    """A camera whose video flows is connected, with the step and the time to the first RTP
    packet in status, --json, the CLI table, check-now CAMERA and the status page; one whose
    RTP stops after PLAY (RTSP still answering) is disconnected as "video frozen"."""
    frozen = proxies(rtsp.ports["none"], "frozen")
    metrics = free_port()
    d: Daemon = daemon_factory()
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 2,
            "camera-heartbeat-method": "stream",
            "camera-heartbeat-stream-path": "/test",  # URL: rtsp://IP:PORT/test
            "camera-heartbeat-stream-timeout": 3,
            "camera-heartbeat-metrics-listen": f"127.0.0.1:{metrics}",
            "cameras": [
                camera(
                    "Microseven-good",
                    "127.0.0.1",
                    "aa:bb:cc:23:00:01",
                    heartbeat_port=rtsp.ports["none"],
                ),
                camera(
                    "Microseven-frozen",
                    "127.0.0.2",
                    "aa:bb:cc:23:00:02",
                    status="connected",
                    heartbeat_url=frozen.url(),
                ),
            ],
        },
    )
    d.start()
    good = wait_for(lambda: checked(d, "Microseven-good", "connected"), BOUND, 0.2)
    assert good["step"] == "RTP" and good["first_packet_ms"] > 0 and good["rtt_ms"] > 0
    assert re.fullmatch(
        rf"stream rtsp://127\.0\.0\.1:{rtsp.ports['none']}/test PLAY ok, first RTP \d+ ms",
        good["reason"],
    )
    bad = wait_for(lambda: checked(d, "Microseven-frozen", "disconnected"), BOUND, 0.2)
    assert (
        bad["reason"] == f"stream {frozen.url()} PLAY ok but no RTP packet in 3.0s (video frozen)"
    )
    assert bad["step"] == "PLAY" and bad["first_packet_ms"] is None
    assert "SETUP" in frozen.methods and "TEARDOWN" in frozen.methods

    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket), COLUMNS="250")
    shown = json.loads(run_cli("--json", "status", env=env).stdout)
    by_name = {c["hostname"]: c for c in shown["cameras"]}
    assert by_name["Microseven-good"]["step"] == "RTP"
    assert by_name["Microseven-good"]["first_packet_ms"] > 0
    table = run_cli("status", "--wide", env=env)
    assert re.search(r"Microseven-good .*first RTP \d+ ms", table.stdout), table.stdout
    assert "(video frozen)" in table.stdout, table.stdout

    body = wait_for(lambda: http(f"http://127.0.0.1:{metrics}/metrics"), 30)
    assert re.search(
        r'camera_stream_first_packet_seconds\{camera="aa:bb:cc:23:00:01"[^}]*\} [0-9.e-]+', body
    ), body
    page = wait_for(lambda: http(f"http://127.0.0.1:{metrics}/"), 30)
    assert re.search(r"first RTP \d+ ms", page) and "video frozen" in page
    assert d.stop() == 0


def test_credentials_only_from_a_trusted_file_and_never_shown(
    rtsp: RtspServer, daemon_factory: Any, tmp_path: Path
) -> None:
    """Digest credentials in a group-writable shared file (station-wide, and a camera's own)
    are ignored, each named once in the log; from the daemon's own 0600 file they work. The
    password never reaches the log, status --json, config get, /metrics or the page."""
    metrics = free_port()
    own = tmp_path / "own.yaml"
    own_doc: dict[str, Any] = {
        "camera_heartbeat_interval": 2,
        "camera_heartbeat_method": "stream",
        "camera_heartbeat_stream_path": "/test",
        "camera_heartbeat_stream_timeout": 5,
        "camera_heartbeat_metrics_listen": f"127.0.0.1:{metrics}",
        # the port of the Digest server, from a trusted file (a probe override is privileged)
        "camera_heartbeat_cameras": {"aa:bb:cc:23:00:11": {"heartbeat_port": rtsp.ports["digest"]}},
    }
    write_settings(own, own_doc)
    own.chmod(0o600)
    d: Daemon = daemon_factory()
    write_settings(
        d.settings,
        {
            "camera-heartbeat-stream-username": USER,  # planted by a member of the group
            "camera-heartbeat-stream-password": PASSWORD,
            "cameras": [
                camera(
                    "Reolink-digest",
                    "127.0.0.1",
                    "aa:bb:cc:23:00:11",
                    heartbeat_username=USER,
                    heartbeat_password=PASSWORD,
                )
            ],
        },
    )
    d.settings.chmod(0o660)  # group-writable: its privileged keys are not honoured
    d.start(args=["--config", str(own)])

    def reason_401() -> dict[str, Any] | None:
        cam = checked(d, "Reolink-digest", "disconnected")
        return cam if cam and cam["reason"].endswith("(no credentials set)") else None

    cam = wait_for(reason_401, BOUND, 0.2)
    assert cam["reason"].endswith("DESCRIBE 401 unauthorized (no credentials set)"), cam
    assert cam["step"] == "connect"
    for _ in range(3):
        d.call("reload")
    log = d.log()
    for key in (
        "camera-heartbeat-stream-password",
        "camera-heartbeat-stream-username",
        "cameras: heartbeat_password",
        "cameras: heartbeat_username",
    ):
        said = [line for line in log.splitlines() if f"{key} ignored" in line]
        assert len(said) == 1 and str(d.settings) in said[0], (key, log)

    # the same credentials in the daemon's own file (0600, its folder ours): they work
    own_doc["camera_heartbeat_stream_username"] = USER
    own_doc["camera_heartbeat_stream_password"] = PASSWORD
    write_settings(own, own_doc)
    d.call("reload")
    cam = wait_for(lambda: checked(d, "Reolink-digest", "connected"), BOUND, 0.2)
    assert cam["step"] == "RTP" and cam["first_packet_ms"] > 0

    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    status_json = run_cli("--json", "status", env=env).stdout
    settings = json.loads(status_json)["daemon"]["settings"]
    assert settings["camera_heartbeat_stream_password"] == "***"
    config = run_cli("--json", "config", "get", env=env).stdout
    assert json.loads(config)["settings"]["camera_heartbeat_stream_password"] == "***"
    body = wait_for(lambda: http(f"http://127.0.0.1:{metrics}/metrics"), 30)
    page = wait_for(lambda: http(f"http://127.0.0.1:{metrics}/"), 30)
    assert "first RTP" in page
    assert d.stop() == 0
    for where, text in {
        "log": d.log(),
        "status --json": status_json,
        "config get": config,
        "/metrics": body,
        "page": page,
    }.items():
        assert PASSWORD not in text, where
    assert yaml.safe_load(own.read_text())["camera_heartbeat_stream_password"] == PASSWORD


def test_a_camera_url_with_credentials_is_a_secret(rtsp: RtspServer, daemon_factory: Any) -> None:
    """heartbeat_url with user:password (trusted file): the check uses them; status shows
    the URL as rtsp://***@..., the reason without them."""
    url = rtsp.url("basic").replace("rtsp://", f"rtsp://{USER}:{PASSWORD}@")
    d: Daemon = daemon_factory()
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 2,
            "camera-heartbeat-method": "stream",
            "cameras": [
                camera("Reolink-basic", "127.0.0.3", "aa:bb:cc:23:00:21", heartbeat_url=url)
            ],
        },
    )
    d.start()
    cam = wait_for(lambda: checked(d, "Reolink-basic", "connected"), BOUND, 0.2)
    assert cam["overrides"]["url"] == f"rtsp://***@127.0.0.1:{rtsp.ports['basic']}/test"
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    shown = run_cli("--json", "status", env=env).stdout
    assert d.stop() == 0
    assert PASSWORD not in shown and PASSWORD not in d.log()


def test_at_most_the_stream_concurrency_at_once(
    rtsp: RtspServer, proxies: Any, daemon_factory: Any
) -> None:
    """8 stream cameras, camera_heartbeat_stream_concurrency 2: the server (behind the
    counting proxy) never has more than 2 connections; each session is torn down."""
    proxy = proxies(rtsp.ports["none"])
    port = {"heartbeat_port": proxy.port}
    made, torn = events(rtsp, "new-session"), events(rtsp, "teardown")
    d: Daemon = daemon_factory()
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 3600,
            "camera-heartbeat-method": "stream",
            "camera-heartbeat-stream-concurrency": 2,
            "camera-heartbeat-stream-path": "/test",
            "camera-heartbeat-stream-timeout": 20,
            "cameras": [
                camera(f"Microseven-{n}", "127.0.0.1", f"aa:bb:cc:23:01:{n:02x}", **port)
                for n in range(8)
            ],
        },
    )
    d.start()
    wait_for(
        lambda: sum(c["status"] == "connected" and c["method"] == "stream"
                    for c in cams(d).values()) == 8,
        BOUND,
        0.2,
    )  # fmt: skip
    assert proxy.max_open <= 2, proxy.max_open
    assert proxy.methods.count("PLAY") == 8
    wait_for(lambda: proxy.methods.count("TEARDOWN") == 8, 30)
    # the server itself saw 8 sessions made and 8 torn down (sessions of an earlier test's
    # daemon, stopped mid-check, may linger on it until they expire: not counted here)
    wait_for(lambda: events(rtsp, "teardown") - torn == 8, 30, 0.2)
    assert events(rtsp, "new-session") - made == 8
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket), COLUMNS="250")
    # check-now CAMERA: that camera alone, its step and time to the first RTP packet
    one = run_cli("check-now", "Microseven-3", env=env, timeout=BOUND)
    assert one.returncode == 0, (one.stdout, one.stderr)
    assert re.search(r"Microseven-3 .*PLAY ok, first RTP \d+ ms", one.stdout), one.stdout
    assert "1/1 reachable" in one.stdout, one.stdout
    as_json = json.loads(run_cli("--json", "check-now", "aa:bb:cc:23:01:04", env=env).stdout)
    (found,) = as_json["cameras"].values()
    assert found["reachable"] and found["step"] == "RTP" and found["first_packet_ms"] > 0
    assert found["method"] == "stream"
    # check-now of all 8: the same bound
    done = run_cli("check-now", env=env, timeout=BOUND)
    assert done.returncode == 0 and "8/8 reachable" in done.stdout, (done.stdout, done.stderr)
    assert proxy.max_open <= 2 and proxy.methods.count("PLAY") == 18
    wait_for(lambda: proxy.methods.count("TEARDOWN") == 18, 30)
    assert d.stop() == 0


# -- the model: the check a stream camera gets, and what is shown of its secrets --------------


def _target(settings: dict[str, Any], **entry: Any) -> Any:
    from pumaguard_hb.model.camera import camera_from_entry
    from pumaguard_hb.model.settings import parse_settings
    from pumaguard_hb.model.station import target_for

    cam = camera_from_entry(camera("Reolink", "192.0.2.7", "aa:bb:cc:23:02:01", **entry))
    assert cam is not None
    return target_for(cam, parse_settings(settings))


def test_target_of_a_stream_camera() -> None:
    station = {
        "camera_heartbeat_method": "stream",
        "camera_heartbeat_stream_path": "/live",
        "camera_heartbeat_stream_timeout": 7,
        "camera_heartbeat_stream_username": "admin",
        "camera_heartbeat_stream_password": "station-pw",
    }
    t = _target(station)
    assert (t.url, t.port, t.timeout, t.username, t.password) == (
        "rtsp://192.0.2.7:554/live",
        554,
        7,
        "admin",
        "station-pw",
    )
    assert "station-pw" not in repr(t)
    t = _target(station, heartbeat_port=8554, heartbeat_password="own-pw")
    assert t.url == "rtsp://192.0.2.7:8554/live" and (t.username, t.password) == ("admin", "own-pw")
    url = "rtsp://cam:url-pw@192.0.2.8/h264Preview_01_sub"
    t = _target(station, heartbeat_url=url)  # credentials in the URL win over the station's
    assert (t.url, t.username, t.password) == (url, "", "")
    assert "url-pw" not in repr(t)
    v6 = _target(station | {"cameras": []}, ip_address="fe80::7%eth0")
    assert v6.url == "rtsp://[fe80::7%eth0]:554/live"
    assert _target({"camera_heartbeat_method": "tcp"}).url == ""  # other methods: no URL


def test_stream_secrets_are_redacted_in_settings_status_and_errors() -> None:
    from pumaguard_hb.model.camera import camera_from_entry
    from pumaguard_hb.model.errors import SettingsError
    from pumaguard_hb.model.settings import layered_settings, parse_settings

    mac = "aa:bb:cc:23:02:02"
    url = "rtsp://cam:url-pw@192.0.2.9/x?password=query-pw"
    doc = {
        "camera_heartbeat_stream_password": "station-pw",
        "camera_heartbeat_cameras": {mac: {"heartbeat_url": url, "heartbeat_password": "own-pw"}},
    }
    shown = json.dumps(parse_settings(doc).public_dict())
    assert "rtsp://***@192.0.2.9/x?***" in shown
    assert not any(pw in shown for pw in ("station-pw", "url-pw", "query-pw", "own-pw"))
    cam = camera_from_entry(
        camera("R", "192.0.2.9", mac, heartbeat_url=url, heartbeat_password="p1")
    )
    assert cam is not None
    assert cam.to_dict()["overrides"] == {"url": "rtsp://***@192.0.2.9/x?***", "password": "***"}
    assert "p1" not in repr(cam) and "url-pw" not in repr(cam)
    for bad in (
        {"camera_heartbeat_cameras": {mac: {"heartbeat_url": "http://u:url-pw@h/"}}},
        {"camera_heartbeat_cameras": {mac: {"heartbeat_password": "own-pw\n"}}},
        {"camera_heartbeat_stream_password": "station-pw\n"},
    ):
        with pytest.raises(SettingsError) as err:
            parse_settings(bad)
        assert not any(pw in str(err.value) for pw in ("url-pw", "own-pw", "station-pw"))
    broken = camera_from_entry(camera("R", "192.0.2.9", mac, heartbeat_url="ftp://u:url-pw@h/"))
    assert broken is not None and broken.problem and "url-pw" not in broken.problem
    # from a file others may write: neither the station's nor a camera's credentials
    s = layered_settings(doc, "/srv/shared.yaml", shared_untrusted="group-writable")
    assert s.stream_password == "" and s.overrides_for(mac) == {}
