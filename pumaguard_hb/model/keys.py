"""The heartbeat keys: each one's name, default, validator and help (README "Settings"); pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pumaguard_hb.model.checks import (
    MIN_INTERVAL,
    check_address_or_empty,
    check_addresses,
    check_apprise_urls,
    check_bool,
    check_command,
    check_concurrency,
    check_count,
    check_days,
    check_discovery_interval,
    check_host,
    check_http_path,
    check_interface,
    check_interval,
    check_listen,
    check_method,
    check_password,
    check_patterns,
    check_port,
    check_port_or_default,
    check_seconds,
    check_smtp_security,
    check_station,
    check_text,
    check_threshold,
    check_urls,
    check_webui_url,
)
from pumaguard_hb.model.errors import InvalidValue
from pumaguard_hb.model.power import check_off_time, check_per_day

#: per-camera overrides by MAC (camera_heartbeat_cameras): at most this many cameras
MAX_CAMERA_OVERRIDES = 1024
CameraOverrides = tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]


def check_camera_overrides(key: str, value: Any) -> CameraOverrides:
    """``{MAC: {heartbeat_interval: 300, heartbeat_method: icmp, ...}}``: MACs normalised,
    each override checked like the same field of a camera entry (docs/intervals.md)."""
    from pumaguard_hb.model.camera import OVERRIDES, SECRET_OVERRIDES, normalize_mac

    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidValue(key, str(value)[:60], "must be a mapping of MAC to overrides")
    if len(value) > MAX_CAMERA_OVERRIDES:
        raise InvalidValue(key, f"<{len(value)} cameras>", f"at most {MAX_CAMERA_OVERRIDES}")
    known = ", ".join(OVERRIDES)
    out: dict[str, tuple[tuple[str, Any], ...]] = {}
    for mac, fields_ in value.items():
        if not isinstance(mac, str):  # YAML reads 11:22:33:44:55:66 as a number
            raise InvalidValue(key, str(mac)[:40], "each MAC must be quoted text")
        try:
            mac_key = normalize_mac(mac)
        except InvalidValue:
            raise InvalidValue(key, mac[:40], "each key must be a MAC: aa:bb:cc:dd:ee:ff") from None
        if mac_key in out:
            raise InvalidValue(key, mac_key, "this MAC is listed twice")
        if not isinstance(fields_, dict):
            raise InvalidValue(key, {mac_key: str(fields_)[:60]}, "each MAC maps " + known)
        found: dict[str, Any] = {}
        for name, raw in fields_.items():
            canonical = name.replace("-", "_") if isinstance(name, str) else None
            if canonical not in OVERRIDES:
                field_ = {mac_key: str(name)[:40]}
                raise InvalidValue(key, field_, "the fields a camera may override are " + known)
            try:
                found[canonical] = OVERRIDES[canonical][1](canonical, raw)
            except InvalidValue as err:
                excerpt: Any = raw if isinstance(raw, int | float) else str(raw)[:60]
                if canonical in SECRET_OVERRIDES:  # the check's own redacted excerpt
                    excerpt = err.value
                shown = {mac_key: {canonical: excerpt}}
                raise InvalidValue(key, shown, f"{canonical} {err.allowed}") from None
        out[mac_key] = tuple(sorted(found.items()))
    return tuple(sorted(out.items()))


def plain_value(key: Key, value: Any) -> Any:
    """A validated value as YAML and JSON show it (lists, mappings)."""
    if key.check is check_camera_overrides:
        return {mac: dict(found) for mac, found in value}
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Key:
    """One heartbeat setting: its canonical (underscore) name, default and validator."""

    name: str
    attr: str
    default: Any
    check: Callable[[str, Any], Any]
    help: str
    # runs a program or sends data off the machine: over the socket, only root may change it
    privileged: bool = False
    # holds a password or token: redacted wherever settings are shown (public_dict)
    secret: bool = False

    @property
    def hyphenated(self) -> str:
        """The spelling the PumaGuard web UI uses."""
        return self.name.replace("_", "-")


KEYS: tuple[Key, ...] = (
    Key("camera_heartbeat_enabled", "enabled", True, check_bool, "probe at all"),
    Key(
        "camera_heartbeat_interval",
        "interval",
        60,
        check_interval,
        f"seconds between sweeps (at least {MIN_INTERVAL})",
    ),
    Key(
        "camera_heartbeat_method",
        "method",
        "tcp",
        check_method,
        "icmp, tcp, both, http, https, rtsp or stream (video flows; docs/stream.md)",
    ),
    Key("camera_heartbeat_tcp_port", "tcp_port", 80, check_port, "TCP port to connect to"),
    Key("camera_heartbeat_tcp_timeout", "tcp_timeout", 3, check_seconds, "TCP connect timeout (s)"),
    Key(
        "camera_heartbeat_icmp_timeout", "icmp_timeout", 2, check_seconds, "ICMP reply timeout (s)"
    ),
    Key(
        "camera_heartbeat_icmp_count",
        "icmp_count",
        1,
        check_count,
        "ICMP echo requests per check; one reply is enough",
    ),
    Key(
        "camera_heartbeat_failure_threshold",
        "failure_threshold",
        1,
        check_threshold,
        "failed checks in a row before a connected camera is marked disconnected",
    ),
    Key(
        "camera_heartbeat_recovery_threshold",
        "recovery_threshold",
        1,
        check_threshold,
        "successful checks in a row before a disconnected camera is marked connected",
    ),
    Key(
        "camera_heartbeat_http_path",
        "http_path",
        "/",
        check_http_path,
        "path requested by the http and https methods",
    ),
    Key(
        "camera_heartbeat_stream_path",
        "stream_path",
        "/",
        check_http_path,
        "stream method: the RTSP path of rtsp://IP:554PATH (a camera's heartbeat_url wins)",
    ),
    Key(
        "camera_heartbeat_stream_timeout",
        "stream_timeout",
        5,
        check_seconds,
        "stream method: seconds from connect to the first RTP packet",
    ),
    Key(
        "camera_heartbeat_stream_username",
        "stream_username",
        "",
        check_text,
        "stream method: RTSP user name (Basic or Digest; empty: none)",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_stream_password",
        "stream_password",
        "",
        check_password,
        "stream method: password of stream_username",
        privileged=True,
        secret=True,
    ),
    Key(
        "camera_heartbeat_stream_concurrency",
        "stream_concurrency",
        4,
        check_concurrency,
        "stream method: at most this many stream checks at once",
    ),
    Key(
        "camera_heartbeat_webhooks",
        "webhooks",
        (),
        check_urls,
        "URLs that get a JSON POST on every change of a camera's state",
        privileged=True,
        secret=True,  # a webhook URL is often its own token (Home Assistant, ntfy topics)
    ),
    Key(
        "camera_heartbeat_on_change_command",
        "on_change_command",
        "",
        check_command,
        "command run (no shell) on every change of state, with the event in its environment",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_history_days",
        "history_days",
        30,
        check_days,
        "days of state changes kept in the history",
    ),
    Key(
        "camera_heartbeat_metrics_listen",
        "metrics_listen",
        "",
        check_listen,
        "HOST:PORT of a Prometheus /metrics listener (empty: off)",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_hostname_patterns",
        "hostname_patterns",
        ("Microseven*", "Reolink*"),
        check_patterns,
        "DHCP hostnames (shell patterns, case-insensitive) that are cameras",
    ),
    Key(
        "camera_heartbeat_webui_url",
        "webui_url",
        "",
        check_webui_url,
        "URL of the PumaGuard web UI to report through (empty: standalone, write the file)",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_webui_refresh",
        "webui_refresh",
        300,
        check_seconds,
        "web UI mode: seconds between last_seen refreshes of a connected camera",
    ),
    Key(
        "camera_heartbeat_station",
        "station",
        "",
        check_station,
        "the station label of every metric (empty: the host name); docs/prometheus.md",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_discovery_interval",
        "discovery_interval",
        0,
        check_discovery_interval,
        "seconds between ONVIF WS-Discovery probes of the camera network (0: off; min 60)",
    ),
    Key(
        "camera_heartbeat_discovery_add",
        "discovery_add",
        False,
        check_bool,
        "add the ONVIF devices that discovery finds as cameras (else only report them)",
    ),
    Key(
        "camera_heartbeat_discovery_interface",
        "discovery_interface",
        "",
        check_interface,
        "network interface of the camera network for discovery (empty: the multicast route)",
    ),
    # -- alerts by mail and Apprise (docs/alerts.md) --
    Key(
        "camera_heartbeat_alert_delay",
        "alert_delay",
        30,
        check_seconds,
        "seconds alerts wait after a first change, to send a burst of changes as one message",
    ),
    Key(
        "camera_heartbeat_smtp_host",
        "smtp_host",
        "",
        check_host,
        "mail server for alerts (empty: no mail)",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_smtp_port",
        "smtp_port",
        0,
        check_port_or_default,
        "mail server port (0: 587 for starttls, 465 for tls, 25 for none)",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_smtp_security",
        "smtp_security",
        "starttls",
        check_smtp_security,
        "starttls, tls (implicit TLS) or none (plain text)",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_smtp_user",
        "smtp_user",
        "",
        check_text,
        "login name at the mail server (empty: no login)",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_smtp_password",
        "smtp_password",
        "",
        check_password,
        "password of smtp_user",
        privileged=True,
        secret=True,
    ),
    Key(
        "camera_heartbeat_smtp_from",
        "smtp_from",
        "",
        check_address_or_empty,
        "sender address of alert mail (empty: pumaguard-heartbeat@HOSTNAME)",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_smtp_to",
        "smtp_to",
        (),
        check_addresses,
        "addresses alert mail goes to",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_smtp_ca_file",
        "smtp_ca_file",
        "",
        check_text,
        "CA certificates (PEM) to verify the mail server with (empty: the system's)",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_smtp_timeout",
        "smtp_timeout",
        20,
        check_seconds,
        "seconds for each step of talking to the mail server",
    ),
    Key(
        "camera_heartbeat_apprise_urls",
        "apprise_urls",
        (),
        check_apprise_urls,
        "Apprise URLs (push, SMS, chat services) that get alerts; needs Apprise installed",
        privileged=True,
        secret=True,
    ),
    # -- power-cycling a hung camera through its smart plug (docs/power-cycle.md) --
    Key(
        "camera_heartbeat_power_cycle",
        "power_cycle",
        False,
        check_bool,
        "power-cycle a hung camera through its heartbeat_plug (a Shelly Gen2+ plug)",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_power_cycle_after",
        "power_cycle_after",
        300,
        check_seconds,
        "seconds a camera is disconnected before its power is cycled",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_power_cycle_max_per_day",
        "power_cycle_max_per_day",
        3,
        check_per_day,
        "power cycles of one camera in any 24 h, at most (then one 'needs a visit' alert)",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_power_cycle_off_time",
        "power_cycle_off_time",
        10,
        check_off_time,
        "seconds the power stays off: the plug's own toggle_after timer switches it on again",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_power_cycle_boot_time",
        "power_cycle_boot_time",
        120,
        check_seconds,
        "seconds a camera is given to boot after its power is back",
        privileged=True,
    ),
    Key(
        "camera_heartbeat_cameras",
        "camera_overrides",
        (),
        check_camera_overrides,
        "per-camera overrides by MAC: {MAC: {heartbeat_interval: 300, ...}}; docs/intervals.md",
    ),
)
KEYS_BY_NAME = {k.name: k for k in KEYS} | {k.hyphenated: k for k in KEYS}


def lookup_key(name: str) -> Key:
    """The setting called ``name`` in either spelling, or InvalidValue naming the known keys."""
    key = KEYS_BY_NAME.get(name)
    if key is None:
        raise InvalidValue("key", name, "known keys: " + ", ".join(k.name for k in KEYS))
    return key
