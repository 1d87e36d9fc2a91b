"""Uptime arithmetic on a camera's change log: pure, no I/O, no clock.

A camera's changes of state, ``(at, new_status)`` sorted by time, and the spans the
daemon was not running (``gaps``) give the time it was up, down or unknown in a
window (:func:`segments`, :func:`coverage`, :func:`uptime`) and the window drawn as
equal slots (:func:`slots`): what ``status``, ``timeline``, the status page and the
metrics show. The history (``stores/history.py``) keeps the change log; this module
only counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pumaguard_hb.model.camera import CONNECTED

DAY = 86400.0
WEEK = 7 * DAY

UP, DOWN, UNKNOWN = "up", "down", "unknown"


@dataclass(frozen=True)
class Segment:
    """A stretch of time in one state: ``up``, ``down`` or ``unknown``."""

    start: float
    end: float
    state: str


def segments(
    changes: Sequence[tuple[float, str]],
    gaps: Iterable[tuple[float, float]],
    start: float,
    end: float,
) -> list[Segment]:
    """The window ``[start, end]`` cut into consecutive :class:`Segment`s, covering it whole.

    ``changes`` are ``(at, new_status)`` sorted by time. The status at a moment is that
    of the last change at or before it; before the first change it is unknown, and so
    is the time inside ``gaps`` (periods the daemon was not running). Neighbouring
    segments of the same state are merged.
    """
    if end <= start:
        return []
    cuts = sorted((max(a, start), min(b, end)) for a, b in gaps if b > start and a < end)
    # (time, state) boundaries before gaps are applied
    plain: list[Segment] = []
    edge, state = start, UNKNOWN
    for at, status in changes:
        if at >= end:
            break
        new = UP if status == CONNECTED else DOWN
        if at > edge:
            plain.append(Segment(edge, at, state))
            edge = at
        state = new
    plain.append(Segment(edge, end, state))
    out: list[Segment] = []

    def emit(a: float, b: float, st: str) -> None:
        if b <= a:
            return
        if out and out[-1].state == st and out[-1].end >= a:
            out[-1] = Segment(out[-1].start, b, st)
        else:
            out.append(Segment(a, b, st))

    for seg in plain:
        pos = seg.start
        for a, b in cuts:
            if b <= pos or a >= seg.end:
                continue
            emit(pos, max(pos, a), seg.state)
            emit(max(pos, a), min(b, seg.end), UNKNOWN)
            pos = max(pos, min(b, seg.end))
        emit(pos, seg.end, seg.state)
    return out


@dataclass(frozen=True)
class Coverage:
    """How a window was spent: seconds up, down and unknown."""

    up: float
    down: float
    unknown: float

    @property
    def observed(self) -> float:
        return self.up + self.down

    @property
    def uptime(self) -> float | None:
        """Percent of the *observed* time that was up (None when nothing was observed)."""
        return round(100.0 * self.up / self.observed, 3) if self.observed > 0 else None

    @property
    def observed_pct(self) -> float:
        """Percent of the window that was observed at all (6 decimals: one second of a week
        is 0.000165 %, not 0)."""
        total = self.observed + self.unknown
        return round(100.0 * self.observed / total, 6) if total > 0 else 0.0


def coverage(segs: Iterable[Segment]) -> Coverage:
    """Seconds up, down and unknown in ``segs``."""
    spent = {UP: 0.0, DOWN: 0.0, UNKNOWN: 0.0}
    for seg in segs:
        spent[seg.state] += seg.end - seg.start
    return Coverage(spent[UP], spent[DOWN], spent[UNKNOWN])


MIXED = "mixed"
WINDOWS = {"24h": DAY, "7d": WEEK}  # the windows of uptime figures and timelines
MIN_SLOTS, MAX_SLOTS = 10, 400


def slots(segs: Sequence[Segment], start: float, end: float, count: int) -> list[str]:
    """``[start, end]`` cut into ``count`` equal slots, each ``up``, ``down``, ``mixed``
    (some up and some down) or ``unknown`` (nothing observed), from ``segs``.

    A slot partly unknown takes the state of what was observed in it: one check in a
    slot makes it known. ``segs`` are sorted and do not overlap (as :func:`segments`).
    """
    if count <= 0 or end <= start:
        return []
    width = (end - start) / count
    up = [0.0] * count
    down = [0.0] * count
    for seg in segs:
        if seg.state not in (UP, DOWN) or seg.end <= start or seg.start >= end:
            continue
        spent = up if seg.state == UP else down
        a, b = max(seg.start, start), min(seg.end, end)
        first = min(count - 1, int((a - start) / width))
        last = min(count - 1, int((b - start) / width))
        for i in range(first, last + 1):
            lo = start + i * width
            overlap = min(b, lo + width) - max(a, lo)
            if overlap > 0:
                spent[i] += overlap
    out = []
    for u, d in zip(up, down, strict=True):
        out.append(MIXED if u > 0 and d > 0 else DOWN if d > 0 else UP if u > 0 else UNKNOWN)
    return out


def uptime(
    changes: Sequence[tuple[float, str]],
    gaps: Iterable[tuple[float, float]],
    start: float,
    end: float,
) -> float | None:
    """Percentage of the observed time in ``[start, end]`` that the camera was connected.

    Unknown time (before the first change, and ``gaps``) counts neither as up nor as
    down. None when nothing in the window is known.
    """
    return coverage(segments(changes, gaps, start, end)).uptime
