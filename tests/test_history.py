"""History: uptime math (pure), the file (pruning, cap, corrupt lines), and a real daemon
whose loopback cameras go down and up, across a restart. Only loopback is used."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, Listeners, camera, wait_for, write_settings

from pumaguard_hb.model.events import StateChange
from pumaguard_hb.model.uptime import DAY, uptime
from pumaguard_hb.stores.history import History

H = 3600.0

# -- uptime: pure function ---------------------------------------------------------------------


def test_uptime_simple_window() -> None:
    # up for 6 h, down for 6 h, in a 12 h window fully known
    changes = [(0.0, "connected"), (6 * H, "disconnected")]
    assert uptime(changes, [], 0.0, 12 * H) == 50.0


def test_uptime_before_first_change_is_unknown_not_down() -> None:
    # history starts 18 h into a 24 h window: only the last 6 h count
    changes = [(18 * H, "connected"), (21 * H, "disconnected")]
    assert uptime(changes, [], 0.0, 24 * H) == 50.0
    assert uptime([], [], 0.0, 24 * H) is None


def test_uptime_state_before_window_carries_in() -> None:
    changes = [(-100 * H, "disconnected"), (12 * H, "connected")]
    assert uptime(changes, [], 0.0, 24 * H) == 50.0


def test_uptime_daemon_gaps_are_unknown() -> None:
    # connected all along, but the daemon was stopped 6 h..18 h: 12 h known, all up
    assert uptime([(0.0, "connected")], [(6 * H, 18 * H)], 0.0, 24 * H) == 100.0
    # down from 12 h: 6 h up before the gap is lost, 6 h up + 6 h down known... (6 up, 6 down)
    changes = [(0.0, "connected"), (3 * H, "disconnected")]
    assert uptime(changes, [(6 * H, 18 * H)], 0.0, 24 * H) == pytest.approx(100 * 3 / 12)


def test_uptime_flapping_rounds_to_three_decimals() -> None:
    changes = [(float(i), "connected" if i % 3 else "disconnected") for i in range(0, 300)]
    value = uptime(changes, [], 0.0, 300.0)
    assert value == pytest.approx(100 * 200 / 300, abs=0.001)


# -- the file ----------------------------------------------------------------------------------


def change(cid: str, new: str, at: float, old: str | None = None) -> StateChange:
    return StateChange(
        cid,
        "Microseven-" + cid[-2:],
        "127.0.0.2",
        cid,
        old,
        new,
        at,
        f"test {new}",
        "tcp",
        0.4 if new == "connected" else None,
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_files_are_created_0600_and_one_line_per_change(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    h = History(folder)
    assert h.open()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("history.jsonl", "history.lock"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    now = time.time()
    h.record(change("00:00:00:00:00:01", "connected", now - 60))
    h.record(change("00:00:00:00:00:01", "disconnected", now - 30, "connected"))
    h.close()
    got = lines(folder / "history.jsonl")
    assert [e.get("event") for e in got] == ["daemon_start", None, None, "daemon_stop"]
    assert got[2]["old"] == "connected" and got[2]["new"] == "disconnected"
    assert got[2]["reason"] == "test disconnected" and got[2]["method"] == "tcp"


def test_corrupt_lines_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.jsonl"
    now = time.time()
    good = json.dumps(change("00:00:00:00:00:01", "connected", now - 100).as_dict())
    # a garbage line, a JSON line of the wrong shape, and a last line cut short by a crash
    path.write_text(f"{good}\nnot json\n[1, 2]\n" + good[: len(good) // 2])
    h = History(tmp_path)
    assert h.open()
    assert h.corrupt == 3
    assert "skipped 3 corrupt line(s)" in caplog.text
    h.record(change("00:00:00:00:00:01", "disconnected", now, "connected"))
    h.close()
    # the append after the cut line is intact and readable
    h2 = History(tmp_path)
    assert h2.open()
    entries, more = h2.read()
    assert [e["new"] for e in entries] == ["connected", "disconnected"] and not more
    h2.close()


def test_prune_by_days_at_start(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    now = time.time()
    old = [change("00:00:00:00:00:01", "connected", now - d * DAY).as_dict() for d in (40, 35)]
    new = [change("00:00:00:00:00:01", "disconnected", now - d * DAY).as_dict() for d in (5, 1)]
    path.write_text("".join(json.dumps(e) + "\n" for e in old + new))
    path.chmod(0o640)
    h = History(tmp_path, days=30)
    assert h.open()
    kept = [e for e in lines(path) if "event" not in e]
    assert [round((now - e["at"]) / DAY) for e in kept] == [5, 1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not list(tmp_path.glob(".history.jsonl.*"))  # no temp file left
    h.close()


def test_record_never_waits_for_a_prunes_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11, item 13: prune() held the append lock across its fsync, so record() on the
    event loop waited for a slow SD card. Here the prune's fsync blocks until the test lets
    it go: a record() meanwhile must finish (and its line survive the prune)."""
    h = History(tmp_path, days=30)
    assert h.open()
    now = time.time()
    for d in (40, 35, 2):  # two entries to drop: the prune rewrites the file
        h.record(change("00:00:00:00:00:01", "connected", now - d * DAY))
    in_fsync, release = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        if threading.current_thread().name == "pruner":
            in_fsync.set()
            release.wait(30)  # a disk that takes its time, for as long as the test says
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    pruner = threading.Thread(target=h.prune, name="pruner")
    pruner.start()
    try:
        assert in_fsync.wait(10), "the prune never reached its fsync"
        recorder = threading.Thread(
            target=h.record, args=(change("00:00:00:00:00:01", "disconnected", now),)
        )
        recorder.start()
        recorder.join(10)
        assert not recorder.is_alive(), "record() waited for the prune's fsync"
    finally:
        release.set()
        pruner.join(30)
    kept = [e for e in lines(tmp_path / "history.jsonl") if "event" not in e]
    assert [e["new"] for e in kept] == ["connected", "disconnected"]  # 2 days old, and now
    h.record(change("00:00:00:00:00:01", "connected", now + 1))  # appends go to the new file
    assert [e["at"] for e in h.read(limit=10)[0]][-1] == now + 1
    h.close()


def test_hard_cap_drops_the_oldest(tmp_path: Path) -> None:
    cap = 20_000
    h = History(tmp_path, cap_bytes=cap)
    assert h.open()
    now = time.time()
    for i in range(400):
        h.record(change("00:00:00:00:00:01", ("connected", "disconnected")[i % 2], now - 400 + i))
    assert h.size > cap and h.needs_prune()
    assert h.prune() > 0
    size = (tmp_path / "history.jsonl").stat().st_size
    assert size <= cap * 0.8 + 400 and size == h.size
    # newest entries survive, and appends keep going to the new file
    h.record(change("00:00:00:00:00:01", "connected", now + 1))
    entries, _ = h.read(limit=100000)
    assert entries[-1]["at"] == now + 1 and entries[-2]["at"] == now - 1
    h.close()


def test_unwritable_state_dir_runs_without_history(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    h = History(blocker / "state")
    assert not h.open()
    assert not h.available and h.problem and "history unavailable" in h.problem
    h.record(change("00:00:00:00:00:01", "connected", time.time()))  # never raises
    assert h.camera_summary("00:00:00:00:00:01")["recent"]  # still indexed in memory


def test_figures_size_per_1000_changes(tmp_path: Path) -> None:
    h = History(tmp_path)
    assert h.open()
    before = h.size
    now = time.time()
    for i in range(1000):
        h.record(
            change(
                f"00:11:22:33:44:{i % 50:02x}", ("connected", "disconnected")[i % 2], now - 1000 + i
            )
        )
    per_1000 = h.size - before
    print(f"history: {per_1000} bytes per 1000 changes")
    assert per_1000 < 400_000
    h.close()  # one History (daemon) per state folder at a time
    t = time.perf_counter()
    h2 = History(tmp_path)
    assert h2.open()
    print(f"history: loading {h2.entries} entries took {time.perf_counter() - t:.3f}s")
    h2.close()


# -- a real daemon -----------------------------------------------------------------------------


def start(d: Daemon, state: Path) -> Daemon:
    return d.start(args=["--state-dir", str(state)])


def settings_for(d: Daemon, port: int, interval: float = 1, status: str = "disconnected") -> None:
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": interval,
            "camera-heartbeat-tcp-port": port,
            "camera-heartbeat-tcp-timeout": 1,
            "cameras": [camera("Microseven-Gate", "127.0.0.2", "00:11:22:33:44:01", status=status)],
        },
    )


def status_cam(d: Daemon) -> dict[str, Any]:
    cam: dict[str, Any] = d.call("status")["cameras"][0]
    return cam


def test_real_daemon_records_changes_and_survives_restart(
    tmp_path: Path, listeners: Listeners, daemon_factory: Any
) -> None:
    state = tmp_path / "state"
    lst = listeners
    addr = lst.open("127.0.0.2")
    d: Daemon = daemon_factory()
    settings_for(d, addr[1])
    start(d, state)
    wait_for(lambda: status_cam(d)["status"] == "connected")
    lst.close(addr)  # the camera goes away: connects are refused
    wait_for(lambda: status_cam(d)["status"] == "disconnected")
    lst.open("127.0.0.2", addr[1])
    wait_for(lambda: status_cam(d)["status"] == "connected")
    up_since = status_cam(d)["since"]
    hist = d.call("history", {"camera": "Microseven-Gate"})
    news = [c["new"] for c in hist["changes"]]
    assert news == ["connected", "disconnected", "connected"], hist
    cam = status_cam(d)
    assert 0 < cam["uptime_24h"] < 100 and cam["uptime_7d"] == cam["uptime_24h"]
    assert [r["new"] for r in cam["recent"]] == news
    t = time.perf_counter()
    for _ in range(20):
        d.call("status")
    print(f"status with history: {(time.perf_counter() - t) / 20 * 1000:.2f} ms per call")
    assert d.stop() == 0
    # a second daemon reads what the first one wrote
    d2: Daemon = daemon_factory(subdir="second")
    d2.settings = d.settings
    start(d2, state)
    wait_for(lambda: status_cam(d2)["status"] == "connected")
    # "in this state since" comes from the history, not from the restart
    assert status_cam(d2)["since"] == pytest.approx(up_since, abs=0.01)
    again = d2.call("history", {"camera": "00:11:22:33:44:01"})
    assert [c["new"] for c in again["changes"]][:3] == news
    assert [r["new"] for r in status_cam(d2)["recent"]][:3] == news
    events = [e.get("event") for e in lines(state / "history.jsonl") if "event" in e]
    assert events[:3] == ["daemon_start", "daemon_stop", "daemon_start"]
    assert d2.call("history", {"limit": 1})["more"] is True
    with pytest.raises(Exception, match="no camera matches"):
        d2.call("history", {"camera": "nope"})


@pytest.mark.daemon_log(allow=[r"history unavailable: cannot use", r"unsaved-changes\.json"])
def test_real_daemon_with_unwritable_state_dir(tmp_path: Path, daemon_factory: Any) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    d: Daemon = daemon_factory()
    settings_for(d, 1, interval=60)
    start(d, blocker / "state")
    info = d.call("status")["daemon"]["history"]
    assert info["available"] is False and "history unavailable" in info["problem"]
    assert d.log().count("history unavailable") == 1
    with pytest.raises(Exception, match="history unavailable"):
        d.call("history")


def test_cli_history_and_status_columns(tmp_path: Path, daemon_factory: Any) -> None:
    from helpers_cli import clean_env, run_cli

    d: Daemon = daemon_factory()
    settings_for(d, 1, interval=60, status="connected")  # port 1 is refused: it goes down
    start(d, tmp_path / "state")
    wait_for(lambda: status_cam(d)["status"] == "disconnected")
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    done = run_cli("history", env=env)
    assert done.returncode == 0, done.stderr
    assert "Microseven-Gate" in done.stdout and "disconnected → " not in done.stdout
    assert "→ disconnected" in done.stdout and "refused" in done.stdout
    done = run_cli("history", "Microseven-Gate", "--since", "1h", "--json", env=env)
    assert done.returncode == 0 and json.loads(done.stdout)["changes"][0]["new"] == "disconnected"
    done = run_cli("history", "--since", "yesterday-ish", env=env)
    assert done.returncode == 2 and "--since" in done.stderr
    done = run_cli("history", "nope", env=env)
    assert done.returncode == 5, done.stderr
    done = run_cli("status", env=env)
    assert "UP 24H" in done.stdout and "UP 7D" in done.stdout and "0.0%" in done.stdout


# -- nobody else can freeze the daemon or steer its files (issue 20, item 5) ------------------

NOBODY, NOGROUP = 65534, 65534
SECRET = b"root:$6$secret-hash:19000:0:99999:7:::\n"
HOLD = """\
import fcntl, os, sys
try:
    fd, mine = os.open(sys.argv[1], os.O_RDWR), True  # a second daemon: says who holds it
except PermissionError:
    fd, mine = os.open(sys.argv[1], os.O_RDONLY), False  # a group member: reading will do
fcntl.flock(fd, fcntl.LOCK_EX)
if mine:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
print("held", flush=True)
sys.stdin.read()  # until the test closes it (or kills this process)
"""
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runs code as nobody)")


@contextlib.contextmanager
def holding(lock: Path, prefix: Sequence[str] = (), python: str = sys.executable) -> Iterator[int]:
    """A process that holds ``lock`` with flock (as ``prefix`` says: setpriv...); its pid."""
    proc = subprocess.Popen(
        [*prefix, python, "-c", HOLD, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: the process prints or dies
        assert line == "held\n", (line, proc.stderr.read() if proc.stderr else "")
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(10)


def as_nobody() -> list[str]:
    """A member of the group (nogroup stands for pumaguard-hb), not the service user."""
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOGROUP}", "--clear-groups"]


@pytest.fixture
def open_base() -> Iterator[Path]:
    """A folder others may enter (tmp_path is root's 0700), as /var/lib is."""
    base = Path(tempfile.mkdtemp(prefix="phb-histlock-"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@needs_root
def test_a_group_member_holding_the_lock_cannot_freeze_the_daemon(
    open_base: Path, listeners: Listeners, daemon_factory: Any
) -> None:
    """Before: history.lock was 0640 and every append took a blocking flock on the event
    loop; a group member holding it froze sweeps, the socket and the watchdog, and a daemon
    started meanwhile never became ready. Now the lock is the daemon's own 0600 file, held
    (non-blocking) from start to stop; an older version's 0640 file is replaced."""
    from helpers_cli import clean_env, run_cli

    state = open_base / "state"
    h = History(state)  # the state folder as the daemon makes it
    assert h.open()
    h.close()
    lock = state / "history.lock"
    os.chown(state, 0, NOGROUP)
    os.chmod(state, 0o750)  # an older install: the group may enter
    denied = subprocess.run(
        [*as_nobody(), "/usr/bin/python3", "-c", f"open({str(lock)!r}, 'r+')"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied.stderr
    # the lock as the older version made it: 0640, the group's to open (and to hold)
    os.chown(lock, 0, NOGROUP)
    os.chmod(lock, 0o640)
    old_inode = lock.stat().st_ino
    addr = listeners.open("127.0.0.2")
    with holding(lock, as_nobody(), "/usr/bin/python3"):
        d: Daemon = daemon_factory()
        settings_for(d, addr[1])
        start(d, state)  # waits until it answers ping (before: never)
        wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= 2)
        assert status_cam(d)["status"] == "connected"
        info = d.call("status")["daemon"]["history"]
        assert info["available"] is True and info["problem"] is None, info
        done = run_cli("status", env=clean_env(PUMAGUARD_HB_SOCKET=str(d.socket)))
        assert done.returncode == 0 and "Microseven-Gate" in done.stdout, done.stderr
        st = lock.stat()
        assert st.st_ino != old_inode and stat.S_IMODE(st.st_mode) == 0o600
        assert d.stop() == 0


@needs_root
def test_a_lock_held_by_another_process_is_never_waited_for(
    tmp_path: Path, daemon_factory: Any
) -> None:
    """Another process of the service's own (a second daemon on the same state folder)
    holds the lock: this daemon starts at once, without history, and says why."""
    state = tmp_path / "state"
    h = History(state)
    assert h.open()
    h.close()
    with holding(state / "history.lock") as pid:
        d: Daemon = daemon_factory()
        d.expect(allow=[r"history unavailable: cannot use .*history\.lock: held by another"])
        settings_for(d, 1, interval=60)
        start(d, state)
        wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= 1)
        info = d.call("status")["daemon"]["history"]
        assert info["available"] is False, info
        assert f"held by another process (pid {pid})" in info["problem"], info
        assert "another daemon uses this state folder" in info["problem"]
        assert d.stop() == 0


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim" / "shadow"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize("name", ["history.lock", "history.jsonl"])
def test_a_symlink_planted_as_a_history_file_is_refused(
    tmp_path: Path, victim: Path, name: str
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / name).symlink_to(victim)
    before = victim.stat()
    h = History(state)
    assert not h.open()
    assert h.problem is not None and "is a symlink; not following it" in h.problem
    assert str(state / name) in h.problem
    h.close()
    st = victim.stat()
    assert victim.read_bytes() == SECRET and st.st_ino == before.st_ino
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (state / name).is_symlink()  # left for the admin to see


def test_a_hard_link_planted_as_the_history_file_is_refused(tmp_path: Path, victim: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.link(victim, state / "history.jsonl")
    h = History(state)
    assert not h.open()
    assert h.problem is not None and "2 hard links" in h.problem
    assert victim.read_bytes() == SECRET


def test_a_symlink_planted_as_the_prune_temp_file_is_not_followed(
    tmp_path: Path, victim: Path
) -> None:
    old = json.dumps(change("00:00:00:00:00:01", "connected", time.time() - 40 * DAY).as_dict())
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "history.jsonl").write_text(old + "\n")
    h = History(state)
    assert h.open()  # prunes at open, so plant the temp file for the next prune
    h.record(change("00:00:00:00:00:01", "connected", time.time() - 40 * DAY))
    (state / f".history.jsonl.{os.getpid()}.tmp").symlink_to(victim)
    assert h.prune() >= 1
    h.close()
    assert victim.read_bytes() == SECRET and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not (state / f".history.jsonl.{os.getpid()}.tmp").exists()
    assert stat.S_IMODE((state / "history.jsonl").stat().st_mode) == 0o644  # keeps its mode


# -- memory: cameras that are gone leave the index (issue 20, item 6) --------------------------


def test_cameras_that_leave_are_forgotten(tmp_path: Path) -> None:
    h = History(tmp_path)
    assert h.open()
    now = time.time()
    for rnd in range(10):  # 10 rounds of 1000 fresh cameras, the station keeps only the round's
        ids = [f"02:00:00:{rnd:02x}:{i >> 8:02x}:{i & 255:02x}" for i in range(1000)]
        for cid in ids:
            h.record(change(cid, "connected", now))
        h.retain(ids)
        assert h.indexed == 1000
    for cid in ids[:10]:
        h.forget(cid)
    assert h.indexed == 990
    assert h.camera_summary(ids[0])["recent"] == [] and h.last_change(ids[0]) is None
    assert h.last_change(ids[10]) == (now, "connected")
    h.close()
    h2 = History(tmp_path)  # the file still has every line: a restart indexes them again
    assert h2.open()
    assert h2.indexed == 10_000
    h2.retain(ids)
    assert h2.indexed == 1000
    h2.close()


def test_real_daemon_forgets_the_history_of_cameras_that_leave(
    tmp_path: Path, daemon_factory: Any
) -> None:
    """The monitor tells the history when a camera leaves the station (Monitor.forgetters)."""
    d: Daemon = daemon_factory()
    cams = [
        camera(f"Microseven-{i}", "127.0.0.2", f"00:11:22:33:45:{i:02x}", status="connected")
        for i in range(3)
    ]
    doc = {"camera-heartbeat-interval": 1, "camera-heartbeat-tcp-port": 1, "cameras": cams}
    write_settings(d.settings, doc)
    start(d, tmp_path / "state")

    def indexed() -> int:
        return int(d.call("status")["daemon"]["history"]["indexed_cameras"])

    wait_for(lambda: indexed() == 3)  # each went down (port 1 refuses): 3 cameras indexed
    write_settings(d.settings, {**doc, "cameras": cams[:1]})
    wait_for(lambda: len(d.call("status")["cameras"]) == 1)
    wait_for(lambda: indexed() == 1)
    assert [c["new"] for c in d.call("history")["changes"]].count("disconnected") == 3
