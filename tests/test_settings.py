"""Settings: defaults, both spellings, validation messages, camera entries."""

from __future__ import annotations

import pytest

from pumaguard_hb.model.camera import camera_from_entry, camera_id, normalize_ip, normalize_mac
from pumaguard_hb.model.errors import InvalidValue, SettingsError
from pumaguard_hb.model.settings import Settings, parse_settings, spelling_for


def test_defaults_when_keys_are_missing() -> None:
    s = parse_settings({})
    assert s == Settings()
    assert (s.enabled, s.interval, s.method, s.tcp_port, s.tcp_timeout, s.icmp_timeout) == (
        True,
        60,
        "tcp",
        80,
        3,
        2,
    )


def test_both_spellings_are_read() -> None:
    assert parse_settings({"camera_heartbeat_interval": 15}).interval == 15
    assert parse_settings({"camera-heartbeat-interval": 20}).interval == 20
    assert parse_settings({"camera-heartbeat-method": "icmp"}).method == "icmp"


def test_web_ui_spelling_wins_when_both_are_present() -> None:
    doc = {"camera_heartbeat_interval": 15, "camera-heartbeat-interval": 20}
    assert parse_settings(doc).interval == 20


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("camera-heartbeat-interval", 0, "greater than 0"),
        ("camera-heartbeat-interval", -5, "greater than 0"),
        ("camera-heartbeat-interval", "60", "greater than 0"),
        ("camera-heartbeat-interval", True, "greater than 0"),
        ("camera_heartbeat_method", "ping", "icmp, tcp, both"),
        ("camera_heartbeat_tcp_port", 0, "1 to 65535"),
        ("camera_heartbeat_tcp_port", 70000, "1 to 65535"),
        ("camera_heartbeat_tcp_port", 80.5, "1 to 65535"),
        ("camera_heartbeat_enabled", "yes please", "true or false"),
        ("camera_heartbeat_tcp_timeout", 0, "greater than 0"),
        ("camera_heartbeat_icmp_timeout", None, "greater than 0"),
    ],
)
def test_invalid_values_name_file_key_value_and_what_is_allowed(
    key: str, value: object, allowed: str
) -> None:
    with pytest.raises(SettingsError) as err:
        parse_settings({key: value}, "/etc/x.yaml")
    text = str(err.value)
    assert text.startswith(f"/etc/x.yaml: {key}: invalid value {value!r}")
    assert allowed in text


def test_written_spelling_follows_the_file() -> None:
    from pumaguard_hb.model.keys import lookup_key

    key = lookup_key("camera_heartbeat_interval")
    assert spelling_for({"camera-heartbeat-interval": 1}, key) == "camera-heartbeat-interval"
    assert spelling_for({"camera_heartbeat_interval": 1}, key) == "camera_heartbeat_interval"
    assert spelling_for({"camera_heartbeat_method": "tcp"}, key) == "camera_heartbeat_interval"
    assert spelling_for({}, key) == "camera-heartbeat-interval"  # PumaGuard's own spelling


def test_hostname_patterns_accept_a_string_or_list() -> None:
    assert parse_settings({"camera_heartbeat_hostname_patterns": "M7*"}).hostname_patterns == (
        "M7*",
    )
    with pytest.raises(SettingsError):
        parse_settings({"camera_heartbeat_hostname_patterns": [1, 2]})


def test_camera_ids() -> None:
    assert camera_id({"mac_address": "AA-BB-CC-DD-EE-FF"}) == "aa:bb:cc:dd:ee:ff"
    assert camera_id({"ip_address": "192.0.2.7", "hostname": "x"}) == "ip:192.0.2.7"
    assert camera_id({"hostname": "lonely"}) == "host:lonely"
    assert camera_id({}) is None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "cam.local",
        "300.1.1.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "fe80::1",
        "::",
        "ff02::1",
        None,
        5,
    ],
)
def test_bad_ips_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidValue):
        normalize_ip(bad)


def test_good_ips_are_normalized() -> None:
    assert normalize_ip(" 192.0.2.1 ") == "192.0.2.1"
    assert normalize_ip("2001:DB8::1") == "2001:db8::1"
    assert normalize_ip("fe80::1%eth0") == "fe80::1%eth0"
    with pytest.raises(InvalidValue, match="IPv4-mapped"):  # strict (issue 20 item 4)
        normalize_ip("::ffff:192.0.2.1")


@pytest.mark.parametrize("bad", ["aa:bb:cc", "zz:bb:cc:dd:ee:ff", "aa:bb-cc:dd:ee:ff", 7])
def test_bad_macs(bad: object) -> None:
    with pytest.raises(InvalidValue):
        normalize_mac(bad)


def test_camera_with_invalid_ip_is_kept_but_never_probed() -> None:
    cam = camera_from_entry(
        {"hostname": "c", "ip_address": "not-an-ip", "mac_address": "aa:bb:cc:dd:ee:01"}
    )
    assert cam is not None and cam.problem and cam.probe_ip is None


def test_camera_without_ip_is_skipped() -> None:
    cam = camera_from_entry({"hostname": "c", "mac_address": "aa:bb:cc:dd:ee:01"})
    assert cam is not None and cam.probe_ip is None and cam.problem is None


def test_control_characters_in_hostname_are_a_problem() -> None:
    cam = camera_from_entry(
        {"hostname": "evil\x1b[31m", "ip_address": "127.0.0.1", "mac_address": "aa:bb:cc:dd:ee:01"}
    )
    assert cam is not None and cam.problem and "control" in cam.problem
