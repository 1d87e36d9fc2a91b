"""Each camera's changes of state, kept durably in ``<state dir>/history.jsonl``.

The file is append-only JSON lines: one line per :class:`~.events.StateChange`
(its ``as_dict()``), plus two kinds of marker lines the daemon writes when it
starts and stops (``{"event": "daemon_start", "at": ...}`` /
``{"event": "daemon_stop", "at": ...}``) so that the time the daemon was not
running counts as *unknown* in uptime figures, not as up or down.

- An append is one ``write()`` of one whole line to an ``O_APPEND`` descriptor
  (no fsync: see docs/history-metrics.md).
- A line that does not parse (a partial write after a power cut) is skipped
  with one warning; it is never fatal.
- The file is bounded: entries older than ``camera_heartbeat_history_days`` are
  dropped at start and at most once a day, and when it grows past
  :data:`CAP_BYTES` the oldest entries are dropped down to
  :data:`CAP_KEEP` of the cap. Both rewrite it atomically (temp file + rename).
- For ``status`` the daemon keeps a small in-memory index per camera (the last
  7 days, at most :data:`INDEX_PER_CAMERA` changes), so uptime figures never
  read the file; a camera that leaves the station leaves the index
  (:meth:`History.retain`, :meth:`History.forget`).
- One daemon per state folder: it holds ``history.lock`` (0600, the daemon's
  own, ``O_NOFOLLOW``) with a non-blocking ``flock`` from open to close. The
  event loop never waits for a lock another process holds: a daemon that
  finds the lock taken runs without history (one clear error). The history
  file is opened ``O_NOFOLLOW`` and must be a regular file of the daemon's
  user with one link; new files are 0600.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pumaguard_hb.model.events import StateChange

log = logging.getLogger(__name__)

FILE_NAME = "history.jsonl"
LOCK_NAME = "history.lock"
CAP_BYTES = 5 * 1024 * 1024  # hard cap of the file: an SD card never fills because of it
CAP_KEEP = 0.8  # after hitting the cap, keep this fraction (hysteresis: no rewrite per append)
PRUNE_EVERY = 86400.0  # seconds between pruning by age
DAY = 86400.0
WEEK = 7 * DAY
INDEX_PER_CAMERA = 2000  # changes kept in memory per camera (the last 7 days at most)
RECENT = 10  # changes per camera shown by status
CONNECTED = "connected"
START, STOP = "daemon_start", "daemon_stop"
OBSERVED = "observed"  # a camera's status as first judged in a run, when the history differs
STATUSES = ("connected", "disconnected")


# -- uptime: a pure function on a change log --------------------------------------------------


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


# -- the file --------------------------------------------------------------------------------


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


def _check_own(fd: int, path: Path) -> None:
    """The history file must be a regular file of this user's with one link (no hard link
    to another file planted in its place)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file; not using it", str(path))
    if st.st_uid != os.geteuid():
        raise OSError(
            errno.EPERM, f"belongs to uid {st.st_uid}, not {os.geteuid()}; not using it", str(path)
        )
    if st.st_nlink != 1:
        raise OSError(errno.EMLINK, f"has {st.st_nlink} hard links; not using it", str(path))


def _open_own(path: Path, flags: int) -> int:
    """os.open of a file of the daemon's own (0600 when created): never through a symlink,
    never a file of somebody else's."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "is a symlink; not following it", str(path)) from None
        raise
    try:
        _check_own(fd, path)
    except OSError:
        os.close(fd)
        raise
    return fd


def _read_own(path: Path) -> Any:
    """A binary reader of a file of the daemon's own (see :func:`_open_own`)."""
    return os.fdopen(_open_own(path, os.O_RDONLY), "rb")


def _open_lock(lock: Path) -> int:
    """``history.lock``, the daemon's own 0600 regular file: one that is not (an older
    version's 0640 file, somebody else's) is replaced by a new one; a symlink is refused."""
    fd = _open_own_lock(lock, os.O_RDWR | os.O_CREAT)
    st = os.fstat(fd)
    if st.st_uid == os.geteuid() and not st.st_mode & 0o077 and st.st_nlink == 1:
        return fd
    os.close(fd)
    # a group member may hold the old file open (and locked): a new inode is ours alone
    log.info("history: replacing %s (mode %04o, uid %d)", lock, st.st_mode & 0o7777, st.st_uid)
    lock.unlink()
    return _open_own_lock(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL)


def _open_own_lock(lock: Path, flags: int) -> int:
    try:
        fd = os.open(lock, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "is a symlink; not following it", str(lock)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file; not using it", str(lock))
    return fd


@dataclass
class _Camera:
    changes: deque[tuple[float, str]] = field(default_factory=deque)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))
    # unknown spans of this camera alone: from a daemon start to its first judgement then
    gaps: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=INDEX_PER_CAMERA))
    run: float | None = None  # the daemon_start of the run its latest line belongs to


class History:
    """The history file of one daemon and its in-memory index."""

    def __init__(self, folder: Path, days: int = 30, cap_bytes: int = CAP_BYTES) -> None:
        self.folder = folder
        self.path = folder / FILE_NAME
        self.days = days
        self.cap_bytes = cap_bytes
        self.problem: str | None = "not opened"
        self.size = 0
        self.entries = 0
        self.corrupt = 0
        self.last_prune = 0.0
        self._fd: int | None = None
        self._lock_fd: int | None = None  # history.lock, flocked from open() to close()
        self._lock = threading.Lock()
        self._pruning = False
        self._cameras: dict[str, _Camera] = {}
        self._gaps: list[tuple[float, float]] = []
        self._stopped_at: float | None = None  # last daemon_stop seen while loading
        self._running = False  # a daemon_start seen and no daemon_stop after it
        self._last_at: float | None = None  # time of the latest line
        self._run_start: float | None = None  # the latest daemon_start (this run's, once open)
        self._live = False  # this History's own daemon_start is written: a run is going on

    @property
    def available(self) -> bool:
        """True when changes are being recorded."""
        return self._fd is not None

    # -- open / close ----------------------------------------------------------------------

    def open(self) -> bool:
        """Create the folder (0700), take the folder's lock, load the index, prune, and start
        appending.

        On failure (the lock held by another process included: never waited for), logs one
        clear error and returns False: the daemon runs without history.
        """
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._take_lock()
            self._load()
            self.prune()
            self._fd = self._open_fd()
            entry = {"event": START, "at": time.time()}
            self._index(entry)  # the time since the last daemon stopped is unknown
            self._append(entry)
            self._live = True
        except OSError as err:
            where = err.filename or self.path
            self.problem = f"history unavailable: cannot use {where}: {err.strerror or err}"
            log.error("%s; running without history", self.problem)
            self._close_fd()
            self._release_lock()
            return False
        self.problem = None
        return True

    def close(self) -> None:
        """Write the daemon_stop marker and close the file."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self._append({"event": STOP, "at": time.time()})
        self._close_fd()
        self._release_lock()

    def _close_fd(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None

    def _open_fd(self) -> int:
        fd = _open_own(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            st = os.fstat(fd)
            if st.st_size:  # a line cut short by a crash must not swallow the next one
                with _read_own(self.path) as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        os.write(fd, b"\n")
            self.size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            raise
        return fd

    def _take_lock(self) -> None:
        """Hold the folder's ``history.lock`` until close(): one daemon per state folder.

        Never waits: a lock another process holds is an OSError (the daemon then runs
        without history, and is not frozen). A lock file that is not the daemon's own
        0600 file (one of an older version, 0640, that a group member may hold) is
        replaced; a symlink there is refused, not followed.
        """
        lock = self.folder / LOCK_NAME
        fd = _open_lock(lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (pid {int(os.pread(fd, 32, 0).split()[0])})"
            os.close(fd)
            raise OSError(
                errno.EBUSY,
                f"held by another process{holder}: another daemon uses this state folder",
                str(lock),
            ) from None
        except OSError:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # who holds it, for the message above
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """The threads of this daemon (a prune in a thread, appends on the event loop).

        Other processes are kept out by ``history.lock``, held from open() to close(); so
        the event loop waits here at most for a prune's tail copy and rename, never for
        another process.
        """
        with self._lock:
            yield

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> None:
        self._cameras.clear()
        self._gaps.clear()
        self._stopped_at, self._running, self._last_at = None, False, None
        self._run_start, self._live = None, False
        self.entries = self.corrupt = 0
        try:
            f = _read_own(self.path)
        except FileNotFoundError:
            return
        with f:
            bad: list[int] = []
            for number, entry in parse_lines(f):
                if entry is None:
                    bad.append(number)
                    continue
                self.entries += 1
                self._index(entry)
        if bad:
            self.corrupt = len(bad)
            shown = ", ".join(map(str, bad[:5])) + (" …" if len(bad) > 5 else "")
            log.warning(
                "history: skipped %d corrupt line(s) of %s (line %s)", len(bad), self.path, shown
            )

    def _index(self, entry: dict[str, Any]) -> None:
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

    def _first_of_run(self, cam: _Camera, at: float, first: bool) -> None:
        """A line marked ``first`` (the camera's first judgement in its run): the camera's
        state from that run's daemon_start until then is unknown (not the state carried
        over from the run before)."""
        if cam.run == self._run_start:
            return
        if first and self._run_start is not None and at > self._run_start:
            cam.gaps.append((self._run_start, at))
        cam.run = self._run_start

    def _mark_first(self, camera_id: str, entry: dict[str, Any]) -> None:
        """Mark ``entry`` ``first`` when it is this run's first judgement of the camera."""
        cam = self._cameras.get(camera_id)
        if self._live and (cam is None or cam.run != self._run_start):
            entry["first"] = True

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

    # -- writing -----------------------------------------------------------------------------

    def record(self, change: StateChange) -> None:
        """A Monitor listener: append the change and index it. Never raises."""
        entry = change.as_dict()
        self._mark_first(change.camera_id, entry)
        self._index(entry)
        self._write(entry)

    def _write(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` to the file if it is open; a failure ends the history. Never raises."""
        if self._fd is None:
            return
        try:
            self._append(entry)
        except OSError as err:
            self.problem = f"history: cannot append to {self.path}: {err.strerror or err}"
            log.error("%s; running without history", self.problem)
            self._close_fd()

    def observed(self, camera_id: str, status: str, at: float) -> None:
        """A Monitor hook after every judgement that changed nothing: when the history holds
        another state for the camera (or none: a camera adopted from the settings file or
        learned by DHCP as connected), record an ``observed`` line, so the time since counts
        as what this daemon saw. Otherwise (nearly always) nothing is written. Never raises."""
        if status not in STATUSES:
            return
        cam = self._cameras.get(camera_id)
        if cam is not None and cam.changes and cam.changes[-1][1] == status:
            if self._live and cam.run != self._run_start:  # agrees: only in memory
                self._first_of_run(cam, at, True)
            return
        entry: dict[str, Any] = {"event": OBSERVED, "camera_id": camera_id, "status": status}
        entry["at"] = at
        self._mark_first(camera_id, entry)
        self._index(entry)
        self._write(entry)

    def _append(self, entry: dict[str, Any]) -> None:
        line = encode(entry)
        with self._file_lock():
            if self._fd is None:
                return
            with contextlib.suppress(OSError):  # the file was replaced: follow the new one
                if os.lstat(self.path).st_ino != os.fstat(self._fd).st_ino:
                    fd = self._open_fd()
                    os.close(self._fd)
                    self._fd = fd
            os.write(self._fd, line)  # one write of a whole line to an O_APPEND descriptor
            self.size += len(line)
            self.entries += 1

    def needs_prune(self, now: float | None = None) -> bool:
        """True when the file is over its cap, or the daily prune by age is due."""
        now = time.time() if now is None else now
        return self.size > self.cap_bytes or now - self.last_prune >= PRUNE_EVERY

    def prune(self, now: float | None = None) -> int:
        """Drop entries older than ``days`` and, over the cap, the oldest ones; atomically.

        Safe to run in a thread while the event loop appends. Returns the lines dropped.
        """
        now = time.time() if now is None else now
        self.last_prune = now
        horizon = now - self.days * DAY
        try:
            with _read_own(self.path) as f:
                data = f.read()
        except FileNotFoundError:
            return 0
        kept: list[bytes] = []
        dropped = 0
        for raw in data.splitlines(keepends=True):
            if not raw.strip():
                continue
            entry = next(parse_lines([raw]))[1]
            if entry is None or float(entry["at"]) < horizon:
                dropped += 1
                continue
            kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
        total = sum(map(len, kept))
        if total > self.cap_bytes:
            budget, start = int(self.cap_bytes * CAP_KEEP), 0
            while total > budget and start < len(kept):
                total -= len(kept[start])
                start += 1
            dropped += start
            kept = kept[start:]
        if not dropped:
            return 0
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # left by a crash (a symlink there is removed, never followed)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            with os.fdopen(os.open(tmp, flags, 0o600), "wb") as out:
                # the slow part (write and fsync of the kept lines) holds no lock: record()
                # on the event loop never waits for a prune's fsync on a slow SD card
                out.writelines(kept)
                out.flush()
                os.fsync(out.fileno())
                with self._file_lock():  # only: the lines appended since, and the rename
                    with _read_own(self.path) as f:
                        f.seek(len(data))
                        tail = f.read()
                        mode = os.fstat(f.fileno()).st_mode & 0o777
                    out.write(tail)  # not fsynced, as every append (docs/history-metrics.md)
                    out.flush()
                    with contextlib.suppress(OSError):
                        os.fchmod(out.fileno(), mode)  # the file keeps its mode
                    os.replace(tmp, self.path)
                    if self._fd is not None:
                        os.close(self._fd)
                        self._fd = _open_own(self.path, os.O_WRONLY | os.O_APPEND)
                    self.size = total + len(tail)
                    self.entries = len(kept) + tail.count(b"\n")
            dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        log.info(
            "history: dropped %d old entries of %s (%d bytes kept)", dropped, self.path, self.size
        )
        return dropped

    def prune_quietly(self) -> None:
        """prune() for the daemon's maintenance task: logs instead of raising."""
        if self._pruning:
            return
        self._pruning = True
        try:
            self.prune()
        except OSError as err:
            log.error("history: cannot prune %s: %s", self.path, err.strerror or err)
        finally:
            self._pruning = False

    # -- reading -----------------------------------------------------------------------------

    def camera_summary(self, camera_id: str, now: float | None = None) -> dict[str, Any]:
        """Per window (``24h``, ``7d``): ``uptime_<w>``, percent of the *observed* time up (None
        when nothing was observed), and ``observed_<w>``, percent of the window observed at
        all (0-100); and the ``recent`` changes of a camera."""
        now = time.time() if now is None else now
        cam = self._cameras.get(camera_id)
        out: dict[str, Any] = {}
        for name, length in WINDOWS.items():
            cov = coverage(self.camera_segments(camera_id, now - length, now))
            out[f"uptime_{name}"] = cov.uptime
            out[f"observed_{name}"] = cov.observed_pct
        out["recent"] = list(cam.recent) if cam is not None else []
        return out

    def camera_timeline(
        self, camera_id: str, window: str, count: int, now: float | None = None
    ) -> dict[str, Any]:
        """The camera's coverage over ``window`` (a key of :data:`WINDOWS`) and its
        :func:`slots`: what the ``timeline`` command answers per camera."""
        now = time.time() if now is None else now
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
        """(time, new status) of the camera's latest recorded change, if any."""
        cam = self._cameras.get(camera_id)
        return cam.changes[-1] if cam is not None and cam.changes else None

    def forget(self, camera_id: str) -> None:
        """Drop the in-memory index of a camera that left the station (an
        :data:`~.events.Forget`; the file keeps its lines until they age out): memory stays
        flat over any number of cameras added and removed."""
        self._cameras.pop(camera_id, None)

    def retain(self, camera_ids: Iterable[str]) -> None:
        """Keep the in-memory index of these cameras only (the file may name cameras that
        are long gone)."""
        keep = set(camera_ids)
        for cid in [c for c in self._cameras if c not in keep]:
            self.forget(cid)

    @property
    def indexed(self) -> int:
        """How many cameras the in-memory index holds."""
        return len(self._cameras)

    def camera_segments(self, camera_id: str, start: float, end: float) -> list[Segment]:
        """The camera's :func:`segments` over ``[start, end]`` (at most the last 7 days are
        known in memory; earlier time is unknown)."""
        cam = self._cameras.get(camera_id)
        changes = list(cam.changes) if cam is not None else []
        gaps = list(self._gaps)
        if cam is not None:
            gaps += cam.gaps
        if (
            self._live
            and self._run_start is not None
            and (cam is None or cam.run != self._run_start)
        ):
            gaps.append((self._run_start, end))  # not judged yet in this run
        return segments(changes, gaps, start, end)

    def info(self) -> dict[str, Any]:
        """What ``status`` shows about the history itself."""
        return {
            "available": self.available,
            "path": str(self.path),
            "problem": self.problem,
            "size_bytes": self.size,
            "entries": self.entries,
            "corrupt_lines": self.corrupt,
            "days": self.days,
            "cap_bytes": self.cap_bytes,
            "indexed_cameras": self.indexed,  # cameras in the in-memory index
        }

    def read(
        self,
        match: set[str] | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], bool]:
        """The newest ``limit`` changes (oldest first) of the cameras whose id, MAC, IP or
        hostname is in ``match`` (all when None), at or after ``since``; and whether more
        matched. Reads the file (run it in a thread)."""
        found: deque[dict[str, Any]] = deque(maxlen=limit)
        total = 0
        wanted = {m.lower() for m in match or ()}
        try:
            with _read_own(self.path) as f:
                for _number, entry in parse_lines(f):
                    if entry is None or "event" in entry:
                        continue
                    if since is not None and float(entry["at"]) < since:
                        continue
                    if match is not None and not wanted & {
                        str(entry.get(k) or "").lower()
                        for k in ("camera_id", "mac_address", "ip_address", "hostname")
                    }:
                        continue
                    total += 1
                    found.append(entry)
        except FileNotFoundError:
            pass
        return list(found), total > len(found)


# -- which History belongs to which Monitor (commands find it here) ----------------------------
