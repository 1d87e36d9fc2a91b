"""Power-cycling a hung camera through its smart plug: the settings' checks and the
decision, pure (docs/power-cycle.md).

:func:`decide` answers one question for one camera: cut its power now, or not — and
why, in one line. It is asked after sweeps (and by ``pumaguard-hb power-cycle``); the
sequence that acts on the answer lives in ``devices/power_cycle.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pumaguard_hb.model.checks import normalize_mac, redact_url
from pumaguard_hb.model.errors import InvalidValue

DAY = 86400.0
MAX_PER_DAY = 24  # the highest camera_heartbeat_power_cycle_max_per_day
MAX_SWITCH_ID = 15

# what decide() tells the caller to do
CYCLE = "cycle"  # cut the power now
ASK_PLUG = "ask plug"  # everything else allows a cycle: ask the plug, then decide again
WAIT = "wait"  # not now; the reason says why

# the outcomes of a cycle, as status shows them
RECOVERED = "recovered"
NOT_RECOVERED = "not recovered"
INTERRUPTED = "interrupted by a restart"
PLUG_FAILED = "plug failed"


# ---------------------------------------------------------------- checks of the settings


def check_plug(key: str, value: Any) -> str:
    """A camera's ``heartbeat_plug``: the MAC of a plug in the web UI's plug list
    (``aa:bb:cc:dd:ee:ff``), or ``http://HOST[:PORT][/][?id=N]`` of a Shelly Gen2+ plug."""
    allowed = "must be a plug's MAC (aa:bb:cc:dd:ee:ff) or http://HOST[:PORT] with optional ?id=N"
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(key, str(value)[:60], allowed)
    text = value.strip()
    shown = redact_url(text)[:60].encode("unicode_escape").decode()  # never a password
    if "://" not in text:
        try:
            return normalize_mac(text)
        except InvalidValue:
            raise InvalidValue(key, shown, allowed) from None
    if len(text) > 300 or any(ord(c) < 33 or not c.isprintable() for c in text):
        raise InvalidValue(key, shown, allowed)
    try:
        parts = urlsplit(text)
        port = parts.port
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise InvalidValue(key, shown, allowed) from None
    if (
        parts.scheme.lower() != "http"
        or not parts.hostname
        or "@" in parts.netloc
        or port == 0
        or parts.path not in ("", "/")
        or parts.fragment
        or any(k != "id" for k, _ in query)
        or len(query) > 1
        or any(not v.isdigit() or int(v) > MAX_SWITCH_ID for _, v in query)
    ):
        raise InvalidValue(key, shown, allowed)
    return text


def check_per_day(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PER_DAY:
        raise InvalidValue(key, value, f"must be a whole number of cycles from 1 to {MAX_PER_DAY}")
    return value


def check_off_time(key: str, value: Any) -> float:
    """Seconds the plug keeps the power off (its own ``toggle_after`` timer)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 3600:
        raise InvalidValue(key, value, "must be a number of seconds from 1 to 3600")
    return float(value) if isinstance(value, float) else value


# ---------------------------------------------------------------- the decision


@dataclass(frozen=True)
class Rules:
    """The ``camera_heartbeat_power_cycle*`` settings."""

    enabled: bool = False
    after: float = 300
    max_per_day: int = 3
    off_time: float = 10
    boot_time: float = 120


@dataclass
class Record:
    """What the daemon remembers of one camera's cycles (kept in the state folder, so a
    restart neither repeats nor forgets a cycle)."""

    cycles: list[float] = field(default_factory=list)  # when each cycle began (Unix s)
    last_outcome: str = ""
    last_end: float | None = None  # when the last cycle ended (or began, if interrupted)
    visit: bool = False  # the last allowed cycle failed: none until the camera is seen again
    running: float | None = None  # a cycle under way since (Unix s); None when none is

    def today(self, now: float) -> int:
        """Cycles that began in the last 24 h."""
        return sum(1 for t in self.cycles if now - DAY < t <= now + 60)

    def prune(self, now: float) -> None:
        self.cycles = [t for t in self.cycles if now - DAY < t <= now + 60][-MAX_PER_DAY:]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cycles": list(self.cycles),
            "last_outcome": self.last_outcome,
            "last_end": self.last_end,
            "visit": self.visit,
            "running": self.running,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> Record:
        """A record read back from the state file; anything malformed is dropped, so a
        damaged file costs at most the memory of the cycles it held."""
        if not isinstance(raw, dict):
            return cls()

        def when(value: Any) -> float | None:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            return float(value) if ok and math.isfinite(value) and value > 0 else None

        cycles = raw.get("cycles")
        times = [when(t) for t in cycles[:MAX_PER_DAY]] if isinstance(cycles, list) else []
        outcome = raw.get("last_outcome")
        return cls(
            cycles=[t for t in times if t is not None],
            last_outcome=outcome[:100] if isinstance(outcome, str) else "",
            last_end=when(raw.get("last_end")),
            visit=raw.get("visit") is True,
            running=when(raw.get("running")),
        )


@dataclass(frozen=True)
class Situation:
    """The camera and its station as the monitor sees them now."""

    now: float
    connected: bool
    down_since: float | None  # since when it is disconnected (None: not judged this run)
    has_plug: bool
    cameras: int  # the station's cameras that are checked
    down: int  # of them, disconnected
    by_hand: bool = False  # pumaguard-hb power-cycle: no wait for the after delay


@dataclass(frozen=True)
class PlugAnswer:
    """What the plug (and, in web UI mode, the web UI's plug list) said."""

    answered: bool
    on: bool = False
    mode: str | None = None  # the web UI's mode of the plug; None for a plug named by URL
    problem: str = ""  # why it did not answer


@dataclass(frozen=True)
class Decision:
    action: str  # CYCLE, ASK_PLUG or WAIT
    reason: str


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def decide(rules: Rules, s: Situation, record: Record, plug: PlugAnswer | None) -> Decision:
    """Cut the camera's power now, or not, and why (docs/power-cycle.md, "The rules").

    Asked first without the plug's answer (``plug=None``): the cheap rules are checked and
    ``ASK_PLUG`` says that only the plug is left to ask; then again with its answer.
    """
    if record.running is not None:
        return Decision(WAIT, "a power cycle is under way")
    if not s.has_plug:
        return Decision(WAIT, "it has no heartbeat_plug")
    if not rules.enabled and not s.by_hand:
        return Decision(WAIT, "power cycling is off (camera_heartbeat_power_cycle)")
    if s.connected:
        return Decision(WAIT, "it is connected")
    if record.visit:
        return Decision(
            WAIT,
            "it needs a visit: the last allowed power cycle did not bring it back; no more "
            "until it is seen again",
        )
    today = record.today(s.now)
    if today >= rules.max_per_day:
        first = min(t for t in record.cycles if s.now - DAY < t)
        return Decision(
            WAIT,
            f"{today} power cycles in the last 24 h, the most allowed "
            f"(camera_heartbeat_power_cycle_max_per_day); the next is allowed in "
            f"{_span(first + DAY - s.now)}",
        )
    if s.cameras > 1 and s.down * 2 > s.cameras:
        return Decision(
            WAIT,
            f"{s.down} of the station's {s.cameras} cameras are down: that is the network, "
            "not a camera",
        )
    if not s.by_hand:
        if s.down_since is None:
            return Decision(WAIT, "it has not been checked since the daemon started")
        start = max(s.down_since, record.last_end or 0.0)
        down_for = s.now - start
        if down_for < rules.after:
            since = "since the last power cycle" if start == record.last_end else "down"
            return Decision(
                WAIT,
                f"{since} for {_span(down_for)}; a power cycle after {_span(rules.after)} "
                "(camera_heartbeat_power_cycle_after)",
            )
    if plug is None:
        return Decision(ASK_PLUG, "the plug is asked")
    if not plug.answered:
        return Decision(WAIT, f"its plug does not answer: {plug.problem or 'no answer'}")
    if plug.mode is not None and plug.mode != "on":
        return Decision(
            WAIT,
            f"its plug's mode in the web UI is {plug.mode!r}, not 'on'"
            + (" (an automatic plug is a deterrent)" if plug.mode == "automatic" else ""),
        )
    if not plug.on:
        return Decision(WAIT, "its plug is off: the camera has no power (switch it on by hand)")
    return Decision(
        CYCLE,
        f"power cycle {today + 1} of at most {rules.max_per_day} in 24 h"
        + ("" if s.by_hand else " (disconnected, its plug on)"),
    )
