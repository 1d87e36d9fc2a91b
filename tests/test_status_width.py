"""``pumaguard-hb status`` fits the terminal it runs in (issue 13, part 1).

The real daemon and the real CLI on a real terminal (tmux, at 80, 100 and 160 columns):
every camera on one line, no line wider than the terminal, the name, IP and status never
cut, the less important columns left out and named under the table (with ``--wide``),
``--wide`` showing them all; a pipe gets every column, as before. And the README's
example is what 80 columns really show.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, camera, wait_for, write_settings
from helpers_cli import PYTHONPATH, REPO, Listeners, clean_env, run_cli
from rich.cells import cell_len
from rich.console import Console

sys.path.insert(0, str(REPO / "cli"))  # the CLI package, also where it is not installed
from pumaguard_hb_cli import render

STATUS_COLUMNS = ["NAME", "IP", "MAC", "STATUS", "LAST SEEN", "RTT", "IN STATE", "UP 24H", "UP 7D"]
CHECK_COLUMNS = ["NAME", "IP", "MAC", "STATUS", "LAST SEEN", "RTT", "DETAIL"]
DATE = re.compile(r"\(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)")  # LAST SEEN's absolute time

GATE = ("Microseven-M7B77-Gate-North-Fence", "127.0.0.2", "aa:bb:cc:00:13:01")
CREEK = ("Reolink-RLC-810A-Creek-Crossing-East", "::1", "aa:bb:cc:00:13:02")
BARN = ("Microseven-M7B77-Barn-Loft-West-Wing", "127.100.200.250", "aa:bb:cc:00:13:03")


def columns(line: str) -> list[str]:
    """The cells of a table line (cells hold single spaces, columns are 3 apart)."""
    return re.split(r"\s{2,}", line.strip())


def hint_names(line: str) -> set[str]:
    """The columns a ``not shown: A, B; …`` line names."""
    assert line.startswith("not shown: "), line
    return set(line[len("not shown: ") : line.index(";")].split(", "))


# -- the table on its own -------------------------------------------------------------------


def cams(now: float, name_len: int = 36) -> list[dict[str, Any]]:
    base = "Microseven-" + "x" * name_len
    return [
        {
            "hostname": base[:name_len] + str(i),
            "ip_address": ip,
            "mac_address": f"aa:bb:cc:dd:ee:0{i}",
            "status": status,
            "last_seen": now - 30 * (i + 1) ** 3,
            "rtt_ms": 0.7 if status == "connected" else None,
            "since": now - 1000,
            "reason": f"tcp {ip}:80 {'connected' if status == 'connected' else 'refused'}",
            "uptime_24h": 99.5,
            "uptime_7d": 100.0,
        }
        for i, (ip, status) in enumerate(
            [("192.168.52.101", "connected"), ("fd00:52::1:103", "disconnected"), ("::1", "x")]
        )
    ]


def rendered(renderable: Any, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, no_color=True, highlight=False).print(renderable, crop=False)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("width", [20, 40, 60, 80, 100, 120, 160, 200, 300])
def test_fitted_table_never_cuts_name_ip_status(width: int) -> None:
    now = time.time()
    rows = cams(now)
    table, hidden = render.fitted_table(rows, now, width)
    lines = rendered(table, width)
    assert len(lines) == 2 + len(rows)  # header, rule, one line per camera
    essential = len(rows[0]["hostname"]) + len("fd00:52::1:103") + len("disconnected") + 6
    assert max(len(line) for line in lines) <= max(width, essential)
    header = columns(lines[0])
    assert header[:2] == ["NAME", "IP"] and "STATUS" in header
    for cam, line in zip(rows, lines[2:], strict=True):
        cells = columns(line)
        assert cells[0] == cam["hostname"] and cells[1] == cam["ip_address"]
        assert cells[header.index("STATUS")] == cam["status"]
        assert len(cells) == len(header)
    dates = any(DATE.search(line) for line in lines)
    everything = {*STATUS_COLUMNS, "DETAIL", "LAST SEEN dates"}
    shown = set(header) | ({"LAST SEEN dates"} if dates else set())
    if "LAST SEEN" not in header:
        shown.add("LAST SEEN dates")  # not named twice: LAST SEEN covers it
    assert everything - shown == set(hidden)
    if width >= 300:
        assert hidden == []
    hint = rendered(render.hidden_hint(hidden, width), width) if hidden else []
    assert all(len(line) <= max(width, 40) for line in hint)


def test_wide_shows_every_column_uncut() -> None:
    now = time.time()
    table, hidden = render.fitted_table(cams(now), now, None)
    lines = rendered(table, 80)
    assert hidden == []
    assert columns(lines[0]) == [*STATUS_COLUMNS, "DETAIL"]
    assert all(DATE.search(line) for line in lines[2:])
    assert len(lines) == 5 and max(len(line) for line in lines) > 80


def test_a_row_stays_one_line_whatever_the_text() -> None:
    """Control characters (from a hostile daemon's reply) never break a row or reach the
    terminal; wide characters count as the two cells they take."""
    now = time.time()
    rows = cams(now)
    rows[0]["hostname"] = "Microseven-\x1b[2J\nGate\r"
    rows[1]["hostname"] = "Microseven-北門-Gate"
    rows[2]["reason"] = "line one\nline two"
    table, _hidden = render.fitted_table(rows, now, None)
    lines = rendered(table, 80)
    assert len(lines) == 5 and "\x1b" not in "".join(lines)
    assert columns(lines[2])[0] == "Microseven-\ufffd[2J\ufffdGate\ufffd"
    assert "line one\ufffdline two" in lines[4]
    widths = {cell_len(line) for line in lines}
    assert len(widths) == 1  # every line as wide as the others, in cells


def test_uptime_cell_says_how_much_was_observed() -> None:
    day = {"uptime_24h": 100.0, "observed_24h": 8.4}  # 8.4 % of 24 h: 2 h 0 m 57 s
    assert render.uptime_cell(day, "24h") == "100% of 2h"
    assert render.uptime_cell({"uptime_24h": 87.25, "observed_24h": 50}, "24h") == "87.2% of 12h"
    assert render.uptime_cell({"uptime_7d": 99.96, "observed_7d": 99.5}, "7d") == "99.9%"
    assert render.uptime_cell({"uptime_7d": 50, "observed_7d": 30}, "7d") == "50.0% of 2d"
    assert render.uptime_cell({"uptime_24h": 100, "observed_24h": 0.01}, "24h") == "100% of 8s"
    assert render.uptime_cell({"uptime_24h": None, "observed_24h": 0}, "24h") == "-"
    assert render.uptime_cell({"uptime_24h": 99.2}, "24h") == "99.2%"  # an older daemon
    assert render.uptime_cell({}, "7d") == "-"
    assert render.uptime_cell({"uptime_24h": 97, "observed_24h": "x"}, "24h") == "97.0%"


# -- the real daemon, the real CLI, a real terminal ----------------------------------------


@pytest.fixture
def station(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Three cameras with long names: Gate (IPv4) and Creek (IPv6) answer, Barn refuses."""
    ls = Listeners()
    d = Daemon(tmp_path)
    try:
        port = ls.open_same_port([GATE[1], CREEK[1]])
        write_settings(
            d.settings,
            {
                "camera-heartbeat-interval": 3600,
                "camera-heartbeat-tcp-port": port,
                "camera-heartbeat-tcp-timeout": 2,
                "cameras": [camera(*GATE), camera(*CREEK), camera(*BARN, status="connected")],
            },
        )
        d.start()
        d.call("check_now")
        yield clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    finally:
        d.stop()
        ls.close_all()


class Terminal:
    """The real CLI run in a tmux window of a given size; what the screen shows."""

    def __init__(self, tmp: Path) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:
            print("tmux not installed (apt-get install tmux): the terminal view is not checked")
            pytest.skip("tmux not installed")
        self.tmux = tmux
        self.tmp = tmp
        self.servers: list[list[str]] = []
        self.base: list[str] = []

    def run(
        self, env: dict[str, str], width: int, *args: str, no_color: bool = False
    ) -> tuple[list[str], list[str]]:
        """Run ``pumaguard-hb ARGS`` on a ``width``-column terminal; returns the screen's
        lines as shown and as written (a line the terminal wrapped is one line there)."""
        done = self.tmp / f"rc-{uuid.uuid4().hex[:8]}"
        command = (
            "env -u COLUMNS -u LINES -u NO_COLOR -u FORCE_COLOR "
            f"{'NO_COLOR=1 ' if no_color else ''}"
            f"PYTHONPATH={PYTHONPATH} PUMAGUARD_HB_SOCKET={env['PUMAGUARD_HB_SOCKET']} "
            f"TERM=xterm-256color {sys.executable} -m pumaguard_hb_cli.main {' '.join(args)}; "
            f"echo rc=$? > {done}; sleep 60"
        )
        self.close()  # one tmux server (its own socket, under tmp) per run
        self.base = [self.tmux, "-S", str(self.tmp / f"tmux-{uuid.uuid4().hex[:8]}"), "-f"]
        self.base.append("/dev/null")
        self.servers.append(self.base)
        subprocess.run(
            [*self.base, "new-session", "-d", "-x", str(width), "-y", "50", command],
            check=True,
            timeout=10,
            env=clean_env(),
        )
        # the shell creates the file before it writes to it: wait for its line
        wait_for(lambda: done.exists() and done.read_text().strip(), timeout=60)
        assert done.read_text().strip() in ("rc=0", "rc=1"), self.capture([])
        shown = self.capture([])
        joined = self.capture(["-J"])
        print(f"--- pumaguard-hb {' '.join(args)} at {width} columns:", *shown, sep="\n")
        return shown, joined

    def capture(self, extra: list[str]) -> list[str]:
        args = [*self.base, "capture-pane", "-p", "-t", "0", "-S", "-", *extra]
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=True)
        return [line.rstrip() for line in out.stdout.splitlines() if line.strip()]

    def close(self) -> None:
        while self.servers:
            base = self.servers.pop()
            subprocess.run([*base, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path)
    try:
        yield term
    finally:
        term.close()


def table_of(lines: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The header's columns, the camera lines and the hint lines of a status screen."""
    start = next(i for i, line in enumerate(lines) if line.startswith("NAME "))
    rows = [line for line in lines[start + 2 :] if line.startswith(("Microseven-", "Reolink-"))]
    hints = [line for line in lines if "not shown" in line]
    return columns(lines[start]), rows, hints


@pytest.mark.parametrize("width", [80, 100, 160])
def test_status_fits_the_terminal(station: dict[str, str], terminal: Terminal, width: int) -> None:
    shown, joined = terminal.run(station, width, "status")
    assert max(len(line) for line in joined) <= width, "\n".join(joined)
    assert shown == joined  # nothing was wrapped by the terminal
    header, rows, hints = table_of(shown)
    assert header[:2] == ["NAME", "IP"] and "STATUS" in header
    assert len(rows) == 3, "\n".join(shown)  # one line per camera
    expected = {GATE: "connected", CREEK: "connected", BARN: "disconnected"}
    for (name, ip, _mac), status in expected.items():
        line = next(r for r in rows if r.startswith(name + " "))
        cells = columns(line)
        assert cells[:2] == [name, ip] and cells[header.index("STATUS")] == status, line
    dates = any(DATE.search(r) for r in rows)
    hidden = {*STATUS_COLUMNS, "DETAIL"} - set(header)
    if "LAST SEEN" in header and not dates:
        hidden.add("LAST SEEN dates")
    assert hidden, "the long names leave no room for every column, even at 160"
    assert len(hints) == 1 and hint_names(hints[0]) == hidden, hints
    assert "--wide shows all" in hints[0]
    if width == 80:
        assert "MAC" not in header and "DETAIL" not in header
        plain, _ = terminal.run(station, width, "status", no_color=True)  # no colour, same fit
        assert table_of(plain)[0] == header and table_of(plain)[2] == hints


def test_status_wide_and_piped_show_every_column(
    station: dict[str, str], terminal: Terminal
) -> None:
    shown, joined = terminal.run(station, 80, "status", "--wide")
    header, rows, hints = table_of(joined)
    assert header == [*STATUS_COLUMNS, "DETAIL"] and hints == []
    assert len(rows) == 3 and all(DATE.search(r) for r in rows)
    assert any(GATE[2] in r for r in rows)  # the MAC
    assert max(len(line) for line in joined) > 80  # wider than the terminal: asked for
    assert len(shown) > len(joined)  # so the terminal wrapped it

    piped = run_cli("status", env=station)
    assert piped.returncode == 1, piped.stderr
    lines = piped.stdout.splitlines()
    header, rows, hints = table_of(lines)
    assert header == [*STATUS_COLUMNS, "DETAIL"] and hints == [] and len(rows) == 3
    assert all(DATE.search(r) for r in rows) and "\x1b[" not in piped.stdout

    nothing_hidden, _ = terminal.run(station, 300, "status")
    header, rows, hints = table_of(nothing_hidden)
    assert header == [*STATUS_COLUMNS, "DETAIL"] and hints == [] and len(rows) == 3


def test_check_now_fits_the_terminal(station: dict[str, str], terminal: Terminal) -> None:
    shown, joined = terminal.run(station, 80, "check-now")
    assert shown == joined and max(len(line) for line in joined) <= 80, "\n".join(joined)
    header, rows, hints = table_of(shown)
    assert len(rows) == 3 and header[:2] == ["NAME", "IP"] and "STATUS" in header
    for name, ip, _mac in (GATE, CREEK, BARN):
        assert any(columns(r)[:2] == [name, ip] for r in rows), rows
    assert len(hints) == 1 and hints[0].endswith("--wide shows all"), hints
    assert "2/3 reachable" in shown
    _shown, joined = terminal.run(station, 80, "check-now", "--wide")
    header, rows, hints = table_of(joined)
    assert header == CHECK_COLUMNS and hints == [] and len(rows) == 3


# -- the README's example -------------------------------------------------------------------


def readme_example() -> list[str]:
    """The lines of the README's ``$ pumaguard-hb status`` block (without the prompt)."""
    text = (REPO / "README.md").read_text()
    start = text.index("```\n$ pumaguard-hb status\n") + len("```\n$ pumaguard-hb status\n")
    return text[start : text.index("```", start)].splitlines()


def test_readme_example_is_what_80_columns_show(tmp_path: Path, terminal: Terminal) -> None:
    example = readme_example()
    assert max(len(line) for line in example) <= 80
    header, rows, hints = table_of(example)
    assert len(rows) >= 3 and len(hints) == 1
    # the README's cameras on loopback: 192.168.52.x -> 127.168.52.x (same length)
    cams = []
    for row in rows:
        name, ip, *_ = columns(row)
        assert ip.startswith("192.168."), row
        status = columns(row)[header.index("STATUS")]
        ago = 2 * 3600 + 360 if status == "disconnected" else 0
        seen = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - ago))
        cams.append((name, "127." + ip[4:], status, seen))
    ls = Listeners()
    short = Path(tempfile.mkdtemp(prefix="phb-"))  # the settings line fits 80 as in the README
    d = Daemon(tmp_path, short / "pumaguard-settings.yaml")
    try:
        port = ls.open_same_port([ip for _n, ip, status, _s in cams if status == "connected"])
        entries = [
            camera(name, ip, f"aa:bb:cc:00:00:{i:02x}", last_seen=seen)
            for i, (name, ip, _status, seen) in enumerate(cams)
        ]
        settings = {
            "camera-heartbeat-tcp-port": port,
            "camera-heartbeat-tcp-timeout": 2,
            "cameras": entries,
        }
        write_settings(d.settings, settings)
        d.start()
        d.call("check_now")
        env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
        shown, joined = terminal.run(env, 80, "status")
    finally:
        d.stop()
        ls.close_all()
        shutil.rmtree(short, ignore_errors=True)
    assert shown == joined and max(len(line) for line in shown) <= 80
    real_header, real_rows, real_hints = table_of(shown)
    assert real_header == header, "\n".join(shown)
    assert real_hints == hints
    assert len(real_rows) == len(rows)
    for (name, ip, status, _seen), row in zip(cams, real_rows, strict=True):
        cells = columns(row)
        assert cells[:2] == [name, ip] and cells[header.index("STATUS")] == status, row
    labels = [line[:11].rstrip() for line in example if not line.startswith(("NAME", "─"))]
    real = [line[:11].rstrip() for line in shown if not line.startswith(("NAME", "─"))]
    cut = len(example) - len(rows) - len(hints) - 3  # the daemon's lines, before the table
    assert real[:cut] == labels[:cut], (real, labels)
