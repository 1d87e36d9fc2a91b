"""The settings files' watch (pumaguard_hb/stores/watch.py): inotify on their folders, a
poll where it cannot be had; and the daemon noticing edits without polling.

The unit tests never wait on the clock: the kernel queues an inotify event within the
system call that causes it, so each test does something to a file and then reads the
queue at once (``FileWatch.drain``)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Listeners, camera, wait_for, write_settings

from pumaguard_hb.stores import watch as watch_mod
from pumaguard_hb.stores.watch import FileWatch, Inotify

MAC1 = "aa:bb:cc:dd:ee:71"


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # FileWatch.start needs a running loop (add_reader)


class Seen:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def make_watch(*paths: Path) -> tuple[FileWatch, Seen]:
    seen = Seen()
    w = FileWatch(paths, seen)
    w.start()
    return w, seen


def test_an_editors_rename_and_an_in_place_rewrite_are_both_seen(tmp_path: Path) -> None:
    target = tmp_path / "settings.yaml"
    target.write_text("a: 1\n")

    async def body() -> None:
        w, seen = make_watch(target)
        try:
            assert not w.polling and w.problem is None
            assert w.drain() is False  # nothing happened yet
            # an editor: a new file beside it, then renamed over it
            tmp = tmp_path / ".settings.yaml.swp"
            tmp.write_text("a: 2\n")
            assert w.drain() is False  # another name: not ours
            os.replace(tmp, target)
            assert w.drain() is True
            # the web UI: truncated and written in place (one event batch per step)
            with open(target, "w") as f:
                assert w.drain() is True  # truncated
                f.write("a: 3\n")
                f.flush()
                assert w.drain() is True  # written
            assert w.drain() is True  # closed after writing
            os.chmod(target, 0o600)  # a mode change moves the ctime the identity uses
            assert w.drain() is True
            target.unlink()
            assert w.drain() is True
            target.write_text("a: 4\n")  # created again
            assert w.drain() is True
            assert seen.calls == 7
        finally:
            w.close()

    run(body)


def test_other_files_in_the_folder_wake_nobody(tmp_path: Path) -> None:
    target = tmp_path / "settings.yaml"
    target.write_text("a: 1\n")

    async def body() -> None:
        w, seen = make_watch(target)
        try:
            (tmp_path / "settings.yaml.lock").write_text("")
            (tmp_path / ".settings.yaml.tmp-1").write_text("x")
            os.replace(tmp_path / ".settings.yaml.tmp-1", tmp_path / "other.yaml")
            (tmp_path / "other.yaml").unlink()
            target.read_text()  # reading is no change
            assert w.drain() is False
            assert seen.calls == 0 and w.events > 0
        finally:
            w.close()

    run(body)


def test_two_files_in_two_folders(tmp_path: Path) -> None:
    shared, own = tmp_path / "a" / "shared.yaml", tmp_path / "b" / "own.yaml"
    for p in (shared, own):
        p.parent.mkdir()
        p.write_text("x: 1\n")

    async def body() -> None:
        w, seen = make_watch(shared, own)
        try:
            (tmp_path / "a" / "own.yaml").write_text("no")  # own's name, wrong folder: seen,
            w.drain()  # harmless (the caller compares identities); only the real ones count
            calls = seen.calls
            own.write_text("x: 2\n")
            assert w.drain() is True
            shared.write_text("x: 2\n")
            assert w.drain() is True
            assert seen.calls == calls + 2
        finally:
            w.close()

    run(body)


def test_a_symlinked_file_is_watched_where_it_points(tmp_path: Path) -> None:
    etc, real1, real2 = tmp_path / "etc", tmp_path / "srv1", tmp_path / "srv2"
    for d in (etc, real1, real2):
        d.mkdir()
    (real1 / "s.yaml").write_text("a: 1\n")
    (real2 / "s.yaml").write_text("a: 2\n")
    link = etc / "settings.yaml"
    link.symlink_to(real1 / "s.yaml")

    async def body() -> None:
        w, _seen = make_watch(link)
        try:
            (real1 / "s.yaml").write_text("a: 3\n")  # in place, through nothing
            assert w.drain() is True
            # the link pointed elsewhere, atomically (ln -sfn's way): seen, and followed
            (etc / ".new").symlink_to(real2 / "s.yaml")
            os.replace(etc / ".new", link)
            assert w.drain() is True
            (real2 / "s.yaml").write_text("a: 4\n")
            assert w.drain() is True
            (real1 / "s.yaml").write_text("a: 5\n")  # no longer the settings
            assert w.drain() is False
        finally:
            w.close()

    run(body)


def test_a_folder_that_goes_away_is_polled_until_it_is_back(tmp_path: Path) -> None:
    folder = tmp_path / "pumaguard"
    folder.mkdir()
    target = folder / "settings.yaml"
    target.write_text("a: 1\n")

    async def body() -> None:
        w, _seen = make_watch(target)
        try:
            assert not w.polling
            target.unlink()
            folder.rmdir()
            assert w.drain() is True
            assert w.polling  # the caller looks every few seconds meanwhile
            folder.mkdir()
            w.rewatch()
            assert not w.polling
            target.write_text("a: 2\n")
            assert w.drain() is True
            # moved away: the watch would follow the old folder, so it is dropped
            folder.rename(tmp_path / "old")
            assert w.drain() is True
            assert w.polling
            (tmp_path / "old" / "settings.yaml").write_text("a: 3\n")
            assert w.drain() is False
        finally:
            w.close()

    run(body)


def test_a_folder_missing_at_the_start_is_polled(tmp_path: Path) -> None:
    target = tmp_path / "later" / "settings.yaml"

    async def body() -> None:
        w, _seen = make_watch(target)
        try:
            assert w.polling and w.problem is None
            target.parent.mkdir()
            w.rewatch()
            assert not w.polling
            target.write_text("a: 1\n")
            assert w.drain() is True
        finally:
            w.close()

    run(body)


def test_without_inotify_the_caller_polls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_inotify() -> Inotify:
        raise OSError(24, "Too many open files")  # inotify_init1's EMFILE: the user's limit

    monkeypatch.setattr(watch_mod, "Inotify", no_inotify)
    target = tmp_path / "settings.yaml"
    target.write_text("a: 1\n")

    async def body() -> None:
        w, seen = make_watch(target)
        try:
            assert w.polling
            assert w.problem is not None and "Too many open files" in w.problem
            target.write_text("a: 2\n")
            w.rewatch()
            assert w.drain() is False and seen.calls == 0
        finally:
            w.close()

    run(body)


def test_a_read_error_counts_as_a_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "settings.yaml"
    target.write_text("a: 1\n")

    async def body() -> None:
        w, seen = make_watch(target)
        try:
            ino = w._inotify
            assert ino is not None

            def broken() -> list[tuple[int, int, bytes]]:
                raise OSError(5, "Input/output error")

            monkeypatch.setattr(ino, "read", broken)
            assert w.drain() is True and seen.calls == 1  # the caller stats: no harm
        finally:
            w.close()

    run(body)


def test_inotify_reads_a_burst_larger_than_one_read(tmp_path: Path) -> None:
    target = tmp_path / "settings.yaml"
    target.write_text("")

    async def body() -> None:
        w, seen = make_watch(target)
        try:
            with open(target, "a") as f:
                for i in range(3000):  # ~3000 events of 32 bytes: more than one 64 KiB read
                    f.write("x")
                    f.flush()
                    (tmp_path / f"other-{i % 7}").touch()
            assert w.drain() is True
            assert seen.calls == 1  # one call per batch, however many events
            assert w.drain() is False
        finally:
            w.close()

    run(body)


# -- the daemon ----------------------------------------------------------------------------


def doc(interval: int, cameras: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "camera-heartbeat-interval": interval,
        "camera-heartbeat-method": "tcp",
        "camera-heartbeat-tcp-timeout": 1,
        "cameras": cameras or [],
    }


def interval_is(d: Any, seconds: int) -> bool:
    return bool(d.call("status")["daemon"]["interval_s"] == seconds)


def replace_atomically(path: Path, data: dict[str, Any]) -> None:
    """As an editor saves: a new file beside it, renamed over it."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(yaml.safe_dump(data))
    os.replace(tmp, path)


def test_the_daemon_notices_a_rename_an_in_place_rewrite_and_its_own_config(
    daemon_factory, tmp_path: Path
) -> None:
    own = tmp_path / "conf" / "own.yaml"
    own.parent.mkdir()
    own.write_text("camera-heartbeat-method: tcp\n")
    d = daemon_factory(subdir="d")
    write_settings(d.settings, doc(3600))
    d.start(args=["--config", str(own)])
    replace_atomically(d.settings, doc(1800))
    wait_for(lambda: interval_is(d, 1800), timeout=15)
    write_settings(d.settings, doc(1200))  # in place, as the web UI writes
    wait_for(lambda: interval_is(d, 1200), timeout=15)
    replace_atomically(own, {"camera-heartbeat-interval": 900})  # the own config wins
    wait_for(lambda: interval_is(d, 900), timeout=15)
    assert "inotify unavailable" not in d.log()


def test_status_follows_what_happens_without_a_timer(
    daemon_factory, listeners: Listeners, tmp_path: Path
) -> None:
    """STATUS= is sent when something happens (here: a sweep), not every few seconds."""
    notify_path = tmp_path / "notify.sock"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(notify_path))
    sink.settimeout(1)
    ip, port = listeners.open("127.0.0.71")
    d = daemon_factory(subdir="d")
    cam = camera("cam", ip, MAC1, heartbeat_port=port)
    write_settings(d.settings, doc(3600, [cam]))
    try:
        d.start(env={"NOTIFY_SOCKET": str(notify_path)}, wait=False)
        got: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("1/1 cameras connected" in m for m in got):
            try:
                got.append(sink.recv(4096).decode())
            except TimeoutError:
                continue
        assert any("READY=1" in m.split("\n") for m in got), got
        assert any("STATUS=1/1 cameras connected" in m for m in got), got
    finally:
        sink.close()
