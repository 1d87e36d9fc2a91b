"""Camera-aware checks (http, https, rtsp) and per-camera overrides, against real servers.

The servers run in the lab's cameras namespace: a stdlib HTTP(S) server and GStreamer's
real RTSP server (gst-rtsp-server from Debian's packages). The daemon runs in the
prober namespace.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, camera, write_settings
from netlab import Lab, lab_fixture, requires_root_netns

pytestmark = [pytest.mark.netns, requires_root_netns]

lab = lab_fixture()
SERVERS = Path(__file__).parent / "servers"


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="phb-methods-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve(lab: Lab, argv: list[str]) -> subprocess.Popen[str]:
    """Start a server in the cameras namespace and wait for its "ready" line."""
    proc = lab.popen(
        argv, ns=lab.cameras, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "ready", f"{argv} said {line!r}"
    return proc


def rtsp_server(lab: Lab, ip: str, port: int = 554) -> subprocess.Popen[str]:
    if subprocess.run(
        [
            "/usr/bin/python3",
            "-c",
            "import gi; gi.require_version("
            "'GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
        ],
        capture_output=True,
        timeout=60,
    ).returncode:
        pytest.fail(
            "gst-rtsp-server missing: apt-get install python3-gi "
            "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base (./dev setup does)"
        )
    return serve(lab, ["/usr/bin/python3", str(SERVERS / "rtsp_server.py"), ip, str(port)])


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=camera",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def check(d: Daemon) -> dict[str, dict[str, Any]]:
    return {c["hostname"]: c for c in d.call("check_now")["cameras"].values()}


def test_rtsp_catches_a_dead_stream_that_ping_and_http_miss(lab: Lab, folder: Path) -> None:
    healthy = lab.add_camera_ip("answering")
    stream_dead = lab.add_camera_ip("answering")  # pings, web page up, RTSP service gone
    for ip in (healthy, stream_dead):
        serve(lab, [sys.executable, str(SERVERS / "http_server.py"), ip, "80"])
    rtsp_server(lab, healthy)
    d = Daemon(folder)
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 3600,
            "camera-heartbeat-tcp-timeout": 2,
            "camera-heartbeat-method": "icmp",
            "cameras": [
                camera("healthy", healthy, "02:00:00:00:02:01"),
                camera("stream-dead", stream_dead, "02:00:00:00:02:02"),
            ],
        },
    )
    d.start(prefix=lab.command([]))
    try:
        for method in ("icmp", "http"):
            d.call("config_set", {"key": "camera_heartbeat_method", "value": method})
            got = check(d)
            assert got["healthy"]["reachable"] and got["stream-dead"]["reachable"], (method, got)
        d.call("config_set", {"key": "camera_heartbeat_method", "value": "rtsp"})
        got = check(d)
        assert got["healthy"]["reachable"] is True
        assert got["healthy"]["reason"].startswith(f"rtsp {healthy}:554 OPTIONS -> 200")
        assert got["stream-dead"]["reachable"] is False
        assert got["stream-dead"]["reason"] == f"rtsp {stream_dead}:554 refused"
        assert d.log().count(f"stream-dead ({stream_dead}) is down: rtsp") == 1
    finally:
        d.stop()


def test_http_statuses_https_and_per_camera_overrides(lab: Lab, folder: Path) -> None:
    web = lab.add_camera_ip("answering")
    tls = lab.add_camera_ip("answering")
    other_port = lab.add_camera_ip("answering")
    silent = lab.add_camera_ip("silent")
    cert, key = self_signed(folder)
    serve(lab, [sys.executable, str(SERVERS / "http_server.py"), web, "80"])
    serve(lab, [sys.executable, str(SERVERS / "http_server.py"), tls, "443", str(cert), str(key)])
    serve(lab, [sys.executable, str(SERVERS / "http_server.py"), other_port, "8080"])
    rtsp_server(lab, other_port, 8554)
    mac = iter(f"02:00:00:00:03:{i:02x}" for i in range(1, 20))
    cameras = [
        camera("web-root", web, next(mac)),  # global method http, path /
        camera("web-missing", web, next(mac), heartbeat_path="/nope"),  # 404: server alive
        camera("web-broken", web, next(mac), **{"heartbeat-path": "/broken"}),  # 500: down
        camera("tls", tls, next(mac), heartbeat_method="https"),  # self-signed cert accepted
        camera("port-8080", other_port, next(mac), heartbeat_port=8080),
        camera("rtsp-8554", other_port, next(mac), heartbeat_method="rtsp", heartbeat_port=8554),
        camera("tcp-8080", other_port, next(mac), heartbeat_method="tcp", heartbeat_port=8080),
        camera("silent-short", silent, next(mac), heartbeat_method="tcp", heartbeat_timeout=0.5),
        camera("bad-port", web, next(mac), heartbeat_port=70000, status="connected"),
    ]
    # the same IP appears several times on purpose: each entry is its own camera (own MAC)
    d = Daemon(folder)
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 3600,
            "camera-heartbeat-method": "http",
            "camera-heartbeat-tcp-timeout": 2,
            "cameras": cameras,
        },
    )
    d.start(prefix=lab.command([]))
    try:
        got = check(d)
        assert got["web-root"]["reason"].startswith(f"http {web}:80 GET / -> 200")
        assert got["web-missing"]["reachable"] is True
        assert "GET /nope -> 404" in got["web-missing"]["reason"]
        assert got["web-broken"]["reachable"] is False
        assert got["web-broken"]["reason"] == f"http {web}:80 GET /broken -> 500"
        assert got["tls"]["reason"].startswith(f"https {tls}:443 GET / -> 200")
        assert got["port-8080"]["reason"].startswith(f"http {other_port}:8080 GET / -> 200")
        assert got["rtsp-8554"]["reason"].startswith(f"rtsp {other_port}:8554 OPTIONS -> 200")
        assert got["tcp-8080"]["reason"].startswith(f"tcp {other_port}:8080 connected")
        assert got["silent-short"]["reason"] == f"tcp {silent}:80 timed out after 0.5s"
        # an invalid override: the camera is not probed (not marked down) and says why
        assert got["bad-port"]["reachable"] is None and got["bad-port"]["status"] == "connected"
        status = {c["hostname"]: c for c in d.call("status")["cameras"]}
        assert "heartbeat_port: invalid value 70000" in status["bad-port"]["problem"]
        assert status["rtsp-8554"]["overrides"] == {"method": "rtsp", "port": 8554}
    finally:
        d.stop()
