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
- For ``status`` the daemon keeps a small in-memory index per camera
  (``history_index.py``: the lines' format and meaning), so uptime figures
  never read the file; the arithmetic is ``model/uptime.py``.
- One daemon per state folder: it holds ``history.lock`` from open to close,
  never waiting for it; the file is the daemon's own, never reached through a
  symlink (``own_files.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pumaguard_hb.model.camera import STATUSES
from pumaguard_hb.model.events import StateChange
from pumaguard_hb.model.uptime import DAY, DOWN, UNKNOWN, UP, WEEK, Segment, coverage
from pumaguard_hb.stores.history_index import OBSERVED, START, STOP, Index, encode, parse_lines
from pumaguard_hb.stores.own_files import hold_lock, open_own, read_own

# the uptime arithmetic is model/uptime.py; the names outputs/page.py reads stay importable here
__all__ = ["DAY", "DOWN", "UNKNOWN", "UP", "WEEK", "History", "Segment", "coverage"]

log = logging.getLogger(__name__)

FILE_NAME = "history.jsonl"
LOCK_NAME = "history.lock"
CAP_BYTES = 5 * 1024 * 1024  # hard cap of the file: an SD card never fills because of it
CAP_KEEP = 0.8  # after hitting the cap, keep this fraction (hysteresis: no rewrite per append)
PRUNE_EVERY = 86400.0  # seconds between pruning by age


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
        self._index = Index()  # what the lines say, per camera: status reads only this

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
            self._lock_fd = hold_lock(self.folder / LOCK_NAME)  # until close()
            self._load()
            self.prune()
            self._fd = self._open_fd()
            entry = {"event": START, "at": time.time()}
            self._index.add(entry)  # the time since the last daemon stopped is unknown
            self._append(entry)
            self._index.live = True
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
        fd = open_own(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            st = os.fstat(fd)
            if st.st_size:  # a line cut short by a crash must not swallow the next one
                with read_own(self.path) as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        os.write(fd, b"\n")
            self.size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            raise
        return fd

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
        self._index.clear()
        self.entries = self.corrupt = 0
        try:
            f = read_own(self.path)
        except FileNotFoundError:
            return
        with f:
            bad: list[int] = []
            for number, entry in parse_lines(f):
                if entry is None:
                    bad.append(number)
                    continue
                self.entries += 1
                self._index.add(entry)
        if bad:
            self.corrupt = len(bad)
            shown = ", ".join(map(str, bad[:5])) + (" …" if len(bad) > 5 else "")
            log.warning(
                "history: skipped %d corrupt line(s) of %s (line %s)", len(bad), self.path, shown
            )

    # -- writing -----------------------------------------------------------------------------

    def record(self, change: StateChange) -> None:
        """A Monitor listener: append the change and index it. Never raises."""
        entry = change.as_dict()
        self._index.mark_first(change.camera_id, entry)
        self._index.add(entry)
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
        if self._index.agrees(camera_id, status, at):
            return
        entry: dict[str, Any] = {"event": OBSERVED, "camera_id": camera_id, "status": status}
        entry["at"] = at
        self._index.mark_first(camera_id, entry)
        self._index.add(entry)
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
            with read_own(self.path) as f:
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
                    with read_own(self.path) as f:
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
                        self._fd = open_own(self.path, os.O_WRONLY | os.O_APPEND)
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
        return self._index.camera_summary(camera_id, time.time() if now is None else now)

    def camera_timeline(
        self, camera_id: str, window: str, count: int, now: float | None = None
    ) -> dict[str, Any]:
        """The camera's coverage over ``window`` (a key of :data:`WINDOWS`) and its
        :func:`slots`: what the ``timeline`` command answers per camera."""
        now = time.time() if now is None else now
        return self._index.camera_timeline(camera_id, window, count, now)

    def camera_segments(self, camera_id: str, start: float, end: float) -> list[Segment]:
        """The camera's :func:`segments` over ``[start, end]`` (at most the last 7 days are
        known in memory; earlier time is unknown)."""
        return self._index.camera_segments(camera_id, start, end)

    def last_change(self, camera_id: str) -> tuple[float, str] | None:
        """(time, new status) of the camera's latest recorded change, if any."""
        return self._index.last_change(camera_id)

    def forget(self, camera_id: str) -> None:
        """Drop the in-memory index of a camera that left the station (an
        :data:`~.events.Forget`; the file keeps its lines until they age out): memory stays
        flat over any number of cameras added and removed."""
        self._index.forget(camera_id)

    def retain(self, camera_ids: Iterable[str]) -> None:
        """Keep the in-memory index of these cameras only (the file may name cameras that
        are long gone)."""
        self._index.retain(camera_ids)

    @property
    def indexed(self) -> int:
        """How many cameras the in-memory index holds."""
        return len(self._index)

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
            with read_own(self.path) as f:
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
