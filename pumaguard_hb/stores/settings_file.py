"""The settings file on disk: read it, and change only what the daemon owns without losing a byte.

Every write takes an exclusive ``flock`` on a sidecar lock file (``<file>.lock``,
shared with any other cooperating writer), re-reads the file, applies a
the caller's change, and replaces the file atomically (temp file in the same folder,
fsync, rename, fsync of the folder), keeping its mode and owner. A file that
does not parse is never written over. What the daemon creates (the file, its lock, temp
files, a missing folder) is for the service user alone: 0600 (0700).

A file (or its folder) that anybody but root and the service user may write is
*untrusted* (:func:`untrusted_reason`, sshd's ``StrictModes``): its privileged keys are
ignored (settings.untrusted_view; docs/security.md).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pumaguard_hb.model.errors import HeartbeatError, SettingsError

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 10.0
SETTLE_TIMEOUT = 2.0  # seconds a torn read (empty, shrunk, unparsable) is given to settle
SETTLE_QUIET = 0.2  # seconds the file's identity must stay unchanged to count as written
SETTLE_STEP = 0.02
REPLACE_ATTEMPTS = 5  # writes started again when a lock-less writer saved meanwhile
# libyaml's C parser and emitter when PyYAML has them (Debian's and PyPI's do): the same
# documents and bytes as the pure-Python ones, at a tenth of the CPU (bench/yaml_cost.py)


class _ValueFailed(yaml.constructor.ConstructorError):
    """A value PyYAML's constructors could not build (``2024-02-30``, ``!!int abc``): they
    raise a plain ValueError/TypeError/OverflowError without a position; this one has it."""


class _Marked:
    """A loader mixin: every failure to build a value becomes a YAML error at its line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as err:  # whatever a constructor raises: ValueError, TypeError, ...
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            value = node.value if isinstance(node, yaml.ScalarNode) else node.tag
            problem = f"{value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}: {detail}"
            raise _ValueFailed(None, None, problem, node.start_mark) from None


class _PySafeLoader(_Marked, yaml.SafeLoader):
    pass


_LOADER: type = _PySafeLoader
if hasattr(yaml, "CSafeLoader"):

    class _CSafeLoader(_Marked, yaml.CSafeLoader):
        pass

    _LOADER = _CSafeLoader
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
CAMERA_KEY_ORDER = ("hostname", "ip_address", "last_seen", "mac_address", "status")


def untrusted_reason(file: os.stat_result | None, folder: os.stat_result, uid: int) -> str:
    """Why a settings file with these stats may be written by somebody other than root and
    the user ``uid`` (the service user: the daemon's own); '' when it may not (trusted).
    ``file`` None: there is no file (nothing in it to trust)."""
    for what, st in (("the file", file), ("its folder", folder)):
        if st is None:
            continue
        if st.st_uid not in (0, uid):
            return f"{what} belongs to another user (uid {st.st_uid})"
        mode = stat.S_IMODE(st.st_mode)
        if mode & stat.S_IWOTH:
            return f"{what} is writable by anybody (mode {mode:04o})"
        if mode & stat.S_IWGRP:
            return f"{what} is writable by its group (gid {st.st_gid}, mode {mode:04o})"
    return ""


class StoreError(HeartbeatError):
    """The settings file could not be written (disk full, read-only, permission, ...)."""


class BeingWritten(SettingsError):
    """The file is empty or half-written by a writer that saves in place (it is not used)."""


def _parse(text: str) -> Any:
    """The document, by libyaml when it can; what only PyYAML's own parser accepts (such as
    a lone-surrogate escape that the web UI's PyYAML wrote) is still read, not called broken."""
    if _LOADER is not _PySafeLoader and _shallow(text):
        try:
            return yaml.load(text, Loader=_LOADER)
        except _ValueFailed:
            raise  # the value is wrong, not libyaml: PyYAML's parser would say the same
        except yaml.YAMLError:
            pass
    return yaml.load(text, Loader=_PySafeLoader)


def _emit(doc: dict[str, Any], allow_unicode: bool) -> str:
    """The document as PyYAML writes it (the web UI's own writer) by libyaml when it can;
    what only PyYAML's emitter can write (a lone surrogate, as an escape) is still written."""
    options: dict[str, Any] = {
        "sort_keys": False,
        "default_flow_style": False,
        "allow_unicode": allow_unicode,
    }
    if _DUMPER is not yaml.SafeDumper:
        try:
            return str(yaml.dump(doc, Dumper=_DUMPER, **options))
        except (yaml.YAMLError, UnicodeEncodeError):
            pass
    return str(yaml.dump(doc, Dumper=yaml.SafeDumper, **options))


def _shallow(text: str) -> bool:
    """True when the text cannot nest deeper than libyaml's C stack takes (it recursed to a
    segfault at 200,000 levels here, fine at 20,000): flow nesting needs a bracket per level,
    block nesting a longer line or indent per level. PyYAML's own parser stops deep ones with
    a RecursionError instead, which read() turns into a settings error."""
    brackets = text.count("[") + text.count("{")
    return brackets <= 5000 and max(map(len, text.splitlines()), default=0) <= 10000


@dataclass(frozen=True)
class Snapshot:
    """The file's contents and identity when it was read."""

    doc: dict[str, Any]
    identity: tuple[int, int, int, int] | None  # (dev, ino, size, ctime_ns); None = missing
    ascii_only: bool = True


class SettingsFile:
    """The shared settings file at ``path``."""

    def __init__(self, path: Path, settle_timeout: float | None = None) -> None:
        self.path = Path(path).absolute()
        self.writes = 0
        self.lock_timeout = LOCK_TIMEOUT  # the daemon's stop bounds it well inside its stop timeout
        # size of the last good version read or written: an empty file after a non-empty
        # one is a write in progress (None: nothing read yet)
        self.last_good_size: int | None = None
        self.settle_timeout = SETTLE_TIMEOUT if settle_timeout is None else settle_timeout
        # why the file as last read may be written by others ('' = trusted); see trust()
        self.untrusted = ""

    @property
    def lock_path(self) -> Path:
        """The sidecar lock file every cooperating writer takes."""
        return self.path.with_name(self.path.name + ".lock")

    def trust(self) -> str:
        """Why the file (or the folder it is in, or the folder its symlink is in) may be
        written by others than root and this process's user; '' when it may not."""
        try:
            file: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            file = None
        except OSError as err:
            return f"cannot stat it: {err.strerror}"
        folders = {self.path.parent, Path(os.path.realpath(self.path)).parent}
        for folder in sorted(folders):
            try:
                folder_st = os.stat(folder)
            except OSError as err:
                return f"cannot stat {folder}: {err.strerror}"
            why = untrusted_reason(file, folder_st, os.geteuid())
            if why:
                return why.replace("its folder", f"its folder {folder}")
        return ""

    def identity(self) -> tuple[int, int, int, int] | None:
        """What identifies the file's current version, to notice changes cheaply."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise SettingsError(str(self.path), f"cannot read: {err.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise SettingsError(str(self.path), "is a directory, not a settings file")
        # ctime, not mtime: it also moves on chmod/chown (a file made readable again is
        # noticed) and cannot be set back by tools that copy times (rsync -t, cp -p)
        return (st.st_dev, st.st_ino, st.st_size, st.st_ctime_ns)

    def read(self, settle_timeout: float | None = None) -> Snapshot:
        """Parse the file; a missing file is an empty document; SettingsError otherwise.

        Never returns a torn read: writers such as the PumaGuard web UI and nano save by
        truncating the file in place and then writing it (no lock, no rename), so a reader
        can meet an empty or half-written file. An empty file where the last good read was
        not empty, a file that shrank, or one that does not parse is settled first: re-read
        (bounded, :data:`SETTLE_TIMEOUT`) until its identity (size, ctime) has been still
        for :data:`SETTLE_QUIET` and it parses. An empty file that stays empty is
        :class:`BeingWritten`, a SettingsError: callers keep their last good settings
        and skip the write. ``settle_timeout`` overrides the object's bound for this read
        (a suspect read not settled within it is BeingWritten; run reads off the event loop).
        """
        data, before = self._read_settled_bytes()
        if before is None:
            return Snapshot({}, None)
        doc, error = self._try_decode(data)
        if self._suspect(data, error):
            first = data
            data, before = self._settle(
                data, before, self.settle_timeout if settle_timeout is None else settle_timeout
            )
            if before is None:
                return Snapshot({}, None)
            if data != first:  # parse again only what changed (a deep document costs seconds)
                doc, error = self._try_decode(data)
        if error is not None:
            raise error
        assert doc is not None
        self.last_good_size = len(data)
        self.untrusted = self.trust()
        return Snapshot(doc, before, ascii_only=data.isascii())

    def _try_decode(self, data: bytes) -> tuple[dict[str, Any] | None, SettingsError | None]:
        try:
            return self._decode(data), None
        except SettingsError as err:
            return None, err

    def _suspect(self, data: bytes, error: SettingsError | None) -> bool:
        """True when ``data`` may be a write caught half-way (it is settled before use)."""
        last = self.last_good_size
        if not data.strip():
            return True  # empty: truncated and not written yet, unless it stays so
        if last is not None and len(data) < last:
            return True  # shrank: may be a prefix of what is being written
        return error is not None  # may be cut in the middle of a line

    def _settle(
        self, data: bytes, identity: tuple[int, int, int, int], timeout: float
    ) -> tuple[bytes, tuple[int, int, int, int] | None]:
        """Wait (bounded) until the file has been still for SETTLE_QUIET and is not torn."""
        deadline = time.monotonic() + timeout
        still_since = time.monotonic()
        while True:
            time.sleep(SETTLE_STEP)
            now = self.identity()
            if now is None:
                return b"", None
            if now != identity:
                data, again = self._read_settled_bytes()
                if again is None:
                    return b"", None
                identity = again
                still_since = time.monotonic()
            quiet = time.monotonic() - still_since >= SETTLE_QUIET
            empty = not data.strip()
            if quiet and not (empty and self.last_good_size):
                # still for a while: a finished write (or an empty file that was empty before,
                # or a broken one, which the caller then reports)
                return data, identity
            if time.monotonic() >= deadline:
                if empty:
                    raise BeingWritten(
                        str(self.path),
                        f"is empty (it had {self.last_good_size} bytes): a writer truncated it "
                        f"and has not written it in {timeout:g}s; not used, "
                        "and never written over",
                    )
                raise BeingWritten(
                    str(self.path),
                    f"is being written in place (it kept changing for {timeout:g}s "
                    "after a read that may be torn); not used until it is still",
                )

    def _read_settled_bytes(self) -> tuple[bytes, tuple[int, int, int, int] | None]:
        """The bytes and the identity they were read at (unchanged across the read)."""
        for _ in range(5):
            before = self.identity()
            if before is None:
                return b"", None
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as err:
                raise SettingsError(str(self.path), f"cannot read: {err.strerror}") from None
            if self.identity() == before:
                return data, before
            time.sleep(0.05)  # somebody is writing it right now; read a settled version
        raise SettingsError(str(self.path), "keeps changing while being read")

    def _decode(self, data: bytes) -> dict[str, Any]:
        """The document in ``data``; every failure to parse is a SettingsError."""
        try:
            text = data.decode("utf-8")
            doc = _parse(text)
        except UnicodeDecodeError as err:
            raise SettingsError(str(self.path), f"is not UTF-8 text ({err.reason})") from None
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise SettingsError(str(self.path), f"does not parse as YAML{at}: {problem}") from None
        except RecursionError:  # PyYAML composes recursively: "[[[[..." would escape as a crash
            raise SettingsError(str(self.path), "is nested too deeply to be settings") from None
        except Exception as err:  # PyYAML's constructors raise whatever they meet
            # ValueError for a date such as 2024-02-30 or !!int abc, TypeError, OverflowError..:
            # a typo in the file is a settings error, never a crash of the daemon
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise SettingsError(str(self.path), f"does not parse as YAML: {detail}") from None
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise SettingsError(str(self.path), "must be a YAML mapping of keys to values")
        return doc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the shared exclusive lock (bounded wait) for a read-modify-write."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # O_NOFOLLOW: a symlink planted at the lock path is refused, never followed;
            # a lock we create is ours alone (0600); one that exists keeps its mode
            fd = os.open(
                self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        except OSError as err:
            raise StoreError(f"cannot open lock file {self.lock_path}: {err.strerror}") from None
        try:
            began = time.monotonic()  # lock_timeout is read each round: a stop may shorten it
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() - began > self.lock_timeout:
                        raise StoreError(
                            f"{self.lock_path} is held by another writer for "
                            f"{self.lock_timeout:.0f}s"
                        ) from None
                    time.sleep(0.01)
            yield
        finally:
            os.close(fd)

    def update(
        self, change: Callable[[dict[str, Any]], bool], must_exist: bool = False
    ) -> Snapshot:
        """Lock, re-read, let ``change`` edit the document (it returns True when it changed
        anything), write if it did; return what is on disk.

        With ``must_exist``, a file that has vanished is not created anew (it was
        deleted under a running daemon: writing only our part would lose the rest).
        """
        with self.locked():
            for _ in range(REPLACE_ATTEMPTS):
                snap = self.read()
                if must_exist and snap.identity is None:
                    raise SettingsError(str(self.path), "was deleted")  # never re-made partially
                if not change(snap.doc):
                    return snap
                if self._replace(snap):
                    self.untrusted = self.trust()  # a new file is 0600; an old one kept its mode
                    return Snapshot(snap.doc, self.identity(), snap.ascii_only)
                # a writer that takes no lock (the web UI) saved in place while we wrote:
                # renaming now would throw its save away; read it and apply ours again
                log.debug("%s changed while being written; writing again", self.path)
            raise StoreError(
                f"cannot write {self.path}: it kept being changed by another writer "
                f"({REPLACE_ATTEMPTS} attempts)"
            )

    def _replace(self, snap: Snapshot) -> bool:
        """Write ``snap.doc`` over the file; False (nothing replaced) when the file is no
        longer the version ``snap`` was read from."""
        text = _emit(snap.doc, allow_unicode=not snap.ascii_only)
        target = Path(os.path.realpath(self.path))
        folder = target.parent
        tmp = folder / f".{target.name}.tmp-{os.getpid()}"
        try:
            old = os.stat(target)
        except FileNotFoundError:
            old = None
        except OSError as err:
            raise StoreError(f"cannot write {self.path}: {err.strerror}") from None
        if old is not None and not os.access(target, os.W_OK):
            # the rename would succeed in a writable folder, but a file made read-only
            # (chmod a-w) is somebody's decision: respect it as an editor would
            raise StoreError(
                f"cannot write {self.path}: the file is read-only "
                f"(mode {stat.S_IMODE(old.st_mode):04o}); make it writable to save changes"
            )
        _remove_stale_temps(folder, target.name)
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_new(tmp, text.encode("utf-8"), old)
            old_fd = _open_old(target)
            try:
                seen = os.fstat(old_fd) if old_fd is not None else None
                try:
                    now = self.identity()
                except SettingsError:
                    now = None
                if now != snap.identity:  # checked after the slow fsync, just before the rename
                    os.unlink(tmp)
                    return False
                os.replace(tmp, target)
                late = _late_write(old_fd, seen)
            finally:
                if old_fd is not None:
                    os.close(old_fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StoreError(f"cannot write {self.path}: {err.strerror}") from None
        if late is not None:
            # a lock-less writer saved into the old file between our check and the rename:
            # put its save back and apply ours again on top of it (update() loops)
            log.debug("%s was written during our rename; its save is put back", self.path)
            try:
                _write_new(tmp, late, old)
                os.replace(tmp, target)
            except OSError as err:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise StoreError(f"cannot write {self.path}: {err.strerror}") from None
            return False
        self.writes += 1
        self.last_good_size = len(text.encode("utf-8"))
        try:
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as err:  # the rename happened; a failed folder fsync is worth a note only
            log.debug("fsync of %s failed: %s", folder, err)
        return True


def _write_new(tmp: Path, data: bytes, old: os.stat_result | None) -> None:
    """``data`` into a new file of ours at ``tmp`` (O_EXCL, O_NOFOLLOW: chmod and chown touch
    only what we created), with the mode and owner of ``old``, else 0600; fsynced."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if old is not None:
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
            _keep_owner(fd, old)
        else:
            os.fchmod(fd, 0o600)  # a new file is the service user's alone
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_old(target: Path) -> int | None:
    """The file about to be replaced, open for reading (None when there is none)."""
    try:
        return os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None


def _late_write(old_fd: int | None, seen: os.stat_result | None) -> bytes | None:
    """What a writer saved into the replaced file after ``seen`` (its stat just before the
    rename), or None when nobody did. (Its mtime and size, not its ctime: the rename itself
    moves the ctime of the file it unlinks.)"""
    if old_fd is None or seen is None:
        return None
    for _ in range(20):  # a save in progress: wait until it is still (at most about 1 s)
        now = os.fstat(old_fd)
        if (now.st_size, now.st_mtime_ns) == (seen.st_size, seen.st_mtime_ns):
            return None
        time.sleep(0.05)
        again = os.fstat(old_fd)
        if (again.st_size, again.st_mtime_ns) == (now.st_size, now.st_mtime_ns):
            return os.pread(old_fd, again.st_size, 0)
    return os.pread(old_fd, os.fstat(old_fd).st_size, 0)


def _remove_stale_temps(folder: Path, name: str) -> None:
    """Delete temp files that writers killed mid-write left behind (``.<name>.tmp-<pid>``).

    Called under the lock: every cooperating writer makes its temp file only while it holds
    the lock, so any temp file seen now belongs to a writer that died.
    """
    prefix = f".{name}.tmp-"
    try:
        with os.scandir(folder) as entries:
            stale = [
                e.path
                for e in entries
                if e.name.startswith(prefix)
                and (e.is_symlink() or e.is_file(follow_symlinks=False))
            ]
    except OSError:
        return
    for path in stale[:100]:
        with contextlib.suppress(OSError):
            os.unlink(path)
            log.info("removed %s, left behind by an interrupted write", path)


def _keep_owner(fd: int, old: os.stat_result) -> None:
    """Give the new file the old owner and group, as far as this process may."""
    if (old.st_uid, old.st_gid) == (os.geteuid(), os.getegid()):
        return
    try:
        os.fchown(fd, old.st_uid, old.st_gid)
    except PermissionError:
        with contextlib.suppress(PermissionError):
            os.fchown(fd, -1, old.st_gid)
    except OSError as err:
        if err.errno != errno.EPERM:
            raise
