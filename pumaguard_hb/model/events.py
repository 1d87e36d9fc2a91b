"""State changes of cameras, handed to whoever listens (history, actions, metrics)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class StateChange:
    """A camera went from one status to another (``old`` is None on its first judgement)."""

    camera_id: str
    hostname: str
    ip_address: str
    mac_address: str
    old: str | None
    new: str
    at: float  # Unix seconds
    reason: str
    method: str  # tcp, icmp, dhcp, ...
    rtt_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The change as a JSON-ready mapping (history lines, webhook bodies)."""
        return asdict(self)


Listener = Callable[[StateChange], None]
"""Called on the event loop for every change; must return quickly (queue slow work)."""

Forget = Callable[[str], None]
"""Called on the event loop with the id of a camera that is gone (no longer listed, or
removed by hand): drop everything kept for it, so that memory stays flat however many
cameras come and go (docs/security.md, "Limits"). It may come back later as new."""


# what a power cycle tells the on-change actions and alerts (docs/power-cycle.md)
POWER_CYCLED = "power-cycled"
RECOVERED_AFTER_CYCLE = "recovered after power cycle"
NEEDS_VISIT = "needs a visit"
POWER_EVENTS = (POWER_CYCLED, RECOVERED_AFTER_CYCLE, NEEDS_VISIT)


@dataclass(frozen=True)
class PowerEvent:
    """A step of power-cycling a camera: its power was cut, it came back, or it needs a
    visit (the last allowed cycle did not bring it back)."""

    camera_id: str
    hostname: str
    ip_address: str
    mac_address: str
    kind: str  # one of POWER_EVENTS
    at: float  # Unix seconds
    reason: str
    cycles_today: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PowerListener = Callable[[PowerEvent], None]
"""Called on the event loop for every power event; must return quickly."""
