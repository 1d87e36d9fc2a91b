"""Heartbeat settings: the keys this project reads, their defaults and their validation.

The settings file is shared with the PumaGuard web UI, which spells keys with
hyphens (``camera-heartbeat-interval``); this module reads both spellings.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import InvalidValue, SettingsError

log = logging.getLogger(__name__)
METHODS = ("icmp", "tcp", "both", "http", "https", "rtsp")
#: at most this many cameras on a station (docs/security.md "Limits"): a longer list from
#: the settings file or the web UI is one clear error, never a slower daemon
MAX_CAMERAS = 4096
#: the shortest interval between two checks of a camera, global and per camera (seconds)
MIN_INTERVAL = 1


def check_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidValue(key, value, "must be true or false")


def check_seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidValue(key, value, "must be a number of seconds greater than 0")
    if value > 86400:
        raise InvalidValue(key, value, "must be at most 86400 seconds")
    return float(value) if isinstance(value, float) else value


def check_interval(key: str, value: Any) -> float:
    """Seconds between two checks of a camera: at least MIN_INTERVAL (a member of the group
    may set a camera's interval; 0.001 s would be a flood, not monitoring)."""
    seconds = check_seconds(key, value)
    if seconds < MIN_INTERVAL:
        raise InvalidValue(key, value, f"must be at least {MIN_INTERVAL} second (the minimum)")
    return seconds


def check_method(key: str, value: Any) -> str:
    if value not in METHODS:
        raise InvalidValue(key, value, "must be one of " + ", ".join(METHODS))
    return str(value)


def check_port(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidValue(key, value, "must be a whole number from 1 to 65535")
    return value


def check_count(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        raise InvalidValue(key, value, "must be a whole number from 1 to 10")
    return value


def check_threshold(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise InvalidValue(key, value, "must be a whole number of sweeps from 1 to 100")
    return value


def check_days(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3650:
        raise InvalidValue(key, value, "must be a whole number of days from 1 to 3650")
    return value


def check_http_path(key: str, value: Any) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or any(ch.isspace() or not ch.isprintable() for ch in value)
    ):
        raise InvalidValue(key, value, "must be a URL path starting with /, without spaces")
    return value


def as_list(value: Any) -> Any:
    """A list setting as given: None and "" are none, one string is a list of one; anything
    else is returned for the caller to check."""
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else value


def check_urls(key: str, value: Any) -> tuple[str, ...]:
    value = as_list(value)
    if not isinstance(value, list | tuple) or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) and " " not in u for u in value
    ):  # a webhook URL is often its own token: the error shows each as its scheme only
        raise InvalidValue(key, redact_value(value), "must be a list of http:// or https:// URLs")
    return tuple(value)


def check_command(key: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or "\n" in value:
        raise InvalidValue(key, value, "must be one command line (empty for none)")
    return value.strip()


def check_listen(key: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        _host, sep, port = value.rpartition(":")
        if sep and port.isdigit() and 1 <= int(port) <= 65535:
            return value
    raise InvalidValue(key, value, "must be HOST:PORT such as 127.0.0.1:9469 (empty: off)")


def check_webui_url(key: str, value: Any) -> str:
    """The web UI's base URL, as webui.check_url takes it: no user name or password (the
    URL is shown in the log and status), no query or fragment. A refused value is shown
    without what could be a credential."""
    if value is None or value == "":
        return ""
    allowed = "must be the web UI's URL such as http://127.0.0.1:5000 (empty: off)"
    if not isinstance(value, str):
        raise InvalidValue(key, value, allowed)
    from urllib.parse import urlsplit

    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidValue(key, redact_url(text), allowed + "; the port must be 1-65535") from None
    if "@" in parts.netloc:
        raise InvalidValue(
            key, redact_url(text), allowed + "; without a user name or password (it is shown)"
        )
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or text.endswith(("?", "#"))
        or port == 0
        or any(ord(c) < 33 or not c.isprintable() for c in text)
    ):
        raise InvalidValue(key, redact_url(text), allowed)
    return text.rstrip("/")


STATION_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def check_station(key: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str) and STATION_CHARS.fullmatch(value):
        return value
    raise InvalidValue(
        key, value, "must be 1-63 letters, digits, '.', '-' or '_' (empty: the host name)"
    )


def check_patterns(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(
        isinstance(p, str) and p.strip() for p in value
    ):
        raise InvalidValue(key, value, "must be a list of hostname patterns like 'Microseven*'")
    return tuple(p.strip() for p in value)


def check_discovery_interval(key: str, value: Any) -> float:
    if value == 0 and not isinstance(value, bool):
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not 60 <= value <= 86400:
        raise InvalidValue(key, value, "must be 0 (off) or a number of seconds from 60 to 86400")
    return float(value) if isinstance(value, float) else value


def check_interface(key: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        import re

        if re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", value.strip()):
            return value.strip()
    raise InvalidValue(key, value, "must be a network interface name such as eth1 (empty: any)")


def check_text(key: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not value.isprintable() or len(value) > 1000:
        raise InvalidValue(key, value, "must be one line of printable text (empty for none)")
    return value.strip()


def check_password(key: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not value.isprintable() or len(value) > 1000:
        raise InvalidValue(key, REDACTED, "must be one line of printable text (empty for none)")
    return value  # as given: spaces may belong to it; never echoed in an error


def check_host(key: str, value: Any) -> str:
    text = check_text(key, value)
    if any(ch.isspace() or ch in "/@?#" for ch in text):
        raise InvalidValue(key, value, "must be a host name or IP address (empty: off)")
    return text


def check_port_or_default(key: str, value: Any) -> int:
    if value == 0 and not isinstance(value, bool):
        return 0
    return check_port(key, value)


SMTP_SECURITY = ("starttls", "tls", "none")


def check_smtp_security(key: str, value: Any) -> str:
    if value not in SMTP_SECURITY:
        raise InvalidValue(key, value, "must be one of " + ", ".join(SMTP_SECURITY))
    return str(value)


def _is_address(value: Any) -> bool:
    if not isinstance(value, str) or not value.isprintable() or len(value) > 254:
        return False
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain) and not any(
        ch.isspace() or ch in "<>,;\"'" for ch in value
    )


def check_address_or_empty(key: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if not _is_address(value):
        raise InvalidValue(key, value, "must be a mail address such as hb@example.org")
    return str(value)


def check_addresses(key: str, value: Any) -> tuple[str, ...]:
    value = as_list(value)
    if not isinstance(value, list | tuple) or not all(_is_address(a) for a in value):
        raise InvalidValue(key, value, "must be a list of mail addresses such as admin@example.org")
    return tuple(value)


def check_apprise_urls(key: str, value: Any) -> tuple[str, ...]:
    value = as_list(value)
    if not isinstance(value, list | tuple) or not all(
        isinstance(u, str) and "://" in u and u.isprintable() and " " not in u for u in value
    ):
        allowed = "must be a list of Apprise URLs such as tgram://TOKEN/CHAT"
        raise InvalidValue(key, redact_value(value), allowed)
    return tuple(value)


#: per-camera overrides by MAC (camera_heartbeat_cameras): at most this many cameras
MAX_CAMERA_OVERRIDES = 1024
CameraOverrides = tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]


def check_camera_overrides(key: str, value: Any) -> CameraOverrides:
    """``{MAC: {heartbeat_interval: 300, heartbeat_method: icmp, ...}}``: MACs normalised,
    each override checked like the same field of a camera entry (docs/intervals.md)."""
    from .camera import OVERRIDES, normalize_mac

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
                excerpt = raw if isinstance(raw, int | float) else str(raw)[:60]
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
        "icmp, tcp, both, http, https or rtsp",
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
    Key(
        "camera_heartbeat_cameras",
        "camera_overrides",
        (),
        check_camera_overrides,
        "per-camera overrides by MAC: {MAC: {heartbeat_interval: 300, ...}}; docs/intervals.md",
    ),
)
KEYS_BY_NAME = {k.name: k for k in KEYS} | {k.hyphenated: k for k in KEYS}
_ENABLED = KEYS_BY_NAME["camera_heartbeat_enabled"]


@dataclass(frozen=True)
class Settings:
    """The validated heartbeat settings the daemon runs on."""

    enabled: bool = True
    interval: float = 60
    method: str = "tcp"
    tcp_port: int = 80
    tcp_timeout: float = 3
    icmp_timeout: float = 2
    icmp_count: int = 1
    failure_threshold: int = 1
    recovery_threshold: int = 1
    http_path: str = "/"
    webhooks: tuple[str, ...] = ()
    on_change_command: str = ""
    history_days: int = 30
    metrics_listen: str = ""
    hostname_patterns: tuple[str, ...] = field(default=("Microseven*", "Reolink*"))
    webui_url: str = ""
    webui_refresh: float = 300
    alert_delay: float = 30
    smtp_host: str = ""
    smtp_port: int = 0
    smtp_security: str = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = ""
    smtp_to: tuple[str, ...] = ()
    smtp_ca_file: str = ""
    smtp_timeout: float = 20
    apprise_urls: tuple[str, ...] = ()
    discovery_interval: float = 0
    discovery_add: bool = False
    discovery_interface: str = ""
    station: str = ""
    camera_overrides: CameraOverrides = ()

    def overrides_for(self, mac: str) -> dict[str, Any]:
        """The camera_heartbeat_cameras overrides of the camera with this (normalised) MAC,
        by short name (method, port, timeout, path, interval)."""
        return self._overrides_by_mac.get(mac, {}) if self.camera_overrides else {}

    @cached_property
    def _overrides_by_mac(self) -> dict[str, dict[str, Any]]:
        from .camera import OVERRIDES

        return {
            mac: {OVERRIDES[name][0]: value for name, value in found}
            for mac, found in self.camera_overrides
        }

    def as_dict(self) -> dict[str, Any]:
        """The settings under their canonical key names (for status and config get)."""
        out: dict[str, Any] = {}
        for key in KEYS:
            out[key.name] = plain_value(key, getattr(self, key.attr))
        return out

    def public_dict(self) -> dict[str, Any]:
        """as_dict() with secrets (passwords, token-bearing URLs) redacted: what anybody,
        root included, is shown (``config get --show-secrets`` is root's way to read one),
        and what is fit for a log."""
        out = self.as_dict()
        for key in KEYS:
            if key.secret and out[key.name]:
                value = out[key.name]
                secret = isinstance(value, list)
                out[key.name] = [redact_secret(v) for v in value] if secret else REDACTED
        return out


REDACTED = "***"


def redact_secret(value: str) -> str:
    """A secret URL as its scheme and ``***`` (``tgram://***``); anything else as ``***``."""
    scheme, sep, _rest = value.partition("://")
    if sep and scheme.isalnum() and scheme.isascii() and len(scheme) <= 20:
        return f"{scheme}://{REDACTED}"
    return REDACTED


def redact_value(value: Any) -> Any:
    """A secret setting's value as an error message or the log may show it: each URL of a
    list as :func:`redact_secret`, anything else as ``***``."""
    if isinstance(value, list | tuple):
        return [redact_secret(v) if isinstance(v, str) else REDACTED for v in value[:10]]
    return redact_secret(value) if isinstance(value, str) else REDACTED


def redact_url(text: str) -> str:
    """A URL with its user name and password (``user:pass@``) as ``***@``; other URLs as
    they are (the web UI's address is no secret, credentials in it are)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return redact_secret(text)
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        return f"{redact_secret(scheme + '://')}@{netloc.rpartition('@')[2]}{slash}{path}"
    return text


def lookup_key(name: str) -> Key:
    """The setting called ``name`` in either spelling, or InvalidValue naming the known keys."""
    key = KEYS_BY_NAME.get(name)
    if key is None:
        raise InvalidValue("key", name, "known keys: " + ", ".join(k.name for k in KEYS))
    return key


def raw_value(doc: Mapping[str, Any], key: Key) -> tuple[str, Any] | None:
    """The spelling and value of ``key`` as found in ``doc``; the web UI's spelling wins."""
    for spelling in (key.hyphenated, key.name):
        if spelling in doc:
            return spelling, doc[spelling]
    return None


def spelling_for(doc: Mapping[str, Any], key: Key) -> str:
    """Which spelling to write ``key`` with so the file keeps the style it already uses."""
    found = raw_value(doc, key)
    if found:
        return found[0]
    if any(isinstance(k, str) and k.startswith("camera_heartbeat_") for k in doc):
        return key.name
    return key.hyphenated


def check_camera_count(doc: Mapping[str, Any], path: str) -> None:
    """SettingsError when the document lists more than MAX_CAMERAS cameras."""
    cameras = doc.get("cameras")
    if isinstance(cameras, list) and len(cameras) > MAX_CAMERAS:
        raise SettingsError(
            path,
            f"{len(cameras)} cameras listed: at most {MAX_CAMERAS} are monitored "
            "(docs/security.md); remove some",
            "cameras",
        )


def parse_settings(doc: Mapping[str, Any], path: str = "<settings>") -> Settings:
    """Validate the heartbeat keys of a settings document; SettingsError names key and value
    (a secret's value as its scheme and ``***``). More than MAX_CAMERAS cameras is an error."""
    check_camera_count(doc, path)
    values: dict[str, Any] = {}
    for key in KEYS:
        found = raw_value(doc, key)
        if found is None:
            continue
        spelling, value = found
        try:
            values[key.attr] = key.check(spelling, value)
        except InvalidValue as err:
            shown = err.value  # the check's own excerpt of a large value (secrets redacted)
            if key.secret:
                shown = redact_value(value)
            raise SettingsError(path, f"invalid value {shown!r}: {err.allowed}", spelling) from None
    names = {f.name for f in fields(Settings)}
    assert set(values) <= names
    return replace(Settings(), **values)


#: per-camera overrides that point a probe somewhere: privileged (docs/security.md)
PRIVILEGED_OVERRIDES = ("heartbeat_method", "heartbeat_port", "heartbeat_path", "heartbeat_url")
_said_ignored: set[tuple[str, str]] = set()  # (file, key) already named in the log


def _ignored(path: str, key: str, why: str) -> None:
    """Say once per file and key that a privileged key of an untrusted file is ignored."""
    if (path, key) in _said_ignored:
        return
    if len(_said_ignored) < 1000:
        _said_ignored.add((path, key))
    log.warning(
        "%s: %s ignored: %s; a privileged key is honoured only from a file that only root "
        "and the service user can write (docs/security.md)",
        path,
        key,
        why,
    )


def untrusted_view(doc: Mapping[str, Any], path: str, why: str) -> dict[str, Any]:
    """``doc`` as a file that others may write is honoured: without its privileged keys and
    without the privileged fields of ``camera_heartbeat_cameras``; each is named once in the
    log (file and key), and everything else is used. The one place that strips them."""
    out: dict[str, Any] = {}
    for name, value in doc.items():
        key = KEYS_BY_NAME.get(name) if isinstance(name, str) else None
        if key is not None and key.privileged:
            _ignored(path, name, why)
            continue
        if key is not None and key.check is check_camera_overrides and isinstance(value, dict):
            value = {mac: _without_overrides(f, path, name, why) for mac, f in value.items()}
        out[name] = value
    return out


def untrusted_camera(entry: Any, path: str, why: str) -> Any:
    """A camera record (an item of a ``cameras`` list) from a file or a place that others
    may write: without its probe overrides (method, port, path, URL), named once in the log."""
    return _without_overrides(entry, path, "cameras", why)


def _without_overrides(fields_: Any, path: str, where: str, why: str) -> Any:
    if not isinstance(fields_, dict):
        return fields_
    out = {}
    for name, value in fields_.items():
        canonical = name.replace("-", "_") if isinstance(name, str) else name
        if canonical in PRIVILEGED_OVERRIDES:
            if value is not None:
                _ignored(path, f"{where}: {canonical}", why)
            continue
        out[name] = value
    return out


def layered_settings(
    shared: Mapping[str, Any],
    shared_path: str,
    own: Mapping[str, Any] | None = None,
    own_path: str = "<config>",
    webui: bool = False,
    shared_untrusted: str = "",
    own_untrusted: str = "",
) -> Settings:
    """The settings the daemon runs on: the shared file's heartbeat keys, overridden by the
    daemon's own config file where it sets a key. In web UI mode the shared
    ``camera-heartbeat-enabled`` is the web UI's own switch and never turns the daemon off.
    A file others may write (``*_untrusted``: why, from SettingsFile.untrusted) gives no
    privileged key (:func:`untrusted_view`).

    Raises SettingsError naming the file (and key) that holds a bad value.
    """
    if webui:
        shared = {k: v for k, v in shared.items() if KEYS_BY_NAME.get(k) is not _ENABLED}
    if shared_untrusted:
        shared = untrusted_view(shared, shared_path, shared_untrusted)
    if own and own_untrusted:
        own = untrusted_view(own, own_path, own_untrusted)
    base = parse_settings(shared, shared_path)
    if not own:
        return base
    mine = parse_settings(own, own_path)
    values = {key.attr: getattr(mine, key.attr) for key in KEYS if raw_value(own, key) is not None}
    return replace(base, **values)


def default_settings_path() -> Path:
    """``$PUMAGUARD_SETTINGS``, else the XDG config location PumaGuard uses."""
    env = os.environ.get("PUMAGUARD_SETTINGS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pumaguard" / "pumaguard-settings.yaml"
