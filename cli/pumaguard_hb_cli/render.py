"""Human output of pumaguard-hb: the daemon's state and the camera tables, via rich.

Imported only for human output, so ``--json`` never pays for rich. Colour only
on a terminal and when ``NO_COLOR`` is unset; otherwise plain text, no escape codes.

Every text that comes from outside (hostnames from DHCP, the settings file or
``camera add``, reasons, problems, paths) reaches rich as a :class:`~rich.text.Text`,
never as a ``str``: rich parses strings as console markup, so ``Microseven-Gate[/]``
would raise a MarkupError and ``[bold]`` would vanish. :func:`lit` is the one way in.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any, TypeGuard

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from pumaguard_hb.model.camera import iso_seconds

STATUS_STYLE = {"connected": "bold green", "disconnected": "bold red"}


def lit(value: Any, style: str = "") -> Text:
    """``value`` as literal text: never read as rich markup, and printable (:func:`one_line`):
    a newline or an escape sequence from outside never reaches the terminal."""
    return value if isinstance(value, Text) else Text(one_line(value), style=style)


def wants_colour(stream: IO[str]) -> bool:
    """True when ``stream`` is a terminal and the user has not asked for NO_COLOR."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not os.environ.get("NO_COLOR")


def is_tty(stream: Any) -> bool:
    """True when ``stream`` is a terminal (colour or not: NO_COLOR changes only the colour)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def make_console(stderr: bool = False, pipe_width: int = 200) -> Console:
    """A console that styles only a terminal without NO_COLOR, is as wide as a terminal
    (also with NO_COLOR), and ``pipe_width`` wide elsewhere (tables never wrap a pipe)."""
    stream = sys.stderr if stderr else sys.stdout
    styled = wants_colour(stream)
    return Console(
        file=stream,
        force_terminal=styled,
        no_color=not styled,
        highlight=False,
        emoji=False,
        width=None if is_tty(stream) else pipe_width,
    )


def fit_width(console: Console, wide: bool = False) -> int | None:
    """The width a camera table must fit: the terminal's, or None (every column) for
    ``--wide`` and for output that is not a terminal (a pipe, a file)."""
    return None if wide or not is_tty(console.file) else console.width


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
    return iso_seconds(value)


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
    return lit(word, STATUS_STYLE.get(word, "yellow"))


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def alerts_summary(alerts: dict[str, Any]) -> Text:
    """``mail, apprise: 3 messages sent`` and each channel's problem, in red."""
    channels = [str(c) for c in alerts.get("channels") or []]
    sent = sum(
        int(ch.get("sent") or 0) for ch in (alerts.get(c) for c in channels) if isinstance(ch, dict)
    )
    shown = lit(f"{', '.join(channels)}: {sent} sent")
    if alerts.get("waiting_changes"):
        shown.append(f", {alerts['waiting_changes']} changes waiting to be sent together")
    for name in channels:
        ch = alerts.get(name)
        if isinstance(ch, dict) and ch.get("problem"):
            shown.append(f"; {name}: {ch['problem']}", style="bold red")
    return shown


def uptime(value: Any) -> str:
    """An uptime percentage, ``99.9%``, or ``-`` when nothing is known."""
    if _number(value):  # rounded down: 99.96 is not 100
        return f"{math.floor(value * 10) / 10:.1f}%" if value < 100 else "100%"
    return "-"


WINDOWS = {"24h": 86400.0, "7d": 7 * 86400.0}


def short_duration(seconds: float) -> str:
    """A duration in its largest unit, rounded down: ``42s``, ``5m``, ``2h``, ``3d``."""
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def uptime_cell(cam: dict[str, Any], window: str) -> str:
    """A camera's uptime over ``window`` (``24h``, ``7d``): ``99.9%`` when (nearly) the whole
    window was observed, else with how much of it was, ``100% of 2h``; as :func:`uptime`
    for a daemon that does not say how much it observed (no ``observed_*``)."""
    value = cam.get(f"uptime_{window}")
    observed = cam.get(f"observed_{window}")
    if not _number(value) or not _number(observed) or observed >= 99:
        return uptime(value)
    seen = min(max(float(observed), 0.0), 100.0) / 100 * WINDOWS[window]
    return f"{uptime(value)} of {short_duration(seen)}"


STRIP_CELLS = 24
STRIP = {"connected": ("▇", "green"), "disconnected": ("▁", "red"), "mixed": ("▄", "yellow")}


def strip_cells(
    recent: list[dict[str, Any]], status: Any, now: float, cell: float, cells: int = STRIP_CELLS
) -> list[str | None]:
    """The state of each of the last ``cells`` periods of ``cell`` seconds, oldest first:
    ``connected``, ``disconnected``, ``mixed`` (both within the period) or None (unknown).

    Built from the camera's recent changes (``{"at", "old", "new"}``): before the
    earliest one the camera was in its ``old`` state; with no changes at all, in
    its current ``status``.
    """
    changes = sorted(
        (c for c in recent if isinstance(c.get("at"), int | float)), key=lambda c: c["at"]
    )
    initial = changes[0].get("old") if changes else status
    out: list[str | None] = []
    for i in range(cells):
        start, end = now - (cells - i) * cell, now - (cells - i - 1) * cell
        state = initial
        for c in changes:
            if c["at"] <= start:
                state = c["new"]
        seen = {state} | {c["new"] for c in changes if start < c["at"] < end}
        seen.discard(None)
        if not seen:
            out.append(None)
        elif len(seen) == 1:
            out.append(str(seen.pop()))
        else:
            out.append("mixed")
    return out


def strip(cam: dict[str, Any], now: float, cell: float, cells: int = STRIP_CELLS) -> Text:
    """The camera's recent up/down history as a strip of blocks, coloured on a terminal."""
    text = Text()
    for state in strip_cells(cam.get("recent") or [], cam.get("status"), now, cell, cells):
        char, style = STRIP.get(state or "", ("·", "dim"))
        text.append(char, style=style)
    return text


def last_seen_ago(value: Any, now: float) -> str:
    """``12s ago``, or ``never``: :func:`last_seen` without the absolute time."""
    when = parse_time(value)
    if when is None:
        return "never" if not value else str(value)
    ago = now - when
    return f"{duration(ago)} ago" if ago >= 0 else f"in {duration(-ago)}"


GAP = 3  # cells between two columns of a box.SIMPLE table without edges
ESSENTIAL = ("NAME", "IP", "STATUS")  # never dropped, never cut
# what is kept first when the terminal is narrow; "dates" is LAST SEEN's absolute time
KEEP_ORDER = (
    "LAST SEEN",
    "UP 24H",
    "IN STATE",
    "RTT",
    "DETAIL",
    "UP 7D",
    "dates",
    "MAC",
)
RIGHT = {"RTT", "UP 24H", "UP 7D"}


def _table_columns(cameras: list[dict[str, Any]], now: float, check: bool) -> dict[str, list[Text]]:
    """Every column the table can show, in the order shown, as header → cells."""
    history = not check and any("uptime_24h" in c for c in cameras)
    cols: dict[str, list[Text]] = {
        "NAME": [lit(one_line(c.get("hostname") or c.get("id") or "-")) for c in cameras],
        "IP": [lit(one_line(c.get("ip_address") or "-")) for c in cameras],
        "MAC": [lit(one_line(c.get("mac_address") or "-")) for c in cameras],
        "STATUS": [status_text(one_line(c.get("status") or "unknown")) for c in cameras],
        "LAST SEEN": [lit(one_line(last_seen_ago(c.get("last_seen"), now))) for c in cameras],
        "dates": [lit(one_line(last_seen(c.get("last_seen"), now))) for c in cameras],
        "RTT": [lit(rtt(c.get("rtt_ms"))) for c in cameras],
    }
    if not check:
        since = [parse_time(c.get("since")) for c in cameras]
        cols["IN STATE"] = [lit("-" if s is None else duration(now - s)) for s in since]
    if history:
        cols["UP 24H"] = [lit(uptime_cell(c, "24h")) for c in cameras]
        cols["UP 7D"] = [lit(uptime_cell(c, "7d")) for c in cameras]
    cols["DETAIL"] = [detail_cell(c) for c in cameras]
    return cols


def power_text(power: Any) -> Text | None:
    """A camera's power cycles (docs/power-cycle.md): ``power: 2 today, last recovered``;
    ``needs a visit`` in bold red. None for a camera without any."""
    if not isinstance(power, dict):
        return None
    n = power.get("cycles_today") if _number(power.get("cycles_today")) else 0
    if power.get("needs_visit"):
        return lit(f"power: needs a visit ({n} today)", "bold red")
    text = f"power: {n} today"
    if power.get("last_outcome"):
        text += f", last {power['last_outcome']}"
    if power.get("running"):
        return lit(text + ", cycling now", "yellow")
    return lit(text)


def detail_cell(cam: dict[str, Any]) -> Text:
    """The DETAIL of a camera: its power cycles, if any, then its problem or last reason."""
    why = lit(cam.get("problem") or cam.get("reason") or "", "dim")
    power = power_text(cam.get("power"))
    if power is None:
        return why
    cell = Text()  # no style of its own: each part keeps its own (Grid applies a cell's style)
    cell.append_text(power)
    if why.plain:
        cell.append("; ", style="dim")
        cell.append_text(why)
    return cell


def visits_line(cameras: list[dict[str, Any]]) -> Text | None:
    """``2 cameras need a visit: Gate, Barn`` (power cycles did not bring them back), loud."""
    names = [
        str(c.get("hostname") or c.get("id") or "?")
        for c in cameras
        if isinstance(c.get("power"), dict) and c["power"].get("needs_visit")
    ]
    if not names:
        return None
    shown = ", ".join(n[:40] for n in names[:3])
    shown += f" and {len(names) - 3} more" if names[3:] else ""
    one = len(names) == 1
    head = "1 camera needs" if one else f"{len(names)} cameras need"
    why = f"power cycles did not bring {'it' if one else 'them'} back"
    return lit(f"{head} a visit ({why}): {shown}", "bold red")


def one_line(value: Any) -> str:
    """``value`` as text without control characters (a newline would break a row in two,
    an escape sequence would reach the terminal): each one shown as ``\ufffd``."""
    text = str(value)
    if text.isprintable():  # nearly always: one C-level pass
        return text
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text)


def _width(header: str, cells: list[Text]) -> int:
    return max([cell_len(header), *(c.cell_len for c in cells)])


def fitted_table(
    cameras: list[dict[str, Any]], now: float, width: int | None, check: bool = False
) -> tuple[Grid, list[str]]:
    """The camera table fitted to ``width`` terminal columns (None: every column, ``--wide``),
    and the names of the columns it leaves out.

    NAME, IP and STATUS are always shown whole, one line per camera, even when they alone
    are wider than ``width``; the other columns are kept in the order of :data:`KEEP_ORDER`
    as long as they fit whole (a wide one that does not fit leaves room for a narrower
    one after it). Nothing is ever cut or wrapped.
    """
    cols = _table_columns(cameras, now, check)
    widths = {name: _width(name, cells) for name, cells in cols.items()}
    widths["dates"] = widths["dates"] - widths["LAST SEEN"]  # what the dates add
    kept = set(ESSENTIAL)
    used = sum(widths[n] for n in ESSENTIAL) + GAP * (len(ESSENTIAL) - 1)
    for name in KEEP_ORDER:
        if name not in cols or (name == "dates" and "LAST SEEN" not in kept):
            continue
        extra = widths[name] + (0 if name == "dates" else GAP)
        if width is None or used + extra <= width:
            kept.add(name)
            used += extra
    hidden: list[str] = []
    columns: list[tuple[str, list[Text]]] = []
    for name, cells in cols.items():
        if name == "dates":
            if name not in kept and "LAST SEEN" in kept:
                hidden.append("LAST SEEN dates")
            continue
        if name not in kept:
            hidden.append(name)
            continue
        if name == "LAST SEEN" and "dates" in kept:
            cells = cols["dates"]
        columns.append((name, cells))
    return Grid(columns), hidden


class Grid:
    """The camera table: one line per camera, every cell whole, laid out as rich draws a
    ``box.SIMPLE`` table without edges (bold header, a rule, columns :data:`GAP` apart).

    Drawn here rather than by rich's :class:`~rich.table.Table`, which measures, wraps
    and crops every cell: 0.7 s of a 0.78 s ``status`` at 1000 cameras (issue 21,
    docs/performance.md). The cells are already one line each (:func:`lit`) and the
    widths are known, so each row is a few segments.
    """

    def __init__(self, columns: list[tuple[str, list[Text]]]) -> None:
        self.columns = columns
        self.widths = [_width(name, cells) for name, cells in columns]
        self.width = sum(self.widths) + GAP * max(0, len(columns) - 1)

    def _line(self, console: Console, cells: list[Text]) -> Iterator[Segment]:
        last = len(cells) - 1
        for i, (cell, (name, _), width) in enumerate(
            zip(cells, self.columns, self.widths, strict=True)
        ):
            pad = " " * (width - cell.cell_len)
            right = name in RIGHT
            if right and pad:
                yield Segment(pad)
            segments = cell.render(console)
            if cell.style:  # a Text's own style is a span only once rich joins it into lines
                segments = Segment.apply_style(segments, console.get_style(cell.style))
            yield from segments
            if not right and pad:
                yield Segment(pad)
            if i < last:
                yield Segment(" " * GAP)
        yield Segment.line()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.columns:
            return
        header = console.get_style("table.header")
        yield from self._line(console, [Text(name, style=header) for name, _ in self.columns])
        yield Segment("\u2500" * self.width)
        yield Segment.line()
        for row in zip(*(cells for _, cells in self.columns), strict=True):
            yield from self._line(console, list(row))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.width, self.width)


def hidden_hint(hidden: list[str], width: int | None, command: str = "status") -> Text:
    """The dim line under a fitted table that names what it left out and how to see it."""
    names = ", ".join(hidden)
    tries = (
        f"not shown: {names}; pumaguard-hb {command} --wide shows all",
        f"not shown: {names}; --wide shows all",
        f"{len(hidden)} columns not shown; --wide shows all",
    )
    line = next((t for t in tries if width is None or cell_len(t) <= width), tries[-1])
    return Text(line, style="dim")


def watch_table(
    cameras: list[dict[str, Any]], now: float, cell: float, width: int | None = None
) -> Table:
    """The live view's table: fits a narrow terminal (no MAC, relative times, one line per
    camera; only the detail is cut short, and the strip is halved below 110 columns)."""
    cells = STRIP_CELLS if width is None or width >= 110 else STRIP_CELLS // 2
    rows: list[list[Text]] = []
    for cam in cameras:
        seen = parse_time(cam.get("last_seen"))
        since = parse_time(cam.get("since"))
        rows.append(
            [
                lit(cam.get("hostname") or cam.get("id") or "-"),
                lit(cam.get("ip_address") or "-"),
                status_text(cam.get("status")),
                lit("never" if seen is None else f"{duration(now - seen)} ago"),
                lit(rtt(cam.get("rtt_ms"))),
                lit("-" if since is None else duration(now - since)),
                lit(uptime_cell(cam, "24h")),
                lit(uptime_cell(cam, "7d")),
                strip(cam, now, cell, cells),
                detail_cell(cam),
            ]
        )
    names = ("NAME", "IP", "STATUS", "LAST SEEN", "RTT", "IN STATE", "UP 24H", "UP 7D", "RECENT")
    widths = [max([len(n), *(len(str(r[i])) for r in rows)]) for i, n in enumerate(names)]
    shown = list(range(len(names)))
    # on a narrow terminal, leave out the least useful columns first; the detail gets the rest
    for drop in (5, 7, 4, 1, 3, 6):
        if width is None or sum(widths[i] + 2 for i in shown) + 12 <= width:
            break
        shown.remove(drop)
    table = Table(box=box.SIMPLE, pad_edge=False, show_edge=False)
    for i in shown:
        justify = "right" if 3 <= i <= 7 else "left"
        table.add_column(names[i], justify=justify, no_wrap=True, min_width=widths[i])  # type: ignore[arg-type]
    table.add_column("DETAIL", no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*(row[i] for i in shown), row[-1])
    return table


class _Lines:
    """Collects the lines of a view, so one function serves print and rich Live."""

    def __init__(self) -> None:
        self.parts: list[RenderableType] = []

    def print(self, part: RenderableType = "") -> None:
        self.parts.append(part)


def _line(console: Console | _Lines, label: str, value: Text | str) -> None:
    text = Text(f"{label:<11}", style="bold")
    text.append(lit(value))
    console.print(text)


def print_status(
    result: dict[str, Any], console: Console | None = None, wide: bool = False
) -> None:
    """``pumaguard-hb status``: the daemon, then the cameras (fitted to a terminal unless
    ``wide``; a pipe gets every column, as always, and never a cut one)."""
    console = console or make_console()
    view = status_view(result, width=fit_width(console, wide))
    for part in view.renderables:
        console.print(part, crop=False)  # a --wide or uncut table may be wider than the screen


def status_view(
    result: dict[str, Any],
    watch: bool = False,
    now: float | None = None,
    width: int | None = None,
    wide: bool = False,
) -> Group:
    """What ``status`` shows, as one renderable; ``watch`` adds the recent-history strip.

    Without ``watch``: a ``width`` fits the camera table to a terminal that wide (columns
    left out are named under it); without one (a pipe, a file) or with ``wide``, every
    column is shown. Names, IPs and statuses are never cut.
    """
    console = _Lines()
    now = time.time() if now is None else now
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
            method_text = lit(f"{method} (effective: {effective})", "yellow")
        else:
            method_text = lit(method)
        method_text.append(f", every {_seconds(d.get('interval_s'))}")
        _line(console, "method", method_text)
        if d.get("sweeping"):
            _line(console, "next check", "checking now")
        elif d.get("next_check_in_s") is not None:
            nxt = float(d["next_check_in_s"])
            _line(console, "next check", f"in {duration(nxt)} ({local_time(now + nxt)})")
    else:
        _line(console, "monitoring", Text("disabled (camera_heartbeat_enabled: false)", "yellow"))
    icmp = lit(d.get("icmp_mode"))
    if d.get("icmp_problem"):
        icmp.append(f": {d['icmp_problem']}", style="red")
    _line(console, "ICMP", icmp)
    _line(console, "settings", str(d.get("settings_path")))
    if d.get("config_path"):
        _line(console, "config", str(d["config_path"]))
    webui = d.get("webui")
    if d.get("mode") == "webui" and isinstance(webui, dict):
        shown = lit(f"{webui.get('url')} (cameras and results go through it)")
        if webui.get("problem"):
            shown.append(f"; not answering: {webui['problem']}", style="bold red")
        elif webui.get("reachable") is None:
            shown.append("; not asked yet", style="yellow")
        _line(console, "web UI", shown)
    alerts = result.get("alerts")
    if isinstance(alerts, dict) and alerts.get("channels"):  # mail / Apprise (docs/alerts.md)
        _line(console, "alerts", alerts_summary(alerts))
    hist = d.get("history")
    if isinstance(hist, dict) and not hist.get("available"):
        _line(console, "history", lit(f"unavailable: {hist.get('problem')}", "yellow"))
    for key, label in (("settings_error", "settings error"), ("write_error", "write error")):
        if d.get(key):
            console.print(lit(f"{label}: {d[key]}", "bold red"))
    total = summary.get("total", 0)
    connected = summary.get("connected", 0)
    style = "green" if connected == total else "red"
    _line(console, "cameras", Text(f"{connected}/{total} connected", style=style))
    found = result.get("discovered")
    if isinstance(found, dict) and found.get("interval_s"):  # periodic ONVIF discovery is on
        _line(console, "discovery", discovery_summary(found))
    cameras = result.get("cameras") or []
    visits = visits_line(cameras)
    if visits is not None:  # never left out with a column: docs/power-cycle.md
        _line(console, "power", visits)
    if cameras:
        console.print()
        if watch:
            cell = max(1.0, float(d.get("interval_s") or 60))
            console.print(watch_table(cameras, now, cell, width))
        else:
            table, hidden = fitted_table(cameras, now, None if wide else width)
            console.print(table)
            if hidden:
                console.print(hidden_hint(hidden, width))
    if watch:
        legend = Text("RECENT: one block per check interval, newest right: ", style="dim")
        for state in ("connected", "disconnected", "mixed"):
            char, style = STRIP[state]
            legend.append(char, style=style)
            legend.append(f" {state}  ", style="dim")
        legend.append("· unknown", style="dim")
        console.print(legend)
    return Group(*console.parts)


def discovery_summary(found: dict[str, Any]) -> Any:
    """The ``discovery`` line of ``status``: what the daemon's periodic discovery found."""
    every = found.get("interval_s")
    text = lit(f"every {every:g}s" if isinstance(every, int | float) else "on")
    if found.get("add"):
        text.append(", adds what it finds")
    if found.get("problem"):
        text.append(f"; {found['problem']}", style="bold red")
        return text
    devices = [d for d in found.get("devices") or [] if isinstance(d, dict)]
    if not devices:
        text.append("; nothing new" if found.get("runs") else "; not run yet")
        return text
    shown = ", ".join(
        f"{d.get('ip_address')} ({d.get('name') or 'no name'})" for d in devices[:3]
    ) + (f" and {len(devices) - 3} more" if len(devices) > 3 else "")
    text.append(f"; {len(devices)} ONVIF devices not cameras: ", style="yellow")
    text.append(Text(shown))
    if not found.get("add"):
        text.append(" (pumaguard-hb discover --add)")
    return text


def print_check(result: dict[str, Any], console: Console | None = None, wide: bool = False) -> None:
    """``pumaguard-hb check-now``: what this sweep found (fitted like ``status``)."""
    console = console or make_console()
    cams = result.get("cameras") or {}
    rows = (
        [{"mac_address": mac, **cam} for mac, cam in cams.items()] if isinstance(cams, dict) else []
    )
    reachable = sum(1 for c in rows if c.get("reachable"))
    if not rows:
        console.print(lit("no cameras to check"))
        return
    width = fit_width(console, wide)
    table, hidden = fitted_table(rows, time.time(), width, check=True)
    console.print(table, crop=False)  # a --wide or uncut table may be wider than the screen
    if hidden:
        console.print(hidden_hint(hidden, width, "check-now"))
    style = "green" if reachable == len(rows) else "red"
    console.print(Text(f"{reachable}/{len(rows)} reachable", style=style))


def _seconds(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}s"
    return str(value)


def print_history(result: dict[str, Any], console: Console | None = None) -> None:
    """``pumaguard-hb history``: one line per change of state, oldest first."""
    console = console or make_console()
    changes = result.get("changes") or []
    if not changes:
        console.print(lit("no changes of state recorded"))
        return
    table = Table(box=box.SIMPLE, pad_edge=False, show_edge=False)
    for column in ("TIME", "CAMERA", "IP", "CHANGE", "METHOD", "REASON"):
        table.add_column(column)
    for c in changes:
        at = parse_time(c.get("at"))
        change = lit(c.get("old") or "(new)", STATUS_STYLE.get(str(c.get("old")), ""))
        change.append(" → ")
        change.append(lit(c.get("new"), STATUS_STYLE.get(str(c.get("new")), "yellow")))
        table.add_row(
            lit("-" if at is None else local_time(at)),
            lit(c.get("hostname") or c.get("camera_id") or "-"),
            lit(c.get("ip_address") or "-"),
            change,
            lit(c.get("method") or "-"),
            lit(c.get("reason") or "", "dim"),
        )
    console.print(table)
    if result.get("more"):
        console.print(Text("older changes not shown (see --limit and --since)", style="dim"))
