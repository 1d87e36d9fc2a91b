"""Files of the daemon's own in its state folder, and the folder's lock.

A file of the daemon's own is opened ``O_NOFOLLOW`` (a symlink planted in its place is
refused, never followed) and must be a regular file of the daemon's user with one link (no
hard link to another file); a new one is 0600. The history keeps its file this way.

One daemon per state folder: it holds ``history.lock`` (0600, the daemon's own) with a
non-blocking ``flock`` from start to stop (:func:`hold_lock`). The event loop never waits
for a lock another process holds: it is an ``OSError`` at once, and the daemon runs without
history (one clear error). A lock file that is not the daemon's own 0600 file (an older
version's 0640 file, which a group member may hold open and locked) is replaced by a new
inode. Small JSON files of its own (the unsaved changes, the web UI's last list) are
written by :func:`write_json`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)


def _check_own(fd: int, path: Path) -> None:
    """The file must be a regular file of this user's with one link (no hard link to
    another file planted in its place)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file; not using it", str(path))
    if st.st_uid != os.geteuid():
        raise OSError(
            errno.EPERM, f"belongs to uid {st.st_uid}, not {os.geteuid()}; not using it", str(path)
        )
    if st.st_nlink != 1:
        raise OSError(errno.EMLINK, f"has {st.st_nlink} hard links; not using it", str(path))


def _open_nofollow(path: Path, flags: int) -> int:
    """os.open never through a symlink (0600 when created); a symlink is a clear OSError."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "is a symlink; not following it", str(path)) from None
        raise


def open_own(path: Path, flags: int) -> int:
    """os.open of a file of the daemon's own (0600 when created): never through a symlink,
    never a file of somebody else's."""
    fd = _open_nofollow(path, flags)
    try:
        _check_own(fd, path)
    except OSError:
        os.close(fd)
        raise
    return fd


def read_own(path: Path) -> BinaryIO:
    """A binary reader of a file of the daemon's own (see :func:`open_own`)."""
    return os.fdopen(open_own(path, os.O_RDONLY), "rb")


def _open_lock_file(lock: Path, flags: int) -> int:
    fd = _open_nofollow(lock, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file; not using it", str(lock))
    return fd


def _open_lock(lock: Path) -> int:
    """The lock, the daemon's own 0600 regular file: one that is not (an older version's
    0640 file, somebody else's) is replaced by a new one; a symlink is refused."""
    fd = _open_lock_file(lock, os.O_RDWR | os.O_CREAT)
    st = os.fstat(fd)
    if st.st_uid == os.geteuid() and not st.st_mode & 0o077 and st.st_nlink == 1:
        return fd
    os.close(fd)
    # a group member may hold the old file open (and locked): a new inode is ours alone
    log.info("history: replacing %s (mode %04o, uid %d)", lock, st.st_mode & 0o7777, st.st_uid)
    lock.unlink()
    return _open_lock_file(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL)


def hold_lock(lock: Path) -> int:
    """Take ``lock`` (flock, exclusive) and return its descriptor: closing it releases it.

    Never waits: a lock another process holds is an OSError naming the holder's pid.
    """
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
    return fd


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` as JSON to ``path``: 0600, atomically (a temp file in the same folder,
    fsync, rename), never through a symlink planted at the temp name."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600, O_EXCL
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(doc, separators=(",", ":")).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
