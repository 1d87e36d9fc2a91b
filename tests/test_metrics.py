"""Prometheus metrics: the exposition text (pure, and from a real daemon checked by promtool)
and the optional /metrics listener on 127.0.0.1. Only loopback is used."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, Listeners, camera, free_port, wait_for, write_settings
from helpers_cli import clean_env, run_cli

from pumaguard_hb.outputs.metrics import escape_label, render

SAMPLE = re.compile(r'^([a-z_]+)(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def parse(text: str) -> dict[str, list[tuple[str, float]]]:
    """Samples by metric name; checks every line is HELP, TYPE or a well-formed sample."""
    out: dict[str, list[tuple[str, float]]] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        assert m.group(1) in typed, f"sample before its TYPE: {line!r}"
        out.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return out


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        print("promtool not installed: apt-get install prometheus (Debian ships promtool in it)")
        pytest.skip("promtool not installed (Debian package prometheus)")
    return path


def check_with_promtool(text: str) -> None:
    done = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


STATUS: dict[str, Any] = {
    "daemon": {
        "version": "0.1.0",
        "started_at": 1795000000.5,
        "enabled": True,
        "interval_s": 60,
        "sweeps": 3,
        "writes": 2,
        "last_sweep": {"started_at": 1795000001.25, "duration_s": 0.012},
        "history": {"available": True},
        "settings": {"camera_heartbeat_station": "north-gate"},
    },
    "cameras": [
        {
            "id": "aa:bb:cc:dd:ee:ff",
            "hostname": 'Gate "north"\\x\nline',
            "ip_address": "192.168.52.100",
            "status": "connected",
            "last_seen": "2026-11-27T03:36:50Z",
            "rtt_ms": 0.512,
            "since": 1795000001.3,
            "uptime_24h": 99.5,
            "uptime_7d": None,
        },
        {
            "id": "ip:192.168.52.7",
            "hostname": "",
            "ip_address": "192.168.52.7",
            "status": "disconnected",
            "last_seen": None,
            "rtt_ms": None,
        },
    ],
}


def test_render_pure() -> None:
    text = render(STATUS, {"aa:bb:cc:dd:ee:ff": 4})
    samples = parse(text)
    up = dict(samples["pumaguard_heartbeat_camera_up"])
    gate = (
        '{camera="aa:bb:cc:dd:ee:ff",hostname="Gate \\"north\\"\\\\x\\nline",ip="192.168.52.100",'
        'station="north-gate"}'
    )
    assert up[gate] == 1
    assert up['{camera="ip:192.168.52.7",hostname="",ip="192.168.52.7",station="north-gate"}'] == 0
    assert dict(samples["pumaguard_heartbeat_camera_state_changes_total"])[gate] == 4
    assert dict(samples["pumaguard_heartbeat_camera_rtt_seconds"])[gate] == pytest.approx(0.000512)
    assert len(samples["pumaguard_heartbeat_camera_last_seen_timestamp_seconds"]) == 1
    station = '{station="north-gate"}'
    assert samples["pumaguard_heartbeat_sweeps_total"] == [(station, 3)]
    assert samples["pumaguard_heartbeat_settings_writes_total"] == [(station, 2)]
    assert samples["pumaguard_heartbeat_sweep_duration_seconds"] == [(station, 0.012)]
    assert samples["pumaguard_heartbeat_build_info"] == [
        ('{version="0.1.0",station="north-gate"}', 1)
    ]
    ratio = samples["pumaguard_heartbeat_camera_uptime_ratio"]
    assert len(ratio) == 1 and ratio[0][1] == pytest.approx(0.995)
    assert "# TYPE pumaguard_heartbeat_sweeps_total counter" in text
    assert "# TYPE pumaguard_heartbeat_camera_up gauge" in text
    assert text.endswith("\n") and "\n\n" not in text
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    check_with_promtool(text)


def start(d: Daemon, tmp: Path) -> Daemon:
    return d.start(args=["--state-dir", str(tmp / "state")])


def test_metrics_command_from_a_real_daemon(
    tmp_path: Path, listeners: Listeners, daemon_factory: Any
) -> None:
    ip, port = listeners.open("127.0.0.2")
    d: Daemon = daemon_factory()
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 3600,
            "camera-heartbeat-tcp-port": port,
            "camera-heartbeat-tcp-timeout": 1,
            "cameras": [
                camera("Microseven-Gate", ip, "00:11:22:33:44:01"),
                camera("Microseven-Creek", "127.0.0.3", "00:11:22:33:44:03", status="connected"),
            ],
        },
    )
    start(d, tmp_path)
    d.call("check_now")
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    done = run_cli("metrics", env=env)
    assert done.returncode == 0, done.stderr
    samples = parse(done.stdout)
    up = {labels.split('"')[1]: v for labels, v in samples["pumaguard_heartbeat_camera_up"]}
    assert up == {"00:11:22:33:44:01": 1, "00:11:22:33:44:03": 0}
    changes = {
        labels.split('"')[1]: v
        for labels, v in samples["pumaguard_heartbeat_camera_state_changes_total"]
    }
    assert changes == {"00:11:22:33:44:01": 1, "00:11:22:33:44:03": 1}
    assert samples["pumaguard_heartbeat_sweeps_total"][0][1] >= 1
    assert [v for _, v in samples["pumaguard_heartbeat_history_available"]] == [1]
    assert len(samples["pumaguard_heartbeat_camera_rtt_seconds"]) == 1
    check_with_promtool(done.stdout)
    as_json = json.loads(run_cli("metrics", "--json", env=env).stdout)
    assert as_json["content_type"].startswith("text/plain; version=0.0.4")
    assert as_json["text"].startswith("# HELP pumaguard_heartbeat_")


def http(url: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


def test_metrics_listener_on_loopback(tmp_path: Path, daemon_factory: Any) -> None:
    port = free_port()
    d: Daemon = daemon_factory()
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 3600,
            "camera-heartbeat-tcp-port": 1,
            "camera-heartbeat-metrics-listen": f"127.0.0.1:{port}",
            "cameras": [camera("Microseven-Gate", "127.0.0.2", "00:11:22:33:44:01")],
        },
    )
    start(d, tmp_path)
    base = f"http://127.0.0.1:{port}"
    code, headers, body = wait_for(lambda: _try(base + "/metrics"))
    assert code == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'pumaguard_heartbeat_camera_up{camera="00:11:22:33:44:01"' in body
    check_with_promtool(body)
    assert http(base + "/nothing")[0] == 404
    assert http(base + "/metrics", "POST")[0] == 405
    head = http(base + "/metrics", "HEAD")
    assert head[0] == 200 and head[2] == ""
    # an oversized request head, and a silent client, do not hurt the next request
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Junk: " + b"a" * 20000 + b"\r\n\r\n")
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        assert data == b""  # closed without an answer
    silent = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        t = time.monotonic()
        assert http(base + "/metrics")[0] == 200
        assert time.monotonic() - t < 2
    finally:
        silent.close()
    # turning it off on the fly closes the listener; on again opens it
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    assert (
        run_cli("config", "set", "camera_heartbeat_metrics_listen", "''", env=env).returncode == 0
    )
    wait_for(lambda: _refused(port), timeout=10)
    other = free_port()
    done = run_cli(
        "config", "set", "camera_heartbeat_metrics_listen", f"127.0.0.1:{other}", env=env
    )
    assert done.returncode == 0, done.stderr
    assert wait_for(lambda: _try(f"http://127.0.0.1:{other}/metrics"), timeout=10)[0] == 200


def _try(url: str) -> tuple[int, dict[str, str], str] | None:
    try:
        return http(url)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.mark.daemon_log(allow=[r"ERROR metrics listener on 127\.0\.0\.1:\d+ failed: .*in use"])
@pytest.mark.daemon_log(allow=[r"metrics listener on \S+ failed"])  # the test provokes it
def test_metrics_listener_bad_address_is_one_error(tmp_path: Path, daemon_factory: Any) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        d: Daemon = daemon_factory()
        write_settings(
            d.settings,
            {
                "camera-heartbeat-interval": 3600,
                "camera-heartbeat-metrics-listen": f"127.0.0.1:{taken.getsockname()[1]}",
            },
        )
        start(d, tmp_path)
        wait_for(lambda: "metrics listener on" in d.log())
        time.sleep(2.5)  # the setting is re-checked every 2 s: no retry loop, no log flood
        assert d.log().count("metrics listener on") == 1
        assert d.call("ping") == "pong"
    finally:
        taken.close()
