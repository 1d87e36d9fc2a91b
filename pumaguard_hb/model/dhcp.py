"""DHCP events from dnsmasq's ``dhcp-script``: the actions, and which devices are cameras.

What an event does to the cameras is :meth:`.station.Station.dhcp`; the daemon applies
it to its model, the hook (:mod:`.hook`) to the file when the daemon is not running.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

ACTIONS = ("add", "old", "del")
IGNORED_ACTIONS = ("init", "tftp", "arp-add", "arp-del", "relay-snoop")


def is_camera_name(hostname: str, patterns: Iterable[str]) -> bool:
    """True when ``hostname`` matches one of the (case-insensitive) shell patterns."""
    name = hostname.lower()
    return bool(name) and any(fnmatch.fnmatchcase(name, p.lower()) for p in patterns)
