"""The daemon keeps telling the truth: its own config, invalid values, stale reports,
check-now right after camera add, reload notifications, and a bounded stop that keeps
what it could not write. A real daemon process on temp files, cameras on loopback."""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Listeners, camera, free_port, wait_for, write_settings

from pumaguard_hb.control.client import Client
from pumaguard_hb.control.protocol import ProtocolError
from pumaguard_hb.model.station import MAX_LEARNED

MAC1, MAC2 = "aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"


def doc(cameras: list[dict[str, Any]], **keys: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "camera-heartbeat-interval": 3600,
        "camera-heartbeat-method": "tcp",
        "camera-heartbeat-tcp-timeout": 1,
        "YOLO-max-dets": 12,
        "cameras": cameras,
    }
    return base | keys


def file_cams(path: Path) -> dict[str, dict[str, Any]]:
    return {c["mac_address"]: c for c in yaml.safe_load(path.read_text())["cameras"]}


def test_own_config_wins_and_config_set_writes_there(daemon_factory, tmp_path: Path) -> None:
    d = daemon_factory()
    write_settings(d.settings, doc([], **{"camera-heartbeat-failure-threshold": 1}))
    shared_before = d.settings.read_bytes()
    own = write_settings(tmp_path / "heartbeat.yaml", {"camera_heartbeat_failure_threshold": 3})
    d.start(args=["--config", str(own)])
    status = d.call("status")["daemon"]
    assert status["config_path"] == str(own) and status["mode"] == "standalone"
    assert status["settings"]["camera_heartbeat_failure_threshold"] == 3
    assert status["settings"]["camera_heartbeat_interval"] == 3600  # from the shared file
    d.call("config_set", {"key": "camera_heartbeat_tcp_timeout", "value": 2})
    assert yaml.safe_load(own.read_text()) == {
        "camera_heartbeat_failure_threshold": 3,
        "camera_heartbeat_tcp_timeout": 2,
    }
    assert d.settings.read_bytes() == shared_before  # the shared file is not ours to tune
    # an edit of the own config is picked up without a restart
    own.write_text("camera_heartbeat_failure_threshold: 5\n")
    wait_for(
        lambda: d.call("config_get", {"key": "camera_heartbeat_failure_threshold"})["value"] == 5,
        15,
    )


@pytest.mark.daemon_log(exit=78)
def test_invalid_own_config_at_start_is_exit_78_naming_it(daemon_factory, tmp_path: Path) -> None:
    d = daemon_factory()
    write_settings(d.settings, doc([]))
    own = write_settings(tmp_path / "heartbeat.yaml", {"camera_heartbeat_interval": -1})
    d.start(args=["--config", str(own)], wait=False)
    assert d.proc is not None
    assert d.proc.wait(30) == 78
    assert f"{own}: camera_heartbeat_interval: invalid value -1" in d.log()


@pytest.mark.daemon_log(
    allow=[r"ERROR .*camera-heartbeat-interval: invalid value '30'.*keeping the last good"]
)
def test_an_invalid_readable_value_does_not_stop_status_writes(
    daemon_factory, listeners: Listeners
) -> None:
    up = listeners.open("127.0.0.21")
    d = daemon_factory()
    write_settings(d.settings, doc([camera("Microseven-a", up[0], MAC1, heartbeat_port=up[1])]))
    d.start()
    d.call("check_now")
    assert file_cams(d.settings)[MAC1]["status"] == "connected"
    # a web form writes the interval as text: the old settings stay, and so do writes
    text = d.settings.read_text().replace(
        "camera-heartbeat-interval: 3600", "camera-heartbeat-interval: '30'"
    )
    d.settings.write_text(text)
    wait_for(lambda: d.call("status")["daemon"]["settings_error"] is not None, 15)
    status = d.call("status")["daemon"]
    assert "camera-heartbeat-interval" in status["settings_error"]
    assert status["settings"]["camera_heartbeat_interval"] == 3600
    listeners.close(up)
    d.call("check_now")
    wait_for(lambda: file_cams(d.settings)[MAC1]["status"] == "disconnected", 15)
    assert "camera-heartbeat-interval: '30'" in d.settings.read_text()  # their value, kept


def test_a_stale_foreign_status_is_a_report_not_a_fact(daemon_factory) -> None:
    refused = free_port("127.0.0.22")
    d = daemon_factory()
    write_settings(
        d.settings,
        doc(
            [camera("Microseven-b", "127.0.0.22", MAC1, status="connected")],
            **{"camera-heartbeat-tcp-port": refused},
        ),
    )
    d.start()
    d.call("check_now")
    assert file_cams(d.settings)[MAC1]["status"] == "disconnected"
    # another writer puts its stale memory back, in place, as the web UI does
    text = d.settings.read_text().replace("status: disconnected", "status: connected")
    with open(d.settings, "r+") as f:
        f.truncate(0)
        f.write(text)
    d.call("reload")  # what the daemon does when its poll notices the change (every 2 s)
    cams = {c["id"]: c for c in d.call("status")["cameras"]}
    assert cams[MAC1]["status"] == "disconnected"
    d.call("check_now")
    assert file_cams(d.settings)[MAC1]["status"] == "disconnected"  # the truth written back
    assert "is up" not in d.log()  # no false recovery, no false alert


def test_check_now_of_a_camera_added_during_a_full_sweep(
    daemon_factory, listeners: Listeners
) -> None:
    silent = listeners.silent("127.0.0.23")
    new = listeners.open("127.0.0.24")
    d = daemon_factory()
    write_settings(
        d.settings,
        doc(
            [camera("Microseven-slow", silent[0], MAC1)],
            **{
                "camera-heartbeat-tcp-port": silent[1],
                "camera-heartbeat-tcp-timeout": 4,
            },
        ),
    )
    d.start()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        full = pool.submit(d.call, "check_now", None, 60)
        wait_for(lambda: d.call("status")["daemon"]["sweeping"], 15)
        d.call(
            "camera_add",
            {
                "hostname": "Late",
                "ip_address": new[0],
                "mac_address": MAC2,
            },
        )
        # overrides the port: the new camera listens elsewhere
        d.call("config_set", {"key": "camera_heartbeat_tcp_port", "value": new[1]})
        report = d.call("check_now", {"cameras": [MAC2]}, 60)
        assert report["cameras"][MAC2]["reachable"] is True, report
        assert report["cameras"][MAC2]["reason"] != "not checked"
        full.result(60)


def test_every_reload_says_reloading_and_ready(daemon_factory, tmp_path: Path) -> None:
    sink_path = tmp_path / "notify.sock"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(sink_path))
    sink.settimeout(5)
    try:
        d = daemon_factory()
        write_settings(d.settings, doc([]))
        d.start(env={"NOTIFY_SOCKET": str(sink_path)})
        seen: list[str] = []

        def until(word: str) -> None:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                lines = sink.recv(4096).decode().split("\n")
                seen.extend(lines)
                if word in lines:
                    return
            raise AssertionError(f"{word} not received: {seen}")

        until("READY=1")
        seen.clear()
        d.call("reload")
        until("RELOADING=1")
        until("READY=1")
        assert seen.index("RELOADING=1") < len(seen) - 1
    finally:
        sink.close()


@pytest.mark.daemon_log(allow=[r"ERROR .*\.lock is held by another writer"])
def test_stop_is_bounded_and_keeps_what_it_could_not_write(daemon_factory) -> None:
    d = daemon_factory()
    write_settings(d.settings, doc([]))
    d.start()
    lock = os.open(str(d.settings) + ".lock", os.O_RDWR | os.O_CREAT, 0o660)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another writer hangs holding the lock
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                d.call,
                "dhcp_event",
                {"action": "add", "mac": MAC1, "ip": "127.0.0.25", "hostname": "Microseven-new"},
                60,
            )
            wait_for(lambda: any(c["id"] == MAC1 for c in d.call("status")["cameras"]), 15)
            began = time.monotonic()
            d.signal(signal.SIGTERM)
            assert d.proc is not None
            assert d.proc.wait(30) == 0
            took = time.monotonic() - began
            pending.exception(30)
        # systemd's TimeoutStopSec is 10 s; the stop waited on the lock well inside it
        assert took < 9.0, took
        spool = d.tmp / "state" / "unsaved-changes.json"
        kept = json.loads(spool.read_text())
        assert MAC1 in kept["added"]
        assert "Microseven-new" not in d.settings.read_text()
    finally:
        os.close(lock)  # the hung writer goes away
    d2 = daemon_factory()
    d2.start()
    wait_for(lambda: MAC1 in file_cams(d.settings), 15)
    assert file_cams(d.settings)[MAC1]["hostname"] == "Microseven-new"
    assert not spool.exists()
    assert d2.call("status")["daemon"]["write_error"] is None


def test_dhcp_learning_stops_at_the_documented_bound_and_says_so_once(daemon_factory) -> None:
    d = daemon_factory()
    write_settings(d.settings, doc([]))
    d.start()
    with Client(d.socket, timeout=30) as client:  # one connection: 300 events in a row
        for i in range(300):
            mac = f"aa:bb:cc:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
            ip = f"127.1.{i >> 8}.{(i & 127) + 1}"
            client.call(
                "dhcp_event", {"action": "add", "mac": mac, "ip": ip, "hostname": "Microseven-x"}
            )
    assert len(d.call("status")["cameras"]) == MAX_LEARNED == 256
    assert len(yaml.safe_load(d.settings.read_text())["cameras"]) == 256
    assert d.log().count("not learned: the station already has 256 cameras") == 1


def test_the_web_ui_url_is_never_set_in_the_shared_file(daemon_factory) -> None:
    d = daemon_factory()
    write_settings(d.settings, doc([]))
    before = d.settings.read_bytes()
    d.start()  # no --config: the web UI would delete the key at its next save
    with pytest.raises(ProtocolError) as err:
        d.call(
            "config_set", {"key": "camera_heartbeat_webui_url", "value": "http://127.0.0.1:5000"}
        )
    assert err.value.code == "conflict" and "--config" in err.value.message
    assert d.settings.read_bytes() == before
