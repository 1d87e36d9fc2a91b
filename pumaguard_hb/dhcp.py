"""DHCP events from dnsmasq's ``dhcp-script``: which devices are cameras, and what changes.

Pure decisions only: :func:`plan_event` turns one event into a :class:`~.store.Patch`.
The daemon applies it to its state; the hook applies it to the file itself when
the daemon is not running.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .camera import CONNECTED, DISCONNECTED, Camera, clean_hostname, normalize_ip, normalize_mac
from .errors import InvalidValue
from .filestore import Patch

ACTIONS = ("add", "old", "del")
IGNORED_ACTIONS = ("init", "tftp", "arp-add", "arp-del", "relay-snoop")


@dataclass(frozen=True)
class Outcome:
    """What one DHCP event did: the patch (None when ignored) and a sentence for the log."""

    patch: Patch | None
    message: str
    camera_id: str | None = None


def is_camera_name(hostname: str, patterns: Iterable[str]) -> bool:
    """True when ``hostname`` matches one of the (case-insensitive) shell patterns."""
    name = hostname.lower()
    return bool(name) and any(fnmatch.fnmatchcase(name, p.lower()) for p in patterns)


def plan_event(
    action: str,
    mac: str,
    ip: str,
    hostname: str | None,
    known: Mapping[str, Camera],
    patterns: Iterable[str],
    now: str,
) -> Outcome:
    """Decide what a dnsmasq event means for the camera list; InvalidValue for bad input."""
    if action in IGNORED_ACTIONS:
        return Outcome(None, f"dhcp {action}: ignored")
    if action not in ACTIONS:
        raise InvalidValue("action", action, "must be add, old or del")
    mac = normalize_mac(mac)
    ip = normalize_ip(ip)
    name = clean_hostname(hostname)
    if name.lower() == "unknown" or name == "*":
        name = ""
    camera = known.get(mac)
    if camera is None:
        if action == "del" or not is_camera_name(name, patterns):
            return Outcome(None, f"dhcp {action} {mac} {ip} {name or '-'}: not a camera, ignored")
        patch = Patch()
        patch.add_camera(
            mac,
            {
                "hostname": name,
                "ip_address": ip,
                "last_seen": now,
                "mac_address": mac,
                "status": CONNECTED,
            },
        )
        return Outcome(patch, f"dhcp {action}: new camera {name} ({ip}) {mac}", mac)
    patch = Patch()
    if action == "del":
        patch.set_fields(mac, status=DISCONNECTED)
        return Outcome(patch, f"dhcp del: {camera.hostname or mac} ({ip}) released its lease", mac)
    values: dict[str, str] = {"status": CONNECTED, "last_seen": now, "ip_address": ip}
    if name:
        values["hostname"] = name
    patch.set_fields(mac, **values)
    return Outcome(patch, f"dhcp {action}: {name or camera.hostname or mac} ({ip}) {mac}", mac)
