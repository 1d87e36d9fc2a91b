"""Human output of pumaguard-hb: the daemon's state and the camera tables, via rich.

Imported only for human output, so ``--json`` never pays for rich. Colour only
on a terminal and when ``NO_COLOR`` is unset; otherwise plain text, no escape codes.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"connected": "bold green", "disconnected": "bold red"}


def wants_colour(stream: IO[str]) -> bool:
    """True when ``stream`` is a terminal and the user has not asked for NO_COLOR."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not os.environ.get("NO_COLOR")


def make_console(stderr: bool = False) -> Console:
    """A console that styles only a terminal without NO_COLOR, and never wraps a pipe."""
    stream = sys.stderr if stderr else sys.stdout
    styled = wants_colour(stream)
    return Console(
        file=stream,
        force_terminal=styled,
        no_color=not styled,
        highlight=False,
        emoji=False,
        width=None if styled else 200,
    )


def duration(seconds: float) -> str:
    """``42s``, ``5m 3s``, ``2h 7m``, ``3d 4h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch from an ISO 8601 time (``2024-01-15T14:32:15Z``) or a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def local_time(epoch: float) -> str:
    """An absolute local time, ``2024-01-15 07:32:15``."""
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def last_seen(value: Any, now: float) -> str:
    """``12s ago (2024-01-15 07:32:15)``, or ``never``."""
    when = parse_time(value)
    if when is None:
        return "never" if not value else str(value)
    ago = now - when
    relative = f"{duration(ago)} ago" if ago >= 0 else f"in {duration(-ago)}"
    return f"{relative} ({local_time(when)})"


def rtt(value: Any) -> str:
    """A round-trip time in milliseconds, or ``-``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.1f} ms"
    return "-"


def status_text(status: Any) -> Text:
    """The camera's status word, coloured."""
    word = str(status or "unknown")
    return Text(word, style=STATUS_STYLE.get(word, "yellow"))


def camera_table(cameras: list[dict[str, Any]], now: float, check: bool = False) -> Table:
    """One row per camera: name, IP, MAC, status, last seen, RTT, time in state or reason."""
    table = Table(box=box.SIMPLE, pad_edge=False, show_edge=False)
    table.add_column("NAME")
    table.add_column("IP")
    table.add_column("MAC")
    table.add_column("STATUS")
    table.add_column("LAST SEEN")
    table.add_column("RTT", justify="right")
    table.add_column("DETAIL" if check else "IN STATE")
    if not check:
        table.add_column("DETAIL")
    for cam in cameras:
        row: list[Text | str] = [
            cam.get("hostname") or "-",
            cam.get("ip_address") or "-",
            cam.get("mac_address") or "-",
            status_text(cam.get("status")),
            last_seen(cam.get("last_seen"), now),
            rtt(cam.get("rtt_ms")),
        ]
        if not check:
            since = parse_time(cam.get("since"))
            row.append("-" if since is None else duration(now - since))
        detail = cam.get("problem") or cam.get("reason") or ""
        row.append(Text(str(detail), style="dim") if detail else "")
        table.add_row(*row)
    return table


def _line(console: Console, label: str, value: Text | str) -> None:
    text = Text(f"{label:<11}", style="bold")
    text.append(value if isinstance(value, Text) else Text(value))
    console.print(text)


def print_status(result: dict[str, Any], console: Console | None = None) -> None:
    """``pumaguard-hb status``: the daemon, then the cameras."""
    console = console or make_console()
    now = time.time()
    d = result.get("daemon") or {}
    summary = result.get("summary") or {}
    _line(
        console,
        "daemon",
        f"pumaguard-heartbeat {d.get('version')}, up {duration(d.get('uptime_s') or 0)}",
    )
    if d.get("enabled", True):
        method = str(d.get("method"))
        effective = d.get("effective_method")
        if effective and effective != method:
            method_text = Text(f"{method} (effective: {effective})", style="yellow")
        else:
            method_text = Text(method)
        method_text.append(f", every {_seconds(d.get('interval_s'))}")
        _line(console, "method", method_text)
        if d.get("sweeping"):
            _line(console, "next check", "checking now")
        elif d.get("next_check_in_s") is not None:
            nxt = float(d["next_check_in_s"])
            _line(console, "next check", f"in {duration(nxt)} ({local_time(now + nxt)})")
    else:
        _line(console, "monitoring", Text("disabled (camera_heartbeat_enabled: false)", "yellow"))
    icmp = Text(str(d.get("icmp_mode")))
    if d.get("icmp_problem"):
        icmp.append(f": {d['icmp_problem']}", style="red")
    _line(console, "ICMP", icmp)
    _line(console, "settings", str(d.get("settings_path")))
    for key, label in (("settings_error", "settings error"), ("write_error", "write error")):
        if d.get(key):
            console.print(Text(f"{label}: {d[key]}", style="bold red"))
    total = summary.get("total", 0)
    connected = summary.get("connected", 0)
    style = "green" if connected == total else "red"
    _line(console, "cameras", Text(f"{connected}/{total} connected", style=style))
    cameras = result.get("cameras") or []
    if cameras:
        console.print()
        console.print(camera_table(cameras, now))


def print_check(result: dict[str, Any], console: Console | None = None) -> None:
    """``pumaguard-hb check-now``: what this sweep found."""
    console = console or make_console()
    cams = result.get("cameras") or {}
    rows = (
        [{"mac_address": mac, **cam} for mac, cam in cams.items()] if isinstance(cams, dict) else []
    )
    reachable = sum(1 for c in rows if c.get("reachable"))
    if not rows:
        console.print("no cameras to check")
        return
    console.print(camera_table(rows, time.time(), check=True))
    style = "green" if reachable == len(rows) else "red"
    console.print(Text(f"{reachable}/{len(rows)} reachable", style=style))


def _seconds(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}s"
    return str(value)
