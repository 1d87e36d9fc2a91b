"""A real daemon process on temp files, driven over its socket, with real cameras on loopback."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from harness import REPO, Daemon, Listeners, camera, free_port, wait_for, write_settings

from pumaguard_hb.control.protocol import ProtocolError

MAC1, MAC2, MAC3 = "aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02", "aa:bb:cc:dd:ee:03"


def settings_doc(cameras: list[dict[str, object]], **keys: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "camera-heartbeat-interval": 3600,
        "camera-heartbeat-method": "tcp",
        "camera-heartbeat-tcp-timeout": 1,
        "YOLO-max-dets": 12,
        "plugs": [{"hostname": "shellyplug", "ip_address": "127.0.0.99"}],
        "cameras": cameras,
    }
    doc.update(keys)
    return doc


def read(path: Path) -> dict[str, object]:
    return yaml.safe_load(path.read_text())


def cams_by_mac(path: Path) -> dict[str, dict[str, object]]:
    return {c["mac_address"]: c for c in read(path)["cameras"]}  # type: ignore[index,union-attr]


def first_sweep_done(d: Daemon) -> bool:
    return bool(d.call("status")["daemon"]["sweeps"] >= 1)


def test_statuses_last_seen_and_check_now_shape(daemon_factory, listeners: Listeners) -> None:
    up = listeners.open("127.0.0.11")
    refused_port = free_port("127.0.0.12")
    d = daemon_factory()
    write_settings(
        d.settings,
        settings_doc(
            [
                camera("Microseven-up", up[0], MAC1, custom="kept"),
                camera("Microseven-refused", "127.0.0.12", MAC2, status="connected"),
            ],
            **{"camera-heartbeat-tcp-port": up[1]},
        ),
    )
    # the refused camera listens on the same port number on another address: nothing there
    assert refused_port
    d.start()
    wait_for(lambda: first_sweep_done(d))
    report = d.call("check_now")
    assert report["status"] == "success"
    assert report["message"] == "Heartbeat check completed"
    cam1, cam2 = report["cameras"][MAC1], report["cameras"][MAC2]
    assert set(cam1) >= {"hostname", "ip_address", "reachable", "status", "last_seen"}
    assert (cam1["reachable"], cam1["status"]) == (True, "connected")
    assert cam1["rtt_ms"] is not None and cam1["rtt_ms"] >= 0
    assert (cam2["reachable"], cam2["status"]) == (False, "disconnected")
    assert "refused" in cam2["reason"]
    on_disk = cams_by_mac(d.settings)
    assert on_disk[MAC1]["status"] == "connected"
    assert on_disk[MAC1]["last_seen"] != "2024-01-15T14:32:15Z"
    assert on_disk[MAC1]["custom"] == "kept"
    assert on_disk[MAC2]["status"] == "disconnected"
    assert on_disk[MAC2]["last_seen"] == "2024-01-15T14:32:15Z"  # last good contact kept
    assert read(d.settings)["plugs"] == [{"hostname": "shellyplug", "ip_address": "127.0.0.99"}]
    d.call("check_now")
    log = d.log()
    assert log.count("Microseven-refused (127.0.0.12) is down: tcp 127.0.0.12:") == 1
    assert log.count("Microseven-up (127.0.0.11) is up") == 1


def test_camera_going_down_and_up_is_logged_once_each(daemon_factory, listeners) -> None:
    ip, port = listeners.open("127.0.0.13")
    d = daemon_factory()
    write_settings(
        d.settings, settings_doc([camera("cam", ip, MAC1)], **{"camera-heartbeat-tcp-port": port})
    )
    d.start()
    wait_for(lambda: first_sweep_done(d))
    listeners.close((ip, port))
    assert d.call("check_now")["cameras"][MAC1]["status"] == "disconnected"
    d.call("check_now")
    listeners.open(ip, port)
    assert d.call("check_now")["cameras"][MAC1]["status"] == "connected"
    log = d.log()
    assert log.count(f"cam ({ip}) is down: tcp {ip}:{port} refused") == 1
    assert log.count(f"cam ({ip}) is up") == 2


def test_silent_camera_times_out_and_sweeps_are_concurrent(daemon_factory, listeners) -> None:
    up = listeners.open("127.0.0.14")
    silent = [listeners.silent(f"127.0.1.{i}", up[1]) for i in range(1, 21)]
    d = daemon_factory()
    cams = [camera(f"s{i}", ip, f"aa:bb:cc:dd:01:{i:02x}") for i, (ip, _) in enumerate(silent)]
    cams.append(camera("up", up[0], MAC1))
    write_settings(d.settings, settings_doc(cams, **{"camera-heartbeat-tcp-port": up[1]}))
    d.start()
    wait_for(lambda: first_sweep_done(d), timeout=30)
    status = d.call("status")
    last = status["daemon"]["last_sweep"]
    assert (last["cameras"], last["reachable"]) == (21, 1)
    reasons = {c["hostname"]: c["reason"] for c in status["cameras"]}
    assert all(reasons[f"s{i}"].endswith("timed out after 1.0s") for i in range(20)), reasons
    # 20 silent cameras with a 1 s timeout, probed concurrently: about one timeout, not 20
    # (a generous bound; bench/ measures the real figure)
    assert last["duration_s"] < 10


def test_overlapping_check_now_share_one_sweep(daemon_factory, listeners) -> None:
    silent_ip, silent_port = listeners.silent("127.0.0.15")  # every check times out after 1 s
    d = daemon_factory()
    write_settings(
        d.settings,
        settings_doc(
            [camera("silent", silent_ip, MAC1)], **{"camera-heartbeat-tcp-port": silent_port}
        ),
    )
    d.start()
    wait_for(lambda: first_sweep_done(d), timeout=20)
    before = d.call("status")["daemon"]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda _: d.call("check_now"), range(10)))
    after = d.call("status")["daemon"]
    assert all(r["cameras"][MAC1]["reason"].endswith("timed out after 1.0s") for r in replies)
    assert after["sweeps"] - before["sweeps"] == 1
    assert after["writes"] - before["writes"] <= 1


def test_writes_only_when_something_changed(daemon_factory, listeners) -> None:
    d = daemon_factory()
    write_settings(
        d.settings,
        settings_doc(
            [camera("gone", "127.0.0.16", MAC1)], **{"camera-heartbeat-tcp-port": free_port()}
        ),
    )
    d.start()
    wait_for(lambda: first_sweep_done(d))
    for _ in range(3):
        d.call("check_now")
    daemon = d.call("status")["daemon"]
    assert daemon["sweeps"] == 4
    assert daemon["writes"] == 0  # already disconnected, last_seen kept: nothing to write


def test_sigterm_mid_sweep_stops_within_a_second_and_persists(daemon_factory, listeners) -> None:
    up = listeners.open("127.0.0.17")
    silent = listeners.silent("127.0.0.18", up[1])
    d = daemon_factory()
    write_settings(
        d.settings,
        settings_doc(
            [camera("up", up[0], MAC1), camera("silent", silent[0], MAC2)],
            **{
                "camera-heartbeat-tcp-port": up[1],
                "camera-heartbeat-tcp-timeout": 60,
                "camera-heartbeat-interval": 3600,
            },
        ),
    )
    d.start(wait=False)
    d.wait_ready()
    wait_for(lambda: d.call("status")["daemon"]["sweeping"])
    time.sleep(0.3)
    start = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.proc is not None
    code = d.proc.wait(30)
    elapsed = time.monotonic() - start
    assert code == 0
    # the sweep's probe of the silent camera has 60 s to go: a stop that waited for it would
    # take a minute; 5 s leaves a loaded machine its noise (the figure is a benchmark's)
    assert elapsed < 5.0, f"took {elapsed:.2f}s to stop"
    assert cams_by_mac(d.settings)[MAC1]["status"] == "connected"
    assert not d.socket.exists()


def test_notify_protocol_messages(daemon_factory, tmp_path: Path) -> None:
    notify_path = tmp_path / "notify.sock"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(notify_path))
    sink.settimeout(5)
    d = daemon_factory()
    write_settings(d.settings, settings_doc([]))
    try:
        d.start(env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "300000"}, wait=False)
        messages: list[str] = []

        def until(word: str) -> str:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                msg = sink.recv(4096).decode()
                messages.append(msg)
                if word in msg.split("\n"):
                    return msg
            raise AssertionError(f"{word} not received; got {messages}")

        ready = until("READY=1")
        assert d.call("ping") == "pong"  # the socket listens once READY is sent
        status_line = next(x for x in ready.split("\n") if x.startswith("STATUS="))
        assert (
            status_line == "STATUS=0/0 cameras connected, next check in 0s"
            or status_line.startswith("STATUS=0/0 cameras connected")
        )
        until("WATCHDOG=1")
        until("WATCHDOG=1")
        d.signal(signal.SIGHUP)
        until("RELOADING=1")
        until("READY=1")
        d.signal(signal.SIGTERM)
        until("STOPPING=1")
    finally:
        sink.close()


def test_invalid_settings_at_start_exit_78_with_one_clear_line(tmp_path: Path) -> None:
    path = write_settings(tmp_path / "s.yaml", {"camera-heartbeat-method": "ping"})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for extra in ([], ["--check-config"]):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pumaguard_hb",
                "--settings",
                str(path),
                "--socket",
                str(tmp_path / "s.sock"),
                *extra,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        assert proc.returncode == 78
        lines = proc.stderr.strip().splitlines()
        assert lines == [
            f"pumaguard-heartbeat: {path}: camera-heartbeat-method: invalid value "
            "'ping': must be one of icmp, tcp, both, http, https, rtsp, stream"
        ]


def test_check_config_ok_and_missing_file(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    path = tmp_path / "nothing-here.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "pumaguard_hb", "--settings", str(path), "--check-config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert "0 cameras" in proc.stdout
    assert not path.exists()


def test_missing_file_means_defaults_and_no_cameras(daemon_factory) -> None:
    d = daemon_factory()
    d.start()
    status = d.call("status")
    assert status["cameras"] == []
    assert status["daemon"]["interval_s"] == 60 and status["daemon"]["method"] == "tcp"
    assert not d.settings.exists()


@pytest.mark.daemon_log(allow=[r"ERROR .*invalid value -1: .*keeping the last good settings"])
def test_outside_edits_are_picked_up_and_bad_ones_kept_out(daemon_factory, listeners) -> None:
    ip, port = listeners.open("127.0.0.19")
    d = daemon_factory()
    write_settings(d.settings, settings_doc([], **{"camera-heartbeat-tcp-port": port}))
    d.start()
    doc = read(d.settings)
    doc["cameras"] = [camera("added-by-web-ui", ip, MAC3)]
    doc["camera-heartbeat-interval"] = 30
    write_settings(d.settings, doc)
    wait_for(lambda: d.call("status")["daemon"]["interval_s"] == 30, timeout=10)
    assert d.call("check_now")["cameras"][MAC3]["status"] == "connected"
    # an invalid value: the old settings stay, one error, shown in status
    doc = read(d.settings)
    doc["camera-heartbeat-interval"] = -1
    write_settings(d.settings, doc)
    wait_for(lambda: d.call("status")["daemon"]["settings_error"], timeout=10)
    assert d.call("status")["daemon"]["interval_s"] == 30
    d.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert d.log().count("camera-heartbeat-interval: invalid value -1") == 1
    doc["camera-heartbeat-interval"] = 45
    write_settings(d.settings, doc)
    d.signal(signal.SIGHUP)
    wait_for(lambda: d.call("status")["daemon"]["interval_s"] == 45, timeout=10)
    assert d.call("status")["daemon"]["settings_error"] is None


@pytest.mark.daemon_log(allow=[r"ERROR .*does not parse as YAML.*keeping the last good settings"])
def test_broken_file_mid_run_is_never_overwritten(daemon_factory, listeners) -> None:
    ip, port = listeners.open("127.0.0.20")
    d = daemon_factory()
    write_settings(
        d.settings, settings_doc([camera("cam", ip, MAC1)], **{"camera-heartbeat-tcp-port": port})
    )
    d.start()
    wait_for(lambda: first_sweep_done(d))
    broken = d.settings.read_text() + "\n  - this: [is not yaml\n"
    d.settings.write_text(broken)
    wait_for(lambda: d.call("status")["daemon"]["settings_error"], timeout=10)
    time.sleep(1.1)  # so the next last_seen differs
    assert d.call("check_now")["cameras"][MAC1]["status"] == "connected"
    assert d.settings.read_text() == broken
    assert "does not parse as YAML" in d.call("status")["daemon"]["settings_error"]
    # fixed: the held-back change is written, with the web UI's fix kept
    fixed = yaml.safe_load(broken.rsplit("\n  - this", 1)[0])
    fixed["fixed-by-hand"] = True
    write_settings(d.settings, fixed)
    wait_for(lambda: d.call("status")["daemon"]["settings_error"] is None, timeout=10)
    wait_for(
        lambda: cams_by_mac(d.settings)[MAC1]["last_seen"] != fixed["cameras"][0]["last_seen"],
        timeout=10,
    )
    assert read(d.settings)["fixed-by-hand"] is True


def test_journald_lines_carry_syslog_priority(daemon_factory, listeners) -> None:
    d = daemon_factory()
    write_settings(
        d.settings,
        settings_doc(
            [camera("down", "127.0.0.21", MAC1, status="connected")],
            **{"camera-heartbeat-tcp-port": free_port()},
        ),
    )
    d.log_path.touch()
    st = os.stat(d.log_path)
    d.start(env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    wait_for(lambda: first_sweep_done(d))
    lines = d.log().splitlines()
    assert any(x.startswith("<4>camera down (127.0.0.21) is down") for x in lines), lines
    assert any(x.startswith("<6>pumaguard-heartbeat") for x in lines), lines


def test_human_log_lines_are_timestamped(daemon_factory) -> None:
    d = daemon_factory()
    d.start()
    first = d.log().splitlines()[0]
    assert first[:4].isdigit() and first[4] == "-" and " INFO pumaguard-heartbeat" in first


def test_disabled_monitoring_keeps_socket_and_dhcp(daemon_factory) -> None:
    d = daemon_factory()
    write_settings(d.settings, settings_doc([], **{"camera-heartbeat-enabled": False}))
    d.start()
    time.sleep(0.5)
    status = d.call("status")
    assert status["daemon"]["enabled"] is False and status["daemon"]["sweeps"] == 0
    with pytest.raises(ProtocolError) as err:
        d.call("check_now")
    assert err.value.code == "disabled"
    d.call(
        "dhcp_event",
        {"action": "add", "mac": MAC2, "ip": "127.0.0.22", "hostname": "Microseven-M7B77"},
    )
    assert cams_by_mac(d.settings)[MAC2]["status"] == "connected"
    assert d.call("status")["daemon"]["sweeps"] == 0


def test_ipv6_and_icmp_on_loopback(daemon_factory, listeners) -> None:
    _ip6, port6 = listeners.open("::1")
    d = daemon_factory()
    write_settings(
        d.settings,
        settings_doc(
            [camera("v6", "::1", MAC1), camera("v4", "127.0.0.1", MAC2)],
            **{"camera-heartbeat-tcp-port": port6, "camera-heartbeat-method": "tcp"},
        ),
    )
    d.start()
    wait_for(lambda: first_sweep_done(d))
    report = d.call("check_now")["cameras"]
    assert report[MAC1]["status"] == "connected"
    assert report[MAC1]["reason"].startswith(f"tcp [::1]:{port6} connected")
    if os.geteuid() != 0:
        pytest.skip("raw ICMP needs root here; the netns tests cover the unprivileged path")
    d.call("config_set", {"key": "camera_heartbeat_method", "value": "icmp"})
    report = d.call("check_now")["cameras"]
    assert report[MAC1]["reason"].startswith("icmp ::1 replied")
    assert report[MAC2]["reason"].startswith("icmp 127.0.0.1 replied")
    assert d.call("status")["daemon"]["icmp_mode"] == "privileged"
    assert read(d.settings)["camera-heartbeat-method"] == "icmp"  # kept the file's spelling


def test_camera_add_remove_and_config(daemon_factory, listeners) -> None:
    ip, port = listeners.open("127.0.0.23")
    d = daemon_factory()
    write_settings(d.settings, settings_doc([], **{"camera-heartbeat-tcp-port": port}))
    d.start()
    added = d.call("camera_add", {"hostname": "Manual", "ip_address": ip})
    assert added["id"] == f"ip:{ip}"
    wait_for(lambda: cams_by_mac_or_ip(d.settings, ip).get("status") == "connected")
    with pytest.raises(ProtocolError) as err:
        d.call("camera_add", {"hostname": "again", "ip_address": ip})
    assert err.value.code == "conflict"
    with pytest.raises(ProtocolError) as err:
        d.call("camera_add", {"hostname": "bad", "ip_address": "999.1.1.1"})
    assert err.value.code == "invalid_value"
    with pytest.raises(ProtocolError) as err:
        d.call("config_set", {"key": "camera_heartbeat_tcp_port", "value": 70000})
    assert err.value.code == "invalid_value"
    with pytest.raises(ProtocolError) as err:
        d.call("config_set", {"key": "no_such_key", "value": 1})
    assert err.value.code == "invalid_value"
    assert d.call("config_get", {"key": "camera-heartbeat-interval"})["value"] == 3600
    d.call("camera_remove", {"camera": "Manual"})
    assert read(d.settings)["cameras"] == []
    with pytest.raises(ProtocolError) as err:
        d.call("camera_remove", {"camera": "Manual"})
    assert err.value.code == "not_found"


def cams_by_mac_or_ip(path: Path, ip: str) -> dict[str, object]:
    for c in read(path).get("cameras") or []:  # type: ignore[union-attr]
        if c.get("ip_address") == ip:
            return c  # type: ignore[no-any-return]
    return {}


def test_garbage_and_huge_requests_get_errors_and_others_are_served(daemon_factory) -> None:
    d = daemon_factory()
    d.start()
    idle = [socket.socket(socket.AF_UNIX) for _ in range(50)]
    try:
        for s in idle:
            s.connect(str(d.socket))
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(d.socket))
            f = s.makefile("rwb")
            for line, code in (
                (b"garbage\n", "bad_request"),
                (b'{"cmd":"nope"}\n', "unknown_command"),
                (b'{"cmd":"status","args":5}\n', "bad_args"),
            ):
                f.write(line)
                f.flush()
                reply = f.readline()
                assert f'"code":"{code}"'.encode() in reply, reply
            f.write(b'{"cmd":"ping","id":"x"}\n')
            f.flush()
            assert f.readline() == b'{"id":"x","ok":true,"result":"pong"}\n'
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(d.socket))
            s.settimeout(10)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(b"x" * (1 << 20))
            assert b'"code":"too_large"' in s.recv(4096)
        assert d.call("ping") == "pong"
    finally:
        for s in idle:
            s.close()


def test_sopeercred_keeps_changes_to_the_group(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user")
    folder = Path(tempfile.mkdtemp(prefix="phb-peercred-"))
    folder.chmod(0o755)
    d = Daemon(folder)
    try:
        _peercred_check(d)
    finally:
        d.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _peercred_check(d: Daemon) -> None:
    d.start()
    os.chmod(d.socket, 0o666)  # widen the socket so that only SO_PEERCRED stands in the way
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from pumaguard_hb.control.client import call\n"
        "from pumaguard_hb.control.protocol import ProtocolError\n"
        f"print(call('status', socket_path={str(d.socket)!r})['daemon']['version'])\n"
        f"try:\n    call('reload', socket_path={str(d.socket)!r})\nexcept ProtocolError as e:\n"
        "    print(e.code, e.message)\n"
    )
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "0.1.0"
    assert out[1].startswith("permission_denied permission denied: add yourself to group root")
