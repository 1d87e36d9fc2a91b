"""Notice edits of the settings files without looking at them every few seconds.

Linux's inotify, through ctypes (the standard library has no binding), read on the event
loop (``loop.add_reader``): one watch on the folder of each file, and on the folder of its
target when the path is a symlink. The folder, not the file: an editor saves by writing a
new file and renaming it over the old one (a watch on the file would stay on the old
inode), while the web UI rewrites the file in place (writes, then closes it). Every event
that names one of the files (written, closed after writing, renamed to or from, created,
deleted, its mode or owner changed), and every event that says the watches may have
missed something (the queue overflowed, a folder was removed or moved away), calls
``changed()``. The caller then compares the files' identities (a stat) as it did when it
polled, so an event too many costs a stat, never a reload. Events on other names (the
daemon's temp and lock files beside the settings) wake nobody up beyond reading them.

Where inotify cannot be had (not Linux, no such libc symbol, the per-user limit of
inotify instances reached) or a folder cannot be watched (it does not exist), ``polling``
is True and the caller polls as before; :meth:`FileWatch.rewatch` tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
#: what a folder's watch reports: every way a file in it can change, and the folder going
MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
_READ_SIZE = 64 * 1024
_READS = 16  # reads per wake-up at most; what is left wakes the loop again


class Inotify:
    """One inotify instance (non-blocking, close-on-exec); OSError when there is none."""

    def __init__(self) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)  # the libc the interpreter runs on
            init1 = libc.inotify_init1
            self._add = libc.inotify_add_watch
            self._rm = libc.inotify_rm_watch
        except (OSError, AttributeError) as err:
            raise OSError(errno.ENOSYS, f"no inotify in this C library ({err})") from None
        init1.argtypes, init1.restype = [ctypes.c_int], ctypes.c_int
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add.restype = ctypes.c_int
        self._rm.argtypes, self._rm.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        fd = init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self.fd: int = fd

    def add(self, folder: str) -> int:
        """Watch ``folder``; its watch descriptor (the same one for the same folder)."""
        wd = self._add(self.fd, os.fsencode(folder), MASK)
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), folder)
        return int(wd)

    def remove(self, wd: int) -> None:
        """Stop a watch (one already gone with its folder is no error)."""
        self._rm(self.fd, wd)

    def read(self) -> list[tuple[int, int, bytes]]:
        """The events queued now, at most :data:`_READS` reads of them (a folder written
        without pause must not keep the loop here): (watch descriptor, mask, name)."""
        out: list[tuple[int, int, bytes]] = []
        for _ in range(_READS):
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                break
            at = 0
            while at + _HEADER.size <= len(data):
                wd, mask, _cookie, size = _HEADER.unpack_from(data, at)
                at += _HEADER.size
                name = data[at : at + size].split(b"\0", 1)[0]
                at += size
                out.append((wd, mask, name))
        return out

    def close(self) -> None:
        os.close(self.fd)


class FileWatch:
    """Calls ``changed()`` (on the event loop) when one of ``paths`` may have changed.

    :meth:`start` on the running loop, :meth:`close` at the end. ``polling`` says whether
    the caller must still look for itself (every few seconds), because inotify is not
    available (``problem`` says why) or a folder is not watched yet.
    """

    def __init__(self, paths: Iterable[Path], changed: Callable[[], None]) -> None:
        self.paths = [Path(p) for p in paths]
        self.changed = changed
        self.problem: str | None = None
        self.events = 0  # events read, for the tests and the curious
        self._inotify: Inotify | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watches: dict[str, int] = {}  # folder -> watch descriptor
        self._names: set[bytes] = set()
        self._missing: set[str] = set()

    @property
    def polling(self) -> bool:
        """True when some file is not watched by inotify: the caller polls."""
        return self._inotify is None or bool(self._missing)

    def start(self) -> None:
        """Open inotify and watch the folders (on the running loop); a poll when it fails."""
        try:
            self._inotify = Inotify()
        except OSError as err:
            self.problem = f"inotify unavailable ({err.strerror or err})"
            log.info("%s: the settings files are checked every few seconds", self.problem)
            return
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._inotify.fd, self._readable)
        self.rewatch()

    def close(self) -> None:
        """Stop watching."""
        if self._inotify is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None
        self._watches.clear()

    def _wanted(self) -> tuple[set[str], set[bytes]]:
        folders: set[str] = set()
        names: set[bytes] = set()
        for path in self.paths:
            for seen in {os.path.abspath(path), os.path.realpath(path)}:
                folder, name = os.path.split(seen)
                folders.add(folder)
                names.add(os.fsencode(name))
        return folders, names

    def rewatch(self) -> None:
        """Watch the folders wanted now (a symlink may point elsewhere since), drop the
        others; a folder that cannot be watched is polled until it can."""
        ino = self._inotify
        if ino is None:
            return
        folders, self._names = self._wanted()
        for folder in folders - self._watches.keys():
            try:
                self._watches[folder] = ino.add(folder)
            except OSError as err:
                if folder not in self._missing:
                    log.debug("cannot watch %s (%s): polling it", folder, err.strerror)
        for folder in set(self._watches) - folders:
            wd = self._watches.pop(folder)
            if wd not in self._watches.values():  # the same folder under another name
                ino.remove(wd)
        self._missing = folders - self._watches.keys()

    def _forget(self, wd: int, remove: bool) -> None:
        for folder in [f for f, w in self._watches.items() if w == wd]:
            del self._watches[folder]
        if remove and self._inotify is not None:
            self._inotify.remove(wd)

    def _readable(self) -> None:
        self.drain()

    def drain(self) -> bool:
        """Read the queued events; True (and ``changed()`` called) when one matters."""
        ino = self._inotify
        if ino is None:
            return False
        try:
            events = ino.read()
        except OSError as err:  # not expected: treat it as a queue overflow
            log.debug("reading inotify events failed: %s", err)
            events = [(-1, IN_Q_OVERFLOW, b"")]
        self.events += len(events)
        hit = lost = False
        for wd, mask, name in events:
            if mask & IN_Q_OVERFLOW:
                hit = True  # events were lost: look
            elif mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
                if wd in self._watches.values():  # not one of ours we dropped already
                    hit = lost = True  # the folder is gone from its path: watch it anew
                    self._forget(wd, remove=bool(mask & IN_MOVE_SELF))
            elif name in self._names:
                hit = True
        if hit:
            with contextlib.suppress(OSError):
                self.rewatch()  # a symlink replaced, a folder back: follow it
            if lost and self._missing:
                log.debug("a watched folder went away: polling it")
            self.changed()
        return hit
