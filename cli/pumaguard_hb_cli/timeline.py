"""``pumaguard-hb uptime``: one timeline bar per camera that fills the terminal's width.

The daemon cuts the window into slots (the ``timeline`` command, docs/protocol.md); this
module only lays them out. Readable without colour: each state has its own glyph
(:data:`GLYPHS`); on a terminal without ``NO_COLOR`` they are also coloured. Output that
is not a terminal is :data:`PIPE_WIDTH` columns wide, so scripts and logs see stable lines.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

PIPE_WIDTH = 80
MIN_SLOTS, MAX_SLOTS = 10, 400  # what the daemon accepts (pumaguard_hb/model/uptime.py)
NAME_MAX = 24  # cells of the name column at most; longer names end in "…"
GLYPHS = {
    "up": ("█", "green"),
    "down": ("▁", "bold red"),
    "mixed": ("▄", "yellow"),
    "unknown": ("·", "dim"),
}
LEGEND = ("up", "down", "mixed", "unknown")
UPTIME_W = 5  # "99.9%", "100%", "-"
OBSERVED_W = 10  # "seen 100%", "seen <0.1%"


def make_console() -> Console:
    """The CLI's console (render.make_console), :data:`PIPE_WIDTH` wide when not a terminal."""
    from .render import make_console as console

    return console(pipe_width=PIPE_WIDTH)


def clean(value: Any) -> str:
    """A name from outside (DHCP, the settings file) made safe to print: control, format
    and separator characters (newlines, escape sequences, bidi overrides) become ``\ufffd``,
    as in every other table of the CLI (:func:`.render.one_line`)."""
    from .render import one_line

    return one_line(value or "")


def fit(text: str, cells: int) -> str:
    """``text`` cut to ``cells`` terminal cells, ending in ``…`` when cut."""
    if cell_len(text) <= cells:
        return text
    out, used = "", 0
    for ch in text:
        w = cell_len(ch)
        if used + w > cells - 1:
            break
        out, used = out + ch, used + w
    return out + "…"


def percent(value: Any) -> str:
    """``99.9%``, ``100%``, ``0.1%``; ``-`` when nothing is known."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    if value >= 100:
        return "100%"
    if 0 < value < 0.1:
        return "<0.1%"
    return f"{value:.1f}%"


def layout(width: int, names: list[str]) -> tuple[int, int]:
    """(name column cells, bar cells) for a line ``NAME BAR UPTIME SEEN`` of ``width``."""
    name_w = min(NAME_MAX, max([4, *(cell_len(n) for n in names)]))
    fixed = 1 + 1 + UPTIME_W + 1 + OBSERVED_W  # the spaces and the two figures
    bar = width - name_w - fixed
    if bar < MIN_SLOTS:  # a narrow terminal: the name gives way first
        name_w = max(4, name_w - (MIN_SLOTS - bar))
        bar = max(MIN_SLOTS, width - name_w - fixed)
    return name_w, min(bar, MAX_SLOTS)


def bar(slots: list[Any]) -> Text:
    """The slots as glyphs (an unknown word shows as unknown)."""
    out = Text()
    for state in slots:
        glyph, style = GLYPHS.get(str(state), GLYPHS["unknown"])
        out.append(glyph, style)
    return out


def axis(window: str, cells: int) -> str:
    """``-24h`` at the left, ``-12h`` in the middle, ``now`` at the right of ``cells``."""
    left, mid = {"24h": ("-24h", "-12h"), "7d": ("-7d", "-3.5d")}.get(window, (f"-{window}", ""))
    right = "now"
    line = [" "] * cells
    for pos, label in ((0, left), (cells - len(right), right)):
        line[pos : pos + len(label)] = label
    if mid and cells >= len(left) + len(mid) + len(right) + 4:
        at = cells // 2 - len(mid) // 2
        line[at : at + len(mid)] = mid
    return "".join(line)[:cells]


def print_timeline(result: dict[str, Any], name_w: int, console: Console) -> None:
    """One line per camera (name, bar, uptime, observed share), an axis and a legend."""
    cams = [c for c in result.get("cameras") or [] if isinstance(c, dict)]
    window = str(result.get("window") or "24h")
    if not cams:
        console.print(Text("no cameras"))
        return
    cells = len(cams[0].get("slots") or [])
    for cam in cams:
        name = fit(clean(cam.get("hostname") or cam.get("id")), name_w)
        line = Text(name + " " * (name_w - cell_len(name)) + " ")
        line.append_text(bar(list(cam.get("slots") or [])[:cells]))
        line.append(" " + percent(cam.get("uptime")).rjust(UPTIME_W) + " ")
        line.append(("seen " + percent(cam.get("observed"))).rjust(OBSERVED_W), "dim")
        console.print(line, no_wrap=True, overflow="crop")
    console.print(Text(" " * (name_w + 1) + axis(window, cells)), no_wrap=True, overflow="crop")
    legend = Text()
    for state in LEGEND:
        glyph, style = GLYPHS[state]
        legend.append(glyph, style)
        legend.append(f" {state}  ")
    note = f"% up of the observed time; seen: share of {window} observed"
    if legend.cell_len + cell_len(note) <= console.width:
        legend.append(note, "dim")
    console.print(legend, no_wrap=True, overflow="crop")
