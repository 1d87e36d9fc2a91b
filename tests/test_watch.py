"""``pumaguard-hb status --watch`` against a real daemon: snapshots in a pipe, JSON lines,
Ctrl-C, the daemon going away, and (under tmux) a live view refreshed in place."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, Listeners, camera, wait_for, write_settings
from helpers_cli import PYTHONPATH, REPO, clean_env, run_cli

sys.path.insert(0, str(REPO / "cli"))  # the CLI package, also where it is not installed
from pumaguard_hb_cli.render import strip_cells


def station(tmp: Path, listeners: Listeners, daemon_factory: Any) -> tuple[Daemon, dict[str, str]]:
    ip, port = listeners.open("127.0.0.2")
    d: Daemon = daemon_factory()
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 1,
            "camera-heartbeat-tcp-port": port,
            "camera-heartbeat-tcp-timeout": 1,
            "cameras": [
                camera("Microseven-Gate", ip, "00:11:22:33:44:01"),
                camera("Microseven-Creek", "127.0.0.3", "00:11:22:33:44:03", status="connected"),
            ],
        },
    )
    d.start(args=["--state-dir", str(tmp / "state")])
    d.call("check_now")
    return d, clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))


def test_strip_cells_pure() -> None:
    now = 1000.0
    recent = [
        {"at": 950.0, "old": "connected", "new": "disconnected"},
        {"at": 975.5, "old": "disconnected", "new": "connected"},
    ]
    cells = strip_cells(recent, "connected", now, 10.0, cells=10)
    # 900..950 connected (the "old" of the first change), 950..970 down, 970..980 mixed, then up
    assert cells == ["connected"] * 5 + ["disconnected"] * 2 + ["mixed"] + ["connected"] * 2
    assert strip_cells([], "disconnected", now, 10.0, cells=3) == ["disconnected"] * 3
    first = [{"at": 985.0, "old": None, "new": "connected"}]
    assert strip_cells(first, "connected", now, 10.0, cells=3) == [None, "connected", "connected"]


def test_watch_count_prints_snapshots(
    tmp_path: Path, listeners: Listeners, daemon_factory: Any
) -> None:
    _d, env = station(tmp_path, listeners, daemon_factory)
    t = time.monotonic()
    done = run_cli("status", "--watch", "--count", "2", "--interval", "0.5", env=env)
    assert done.returncode == 1, done.stderr  # Creek is down
    assert time.monotonic() - t >= 0.5
    out = done.stdout
    assert out.count("--- ") == 2 and out.count("daemon     pumaguard-heartbeat") == 2
    assert "RECENT" in out and "\x1b[" not in out
    strips = {
        line.split()[0]: re.findall(r"[▇▁▄·]{24}", line)[0]
        for line in out.splitlines()
        if line.startswith("Microseven-")
    }
    # Gate was disconnected in the file and came up; Creek was connected and went down
    assert strips["Microseven-Gate"][0] == "▁" and strips["Microseven-Gate"][-1] in "▄▇"
    assert strips["Microseven-Creek"][0] == "▇" and strips["Microseven-Creek"][-1] in "▄▁"
    done = run_cli("status", "--watch", "--count", "3", "--interval", "0.2", "--json", env=env)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 3 and all("cameras" in r for r in rows)
    assert rows[0]["cameras"][0]["recent"][0]["new"] == "connected"
    done = run_cli("status", "--count", "2", env=env)
    assert done.returncode == 2 and "--count needs --watch" in done.stderr


def _watch(env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pumaguard_hb_cli.main", "status", "--watch", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )


def test_watch_ctrl_c_exits_0(tmp_path: Path, listeners: Listeners, daemon_factory: Any) -> None:
    _d, env = station(tmp_path, listeners, daemon_factory)
    proc = _watch(env, "--interval", "0.3")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("--- ")  # the first snapshot is on its way
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_watch_daemon_goes_away(tmp_path: Path, listeners: Listeners, daemon_factory: Any) -> None:
    d, env = station(tmp_path, listeners, daemon_factory)
    proc = _watch(env, "--interval", "0.3")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("--- ")
        d.stop()
        _out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pumaguard-hb: the daemon went away"), err


def test_watch_without_daemon_is_the_usual_error(tmp_path: Path) -> None:
    env = clean_env(PUMAGUARD_HB_SOCKET=str(tmp_path / "none.sock"))
    done = run_cli("status", "--watch", "--count", "1", env=env)
    assert done.returncode == 3 and "not running" in done.stderr


def test_live_view_refreshes_in_place_under_tmux(
    tmp_path: Path, listeners: Listeners, daemon_factory: Any
) -> None:
    tmux = shutil.which("tmux")
    if tmux is None:
        print("tmux not installed (apt-get install tmux): live view not checked")
        pytest.skip("tmux not installed")
    _d, env = station(tmp_path, listeners, daemon_factory)
    server = f"phb-watch-{uuid.uuid4().hex[:8]}"
    rc_file = tmp_path / "rc"
    command = (
        f"env PYTHONPATH={PYTHONPATH} PUMAGUARD_HB_SOCKET={env['PUMAGUARD_HB_SOCKET']} "
        f"TERM=xterm-256color {sys.executable} -m pumaguard_hb_cli.main status --watch "
        f"--interval 0.5; echo rc=$? > {rc_file}; sleep 30"
    )
    base = [tmux, "-S", str(tmp_path / server), "-f", "/dev/null"]  # its socket goes with tmp
    subprocess.run(
        [*base, "new-session", "-d", "-x", "100", "-y", "40", command], check=True, timeout=10
    )

    def screen(history: bool = False) -> str:
        args = [*base, "capture-pane", "-p", "-t", "0"]
        if history:
            args += ["-S", "-"]
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout

    try:
        try:
            first = wait_for(lambda: "Microseven-Gate" in screen() and screen(), timeout=15)
        except AssertionError:
            raise AssertionError("screen:\n" + screen()) from None
        wait_for(lambda: screen() != first, timeout=10)  # uptime, next check, strip move on
        time.sleep(1.5)  # a few more refreshes
        whole = screen(history=True)
        assert whole.count("daemon     pumaguard-heartbeat") == 1, whole  # in place, no scroll
        assert whole.count("Microseven-Gate") == 1
        assert "RECENT" in whole and "▇" in whole
        subprocess.run([*base, "send-keys", "-t", "0", "C-c"], check=True, timeout=10)
        wait_for(lambda: rc_file.exists() and rc_file.read_text().strip(), timeout=10)
        assert rc_file.read_text().strip() == "rc=0"
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, timeout=10)
