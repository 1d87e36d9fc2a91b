"""History: uptime math (pure), the file (pruning, cap, corrupt lines), and a real daemon
whose loopback cameras go down and up, across a restart. Only loopback is used."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, Listeners, camera, wait_for, write_settings

from pumaguard_hb.events import StateChange
from pumaguard_hb.history import DAY, History, uptime

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


def test_file_is_created_0750_and_one_line_per_change(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    h = History(folder)
    assert h.open()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
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
    t = time.perf_counter()
    h2 = History(tmp_path)
    assert h2.open()
    print(f"history: loading {h2.entries} entries took {time.perf_counter() - t:.3f}s")
    h.close()
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
