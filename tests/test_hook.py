"""The dnsmasq hook (systemd/dnsmasq-dhcp-script) with a real daemon, and without one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_cli import (
    HOOK_SCRIPT,
    NOBODY,
    NOGROUP,
    HbDaemon,
    Station,
    cameras_by_mac,
    clean_env,
    give_to_nobody,
    hook_folder,
    read_settings,
    run_hook,
    station,
    write_settings,
)

from pumaguard_hb.inputs import hook

KNOWN_MAC = Station.UP1[2]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Station]:
    """A daemon with long intervals, so only DHCP events change a camera's status."""
    with station(tmp_path) as s:
        s.daemon.wait_swept()
        yield s


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder the hook may write when run as root (it acts as the folder's owner)."""
    with hook_folder() as path:
        yield path


def status_by_mac(s: Station) -> dict[str, dict[str, object]]:
    return {c["mac_address"]: c for c in s.daemon.call("status")["cameras"]}


def test_the_script_is_executable_and_small() -> None:
    assert os.access(HOOK_SCRIPT, os.X_OK)
    text = HOOK_SCRIPT.read_text()
    assert text.startswith("#!/bin/sh\n") and "-m pumaguard_hb.hook" in text


def test_add_with_daemon_running_adds_the_camera(running: Station) -> None:
    started = time.monotonic()
    done = run_hook("add", "00:11:22:33:44:aa", "127.0.0.20", "Microseven-XYZ", env=running.env())
    assert time.monotonic() - started < 5
    assert done.returncode == 0 and done.stdout == ""
    assert "new camera Microseven-XYZ (127.0.0.20)" in done.stderr
    cam = status_by_mac(running)["00:11:22:33:44:aa"]
    assert (cam["hostname"], cam["ip_address"], cam["status"]) == (
        "Microseven-XYZ",
        "127.0.0.20",
        "connected",
    )
    assert cameras_by_mac(read_settings(running.settings))["00:11:22:33:44:aa"]["status"] == (
        "connected"
    )


def test_non_camera_is_ignored_quietly(running: Station) -> None:
    done = run_hook("add", "00:11:22:33:44:bb", "127.0.0.21", "kitchen-laptop", env=running.env())
    assert (done.returncode, done.stderr) == (0, "")
    assert "00:11:22:33:44:bb" not in status_by_mac(running)
    assert "00:11:22:33:44:bb" not in cameras_by_mac(read_settings(running.settings))


def test_del_marks_disconnected_and_old_reconnects(running: Station) -> None:
    assert status_by_mac(running)[KNOWN_MAC]["status"] == "connected"
    done = run_hook("del", KNOWN_MAC, "127.0.0.2", "Microseven-Gate", env=running.env())
    assert done.returncode == 0, done.stderr
    assert status_by_mac(running)[KNOWN_MAC]["status"] == "disconnected"
    # a known MAC is a camera whatever its hostname; "unknown" never replaces the name
    done = run_hook("old", KNOWN_MAC, "127.0.0.22", "unknown", env=running.env())
    assert done.returncode == 0, done.stderr
    cam = status_by_mac(running)[KNOWN_MAC]
    assert (cam["hostname"], cam["ip_address"], cam["status"]) == (
        "Microseven-Gate",
        "127.0.0.22",
        "connected",
    )
    done = run_hook("old", KNOWN_MAC, "127.0.0.22", env=running.env())  # no hostname at all
    assert status_by_mac(running)[KNOWN_MAC]["hostname"] == "Microseven-Gate"


def test_daemon_stopped_events_reach_the_settings_file(folder: Path) -> None:
    s = Station(folder)
    s.close()  # never started: only the file is there (with a web UI key we must keep)
    give_to_nobody(folder)
    env = clean_env(
        PUMAGUARD_HB_SOCKET=str(folder / "hb.sock"), PUMAGUARD_SETTINGS=str(s.settings)
    )
    done = run_hook("add", "00:11:22:33:44:cc", "127.0.0.30", "Microseven-Pond", env=env)
    assert done.returncode == 0
    assert (
        f"new camera Microseven-Pond (127.0.0.30) 00:11:22:33:44:cc (daemon not running; "
        f"written to {s.settings})" in done.stderr
    )
    doc = read_settings(s.settings)
    cam = cameras_by_mac(doc)["00:11:22:33:44:cc"]
    assert cam["status"] == "connected" and cam["last_seen"].endswith("Z")
    assert doc["plugs"] == [{"hostname": "plug-1", "ip_address": "127.0.0.9"}]

    assert run_hook("old", "00:11:22:33:44:cc", "127.0.0.31", "unknown", env=env).returncode == 0
    cam = cameras_by_mac(read_settings(s.settings))["00:11:22:33:44:cc"]
    assert (cam["hostname"], cam["ip_address"]) == ("Microseven-Pond", "127.0.0.31")

    assert run_hook("del", KNOWN_MAC, "127.0.0.2", env=env).returncode == 0
    assert cameras_by_mac(read_settings(s.settings))[KNOWN_MAC]["status"] == "disconnected"

    before = s.settings.read_bytes()
    done = run_hook("add", "00:11:22:33:44:dd", "127.0.0.32", "printer", env=env)
    assert (done.returncode, done.stderr) == (0, "")
    assert s.settings.read_bytes() == before

    # the daemon, once started, monitors what the hook wrote
    daemon = HbDaemon(s.settings, folder / "hb.sock")
    try:
        daemon.start()
        cams = {c["mac_address"]: c for c in daemon.call("status")["cameras"]}
        assert cams["00:11:22:33:44:cc"]["ip_address"] == "127.0.0.31"
    finally:
        daemon.stop()


def test_dnsmasq_hostname_patterns_come_from_the_file(folder: Path) -> None:
    settings = write_settings(
        folder / "s.yaml",
        {
            "camera-heartbeat-hostname-patterns": ["M7*"],
            "camera-heartbeat-interval": -1,  # an unrelated bad value does not stop the hook
        },
    )
    give_to_nobody(folder)
    env = clean_env(PUMAGUARD_HB_SOCKET=str(folder / "hb.sock"), PUMAGUARD_SETTINGS=str(settings))
    done = run_hook("add", "00:11:22:33:44:ee", "127.0.0.40", "m7-shed", env=env)
    assert done.returncode == 0
    assert "camera-heartbeat-interval" in done.stderr  # the warning names the bad key
    assert "00:11:22:33:44:ee" in cameras_by_mac(read_settings(settings))
    run_hook("add", "00:11:22:33:44:ef", "127.0.0.41", "Microseven-Old", env=env)
    assert "00:11:22:33:44:ef" not in cameras_by_mac(read_settings(settings))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["add", "not-a-mac", "127.0.0.50", "Microseven-A"], "mac_address: invalid value"),
        (["add", "00:11:22:33:44:01", "300.1.2.3", "Microseven-A"], "ip_address: invalid value"),
        (["add", "00:11:22:33:44:01"], "expected ACTION MAC IP [HOSTNAME]"),
        ([], "no arguments"),
    ],
)
def test_invalid_input_exits_0_and_logs(tmp_path: Path, args: list[str], says: str) -> None:
    settings = write_settings(tmp_path / "s.yaml", {"cameras": []})
    before = settings.read_bytes()
    env = clean_env(PUMAGUARD_HB_SOCKET=str(tmp_path / "hb.sock"), PUMAGUARD_SETTINGS=str(settings))
    done = run_hook(*args, env=env)
    assert done.returncode == 0
    assert says in done.stderr and "Traceback" not in done.stderr
    assert settings.read_bytes() == before


@pytest.mark.parametrize(
    "args",
    [
        ["init"],
        ["tftp", "1234", "127.0.0.1", "/srv/tftp/x"],
        ["arp-add", "00:11:22:33:44:01", "127.0.0.2"],
        ["arp-del", "00:11:22:33:44:01", "127.0.0.2"],
        ["future-action", "x"],
    ],
)
def test_other_actions_are_ignored(tmp_path: Path, args: list[str]) -> None:
    env = clean_env(
        PUMAGUARD_HB_SOCKET=str(tmp_path / "hb.sock"), PUMAGUARD_SETTINGS=str(tmp_path / "s.yaml")
    )
    done = run_hook(*args, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not (tmp_path / "s.yaml").exists()


def test_unparsable_file_is_not_written_over(folder: Path) -> None:
    settings = folder / "s.yaml"
    settings.write_text("cameras: [half an edit\n")
    give_to_nobody(folder)
    env = clean_env(PUMAGUARD_HB_SOCKET=str(folder / "hb.sock"), PUMAGUARD_SETTINGS=str(settings))
    done = run_hook("add", "00:11:22:33:44:01", "127.0.0.2", "Microseven-A", env=env)
    assert done.returncode == 0 and "does not parse as YAML" in done.stderr
    assert settings.read_text() == "cameras: [half an edit\n"


def test_dhcpv6_uses_the_mac_dnsmasq_gives(folder: Path) -> None:
    settings = write_settings(folder / "s.yaml", {"cameras": []})
    give_to_nobody(folder)
    env = clean_env(
        PUMAGUARD_HB_SOCKET=str(folder / "hb.sock"),
        PUMAGUARD_SETTINGS=str(settings),
        DNSMASQ_IAID="12345",
        DNSMASQ_MAC="00:11:22:33:44:66",
    )
    done = run_hook(
        "add", "00:01:00:01:2a:2b:2c:2d:00:11:22:33:44:66", "fd00::66", "Microseven-V6", env=env
    )
    assert done.returncode == 0, done.stderr
    assert cameras_by_mac(read_settings(settings))["00:11:22:33:44:66"]["ip_address"] == "fd00::66"
    del env["DNSMASQ_MAC"]
    done = run_hook("add", "00:01:00:01:2a:2b", "fd00::67", "Microseven-V6b", env=env)
    assert done.returncode == 0 and "without a known MAC" in done.stderr


def test_new_files_in_the_service_folder_go_to_its_owner(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: dnsmasq runs the hook as root")
    folder = Path(tempfile.mkdtemp(prefix="phb-hook-own-"))
    try:
        os.chown(folder, NOBODY, NOGROUP)
        settings = folder / "pumaguard-settings.yaml"
        env = clean_env(
            PUMAGUARD_HB_SOCKET=str(folder / "hb.sock"), PUMAGUARD_SETTINGS=str(settings)
        )
        done = run_hook("add", "00:11:22:33:44:77", "127.0.0.60", "Microseven-Own", env=env)
        assert done.returncode == 0, done.stderr
        for path in (settings, folder / "pumaguard-settings.yaml.lock"):
            st = os.stat(path)
            assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP), path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_hook_logs_to_syslog_when_there_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log_socket = tmp_path / "log"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(log_socket))
    receiver.settimeout(5)
    monkeypatch.setattr(hook, "SYSLOG_SOCKET", str(log_socket))
    try:
        assert hook.main(["add", "zz", "127.0.0.2", "Microseven-A"]) == 0
        message = receiver.recv(4096).decode()
    finally:
        receiver.close()
    assert message.startswith("<27>")  # daemon facility (3) * 8 + error (3)
    assert "pumaguard-heartbeat-dhcp: mac_address: invalid value 'zz'" in message
    assert "mac_address: invalid value 'zz'" in capsys.readouterr().err


def test_hook_is_quick_and_never_imports_rich(tmp_path: Path) -> None:
    code = (
        "import sys, pumaguard_hb.hook as h\n"
        "h.main(['add', '00:11:22:33:44:01', '127.0.0.2', 'laptop'])\n"
        "assert 'rich' not in sys.modules and 'click' not in sys.modules\n"
    )
    env = clean_env(
        PUMAGUARD_HB_SOCKET=str(tmp_path / "hb.sock"), PUMAGUARD_SETTINGS=str(tmp_path / "s.yaml")
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 2
