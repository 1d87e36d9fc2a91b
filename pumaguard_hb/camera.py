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

from .errors import InvalidValue
from .settings import check_http_path, check_method, check_port, check_seconds

CONNECTED = "connected"
DISCONNECTED = "disconnected"
STATUSES = (CONNECTED, DISCONNECTED)

_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
MAX_HOSTNAME = 253


def now_iso() -> str:
    """The current time as PumaGuard writes it: ISO 8601 UTC with a Z, whole seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_mac(value: Any) -> str:
    """``AA-BB-CC-DD-EE-FF`` → ``aa:bb:cc:dd:ee:ff``; InvalidValue for anything else."""
    if not isinstance(value, str) or not _MAC.match(value.strip().lower()):
        raise InvalidValue("mac_address", value, "must look like aa:bb:cc:dd:ee:ff")
    hexdigits = re.sub(r"[^0-9a-f]", "", value.strip().lower())
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


def normalize_ip(value: Any) -> str:
    """A unicast IPv4/IPv6 address in canonical form; InvalidValue explains what is wrong."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue("ip_address", value, "must be an IPv4 or IPv6 address")
    text = value.strip()
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidValue("ip_address", value, "must be an IPv4 or IPv6 address") from None
    if addr.is_unspecified or addr.is_multicast:
        raise InvalidValue("ip_address", value, "must be a unicast address of a camera")
    if isinstance(addr, ipaddress.IPv4Address) and addr == ipaddress.IPv4Address("255.255.255.255"):
        raise InvalidValue("ip_address", value, "must be a unicast address, not broadcast")
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.is_link_local and not addr.scope_id:
            raise InvalidValue(
                "ip_address", value, "an IPv6 link-local address needs a zone, e.g. fe80::1%eth0"
            )
        if addr.ipv4_mapped:
            return str(addr.ipv4_mapped)
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
            return "ip:" + str(ip)
    host = entry.get("hostname")
    if isinstance(host, str) and host.strip():
        return "host:" + host.strip()
    return None


@dataclass
class Camera:
    """One camera as the daemon sees it: the settings entry plus what probing learned."""

    id: str
    hostname: str
    ip_address: str
    mac_address: str
    status: str
    last_seen: str | None
    problem: str | None = None  # why it is skipped (e.g. an invalid IP), if it is
    overrides: dict[str, Any] = field(default_factory=dict)  # method, port, timeout, path
    # what the daemon learned while running; not persisted
    rtt_ms: float | None = None
    since: float | None = None  # wall-clock time the current status began, if seen
    reason: str = ""
    method: str = ""
    checked_at: float | None = None
    fails: int = 0  # failed checks in a row
    successes: int = 0  # successful checks in a row

    @property
    def probe_ip(self) -> str | None:
        """The address to probe, or None when the camera has no usable IP."""
        return None if self.problem or not self.ip_address else self.ip_address

    def to_dict(self) -> dict[str, Any]:
        """The camera as the control protocol shows it."""
        return {
            "id": self.id,
            "hostname": self.hostname,
            "ip_address": self.ip_address,
            "mac_address": self.mac_address,
            "status": self.status,
            "last_seen": self.last_seen,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
            "since": self.since,
            "reason": self.reason,
            "method": self.method,
            "checked_at": self.checked_at,
            "problem": self.problem,
            "overrides": self.overrides,
            "consecutive_failures": self.fails,
            "consecutive_successes": self.successes,
        }


def camera_from_entry(entry: Any) -> Camera | None:
    """Build a Camera from one item of the settings file's ``cameras`` list.

    Entries with nothing to identify them give None; entries with an invalid IP
    are kept but carry a ``problem`` and are never probed.
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
            ip, problem = str(raw_ip), str(err)
    try:
        hostname = clean_hostname(entry.get("hostname"))
    except InvalidValue as err:
        hostname, problem = "", str(err)
    mac = entry.get("mac_address")
    try:
        mac = normalize_mac(mac) if mac else ""
    except InvalidValue:
        mac = str(mac)
    overrides, override_problem = camera_overrides(entry)
    problem = problem or override_problem
    status = entry.get("status")
    last_seen = entry.get("last_seen")
    if isinstance(last_seen, datetime):
        last_seen = last_seen.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Camera(
        id=cid,
        hostname=hostname,
        ip_address=ip,
        mac_address=mac,
        status=status if status in STATUSES else DISCONNECTED,
        last_seen=str(last_seen) if last_seen else None,
        problem=problem,
        overrides=overrides,
    )


OVERRIDES = {
    "heartbeat_method": ("method", check_method),
    "heartbeat_port": ("port", check_port),
    "heartbeat_timeout": ("timeout", check_seconds),
    "heartbeat_path": ("path", check_http_path),
}


def camera_overrides(entry: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Per-camera ``heartbeat_method/port/timeout/path`` (either spelling), validated.

    Returns the overrides by short name, and a problem sentence when one is invalid
    (such a camera is not probed rather than probed the wrong way).
    """
    found: dict[str, Any] = {}
    for key, (short, check) in OVERRIDES.items():
        for spelling in (key.replace("_", "-"), key):
            if spelling in entry and entry[spelling] is not None:
                try:
                    found[short] = check(spelling, entry[spelling])
                except InvalidValue as err:
                    return found, str(err)
                break
    return found, None


def label(camera: Camera) -> str:
    """How a camera is named in log lines: hostname (ip) or its id."""
    name = camera.hostname or camera.id
    return f"{name} ({camera.ip_address})" if camera.ip_address else name
