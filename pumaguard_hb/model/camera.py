"""Cameras as the settings file lists them, and how the daemon identifies them.

A camera is identified by its MAC address; a camera added by hand without a MAC
is identified by its IP address (``ip:192.0.2.7``), or by its hostname when it
has neither.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pumaguard_hb.model.checks import (
    REDACTED,
    check_http_path,
    check_interval,
    check_method,
    check_password,
    check_port,
    check_rtsp_url,
    check_seconds,
    check_text,
    redact_rtsp_url,
)
from pumaguard_hb.model.checks import normalize_mac as normalize_mac  # where it was before
from pumaguard_hb.model.errors import InvalidValue
from pumaguard_hb.model.power import check_plug
from pumaguard_hb.model.text import printable

CONNECTED = "connected"
DISCONNECTED = "disconnected"
STATUSES = (CONNECTED, DISCONNECTED)

MAX_HOSTNAME = 253
ZONE = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # an IPv6 zone: a Linux interface name (IFNAMSIZ-1)


def now_iso() -> str:
    """The current time as PumaGuard writes it: ISO 8601 UTC with a Z, whole seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_seconds(value: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 time as PumaGuard writes it, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def normalize_ip(value: Any) -> str:
    """A unicast IPv4/IPv6 address of a camera in canonical form; InvalidValue explains what
    is wrong. Strict, because the address comes from outside (DHCP, the web UI, a file) and
    reaches the log, the terminal and an HTTP ``Host:`` line: an IPv6 zone is an interface
    name (:data:`ZONE`), and IPv4-mapped (``::ffff:192.0.2.1``) and unspecified (``::``,
    ``0.0.0.0``) addresses are refused."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue("ip_address", value, "must be an IPv4 or IPv6 address")
    text = value.strip()
    _, percent, zone = text.partition("%")
    if percent and not ZONE.fullmatch(zone):
        raise InvalidValue(
            "ip_address",
            value,
            "an IPv6 zone must be an interface name (at most 15 letters, digits, '_', '.', '-'),"
            " e.g. fe80::1%eth0",
        )
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidValue("ip_address", value, "must be an IPv4 or IPv6 address") from None
    if addr.is_unspecified or addr.is_multicast:
        raise InvalidValue("ip_address", value, "must be a unicast address of a camera")
    if isinstance(addr, ipaddress.IPv4Address) and addr == ipaddress.IPv4Address("255.255.255.255"):
        raise InvalidValue("ip_address", value, "must be a unicast address, not broadcast")
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            raise InvalidValue(
                "ip_address",
                value,
                "must not be IPv4-mapped (::ffff:a.b.c.d): give the IPv4 address itself",
            )
        if addr.is_link_local and not addr.scope_id:
            raise InvalidValue(
                "ip_address", value, "an IPv6 link-local address needs a zone, e.g. fe80::1%eth0"
            )
    return str(addr)


def clean_hostname(value: Any) -> str:
    """A printable hostname, or '' for none; InvalidValue for control characters or length."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidValue("hostname", value, "must be text")
    text = value.strip()
    if len(text) > MAX_HOSTNAME:
        raise InvalidValue("hostname", value[:40] + "…", f"must be at most {MAX_HOSTNAME} chars")
    if any(not ch.isprintable() for ch in text):
        raise InvalidValue("hostname", value, "must not contain control characters")
    return text


def camera_id(entry: dict[str, Any]) -> str | None:
    """The stable id of a camera entry from the settings file, or None if it has nothing usable."""
    mac = entry.get("mac_address")
    if mac:
        try:
            return normalize_mac(mac)
        except InvalidValue:
            pass
    ip = entry.get("ip_address")
    if ip:
        try:
            return "ip:" + normalize_ip(ip)
        except InvalidValue:
            return "ip:" + printable(str(ip))  # an id is shown and logged: one printable line
    host = entry.get("hostname")
    if isinstance(host, str) and host.strip():
        return "host:" + printable(host.strip())
    return None


@dataclass(frozen=True)
class Spec:
    """What the station says a camera is: owned by whoever edits the station (the web UI, a
    person, DHCP). The daemon never changes a spec on its own judgement."""

    id: str
    hostname: str
    ip_address: str
    mac_address: str
    # method, port, timeout, path, interval, url, username, password (repr: never shown)
    overrides: dict[str, Any] = field(default_factory=dict, repr=False)
    problem: str | None = None  # why it is not probed (e.g. an invalid IP), if it is not
    notice: str | None = None  # an override that is ignored (a bad heartbeat_interval)

    @property
    def probe_ip(self) -> str | None:
        """The address to probe, or None when the camera has no usable IP."""
        return None if self.problem or not self.ip_address else self.ip_address


@dataclass
class Observed:
    """What the daemon observed of a camera: owned by the daemon alone. A status written
    by somebody else is a report, adopted only for a camera the daemon has not yet seen."""

    status: str = DISCONNECTED
    last_seen: str | None = None  # last good contact, ISO 8601 UTC
    known: bool = False  # True once a probe or a DHCP event of this run said something
    rtt_ms: float | None = None
    step: str | None = None  # stream: the last step that succeeded (docs/stream.md)
    first_packet_ms: float | None = None  # stream: connect to the first RTP packet
    since: float | None = None  # wall-clock time the current status began, if seen
    reason: str = ""
    method: str = ""
    checked_at: float | None = None
    fails: int = 0  # failed checks in a row
    successes: int = 0  # successful checks in a row


@dataclass
class Camera:
    """One camera: its spec (what it is) and what the daemon observed of it."""

    spec: Spec
    seen: Observed = field(default_factory=Observed)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def hostname(self) -> str:
        return self.spec.hostname

    @property
    def ip_address(self) -> str:
        return self.spec.ip_address

    @property
    def mac_address(self) -> str:
        return self.spec.mac_address

    @property
    def problem(self) -> str | None:
        return self.spec.problem

    @property
    def overrides(self) -> dict[str, Any]:
        return self.spec.overrides

    @property
    def probe_ip(self) -> str | None:
        return self.spec.probe_ip

    @property
    def status(self) -> str:
        return self.seen.status

    @property
    def last_seen(self) -> str | None:
        return self.seen.last_seen

    def to_dict(self) -> dict[str, Any]:
        """The camera as the control protocol shows it."""
        seen = self.seen
        return {
            "id": self.id,
            "hostname": self.hostname,
            "ip_address": self.ip_address,
            "mac_address": self.mac_address,
            "status": seen.status,
            "last_seen": seen.last_seen,
            "rtt_ms": _ms(seen.rtt_ms),
            "since": seen.since,
            "reason": seen.reason,
            "method": seen.method,
            "checked_at": seen.checked_at,
            "problem": self.problem,
            "notice": self.spec.notice,
            "overrides": redact_overrides(self.overrides),
            "step": seen.step,
            "first_packet_ms": _ms(seen.first_packet_ms),
            "consecutive_failures": seen.fails,
            "consecutive_successes": seen.successes,
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def iso(value: Any) -> str | None:
    """A ``last_seen`` as read from outside (text, or a datetime PyYAML made of it)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return str(value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def spec_from_entry(entry: Any) -> Spec | None:
    """The spec of one item of a ``cameras`` list (the settings file's or the web UI's).

    Entries with nothing to identify them give None; entries with an invalid IP or
    override are kept but carry a ``problem`` and are never probed.
    """
    if not isinstance(entry, dict):
        return None
    cid = camera_id(entry)
    if cid is None:
        return None
    problem = None
    ip = ""
    raw_ip = entry.get("ip_address")
    if raw_ip:
        try:
            ip = normalize_ip(raw_ip)
        except InvalidValue as err:
            ip, problem = printable(str(raw_ip)), str(err)
    try:
        hostname = clean_hostname(entry.get("hostname"))
    except InvalidValue as err:
        hostname, problem = "", str(err)
    mac = entry.get("mac_address")
    try:
        mac = normalize_mac(mac) if mac else ""
    except InvalidValue:
        mac = printable(str(mac))
    overrides, override_problem = camera_overrides(entry)
    notice = None
    if "bad_interval" in overrides:  # the camera is still probed, on the global interval
        notice = overrides.pop("bad_interval") + "; using camera_heartbeat_interval"
    return Spec(cid, hostname, ip, mac, overrides, problem or override_problem, notice)


def reported(entry: dict[str, Any]) -> Observed:
    """The status and last_seen somebody else wrote for a camera: a report, not a fact."""
    status = entry.get("status")
    return Observed(
        status=status if status in STATUSES else DISCONNECTED,
        last_seen=iso(entry.get("last_seen")),
    )


def camera_from_entry(entry: Any) -> Camera | None:
    """A Camera from one item of a ``cameras`` list, with its reported status."""
    spec = spec_from_entry(entry)
    if spec is None:
        return None
    return Camera(spec, reported(entry))


OVERRIDES = {
    "heartbeat_method": ("method", check_method),
    "heartbeat_port": ("port", check_port),
    "heartbeat_timeout": ("timeout", check_seconds),
    "heartbeat_path": ("path", check_http_path),
    "heartbeat_interval": ("interval", check_interval),  # at least MIN_INTERVAL
    "heartbeat_url": ("url", check_rtsp_url),  # the stream method's URL (docs/stream.md)
    "heartbeat_username": ("username", check_text),
    "heartbeat_password": ("password", check_password),
    "heartbeat_plug": ("plug", check_plug),  # docs/power-cycle.md
    "heartbeat_plug_password": ("plug_password", check_password),
}
#: overrides that are (or may hold) a secret: never shown as they are
SECRET_OVERRIDES = ("heartbeat_url", "heartbeat_password", "heartbeat_plug_password")


PLUG_PASSWORD = ("plug_password", "heartbeat_plug_password")


def redact_overrides(found: dict[str, Any]) -> dict[str, Any]:
    """Overrides (by short or long name) as status, the log and --json may show them: a
    password as ``***``, a stream URL without its credentials (docs/security.md)."""
    out = dict(found)
    for name, value in found.items():
        if name in ("password", "heartbeat_password", *PLUG_PASSWORD) and value:
            out[name] = REDACTED
        elif name in ("url", "heartbeat_url") and isinstance(value, str):
            out[name] = redact_rtsp_url(value)
    return out


def camera_overrides(entry: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Per-camera ``heartbeat_method/port/timeout/path/url/...`` (either spelling), validated.

    Returns the overrides by short name, and a problem sentence when one is invalid
    (such a camera is not probed rather than probed the wrong way). A bad
    ``heartbeat_interval`` is no reason not to probe: it comes back as ``bad_interval``
    (its sentence) and the camera is checked on the global interval.
    """
    found: dict[str, Any] = {}
    for key, (short, check) in OVERRIDES.items():
        for spelling in (key.replace("_", "-"), key):
            if spelling in entry and entry[spelling] is not None:
                try:
                    found[short] = check(spelling, entry[spelling])
                except InvalidValue as err:
                    if short == "interval":
                        found["bad_interval"] = str(err)[:200]
                        break
                    return found, str(err)
                break
    return found, None


def label(camera: Camera | Spec) -> str:
    """How a camera is named in log lines: hostname (ip) or its id."""
    name = camera.hostname or camera.id
    return f"{name} ({camera.ip_address})" if camera.ip_address else name
