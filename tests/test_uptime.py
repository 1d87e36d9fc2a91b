"""Honest uptime: uptime over the observed time beside how much of the window was observed,
and ``pumaguard-hb uptime``'s timelines. Pure slots first; then a real daemon on a history
file prepared with known changes, driven by the real CLI (in a pipe and in a pty of 80 and
160 columns). Only loopback is used."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, Listeners, camera, wait_for, write_settings
from helpers_cli import PYTHONPATH, clean_env, run_cli

from pumaguard_hb.control.client import Client
from pumaguard_hb.control.protocol import ProtocolError
from pumaguard_hb.model.events import StateChange
from pumaguard_hb.model.uptime import DAY, WEEK, Segment, coverage, segments, slots
from pumaguard_hb.stores.history import History

H = 3600.0
REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")

# -- pure: segments → slots, honest figures -----------------------------------------------------


def test_slots_follow_the_segments() -> None:
    # 24 slots of 1 h: up 0-6 h, down 6-12 h, unknown 12-18 h, up and down in 18-19 h, up after
    segs = [
        Segment(0, 6 * H, "up"),
        Segment(6 * H, 12 * H, "down"),
        Segment(12 * H, 18 * H, "unknown"),
        Segment(18 * H, 18.5 * H, "up"),
        Segment(18.5 * H, 18.6 * H, "down"),
        Segment(18.6 * H, 24 * H, "up"),
    ]
    got = slots(segs, 0, 24 * H, 24)
    assert got == ["up"] * 6 + ["down"] * 6 + ["unknown"] * 6 + ["mixed"] + ["up"] * 5
    # a slot partly unknown takes the state of what was observed in it
    assert slots([Segment(0, 0.5 * H, "unknown"), Segment(0.5 * H, H, "down")], 0, H, 1) == ["down"]
    assert slots([], 0, H, 10) == ["unknown"] * 10
    assert len(slots(segs, 0, 24 * H, 400)) == 400


def test_a_camera_checked_once_a_second_ago_is_up_with_almost_nothing_observed() -> None:
    now = 1_800_000_000.0
    segs = segments([(now - 1, "connected")], [], now - DAY, now)
    cov = coverage(segs)
    assert cov.uptime == 100.0  # of what was observed, not 0.1 % of the day
    assert cov.observed_pct == pytest.approx(100 / DAY, abs=0.001) and cov.observed_pct < 0.01
    got = slots(segs, now - DAY, now, 80)
    assert got[-1] == "up" and set(got[:-1]) == {"unknown"}
    down = coverage(segments([(now - 1, "disconnected")], [], now - WEEK, now))
    assert down.uptime == 0.0 and down.observed_pct < 0.001


def change(cid: str, new: str, at: float, old: str | None = None) -> dict[str, Any]:
    return StateChange(
        cid, "Microseven-" + cid[-2:], "127.0.0.2", cid, old, new, at, f"test {new}", "tcp"
    ).as_dict()


def test_history_learns_a_first_judgement_it_did_not_hold(tmp_path: Path) -> None:
    # the history says down; this run judges the camera up without a change of its status
    # (adopted from the settings file): the history must learn it, once
    now = time.time()
    cid = "00:00:00:00:00:01"
    (tmp_path / "history.jsonl").write_text(
        json.dumps(change(cid, "disconnected", now - 2 * H)) + "\n"
    )
    h = History(tmp_path)
    assert h.open()
    h.observed(cid, "connected", now - H)
    h.observed(cid, "connected", now - H + 60)  # the same state again: nothing written
    h.observed("00:00:00:00:00:02", "connected", now - 1)  # no history at all: written
    h.observed(cid, "bogus", now)  # not a status: ignored
    h.close()
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    obs = [e for e in lines if e.get("event") == "observed"]
    assert [(e["camera_id"], e["status"]) for e in obs] == [
        (cid, "connected"),
        ("00:00:00:00:00:02", "connected"),
    ]
    h2 = History(tmp_path)
    assert h2.open()
    s = h2.camera_summary(cid)
    assert s["uptime_24h"] == pytest.approx(50.0, abs=0.5)  # 1 h down, then 1 h up
    assert s["observed_24h"] == pytest.approx(100 * 2 / 24, abs=0.1)
    assert [r["new"] for r in s["recent"]] == ["disconnected"]  # an observation is no change
    fresh = h2.camera_summary("00:00:00:00:00:02")
    assert fresh["uptime_24h"] == 100.0 and fresh["observed_24h"] < 0.1
    assert h2.read()[0] == [change(cid, "disconnected", now - 2 * H)]  # `history` unchanged
    h2.close()


def write_history(folder: Path, entries: list[dict[str, Any]]) -> None:
    (folder / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_each_run_is_unknown_until_its_first_judgement(tmp_path: Path) -> None:
    now = time.time()
    cid = "00:00:00:00:00:01"
    first = {**change(cid, "disconnected", now - 3 * H + 60), "first": True}
    write_history(
        tmp_path,
        [
            {"event": "daemon_start", "at": now - 3 * H},
            first,  # its first sweep took a minute: that minute is unknown
            change(cid, "connected", now - 2 * H, "disconnected"),
            {"event": "daemon_stop", "at": now - H},
        ],
    )
    h = History(tmp_path)
    assert h.open()
    # this run has not judged the camera yet: since the stop, nothing is known
    cov = coverage(h.camera_segments(cid, now - DAY, time.time()))
    assert cov.down == pytest.approx(H - 60, abs=1) and cov.up == pytest.approx(H, abs=1)
    judged = time.time()
    h.observed(cid, "connected", judged)  # agrees with the history: nothing written
    time.sleep(0.2)
    segs = h.camera_segments(cid, now - DAY, time.time())
    assert segs[-1].state == "up" and segs[-1].start == pytest.approx(judged)
    assert segs[-2].state == "unknown" and segs[-2].start == pytest.approx(now - H)
    h.close()
    text = (tmp_path / "history.jsonl").read_text()
    assert '"observed"' not in text


def test_a_killed_daemon_leaves_unknown_time_not_its_last_state(tmp_path: Path) -> None:
    now = time.time()
    cid = "00:00:00:00:00:01"
    write_history(
        tmp_path,
        [
            {"event": "daemon_start", "at": now - 3 * H},
            {**change(cid, "disconnected", now - 3 * H + 1), "first": True},
            # SIGKILL or a power cut 2 h ago... and nothing since: no daemon_stop
        ],
    )
    h = History(tmp_path)
    assert h.open()
    cov = coverage(h.camera_segments(cid, now - DAY, time.time()))
    assert cov.down == 0 and cov.uptime is None  # unknown since its last line, not 3 h down
    time.sleep(0.05)
    h.observed(cid, "connected", time.time())
    time.sleep(0.05)
    assert h.camera_summary(cid)["uptime_24h"] == 100.0
    h.close()
    got = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert got[-2] == {**got[-2], "event": "observed", "status": "connected", "first": True}


def test_names_from_outside_cannot_steer_the_terminal() -> None:
    from pumaguard_hb_cli.timeline import clean, fit, layout

    assert clean("Gate\x1b[31m\u202eX\n") == "Gate\ufffd[31m\ufffdX\ufffd"
    assert fit("カメラカメラカメラ", 7) == "カメラ…" and fit("Gate", 7) == "Gate"
    name_w, cells = layout(80, ["x" * 60])
    assert name_w == 24 and name_w + 1 + cells + 1 + 5 + 1 + 10 == 80
    name_w, cells = layout(30, ["Microseven-Gate"])
    assert cells == 10 and name_w + 1 + cells + 1 + 5 + 1 + 10 <= 30 + 2


# -- a real daemon on a prepared history ---------------------------------------------------------

GATE, CREEK, BARN, NEW = (f"00:11:22:33:44:0{i}" for i in range(1, 5))


def prepare(state: Path, now: float) -> None:
    """Gate: up 6 h..4 h ago, down 4 h..2 h ago, up since; Creek: down since 3 h ago.
    The daemon that wrote it stopped 1 h ago."""
    state.mkdir(mode=0o750)
    entries = [
        {"event": "daemon_start", "at": now - 6 * H},
        change(GATE, "connected", now - 6 * H),
        change(GATE, "disconnected", now - 4 * H, "connected"),
        change(CREEK, "connected", now - 6 * H),
        change(CREEK, "disconnected", now - 3 * H, "connected"),
        change(GATE, "connected", now - 2 * H, "disconnected"),
        {"event": "daemon_stop", "at": now - H},
    ]
    (state / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))


@pytest.fixture
def station(tmp_path: Path, listeners: Listeners, daemon_factory: Any) -> Any:
    """Gate and Creek answer (Creek's file status says connected: a report the history
    lacks), Barn is refused (no history), New answers (no history)."""
    now = time.time()
    state = tmp_path / "state"
    prepare(state, now)
    port = listeners.open("127.0.0.2")[1]
    listeners.open("127.0.0.3", port)
    listeners.open("127.0.0.5", port)
    d: Daemon = daemon_factory()
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 3600,
            "camera-heartbeat-tcp-port": port,
            "camera-heartbeat-tcp-timeout": 2,
            "cameras": [
                camera("Microseven-Gate", "127.0.0.2", GATE, status="connected"),
                camera("Microseven-Creek", "127.0.0.3", CREEK, status="connected"),
                camera("Microseven-Barn", "127.0.0.4", BARN, status="disconnected"),
                camera("Reolink-New", "127.0.0.5", NEW, status="connected"),
            ],
        },
    )
    d.start(args=["--state-dir", str(state)])

    def checked() -> bool:
        return all(c.get("checked_at") for c in d.call("status")["cameras"])

    wait_for(checked, 30)
    return d, state


def by_name(cams: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["hostname"]: c for c in cams}


def test_status_json_and_metrics_say_how_much_was_observed(station: Any) -> None:
    d, state = station
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    done = run_cli("status", "--json", env=env)
    assert done.returncode in (0, 1), done.stderr  # 1: Barn is disconnected
    cams = by_name(json.loads(done.stdout)["cameras"])
    gate = cams["Microseven-Gate"]
    # observed: 5 h of the prepared run (the hour the daemon was stopped is unknown) + now
    assert gate["observed_24h"] == pytest.approx(100 * 5 / 24, abs=0.5)
    assert gate["observed_7d"] == pytest.approx(100 * 5 / 168, abs=0.1)
    assert gate["uptime_24h"] == pytest.approx(60.0, abs=0.5)  # 3 h up of 5 h observed
    assert gate["uptime_7d"] == gate["uptime_24h"]
    # Creek was down when the last daemon stopped; this run judged it up: up since, not down
    creek = cams["Microseven-Creek"]
    assert creek["status"] == "connected"
    assert creek["uptime_24h"] == pytest.approx(100 * 3 / 5, abs=0.5)  # 3 h up, 2 h down, now up
    # never seen before: checked once, a second ago
    new = cams["Reolink-New"]
    assert new["uptime_24h"] == 100.0 and 0 < new["observed_24h"] < 0.1
    barn = cams["Microseven-Barn"]
    assert barn["uptime_24h"] == 0.0 and barn["observed_24h"] < 0.1
    lines = [json.loads(x) for x in (state / "history.jsonl").read_text().splitlines()]
    observed = {e["camera_id"]: e["status"] for e in lines if e.get("event") == "observed"}
    assert observed == {CREEK: "connected", BARN: "disconnected", NEW: "connected"}

    done = run_cli("metrics", env=env)
    assert done.returncode == 0, done.stderr
    series = {}
    for line in done.stdout.splitlines():
        m = re.match(r"pumaguard_heartbeat_camera_observed_ratio\{(.*)\} (\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            series[(labels["hostname"], labels["window"])] = float(m.group(2))
    assert series[("Microseven-Gate", "24h")] == pytest.approx(5 / 24, abs=0.005)
    assert series[("Microseven-Gate", "7d")] == pytest.approx(5 / 168, abs=0.001)
    assert 0 < series[("Reolink-New", "24h")] < 0.001
    assert len(series) == 8
    assert "# TYPE pumaguard_heartbeat_camera_observed_ratio gauge" in done.stdout
    tool = shutil.which("promtool", path=f"{REPO / '.cache' / 'tools'}:{os.environ['PATH']}")
    if tool is None:
        pytest.skip("promtool not installed (./dev puts it in .cache/tools)")
    check = subprocess.run(
        [tool, "check", "metrics"], input=done.stdout, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr


def test_timeline_command_bounds_and_answers(station: Any) -> None:
    d, _state = station
    got = d.call("timeline", {"window": "24h", "slots": 24, "cameras": ["Microseven-Gate"]})
    assert got["slots"] == 24 and got["window"] == "24h"
    (gate,) = got["cameras"]
    s = gate["slots"]
    # the window ends a few seconds after the history was prepared: each change may fall
    # at the very end of the slot before its own
    assert s[:17] == ["unknown"] * 17 and s[17] in ("unknown", "up")  # before the history
    assert s[18] == "up" and s[19] in ("up", "mixed")
    assert s[20] == "down" and s[21] in ("down", "mixed")
    assert s[22] == "up" and s[23] == "up"  # the stopped hour is unknown, but now is observed
    assert gate["uptime"] == pytest.approx(60.0, abs=0.5)
    assert gate["up_s"] + gate["down_s"] + gate["unknown_s"] == pytest.approx(DAY, abs=1)
    week = d.call("timeline", {"window": "7d", "slots": 400})
    assert len(week["cameras"]) == 4 and all(len(c["slots"]) == 400 for c in week["cameras"])
    for bad in ({"slots": 9}, {"slots": 401}, {"slots": True}, {"window": "1y"}, {"cameras": "x"}):
        with pytest.raises(Exception, match="must be"):
            d.call("timeline", bad)
    with pytest.raises(Exception, match="no camera matches"):
        d.call("timeline", {"cameras": ["nope"]})
    hostile: list[Any] = [
        {"window": None},
        {"window": ["24h"]},
        {"window": "24H"},
        {"slots": 80.0},
        {"slots": 10**100},
        {"slots": -1},
        {"slots": "80"},
        {"cameras": [1]},
        {"cameras": [["Microseven-Gate"]]},
        {"cameras": {"Microseven-Gate": 1}},
        {"cameras": ["Microseven-Gate"] * 1025},
    ]
    for args in hostile:  # a user's mistake, named: never an internal error
        with Client(d.socket, timeout=30) as client:
            with pytest.raises(ProtocolError) as err:
                client.call("timeline", args)
            assert err.value.code == "bad_args", (args, err.value)
            assert client.call("ping") == "pong"  # the connection goes on


def run_in_pty(args: list[str], columns: int, env: dict[str, str]) -> str:
    """The real CLI on a pseudo-terminal of ``columns`` × 40; what it printed."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pumaguard_hb_cli.main", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "xterm-256color"},
        cwd="/",
        close_fds=True,
    )
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the CLI ended and closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(30) == 0, out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    return out.decode()


def check_lines(text: str, columns: int) -> dict[str, str]:
    """Every line fits; one line per camera; returns each camera's bar."""
    lines = [ANSI.sub("", x).rstrip("\r") for x in text.splitlines()]
    lines = [x for x in lines if x.strip()]
    assert all(len(x) <= columns for x in lines), "\n".join(lines)
    bars: dict[str, str] = {}
    for line in lines:
        m = re.match(r"(\S+)\s+([█▁▄·]+)\s+(\S+)\s+seen\s+(\S+)$", line)
        if m:
            assert m.group(1) not in bars
            bars[m.group(1)] = m.group(2)
    assert set(bars) == {"Microseven-Gate", "Microseven-Creek", "Microseven-Barn", "Reolink-New"}
    assert len({len(b) for b in bars.values()}) == 1
    assert any(x.strip().startswith("-24h") and x.rstrip().endswith("now") for x in lines)
    assert any("█ up" in x and "· unknown" in x for x in lines)
    return bars


def check_gate(bar: str) -> None:
    """Down 4 h..2 h ago in a 24 h bar: the down span sits at 20/24..22/24 of it."""
    n = len(bar)
    downs = [i for i, ch in enumerate(bar) if ch in "▁▄"]
    assert downs, bar
    assert min(downs) >= int(n * 19.9 / 24) - 1 and max(downs) <= int(n * 22.1 / 24) + 1, bar
    assert "▁" in bar and bar[-1] == "█" and set(bar[: int(n * 17.9 / 24)]) == {"·"}, bar


@pytest.mark.parametrize("columns", [80, 160])
def test_uptime_in_a_terminal_fills_the_width(station: Any, columns: int) -> None:
    d, _state = station
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket), PYTHONPATH=PYTHONPATH)
    text = run_in_pty(["uptime"], columns, env)
    assert "\x1b[" in text  # coloured on a terminal
    bars = check_lines(text, columns)
    width = len(next(iter(bars.values())))
    assert width >= columns - 45  # the bar takes the room the name and figures leave
    check_gate(bars["Microseven-Gate"])
    plain = run_in_pty(["uptime"], columns, {**env, "NO_COLOR": "1"})
    assert "\x1b[3" not in plain and check_lines(plain, columns) == bars


def test_uptime_piped_json_and_errors(station: Any) -> None:
    d, _state = station
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    done = run_cli("uptime", env=env)
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout
    print(done.stdout)
    bars = check_lines(done.stdout, 80)
    check_gate(bars["Microseven-Gate"])
    assert set(bars["Reolink-New"][:-1]) == {"·"} and bars["Reolink-New"][-1] == "█"
    line = next(x for x in done.stdout.splitlines() if x.startswith("Reolink-New"))
    assert re.search(r"100%\s+seen <0.1%$", line), line
    done = run_cli("uptime", "Microseven-Gate", "--window", "7d", env=env)
    assert done.returncode == 0, done.stderr
    assert [x.split()[0] for x in done.stdout.splitlines()[:1]] == ["Microseven-Gate"]
    assert "-7d" in done.stdout
    done = run_cli("uptime", "--json", env=env)
    reply = json.loads(done.stdout)
    assert reply["window"] == "24h" and {c["hostname"] for c in reply["cameras"]} >= {
        "Microseven-Gate"
    }
    done = run_cli("uptime", "nope", env=env)
    assert done.returncode == 5 and "no camera matches" in done.stderr
    done = run_cli("uptime", "--window", "1y", env=env)
    assert done.returncode == 2 and "--window" in done.stderr


@pytest.mark.daemon_log(
    allow=[r"ERROR history unavailable: .*Not a directory", r"ERROR cannot read .*Not a directory"]
)
def test_uptime_without_a_usable_history_says_so(tmp_path: Path, daemon_factory: Any) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    d: Daemon = daemon_factory()
    write_settings(d.settings, {"camera-heartbeat-interval": 3600, "cameras": []})
    d.start(args=["--state-dir", str(blocker / "state")])
    done = run_cli("uptime", env=clean_env(PUMAGUARD_HB_SOCKET=str(d.socket)))
    assert done.returncode == 6 and "history unavailable" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
