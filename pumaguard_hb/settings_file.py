"""The settings file on disk: read it, and change only what the daemon owns without losing a byte.

Every write takes an exclusive ``flock`` on a sidecar lock file (``<file>.lock``,
shared with any other cooperating writer), re-reads the file, applies a
the caller's change, and replaces the file atomically (temp file in the same folder,
fsync, rename, fsync of the folder), keeping its mode and owner. A file that
does not parse is never written over.
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

from .errors import HeartbeatError, SettingsError

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 10.0
# libyaml's C parser and emitter when PyYAML has them (Debian's and PyPI's do): the same
# documents and bytes as the pure-Python ones, at a tenth of the CPU (bench/yaml_cost.py)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
CAMERA_KEY_ORDER = ("hostname", "ip_address", "last_seen", "mac_address", "status")


class StoreError(HeartbeatError):
    """The settings file could not be written (disk full, read-only, permission, ...)."""


def _parse(text: str) -> Any:
    """The document, by libyaml when it can; what only PyYAML's own parser accepts (such as
    a lone-surrogate escape that the web UI's PyYAML wrote) is still read, not called broken."""
    if _LOADER is not yaml.SafeLoader and _shallow(text):
        try:
            return yaml.load(text, Loader=_LOADER)
        except yaml.YAMLError:
            pass
    return yaml.load(text, Loader=yaml.SafeLoader)


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

    def __init__(self, path: Path) -> None:
        self.path = Path(path).absolute()
        self.writes = 0

    @property
    def lock_path(self) -> Path:
        """The sidecar lock file every cooperating writer takes."""
        return self.path.with_name(self.path.name + ".lock")

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

    def read(self) -> Snapshot:
        """Parse the file; a missing file is an empty document; SettingsError otherwise."""
        for _ in range(5):
            before = self.identity()
            if before is None:
                return Snapshot({}, None)
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as err:
                raise SettingsError(str(self.path), f"cannot read: {err.strerror}") from None
            if self.identity() == before:
                break
            time.sleep(0.05)  # somebody is writing it right now; read a settled version
        else:
            raise SettingsError(str(self.path), "keeps changing while being read")
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
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise SettingsError(str(self.path), "must be a YAML mapping of keys to values")
        return Snapshot(doc, before, ascii_only=data.isascii())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the shared exclusive lock (bounded wait) for a read-modify-write."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o660)
            _give_to_folder_owner(fd, self.path.parent)
        except OSError as err:
            raise StoreError(f"cannot open lock file {self.lock_path}: {err.strerror}") from None
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"{self.lock_path} is held by another writer for {LOCK_TIMEOUT:.0f}s"
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
            snap = self.read()
            if must_exist and snap.identity is None:
                raise SettingsError(str(self.path), "was deleted")  # never re-created partially
            if not change(snap.doc):
                return snap
            self._replace(snap)
            return Snapshot(snap.doc, self.identity(), snap.ascii_only)

    def _replace(self, snap: Snapshot) -> None:
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
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                if old is not None:
                    os.fchmod(fd, stat.S_IMODE(old.st_mode))
                    _keep_owner(fd, old)
                else:
                    os.fchmod(fd, 0o660)
                    _give_to_folder_owner(fd, folder)
                view = memoryview(text.encode("utf-8"))
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StoreError(f"cannot write {self.path}: {err.strerror}") from None
        self.writes += 1
        try:
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as err:  # the rename happened; a failed folder fsync is worth a note only
            log.debug("fsync of %s failed: %s", folder, err)


def _remove_stale_temps(folder: Path, name: str) -> None:
    """Delete temp files that writers killed mid-write left behind (``.<name>.tmp-<pid>``).

    Called under the lock: every cooperating writer makes its temp file only while it holds
    the lock, so any temp file seen now belongs to a writer that died.
    """
    prefix = f".{name}.tmp-"
    try:
        with os.scandir(folder) as entries:
            stale = [e.path for e in entries if e.name.startswith(prefix) and e.is_file()]
    except OSError:
        return
    for path in stale[:100]:
        with contextlib.suppress(OSError):
            os.unlink(path)
            log.info("removed %s, left behind by an interrupted write", path)


def _give_to_folder_owner(fd: int, folder: Path) -> None:
    """A file root creates in somebody else's folder (the service's state directory) goes to
    that folder's owner, so the service can still open it afterwards."""
    if os.geteuid() != 0:
        return
    st = os.fstat(fd)
    if st.st_uid != 0 or st.st_nlink == 0:
        return  # not ours to hand over (an existing file keeps its owner)
    owner = os.stat(folder)
    if (owner.st_uid, owner.st_gid) != (0, 0):
        os.fchown(fd, owner.st_uid, owner.st_gid)


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
