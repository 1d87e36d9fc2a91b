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
