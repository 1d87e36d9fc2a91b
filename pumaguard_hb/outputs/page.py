"""The availability status page served at ``/`` by the metrics listener.

:func:`render_page` is a pure function: the ``status`` result, each camera's
:class:`~.history.Segment` lists over the last 24 hours and 7 days, and the time
give the whole HTML document — inline CSS, inline SVG, no script, nothing fetched
from anywhere, a ``<meta http-equiv="refresh">`` tied to the check interval.
:class:`StatusPage` gathers those from a running monitor (memory only: the status
and the history's in-memory index; no file is read), building off the event loop.

Everything that comes from outside (hostnames from DHCP, reasons, settings, paths)
is cleaned (control and bidi-override characters dropped, length capped) and
HTML-escaped. Each timeline is drawn in a fixed number of bins, so a flapping
camera costs at most one box per bin: the page stays bounded however many changes
there were. A bin holding any down time is drawn down (a short outage is never
hidden); otherwise it takes the state that filled most of it.
"""

from __future__ import annotations

import asyncio
import html
import math
import socket
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pumaguard_hb.model.camera import iso_seconds
from pumaguard_hb.stores.history import DAY, DOWN, UNKNOWN, UP, WEEK, History, Segment, coverage

Timelines = Mapping[str, Sequence[Sequence[Segment]]]

CONTENT_TYPE = "text/html; charset=utf-8"
HEADERS = {
    # nothing but the page's own inline style: no script, image, font, frame or form at all
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
REFRESH_MIN, REFRESH_MAX = 15, 300  # seconds between reloads of the page
MAX_NAME = 64  # characters of a hostname shown
MAX_TEXT = 200  # characters of a reason or a problem shown


@dataclass(frozen=True)
class Window:
    """A timeline: its label, its length and how many bins it is drawn in."""

    label: str
    seconds: float
    bins: int
    ticks: tuple[str, ...]


WINDOWS = (
    Window("24 h", DAY, 144, ("24 h ago", "12 h", "now")),  # 10-minute bins
    Window("7 d", WEEK, 168, ("7 d ago", "3.5 d", "now")),  # 1-hour bins
)
BAR = {UP: "#2e7d32", DOWN: "#c62828", UNKNOWN: "#9e9e9e"}  # timeline colours
BADGE = {"connected": "#1b5e20", "disconnected": "#b71c1c", None: "#616161"}  # state now
PROBLEMS = {
    "settings_error": "settings error: running on the last good settings "
    "(pumaguard-hb status tells why)",
    "write_error": "the settings file cannot be written (pumaguard-hb status tells why)",
    "icmp_problem": "ICMP is not permitted to the daemon (pumaguard-hb status tells why)",
}
_DROP = {"Cc", "Cf", "Cs", "Co", "Cn"}  # control, format (bidi marks), surrogates, unassigned


def clean(value: Any, limit: int = MAX_TEXT) -> str:
    """Outside text made safe to show: invisible and direction-changing characters dropped,
    at most ``limit`` characters (an ellipsis when cut), HTML-escaped (quotes too)."""
    text = "" if value is None else str(value)
    text = "".join(" " if ch in "\t\n\r" else ch for ch in text[: limit * 4])
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROP)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=True)


def refresh_seconds(interval: Any) -> int:
    """How often the page reloads itself: the check interval, kept within 15..300 s."""
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        return 60
    if not math.isfinite(interval):
        return REFRESH_MAX
    return int(min(REFRESH_MAX, max(REFRESH_MIN, round(interval))))


def duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3h 12m``, ``24h``, ``2d 5h`` (rounded to the last unit shown)."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 2 * 86400:
        h, m = divmod(round(s / 60), 60)
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(round(s / 3600), 24)
    return f"{d}d {h}h" if h else f"{d}d"


def utc(at: float) -> str:
    """``2026-11-27 03:36 UTC`` (``?`` for a time no calendar holds)."""
    try:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return "?"


def percent(value: float) -> str:
    """A percentage below 100, rounded down: 99.96 is shown as 99.9, never as 100."""
    return f"{math.floor(value * 10) / 10:.1f}%"


def bins(segs: Sequence[Segment], start: float, end: float, n: int) -> list[tuple[int, int, str]]:
    """The window cut into ``n`` equal bins, as runs ``(first bin, count, state)``.

    A bin with any down time is down; otherwise the state that filled most of it
    (up over unknown on a tie)."""
    if end <= start or n <= 0:
        return []
    width = (end - start) / n
    spent = [[0.0, 0.0, 0.0] for _ in range(n)]  # up, down, unknown seconds per bin
    index = {UP: 0, DOWN: 1, UNKNOWN: 2}
    for seg in segs:
        a, b = max(seg.start, start), min(seg.end, end)
        if b <= a or seg.state not in index:
            continue
        k = index[seg.state]
        first = min(n - 1, int((a - start) / width))
        last = min(n - 1, max(first, math.ceil((b - start) / width) - 1))
        for i in range(first, last + 1):
            lo, hi = start + i * width, start + (i + 1) * width
            spent[i][k] += max(0.0, min(b, hi) - max(a, lo))
    runs: list[tuple[int, int, str]] = []
    for i, (up, down, unknown) in enumerate(spent):
        state = DOWN if down > 0 else UP if up >= unknown and up > 0 else UNKNOWN
        if runs and runs[-1][2] == state:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, state)
        else:
            runs.append((i, 1, state))
    return runs


def timeline_svg(segs: Sequence[Segment], start: float, window: Window) -> str:
    """One timeline as an inline SVG scaled to the page's width (viewBox, width 100%):
    one path per state (green up, red down, grey unknown), one box per run of bins."""
    paths: dict[str, list[str]] = {UP: [], DOWN: [], UNKNOWN: []}
    for first, count, state in bins(segs, start, start + window.seconds, window.bins):
        paths[state].append(f"M{first},0h{count}v1h-{count}z")
    inner = "".join(
        f'<path class="{state}" fill="{BAR[state]}" d="{"".join(boxes)}"/>'
        for state, boxes in paths.items()
        if boxes
    )
    return (
        f'<svg class="bar" viewBox="0 0 {window.bins} 1" preserveAspectRatio="none" '
        f'shape-rendering="crispEdges" role="img" aria-label="{window.label} timeline" '
        f'data-window="{window.label}">{inner}</svg>'
    )


def uptime_text(segs: Sequence[Segment], window: Window) -> str:
    """``99.2% up of 6h observed (25%)``, or that nothing was observed."""
    cov = coverage(segs)
    if cov.observed <= 0:
        return f"nothing observed in {window.label}"
    share = f"{math.floor(cov.observed_pct)}%" if cov.unknown > 0 else "all"
    up = "100%" if cov.down <= 0 else percent(min(99.99, 100.0 * cov.up / cov.observed))
    return f"{up} up of {duration(cov.observed)} observed ({share})"


def power_fact(power: Mapping[str, Any]) -> str:
    """``2 power cycles today, last recovered`` (escaped: the view comes from outside)."""
    n = power.get("cycles_today")
    n = n if isinstance(n, int) and not isinstance(n, bool) else 0
    text = f"{n} power cycle{'' if n == 1 else 's'} today"
    if power.get("last_outcome"):
        text += f", last {clean(power['last_outcome'], 40)}"
    return text + (", cycling now" if power.get("running") else "")


def _camera(cam: Mapping[str, Any], timelines: Sequence[Sequence[Segment]], now: float) -> str:
    state = cam.get("status") if cam.get("status") in ("connected", "disconnected") else None
    word = {"connected": "connected", "disconnected": "disconnected"}.get(
        state or "", "not checked"
    )
    icon = {"connected": "▲", "disconnected": "▼"}.get(state or "", "●")
    name = clean(cam.get("hostname"), MAX_NAME) or "(no name)"
    facts = []
    since = cam.get("since")
    if isinstance(since, int | float) and math.isfinite(since):
        facts.append(f"{word} since {utc(since)} ({duration(now - since)})")
    seen = iso_seconds(cam.get("last_seen"))
    if seen is not None:
        facts.append(f"last seen {duration(now - seen)} ago ({utc(seen)})")
    else:
        facts.append("never seen")
    if isinstance(cam.get("rtt_ms"), int | float) and state == "connected":
        facts.append(f"{float(cam['rtt_ms']):.1f} ms")
    first = cam.get("first_packet_ms")  # the stream method (docs/stream.md)
    if isinstance(first, int | float) and state == "connected":
        facts.append(f"first RTP {float(first):.0f} ms")
    power = cam.get("power")  # its power cycles (docs/power-cycle.md), where it has any
    if isinstance(power, Mapping):
        facts.append(power_fact(power))
    why = cam.get("problem") or (cam.get("reason") if state == "disconnected" else None)
    lines = [
        f'<section class="camera" data-camera="{clean(cam.get("id"), 80)}" data-state="{word}">',
        '<div class="head">'
        f'<span class="badge" style="background:{BADGE[state]}">{icon} {word}</span> '
        f'<bdi class="name">{name}</bdi> '
        f'<span class="ip">{clean(cam.get("ip_address"), 45) or "no IP"}</span></div>',
        f'<div class="facts">{" · ".join(facts)}</div>',
    ]
    if isinstance(power, Mapping) and power.get("needs_visit"):
        lines.append(
            '<div class="visit">⚠ needs a visit: the power cycles allowed today did not '
            "bring it back</div>"
        )
    if why:
        lines.append(f'<div class="why">{clean(why)}</div>')
    for window, segs in zip(WINDOWS, timelines, strict=True):
        ticks = "".join(f"<span>{t}</span>" for t in window.ticks)
        lines.append(
            f'<div class="tl"><div class="tlh"><span>{window.label}</span>'
            f'<span class="up">{uptime_text(segs, window)}</span></div>'
            f"{timeline_svg(segs, now - window.seconds, window)}"
            f'<div class="axis">{ticks}</div></div>'
        )
    lines.append("</section>")
    return "\n".join(lines)


STYLE = """
:root{color-scheme:light}
body{margin:0;font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
 color:#212121;background:#fafafa}
header{padding:12px 16px;background:#263238;color:#eceff1}
header h1{margin:0 0 4px;font-size:20px}
header p{margin:2px 0;font-size:13px;overflow-wrap:anywhere}
main{padding:8px 12px;max-width:1100px;margin:0 auto}
.camera{background:#fff;border:1px solid #e0e0e0;border-radius:6px;margin:8px 0;
 padding:8px 12px}
.head{display:flex;flex-wrap:wrap;gap:4px 10px;align-items:baseline}
.badge{color:#fff;font-weight:600;padding:1px 8px;border-radius:4px;white-space:nowrap}
.name{font-weight:600;overflow-wrap:anywhere;unicode-bidi:isolate}
.ip{font-family:ui-monospace,monospace;color:#455a64}
.facts,.why{font-size:13px;color:#546e7a;overflow-wrap:anywhere}
.why{color:#8e2424}
.visit{color:#b71c1c;font-weight:600;font-size:14px}
.tl{margin-top:6px}
.tlh{display:flex;justify-content:space-between;flex-wrap:wrap;font-size:13px}
.tlh .up{color:#37474f}
svg.bar{display:block;width:100%;height:18px}
.axis{display:flex;justify-content:space-between;font-size:11px;color:#78909c}
.legend span{display:inline-block;width:10px;height:10px;margin:0 3px 0 8px}
footer{padding:8px 16px 16px;font-size:12px;color:#78909c;max-width:1100px;margin:0 auto}
"""


def render_page(
    status: Mapping[str, Any],
    timelines: Timelines,
    now: float,
    station: str = "",
) -> str:
    """The whole status page for one ``status`` result.

    ``timelines`` maps a camera id to its segments over each of :data:`WINDOWS` (the
    last 24 h and 7 d up to ``now``); a camera without them shows unknown time."""
    d = status.get("daemon") or {}
    cams = [c for c in status.get("cameras") or [] if isinstance(c, Mapping)]
    connected = sum(c.get("status") == "connected" for c in cams)
    refresh = refresh_seconds(d.get("interval_s"))
    facts = [f"pumaguard-heartbeat {clean(d.get('version'), 40)}"]
    if isinstance(d.get("started_at"), int | float):
        facts.append(f"up {duration(now - d['started_at'])}")
    facts.append(f"{clean(d.get('mode') or 'standalone', 20)} mode")
    if d.get("enabled", True):
        method = clean(d.get("effective_method") or d.get("method"), 40)
        facts.append(f"{method} every {clean(d.get('interval_s'), 20)}s")
    else:
        facts.append("monitoring disabled")
    # any local user may read the listener: the settings' own errors (which quote the bad
    # value, perhaps of a secret) are named only; `pumaguard-hb status` tells group members
    problems = [text for key, text in PROBLEMS.items() if d.get(key)]
    webui = d.get("webui")
    if isinstance(webui, Mapping) and webui.get("problem"):
        problems.append("the PumaGuard web UI is not answering (pumaguard-hb status tells why)")
    hist = d.get("history")
    if isinstance(hist, Mapping) and not hist.get("available"):
        problems.append("history unavailable: timelines are grey (pumaguard-hb status tells why)")
    title = f"{connected}/{len(cams)} cameras connected"
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{refresh}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{title} – PumaGuard heartbeat</title>",
        f"<style>{STYLE}</style></head><body>",
        "<header><h1>PumaGuard cameras</h1>",
        f'<p class="summary">{title}'
        + (f" · station <bdi>{clean(station, MAX_NAME)}</bdi>" if station else "")
        + "</p>",
        f"<p>{' · '.join(facts)}</p>",
        f"<p>generated {utc(now)} · refreshes every {refresh}s</p>",
        *(f'<p class="problem">⚠ {p}</p>' for p in problems),
        "</header><main>",
    ]
    if not cams:
        body.append('<p class="none">No cameras yet.</p>')
    for cam in cams:
        segs = timelines.get(str(cam.get("id")))
        if segs is None or len(segs) != len(WINDOWS):
            segs = [[Segment(now - w.seconds, now, UNKNOWN)] for w in WINDOWS]
        body.append(_camera(cam, segs, now))
    legend = "".join(f'<span style="background:{BAR[s]}"></span>{s}' for s in (UP, DOWN, UNKNOWN))
    body += [
        "</main>",
        f'<footer><div class="legend">{legend}</div>'
        "Uptime counts only observed time: time the daemon was not running or had no "
        "result yet is unknown (grey), neither up nor down. Machine-readable: "
        '<a href="/metrics">/metrics</a>.</footer>',
        "</body></html>",
    ]
    return "\n".join(body) + "\n"


def _timelines(history: History | None, ids: Sequence[str], now: float) -> Timelines:
    if history is None:
        return {}
    return {
        cid: [history.camera_segments(cid, now - w.seconds, now) for w in WINDOWS] for cid in ids
    }


class Viewed(Protocol):
    """What the page reads of the monitor: its status view and its history."""

    def status(self) -> dict[str, Any]: ...
    @property
    def history(self) -> History | None: ...


class StatusPage:
    """The status page of a running monitor, for the listener's ``GET /``.

    The status is taken on the event loop (it reads the station); the timelines and the
    HTML are built in a thread, so that a large station's page never holds up probing.
    Requests at the same time share one build, and a page is reused for ``max_age``
    seconds (the page refreshes itself every 15 s at most). The metrics listener, which
    keeps each page until the figures change (metrics.Freshness), passes 0."""

    MAX_AGE = 1.0

    def __init__(self, monitor: Viewed, max_age: float = MAX_AGE) -> None:
        self.monitor = monitor
        self.max_age = max_age
        self._page: tuple[float, str] | None = None
        self._building: asyncio.Future[str] | None = None

    async def __call__(self) -> str:
        if self._page is not None and time.monotonic() - self._page[0] < self.max_age:
            return self._page[1]
        if self._building is not None and self._building.done():
            self._building = None  # finished while nobody waited: it may be old
        if self._building is None:
            now = time.time()
            result = self.monitor.status()
            hist = self.monitor.history
            result["daemon"]["history"] = (
                hist.info()
                if hist is not None
                else {"available": False, "problem": "history not configured"}
            )
            ids = [str(c["id"]) for c in result["cameras"]]
            label = (result["daemon"].get("settings") or {}).get("camera_heartbeat_station")
            station = label if isinstance(label, str) and label else socket.gethostname()
            self._building = asyncio.ensure_future(
                asyncio.to_thread(self._build, result, hist, ids, now, station)
            )
        building = self._building
        try:
            page = await asyncio.shield(building)
        finally:
            if building.done() and self._building is building:
                self._building = None
        self._page = (time.monotonic(), page)
        return page

    @staticmethod
    def _build(
        result: dict[str, Any], hist: History | None, ids: list[str], now: float, station: str
    ) -> str:
        return render_page(result, _timelines(hist, ids, now), now, station)
