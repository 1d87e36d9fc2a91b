"""Hostile camera entries, settings values and DHCP events: rejected or skipped with a clear
message, never a crash. Everything the daemon probes is on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import REPO, Daemon, Listeners, camera, wait_for, write_settings
from helpers_cli import give_to_nobody, hook_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pumaguard_hb.control.protocol import ProtocolError
from pumaguard_hb.model.camera import camera_from_entry
from pumaguard_hb.model.errors import SettingsError
from pumaguard_hb.model.keys import KEYS
from pumaguard_hb.model.settings import parse_settings

HOOK_SCRIPT = REPO / "systemd" / "dnsmasq-dhcp-script"
GOOD_MAC = "aa:bb:cc:00:00:99"

# (hostname, ip_address, mac, extra fields, what the problem sentence must mention)
HOSTILE: list[tuple[Any, Any, Any, dict[str, Any], str]] = [
    ("not-an-ip", "not-an-ip", "aa:bb:cc:00:00:01", {}, "IPv4 or IPv6"),
    ("hostname-as-ip", "camera.local", "aa:bb:cc:00:00:02", {}, "IPv4 or IPv6"),
    ("link-local", "fe80::1", "aa:bb:cc:00:00:03", {}, "zone"),
    ("unspecified", "0.0.0.0", "aa:bb:cc:00:00:04", {}, "unicast"),
    ("broadcast", "255.255.255.255", "aa:bb:cc:00:00:05", {}, "broadcast"),
    ("multicast", "224.0.0.1", "aa:bb:cc:00:00:06", {}, "unicast"),
    ("multicast6", "ff02::1", "aa:bb:cc:00:00:07", {}, "unicast"),
    ("number-ip", 12345, "aa:bb:cc:00:00:08", {}, "IPv4 or IPv6"),
    ("list-ip", [1, 2], "aa:bb:cc:00:00:09", {}, "IPv4 or IPv6"),
    ("port0", "127.0.0.41", "aa:bb:cc:00:00:0a", {"heartbeat_port": 0}, "1 to 65535"),
    ("port70000", "127.0.0.42", "aa:bb:cc:00:00:0b", {"heartbeat-port": 70000}, "1 to 65535"),
    (["not", "text"], "127.0.0.43", "aa:bb:cc:00:00:0c", {}, "must be text"),
    ("x" * 5000, "127.0.0.44", "aa:bb:cc:00:00:0d", {}, "at most 253"),
    ("ctl\x07bell", "127.0.0.45", "aa:bb:cc:00:00:0e", {}, "control characters"),
    ("lone-surrogate\ud800", "127.0.0.46", "aa:bb:cc:00:00:0f", {}, "control characters"),
    ("bad-method", "127.0.0.47", "aa:bb:cc:00:00:10", {"heartbeat_method": "smoke"}, "one of"),
]


def hostile_doc(port: int, good_ip: str) -> dict[str, Any]:
    cams: list[Any] = [
        {**camera(h if isinstance(h, str) else "x", str(ip), mac), "hostname": h,
         "ip_address": ip, **extra}
        for h, ip, mac, extra, _ in HOSTILE
    ]
    cams += [
        camera("Microseven-good", good_ip, GOOD_MAC, custom={"kept": True}),
        # the same MAC twice (other case): the first entry wins, one warning
        camera("dup-mac", "127.0.0.48", GOOD_MAC.upper()),
        # the same IP under two MACs: both are probed, neither crashes anything
        camera("dup-ip-1", "127.0.0.49", "aa:bb:cc:00:00:20"),
        camera("dup-ip-2", "127.0.0.49", "aa:bb:cc:00:00:21"),
        42, None, "a string", [1, 2], {},
        {"ip_address": "127.0.0.50", "last_seen": "yesterday", "status": 5},
    ]
    return {
        "camera-heartbeat-interval": 1,  # the minimum
        "camera-heartbeat-tcp-timeout": 0.5,
        "camera-heartbeat-tcp-port": port,
        "some-web-ui-key": {"nested": [1, 2, 3]},
        "cameras": cams,
    }


def test_hostile_camera_entries_are_skipped_with_a_problem(tmp_path: Path,
                                                           listeners: Listeners) -> None:
    ip, port = listeners.open("127.0.0.40")
    d = Daemon(tmp_path)
    d.settings.write_text(yaml.safe_dump(hostile_doc(port, ip), allow_unicode=False))
    before = yaml.safe_load(d.settings.read_text())
    try:
        d.start()
        wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= 4, timeout=20)
        status = d.call("status")
        by_mac = {c["id"]: c for c in status["cameras"]}
        for _host, bad_ip, mac, _extra, needle in HOSTILE:
            cam = by_mac.get(mac) or by_mac.get(f"ip:{bad_ip}")
            assert cam is not None, (mac, sorted(by_mac))
            assert cam["problem"] and needle in cam["problem"], cam
            assert cam["checked_at"] is None, f"a camera with a problem was probed: {cam}"
        good = by_mac[GOOD_MAC]
        assert good["problem"] is None and good["status"] == "connected"
        assert by_mac["aa:bb:cc:00:00:20"]["problem"] is None
        report = d.call("check_now")
        assert report["status"] == "success"
        assert report["cameras"][GOOD_MAC]["reachable"] is True
        assert report["cameras"]["aa:bb:cc:00:00:01"]["reachable"] is None
        assert "IPv4 or IPv6" in report["cameras"]["aa:bb:cc:00:00:01"]["reason"]
        log = d.log()
        assert "Traceback" not in log
        # a duplicate is a property of the file, not of a sweep: one warning, not one per sweep
        assert log.count("listed twice") == 1, log
        assert d.proc is not None and d.proc.poll() is None
    finally:
        d.stop()
    after = yaml.safe_load(d.settings.read_text())
    # every hostile entry, and everything around them, is still there untouched
    assert [c for c in after["cameras"] if not isinstance(c, dict)] == \
        [c for c in before["cameras"] if not isinstance(c, dict)]
    for old, new in zip(before["cameras"], after["cameras"], strict=True):
        if isinstance(old, dict) and old.get("mac_address") != GOOD_MAC:
            if old.get("mac_address") in ("aa:bb:cc:00:00:20", "aa:bb:cc:00:00:21", None):
                # probed cameras: the daemon owns their status (``5`` is no status)
                old = {k: v for k, v in old.items() if k != "status"}
                new = {k: v for k, v in new.items() if k != "status"}
            assert new == old
    assert after["some-web-ui-key"] == before["some-web-ui-key"]


@pytest.mark.parametrize("port", [0, 70000, -1, "80", True, 8.5])
def test_bad_global_port_at_start_exits_78_with_one_line(tmp_path: Path, port: Any) -> None:
    settings_path = write_settings(tmp_path / "s.yaml", {"camera_heartbeat_tcp_port": port})
    done = subprocess.run(
        [sys.executable, "-m", "pumaguard_hb", "--settings", str(settings_path),
         "--socket", str(tmp_path / "s.sock")],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )
    assert done.returncode == 78, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(settings_path) in lines[0] and "camera_heartbeat_tcp_port" in lines[0]
    assert "1 to 65535" in lines[0] and repr(port) in lines[0]


@pytest.mark.daemon_log(allow=[r"ERROR .*invalid value 70000: .*keeping the last good settings"])
def test_bad_port_via_config_set_and_reload(tmp_path: Path, listeners: Listeners) -> None:
    ip, port = listeners.open("127.0.0.51")
    d = Daemon(tmp_path)
    write_settings(d.settings, {"camera_heartbeat_interval": 3600,
                                "camera_heartbeat_tcp_port": port,
                                "cameras": [camera("cam", ip, GOOD_MAC)]})
    try:
        d.start()
        for bad in (0, 70000, "http", None, [80]):
            with pytest.raises(ProtocolError) as err:
                d.call("config_set", {"key": "camera_heartbeat_tcp_port", "value": bad})
            assert err.value.code == "invalid_value" and "1 to 65535" in err.value.message
        # an edit of the file with a bad port: old settings kept, one error, shown in status
        doc = yaml.safe_load(d.settings.read_text())
        doc["camera_heartbeat_tcp_port"] = 70000
        write_settings(d.settings, doc)
        d.signal(__import__("signal").SIGHUP)
        status = wait_for(lambda: (s := d.call("status"))["daemon"]["settings_error"] and s)
        assert "70000" in status["daemon"]["settings_error"]
        assert status["daemon"]["settings"]["camera_heartbeat_tcp_port"] == port
        assert d.call("check_now")["cameras"][GOOD_MAC]["reachable"] is True
        assert d.log().count("invalid value 70000") == 1
    finally:
        d.stop()


DHCP_BAD: list[tuple[list[str], str]] = [
    (["add", "not-a-mac", "127.0.0.60", "Microseven-A"], "mac_address"),
    (["add", "aa:bb:cc:00:01:01", "not-an-ip", "Microseven-A"], "ip_address"),
    (["add", "aa:bb:cc:00:01:01", "camera.local", "Microseven-A"], "ip_address"),
    (["add", "aa:bb:cc:00:01:01", "fe80::1", "Microseven-A"], "zone"),
    (["add", "aa:bb:cc:00:01:01", "0.0.0.0", "Microseven-A"], "unicast"),
    (["add", "aa:bb:cc:00:01:01", "255.255.255.255", "Microseven-A"], "broadcast"),
    (["add", "aa:bb:cc:00:01:01", "239.1.2.3", "Microseven-A"], "unicast"),
    (["add", "aa:bb:cc:00:01:01", "127.0.0.60", "Microseven-" + "x" * 300], "at most 253"),
    (["add", "aa:bb:cc:00:01:01", "127.0.0.60", "Microseven-\x1b[31m"], "control characters"),
    (["add", "aa:bb:cc:00:01:01"], "expected ACTION MAC IP"),
]


def _hook_env(d: Daemon, settings_path: Path) -> dict[str, str]:
    import os
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PUMAGUARD", "DNSMASQ", "NOTIFY_SOCKET"))}
    env.update(PUMAGUARD_HB_SOCKET=str(d.socket), PUMAGUARD_SETTINGS=str(settings_path),
               PUMAGUARD_HB_PYTHON=sys.executable, PYTHONPATH=str(REPO))
    return env


def _run_hook(argv: list[bytes | str], env: dict[str, str], script: bool) -> \
        subprocess.CompletedProcess[bytes]:
    cmd: list[bytes | str] = (
        [str(HOOK_SCRIPT)] if script else [sys.executable, "-m", "pumaguard_hb.hook"]
    )
    return subprocess.run([*cmd, *argv], env=env, capture_output=True, timeout=30, cwd="/")


@pytest.mark.parametrize("daemon_up", [True, False], ids=["daemon", "no-daemon"])
def test_hostile_dhcp_events_via_the_hook(listeners: Listeners, daemon_up: bool) -> None:
    with hook_folder() as folder:  # run as root, the hook acts as the folder's owner
        hostile_dhcp_events_via_the_hook(folder, listeners, daemon_up)


def hostile_dhcp_events_via_the_hook(tmp_path: Path, listeners: Listeners,
                                     daemon_up: bool) -> None:
    ip, port = listeners.open("127.0.0.61")
    d = Daemon(tmp_path)
    write_settings(d.settings, {"camera-heartbeat-interval": 3600,
                                "camera-heartbeat-tcp-port": port, "web-ui": "keep me",
                                "cameras": [camera("Microseven-cam", ip, GOOD_MAC)]})
    give_to_nobody(tmp_path)
    try:
        if daemon_up:
            d.start()
            wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= 1)
        original = d.settings.read_bytes() if not daemon_up else None
        env = _hook_env(d, d.settings)
        cases: list[tuple[list[bytes | str], str]] = [(list(a), n) for a, n in DHCP_BAD]
        # non-UTF-8 bytes in dnsmasq's argv (a hostname as the device sent it)
        cases.append(([b"add", b"aa:bb:cc:00:01:02", b"127.0.0.62", b"Microseven-\xff\xfe"],
                      "control characters"))
        cases.append(([b"old", b"aa:bb:cc:00:01:03\xc3", b"127.0.0.62"], "mac_address"))
        for i, (argv, needle) in enumerate(cases):
            done = _run_hook(argv, env, script=i % 2 == 0)
            err = done.stderr.decode("utf-8", "replace")
            assert done.returncode == 0, err
            assert "Traceback" not in err, err
            assert needle in err, (argv, err)
            assert len(err.strip().splitlines()) == 1, err
        if daemon_up:
            status = d.call("status")
            assert [c["id"] for c in status["cameras"]] == [GOOD_MAC]
            assert "Traceback" not in d.log()
        else:
            assert d.settings.read_bytes() == original
        # a good event still works afterwards
        done = _run_hook(["add", "aa:bb:cc:00:01:09", "127.0.0.63", "Microseven-new"], env,
                         script=True)
        assert done.returncode == 0 and b"new camera Microseven-new" in done.stderr
        doc = yaml.safe_load(d.settings.read_text())
        assert doc["web-ui"] == "keep me"
        assert {c["mac_address"] for c in doc["cameras"]} == {GOOD_MAC, "aa:bb:cc:00:01:09"}
    finally:
        d.stop()


def test_hostile_dhcp_events_and_camera_add_over_the_socket(tmp_path: Path,
                                                           listeners: Listeners) -> None:
    ip, port = listeners.open("127.0.0.64")
    d = Daemon(tmp_path)
    write_settings(d.settings, {"camera-heartbeat-interval": 3600,
                                "camera-heartbeat-tcp-port": port,
                                "cameras": [camera("Microseven-cam", ip, GOOD_MAC)]})
    try:
        d.start()
        for args in (
            {"action": "add", "mac": "zz", "ip": "127.0.0.65", "hostname": "Microseven"},
            {"action": "add", "mac": "aa:bb:cc:00:02:01", "ip": "::", "hostname": "Microseven"},
            {"action": "add", "mac": "aa:bb:cc:00:02:01", "ip": "fe80::9",
             "hostname": "Microseven"},
            {"action": "add", "mac": "aa:bb:cc:00:02:01", "ip": "127.0.0.65",
             "hostname": "Microseven" + "y" * 1000},
            {"action": "explode", "mac": "aa:bb:cc:00:02:01", "ip": "127.0.0.65"},
        ):
            with pytest.raises(ProtocolError) as err:
                d.call("dhcp_event", args)
            assert err.value.code in ("invalid_value", "bad_args"), err.value
            assert err.value.message
        for args in (
            {"action": 5, "mac": [], "ip": {}},
            {"action": "add", "mac": None, "ip": "127.0.0.65"},
            {"action": "add"},
        ):
            with pytest.raises(ProtocolError) as err:
                d.call("dhcp_event", args)
            assert err.value.code in ("bad_args", "invalid_value"), err.value
        for args in (
            {"hostname": "cam", "ip_address": "camera.local"},
            {"hostname": "cam", "ip_address": "224.0.0.5"},
            {"hostname": "cam", "ip_address": "127.0.0.66", "mac_address": "01:02"},
            {"hostname": "c" * 300, "ip_address": "127.0.0.66"},
            {"hostname": "cam", "ip_address": "127.0.0.64", "mac_address": GOOD_MAC.upper()},
        ):
            with pytest.raises(ProtocolError) as err:
                d.call("camera_add", args)
            assert err.value.code in ("invalid_value", "conflict", "bad_args"), err.value
        # a duplicate IP without a MAC is a conflict; a new MAC on a known IP is allowed
        with pytest.raises(ProtocolError) as err:
            d.call("camera_add", {"hostname": "again", "ip_address": ip})
        assert err.value.code == "conflict"
        status = d.call("status")
        assert [c["id"] for c in status["cameras"]] == [GOOD_MAC]
        assert d.call("check_now")["cameras"][GOOD_MAC]["reachable"] is True
        assert "Traceback" not in d.log()
    finally:
        d.stop()


@pytest.mark.daemon_log(allow=[r"ERROR .*is not UTF-8 text.*keeping the last good settings"])
def test_non_utf8_settings_file(tmp_path: Path, listeners: Listeners) -> None:
    ip, port = listeners.open("127.0.0.67")
    good = yaml.safe_dump({"camera-heartbeat-interval": 1, "camera-heartbeat-tcp-port": port,
                           "cameras": [camera("Microseven-cam", ip, GOOD_MAC)]}).encode()
    broken = good.replace(b"Microseven-cam", b"Microseven-\xff\xfe")
    settings_path = tmp_path / "pumaguard-settings.yaml"
    settings_path.write_bytes(broken)
    done = subprocess.run(
        [sys.executable, "-m", "pumaguard_hb", "--settings", str(settings_path),
         "--socket", str(tmp_path / "hb.sock")],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )
    assert done.returncode == 78 and "not UTF-8" in done.stderr, done
    assert len(done.stderr.strip().splitlines()) == 1
    settings_path.write_bytes(good)
    d = Daemon(tmp_path)
    try:
        d.start()
        wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= 1)
        settings_path.write_bytes(broken)
        status = wait_for(lambda: (s := d.call("status"))["daemon"]["settings_error"] and s)
        assert "not UTF-8" in status["daemon"]["settings_error"]
        sweeps = status["daemon"]["sweeps"]
        wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= sweeps + 4, timeout=15)
        assert settings_path.read_bytes() == broken  # never written over
        assert d.log().count("not UTF-8") == 1
        settings_path.write_bytes(good)
        wait_for(lambda: d.call("status")["daemon"]["settings_error"] is None, timeout=10)
        wait_for(lambda: b"status: connected" in settings_path.read_bytes(), timeout=10)
    finally:
        d.stop()


# ---------------------------------------------------------------- property-based


_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
            | st.binary(max_size=10))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
_key_names = st.sampled_from(
    [k.name for k in KEYS] + [k.name.replace("_", "-") for k in KEYS] + ["cameras", "other"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_key_names | st.text(max_size=20), _values, max_size=8))
def test_parse_settings_raises_only_settings_error(doc: dict[str, Any]) -> None:
    try:
        parse_settings(doc, "/fuzz.yaml")
    except SettingsError as err:
        assert str(err).startswith("/fuzz.yaml: ")


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["hostname", "ip_address", "mac_address", "status",
                                        "last_seen", "heartbeat_port", "heartbeat-method",
                                        "heartbeat_timeout", "heartbeat_path", "x"]),
                       _values | st.sampled_from(["fe80::1", "127.0.0.1", "::ffff:1.2.3.4",
                                                  "aa:bb:cc:dd:ee:ff", "fe80::1%lo"]),
                       max_size=8) | _values)
def test_camera_entries_never_raise(entry: Any) -> None:
    cam = camera_from_entry(entry)
    if cam is not None:
        cam.to_dict()
        if cam.problem is None and cam.ip_address:
            assert cam.probe_ip == cam.ip_address


def test_settings_yaml_round_trip_of_hostile_docs(tmp_path: Path) -> None:
    """Hostile YAML documents (anchors, tags, deep nesting) give a SettingsError or work."""
    from pumaguard_hb.stores.settings_file import SettingsFile
    docs = [
        b"a: &x [1, *x]\n",
        b"!!python/object/apply:os.system ['true']\n",
        b"cameras: !!binary aGVsbG8=\n",
        b"[" * 5000 + b"]" * 5000 + b"\n",
        b"key: value\n\t- broken\n",
        b"\x00\x01\x02",
        b"- just\n- a list\n",
        b"cameras:\n- {ip_address: !!float 1e3}\n",
    ]
    started = time.monotonic()
    for i, raw in enumerate(docs):
        path = tmp_path / f"{i}.yaml"
        path.write_bytes(raw)
        try:
            snap = SettingsFile(path).read()
            parse_settings(snap.doc, str(path))
        except SettingsError as err:
            assert str(path) in str(err)
        except RecursionError:  # pragma: no cover - reported as a defect if it happens
            pytest.fail(f"{raw[:20]!r}: RecursionError escapes SettingsFile.read")
    assert time.monotonic() - started < 20
