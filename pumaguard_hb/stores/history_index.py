"""The history's lines, what they say, and the in-memory index built from them.

A line is one compact JSON object (:func:`encode`); one that does not parse or lacks its
fields is corrupt (:func:`parse_lines`). The history file (``stores/history.py``) hands
every valid line it loads or appends to :meth:`Index.add`; ``status``, ``timeline``, the
status page and the metrics then read uptime figures from here, never from the file. What
the lines mean:

- ``daemon_start`` / ``daemon_stop`` markers: the time the daemon was not running is a
  gap, unknown for every camera (a start without a stop before it: killed, unknown from
  its last line on);
- a change (``camera_id``, ``new``), or an ``observed`` line: the camera's state from then
  on; one marked ``first`` (its first judgement in a run) makes the time from that run's
  start until then unknown for that camera.

At most :data:`INDEX_PER_CAMERA` changes per camera and the last week are kept; a camera
that leaves the station leaves the index (:meth:`Index.forget`, :meth:`Index.retain`).
No I/O: the arithmetic is :mod:`pumaguard_hb.model.uptime`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pumaguard_hb.model.camera import STATUSES
from pumaguard_hb.model.uptime import WEEK, WINDOWS, Segment, coverage, segments, slots

INDEX_PER_CAMERA = 2000  # changes kept in memory per camera (the last 7 days at most)
RECENT = 10  # changes per camera shown by status
START, STOP = "daemon_start", "daemon_stop"
OBSERVED = "observed"  # a camera's status as first judged in a run, when the history differs


def parse_lines(lines: Iterable[bytes]) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """``(line number, entry)`` for every non-empty line; entry None when it is corrupt."""
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            yield number, None
            continue
        ok = isinstance(entry, dict) and isinstance(entry.get("at"), int | float)
        if ok and "event" not in entry:
            ok = isinstance(entry.get("camera_id"), str) and isinstance(entry.get("new"), str)
        yield number, entry if ok else None


def encode(entry: dict[str, Any]) -> bytes:
    """One history line: compact JSON, UTF-8, newline-terminated."""
    return (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


@dataclass
class _Camera:
    changes: deque[tuple[float, str]] = field(default_factory=deque)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))
    # unknown spans of this camera alone: from a daemon start to its first judgement then
    gaps: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=INDEX_PER_CAMERA))
    run: float | None = None  # the daemon_start of the run its latest line belongs to


class Index:
    """Each camera's recent changes and the daemon's gaps, built from history lines."""

    def __init__(self) -> None:
        self._cameras: dict[str, _Camera] = {}
        self._gaps: list[tuple[float, float]] = []
        self.clear()

    def clear(self) -> None:
        """Forget everything (before loading the file again)."""
        self._cameras.clear()
        self._gaps.clear()
        self._stopped_at: float | None = None  # last daemon_stop seen while loading
        self._running = False  # a daemon_start seen and no daemon_stop after it
        self._last_at: float | None = None  # time of the latest line
        self._run_start: float | None = None  # the latest daemon_start (this run's, once live)
        self.live = False  # this daemon's own daemon_start is indexed: a run is going on

    # -- lines in ----------------------------------------------------------------------------

    def add(self, entry: dict[str, Any]) -> None:
        """Index one history line (a parsed, valid one: see ``history.parse_lines``)."""
        at = float(entry["at"])
        event = entry.get("event")
        last, self._last_at = self._last_at, max(at, self._last_at or at)
        if event == STOP:
            self._stopped_at, self._running = at, False
            return
        if event == START:
            self._run_start = at
            if self._stopped_at is not None and at > self._stopped_at:
                self._gaps.append((self._stopped_at, at))
            elif self._running and last is not None and at > last:
                # killed (no daemon_stop): unknown from its last line on
                self._gaps.append((last, at))
            self._stopped_at, self._running = None, True
            return
        if event == OBSERVED:
            cid, status = entry.get("camera_id"), entry.get("status")
            if isinstance(cid, str) and status in STATUSES:
                cam = self._cameras.setdefault(cid, _Camera())
                self._first_of_run(cam, at, entry.get("first") is True)
                self._add_state(cam, at, str(status))
            return
        if event is not None:
            return
        cam = self._cameras.setdefault(entry["camera_id"], _Camera())
        self._first_of_run(cam, at, entry.get("first") is True)
        self._add_state(cam, at, entry["new"])
        cam.recent.append(
            {
                "at": at,
                "old": entry.get("old"),
                "new": entry["new"],
                "reason": entry.get("reason", ""),
            }
        )

    def mark_first(self, camera_id: str, entry: dict[str, Any]) -> None:
        """Mark ``entry`` ``first`` when it is this run's first judgement of the camera."""
        cam = self._cameras.get(camera_id)
        if self.live and (cam is None or cam.run != self._run_start):
            entry["first"] = True

    def agrees(self, camera_id: str, status: str, at: float) -> bool:
        """True when the index already holds ``status`` as the camera's latest state (then
        nothing needs writing: a first judgement in this run is noted in memory only)."""
        cam = self._cameras.get(camera_id)
        if cam is None or not cam.changes or cam.changes[-1][1] != status:
            return False
        if self.live and cam.run != self._run_start:
            self._first_of_run(cam, at, True)
        return True

    def _first_of_run(self, cam: _Camera, at: float, first: bool) -> None:
        """A line marked ``first`` (the camera's first judgement in its run): the camera's
        state from that run's daemon_start until then is unknown (not the state carried
        over from the run before)."""
        if cam.run == self._run_start:
            return
        if first and self._run_start is not None and at > self._run_start:
            cam.gaps.append((self._run_start, at))
        cam.run = self._run_start

    def _add_state(self, cam: _Camera, at: float, status: str) -> None:
        cam.changes.append((at, status))
        horizon = time.time() - WEEK
        # keep one change before the week so the state at its start is known
        while len(cam.changes) > 1 and (
            cam.changes[1][0] <= horizon or len(cam.changes) > INDEX_PER_CAMERA
        ):
            cam.changes.popleft()
        while self._gaps and self._gaps[0][1] < horizon:
            self._gaps.pop(0)
        while cam.gaps and cam.gaps[0][1] < horizon:
            cam.gaps.popleft()

    # -- figures out -------------------------------------------------------------------------

    def camera_segments(self, camera_id: str, start: float, end: float) -> list[Segment]:
        """The camera's :func:`~pumaguard_hb.model.uptime.segments` over ``[start, end]``
        (at most the last 7 days are known in memory; earlier time is unknown)."""
        cam = self._cameras.get(camera_id)
        changes = list(cam.changes) if cam is not None else []
        gaps = list(self._gaps)
        if cam is not None:
            gaps += cam.gaps
        if (
            self.live
            and self._run_start is not None
            and (cam is None or cam.run != self._run_start)
        ):
            gaps.append((self._run_start, end))  # not judged yet in this run
        return segments(changes, gaps, start, end)

    def camera_summary(self, camera_id: str, now: float) -> dict[str, Any]:
        """Per window (``24h``, ``7d``): ``uptime_<w>``, percent of the *observed* time up (None
        when nothing was observed), and ``observed_<w>``, percent of the window observed at
        all (0-100); and the ``recent`` changes of a camera."""
        cam = self._cameras.get(camera_id)
        out: dict[str, Any] = {}
        for name, length in WINDOWS.items():
            cov = coverage(self.camera_segments(camera_id, now - length, now))
            out[f"uptime_{name}"] = cov.uptime
            out[f"observed_{name}"] = cov.observed_pct
        out["recent"] = list(cam.recent) if cam is not None else []
        return out

    def camera_timeline(
        self, camera_id: str, window: str, count: int, now: float
    ) -> dict[str, Any]:
        """The camera's coverage over ``window`` (a key of ``WINDOWS``) and its ``slots``:
        what the ``timeline`` command answers per camera."""
        start = now - WINDOWS[window]
        segs = self.camera_segments(camera_id, start, now)
        cov = coverage(segs)
        return {
            "uptime": cov.uptime,
            "observed": cov.observed_pct,
            "up_s": round(cov.up, 1),
            "down_s": round(cov.down, 1),
            "unknown_s": round(cov.unknown, 1),
            "slots": slots(segs, start, now, count),
        }

    def last_change(self, camera_id: str) -> tuple[float, str] | None:
        """(time, new status) of the camera's latest indexed change, if any."""
        cam = self._cameras.get(camera_id)
        return cam.changes[-1] if cam is not None and cam.changes else None

    def forget(self, camera_id: str) -> None:
        """Drop a camera that left the station."""
        self._cameras.pop(camera_id, None)

    def retain(self, camera_ids: Iterable[str]) -> None:
        """Keep these cameras only."""
        keep = set(camera_ids)
        for cid in [c for c in self._cameras if c not in keep]:
            self.forget(cid)

    def __len__(self) -> int:
        """How many cameras the index holds."""
        return len(self._cameras)
