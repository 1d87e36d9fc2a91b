"""The status page at ``/`` of the metrics listener: the HTML (pure: escaping, where a down
span is drawn, bounded size) and the real thing — a real daemon in a network namespace this
test creates, its loopback cameras, a prepared history with a known outage, the page
fetched by a real headless Chromium in the same namespace (no route out), and its
screenshot decoded here (stdlib PNG) to count camera rows and find the red span.

Set PUMAGUARD_HB_DOCS_SCREENSHOT=1 to copy the desktop screenshot to docs/status-page.png;
the real test checks that the docs show the page as it renders now."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import REPO, Daemon, camera, wait_for, write_settings
from netlab import Lab, lab_fixture, requires_root_netns, run_in_netns

from pumaguard_hb.model.uptime import DAY, WEEK, Segment, segments
from pumaguard_hb.outputs.page import (
    BADGE,
    BAR,
    WINDOWS,
    StatusPage,
    bins,
    clean,
    refresh_seconds,
    render_page,
)

H = 3600.0
DOCS_PNG = REPO / "docs" / "status-page.png"
lab = lab_fixture()

# -- PNG, decoded with the standard library ----------------------------------------------------


@dataclass
class Image:
    width: int
    height: int
    rows: list[bytes]  # RGB, 3 bytes a pixel

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        r = self.rows[y]
        return r[3 * x], r[3 * x + 1], r[3 * x + 2]


def decode_png(data: bytes) -> Image:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) as RGB rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + n
    assert ihdr is not None
    width, height, depth, ctype, _c, _f, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    rows: list[bytes] = []
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        else:
            assert kind == 0, f"bad PNG filter {kind}"
        prev = line
        rgb = bytes(line) if bpp == 3 else bytes(b for i, b in enumerate(line) if i % 4 != 3)
        rows.append(rgb)
    return Image(width, height, rows)


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@dataclass
class Bar:
    y: int  # middle row
    x0: int
    x1: int  # inclusive
    red: list[int]  # x of the red pixels in the middle row
    grey: list[int]

    def span(self, xs: list[int]) -> tuple[float, float]:
        """Where ``xs`` start and end, as fractions of the bar's width."""
        w = self.x1 - self.x0 + 1
        return (min(xs) - self.x0) / w, (max(xs) + 1 - self.x0) / w


def bands(img: Image, colours: set[tuple[int, int, int]], min_run: int) -> list[list[int]]:
    """Groups of consecutive pixel rows holding at least ``min_run`` pixels of ``colours``
    (Chromium draws CSS colours exactly: no tolerance needed)."""
    out: list[list[int]] = []
    for y in range(img.height):
        count = sum(1 for x in range(0, img.width, 2) if img.pixel(x, y) in colours)
        if count * 2 >= min_run:
            if out and out[-1][-1] == y - 1:
                out[-1].append(y)
            else:
                out.append([y])
    return out


def timeline_bars(img: Image) -> list[Bar]:
    """Every timeline in the screenshot, top to bottom."""
    colours = {rgb(c) for c in BAR.values()}
    found = []
    for band in bands(img, colours, img.width // 2):
        y = band[len(band) // 2]
        xs = [x for x in range(img.width) if img.pixel(x, y) in colours]
        red = [x for x in xs if img.pixel(x, y) == rgb(BAR["down"])]
        grey = [x for x in xs if img.pixel(x, y) == rgb(BAR["unknown"])]
        found.append(Bar(y, min(xs), max(xs), red, grey))
    return found


def badges(img: Image) -> list[str]:
    """The state badge of each camera row, top to bottom ("connected", "disconnected")."""
    named = {state: rgb(colour) for state, colour in BADGE.items() if state}
    out = []
    for band in bands(img, set(named.values()), 20):
        y = band[len(band) // 2]
        counts = {s: sum(img.pixel(x, y) == c for x in range(img.width)) for s, c in named.items()}
        out.append(max(counts, key=lambda s: counts[s]))
    return out


# -- pure tests of the page --------------------------------------------------------------------

NOW = 1_795_000_000.0
HOSTILE = '<script>alert("x")</script>\'&\u202e\u200f' + "ש" * 10 + "A" * 5000


def status(cams: list[dict[str, Any]], interval: float = 60) -> dict[str, Any]:
    return {
        "daemon": {
            "version": "0.1.0",
            "started_at": NOW - 3 * DAY,
            "mode": "standalone",
            "method": "tcp",
            "effective_method": "tcp",
            "interval_s": interval,
            "enabled": True,
            "history": {"available": True},
        },
        "cameras": cams,
    }


def cam(cid: str, name: str, state: str = "connected", **extra: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "hostname": name,
        "ip_address": "192.168.52.101",
        "status": state,
        "since": NOW - 6 * H,
        "last_seen": "2026-11-17T08:26:20Z",
        **extra,
    }


def timelines(changes: list[tuple[float, str]], gaps: Any = ()) -> list[list[Segment]]:
    return [segments(changes, list(gaps), NOW - w.seconds, NOW) for w in WINDOWS]


def test_hostile_text_is_escaped_and_bounded() -> None:
    page = render_page(
        status([cam("aa:01", HOSTILE, reason=HOSTILE, ip_address='"><b>')]),
        {},
        NOW,
        station="<i>st</i>",
    )
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#x27;&amp;" in page
    assert "\u202e" not in page and "\u200f" not in page  # bidi controls dropped
    assert "ש" * 10 in page  # right-to-left letters are kept (isolated in <bdi>)
    assert "A" * 25 not in page and "A" * 24 + "…" in page  # a huge name is cut at 64
    assert len(page) < 12000
    assert clean("a\x00b\x1bc\nd") == "abc d"
    # times no calendar holds (a hostile settings file's last_seen, a broken clock)
    odd = render_page(
        status([cam("aa:02", "x", since=1e300, last_seen="9999-12-31T23:59:59Z")]), {}, NOW
    )
    assert "since ?" in odd and "last seen 0s ago (9999-12-31 23:59 UTC)" in odd


def test_problems_are_named_never_quoted() -> None:
    # any local user may read the listener: a settings error quoting a secret stays out
    st = status([])
    st["daemon"]["settings_error"] = "camera_heartbeat_webhooks: bad URL https://x/hook?k=s3cret"
    st["daemon"]["webui"] = {"problem": "http://u:pw@127.0.0.1:5000 refused"}
    st["daemon"]["history"] = {"available": False, "problem": "cannot use /var/lib/x"}
    page = render_page(st, {}, NOW)
    assert "s3cret" not in page and "pw@" not in page and "/var/lib/x" not in page
    assert "settings error: running on the last good settings" in page
    assert "web UI is not answering" in page and "history unavailable" in page


class FakeMonitor:
    """What StatusPage reads of a monitor: status() and history."""

    history = None

    def __init__(self) -> None:
        self.calls = 0

    def status(self) -> dict[str, Any]:
        self.calls += 1
        return status([cam("aa:01", f"Gate-{self.calls}")])


def test_status_page_shares_one_build_and_reuses_it_briefly() -> None:
    monitor = FakeMonitor()
    page = StatusPage(monitor)  # type: ignore[arg-type]

    async def go() -> tuple[list[str], str]:
        first = await asyncio.gather(*(page() for _ in range(5)))
        await asyncio.sleep(page.MAX_AGE + 0.2)
        return first, await page()

    first, later = asyncio.run(go())
    assert all("Gate-1" in p for p in first) and monitor.calls == 2
    assert "Gate-2" in later
    assert "nothing observed in 24 h" in later  # no history: grey, honest


def test_page_head_refresh_viewport_and_no_script() -> None:
    page = render_page(status([], interval=3600), {}, NOW)
    assert '<meta http-equiv="refresh" content="300">' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "No cameras yet." in page and "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    assert [refresh_seconds(v) for v in (1, 60, 3600, None, True, float("inf"))] == [
        15,
        60,
        300,
        60,
        60,
        300,
    ]


def paths(page: str, section: int, window: str) -> dict[str, list[tuple[int, int]]]:
    """The boxes ``(first bin, count)`` of each state in one camera's timeline."""
    sec = page.split('<section class="camera"')[section + 1]
    svg = sec.split(f'data-window="{window}">')[1].split("</svg>")[0]
    out: dict[str, list[tuple[int, int]]] = {}
    for state, d in re.findall(r'<path class="(\w+)" fill="#\w+" d="([^"]*)"', svg):
        out[state] = [(int(a), int(b)) for a, b in re.findall(r"M(\d+),0h(\d+)v1h-\d+z", d)]
    return out


def test_a_down_span_is_drawn_where_it_was() -> None:
    # up 3 days ago, down from 10 h to 6 h ago, up since; the daemon was off 50..40 h ago
    changes = [(NOW - 3 * DAY, "connected"), (NOW - 10 * H, "disconnected")]
    changes.append((NOW - 6 * H, "connected"))
    page = render_page(
        status([cam("aa:01", "Gate"), cam("aa:02", "Creek")]),
        {"aa:01": timelines(changes, [(NOW - 50 * H, NOW - 40 * H)])},
        NOW,
    )
    day = paths(page, 0, "24 h")
    assert day["down"] == [(84, 24)]  # 10-minute bins: 14 h .. 18 h into the day
    assert day["up"] == [(0, 84), (108, 36)]
    assert "unknown" not in day
    week = paths(page, 0, "7 d")  # 1-hour bins
    assert week["unknown"] == [(0, 96), (118, 10)]  # before the history, and the gap
    assert week["down"] == [(158, 4)]
    assert week["up"] == [(96, 22), (128, 30), (162, 6)]
    sec = page.split('<section class="camera"')[1]
    assert "83.3% up of 24h observed (all)" in sec
    assert "93.5% up of 2d 14h observed (36%)" in sec  # 72 h - 10 h off = 62 h of 168
    # the camera without a history: one grey box over each window, nothing observed
    assert paths(page, 1, "24 h") == {"unknown": [(0, 144)]}
    assert "nothing observed in 24 h" in page.split('<section class="camera"')[2]


def test_bins_never_hide_a_short_outage() -> None:
    segs = [
        Segment(0.0, 100.0, "up"),
        Segment(100.0, 101.0, "down"),  # one second down inside a 10-unit bin
        Segment(101.0, 200.0, "up"),
    ]
    assert bins(segs, 0.0, 200.0, 20) == [(0, 10, "up"), (10, 1, "down"), (11, 9, "up")]
    # a bin mostly unknown with a sliver of up: unknown, not a claim of up
    assert bins([Segment(0, 9, "unknown"), Segment(9, 10, "up")], 0, 10, 1) == [(0, 1, "unknown")]


def test_many_flapping_cameras_stay_one_bounded_page() -> None:
    # 256 cameras (the DHCP bound), each changing state every 5 minutes for a week:
    # the history index keeps 2000 changes per camera
    changes = [
        (NOW - 2000 * 300 + i * 300, "connected" if i % 2 else "disconnected") for i in range(2000)
    ]
    segs = timelines(changes)
    cams = [cam(f"aa:{i:04x}", f"Microseven-{i}") for i in range(256)]
    t = time.perf_counter()
    page = render_page(status(cams), {c["id"]: segs for c in cams}, NOW)
    took = time.perf_counter() - t
    print(f"256 flapping cameras: {len(page)} bytes, built in {took:.2f}s")
    assert page.count('<section class="camera"') == 256
    for window in WINDOWS:  # at most one box per bin, whatever the number of changes
        boxes = sum(len(v) for v in paths(page, 0, window.label).values())
        assert boxes <= window.bins
    assert len(page) < 2_000_000


# -- the real thing ----------------------------------------------------------------------------

CAMERAS = [  # name, MAC, down now
    ("Microseven-Gate", "00:11:22:33:44:01", False),
    ("Microseven-Creek", "00:11:22:33:44:02", False),
    ("Reolink-Barn", "00:11:22:33:44:03", True),
    ('<script>alert("x")</script>&שער' + "N" * 80, "00:11:22:33:44:04", False),
]
CREEK = 1  # down from 10 h to 6 h ago in the prepared history


def check_screenshot(img: Image) -> None:
    """What a person sees: 4 camera rows, the third down now; the creek's red span."""
    assert badges(img) == ["connected", "connected", "disconnected", "connected"]
    bars = timeline_bars(img)
    assert len(bars) == 2 * len(CAMERAS), [(b.y, b.x0, b.x1) for b in bars]
    for b in bars:
        assert b.x1 < img.width - 4 and b.x1 - b.x0 > img.width * 0.6  # fits, and wide
    day, week = bars[2 * CREEK], bars[2 * CREEK + 1]
    start, end = day.span(day.red)
    assert abs(start - 14 / 24) < 1.6 / 144 and abs(end - 18 / 24) < 1.6 / 144, (start, end)
    assert len(day.red) >= 0.95 * (end - start) * (day.x1 - day.x0)  # one solid span
    start, end = week.span(week.red)
    assert abs(start - (WEEK - 10 * H) / WEEK) < 1.6 / 168, start
    assert abs(end - (WEEK - 6 * H) / WEEK) < 1.6 / 168, end
    g0, g1 = week.span(week.grey)  # nothing known before the history began 3 days ago
    assert g0 < 0.01 and abs(g1 - 4 / 7) < 1.6 / 168, (g0, g1)
    for i in (0, 3):  # never down
        assert not bars[2 * i].red and not bars[2 * i + 1].red
    barn = bars[4]  # down only since the daemon's first check, a moment ago
    assert barn.red and barn.span(barn.red)[0] > 0.98


def prepared_history(path: Path, now: float) -> None:
    """A history: the daemon ran from 3 days ago until a moment ago; every camera up all
    along but the creek, down from 10 h to 6 h ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [{"event": "daemon_start", "at": now - 3 * DAY}]
    for i, (name, mac, _down) in enumerate(CAMERAS):
        lines.append(change(mac, name, None, "connected", now - 3 * DAY + 1 + i))
    mac, name = CAMERAS[CREEK][1], CAMERAS[CREEK][0]
    lines.append(change(mac, name, "connected", "disconnected", now - 10 * H))
    lines.append(change(mac, name, "disconnected", "connected", now - 6 * H))
    lines.append({"event": "daemon_stop", "at": now - 5})
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))


def change(mac: str, name: str, old: str | None, new: str, at: float) -> dict[str, Any]:
    return {
        "camera_id": mac,
        "hostname": name,
        "ip_address": "",
        "mac_address": mac,
        "old": old,
        "new": new,
        "at": at,
        "reason": "test",
        "method": "tcp",
        "rtt_ms": None,
    }


def fetch(lab: Lab, url: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    """An HTTP request from inside the lab's prober namespace."""

    def go() -> tuple[int, dict[str, str], str]:
        req = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read().decode()

    return run_in_netns(lab.prober, go)


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        print("chromium not installed: apt-get install chromium (./dev test installs it)")
        pytest.skip("chromium not installed (Debian package chromium)")
    return path


def run_chromium(lab: Lab, tmp: Path, args: list[str], timeout: float = 90) -> str:
    """Headless Chromium in the prober namespace (no route out), with a private profile;
    its whole process group is killed if it does not finish in time."""
    profile = tmp / f"chromium-{time.monotonic_ns()}"
    profile.mkdir()
    argv = [
        chromium(),
        "--headless",
        "--no-sandbox",  # as root
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *args,
    ]
    env = {"HOME": str(profile), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    proc = lab.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        raise AssertionError(f"chromium did not finish within {timeout}s") from None
    finally:
        with contextlib.suppress(ProcessLookupError):  # renderers left behind, if any
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return bytes(out).decode(errors="replace")


@pytest.fixture
def station(lab: Lab, tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    """A real daemon in the lab with 4 cameras (the barn refuses: down) and the prepared
    history; yields it and the page's URL inside the lab."""
    chromium()
    entries = []
    for name, mac, down in CAMERAS:
        ip = lab.add_camera_ip("answering")
        if not down:
            lab.tcp_listener(ip, 80)
        entries.append(camera(name, ip, mac, status="connected"))
    d = Daemon(tmp_path)
    prepared_history(tmp_path / "state" / "history.jsonl", time.time())
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 3600,
            "camera-heartbeat-tcp-port": 80,
            "camera-heartbeat-tcp-timeout": 2,
            "camera-heartbeat-metrics-listen": "127.0.0.1:9469",
            "cameras": entries,
        },
    )
    d.start(prefix=lab.command([]))
    try:
        d.call("check_now")
        url = "http://127.0.0.1:9469/"
        wait_for(lambda: _answers(lab, url), timeout=15)
        yield d, url
    finally:
        d.stop()


def _answers(lab: Lab, url: str) -> bool:
    try:
        return fetch(lab, url)[0] == 200
    except OSError:
        return False


@pytest.mark.netns
@requires_root_netns
def test_status_page_in_a_real_chromium(
    lab: Lab, station: tuple[Daemon, str], tmp_path: Path
) -> None:
    d, url = station
    code, headers, body = fetch(lab, url)
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == (
        "default-src 'none'; style-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert '<meta http-equiv="refresh" content="300">' in body  # interval 3600 s: at most 300
    assert fetch(lab, url + "index.html")[2].startswith("<!DOCTYPE html>")
    head = fetch(lab, url, "HEAD")
    assert head[0] == 200 and head[2] == "" and int(head[1]["Content-Length"]) > 1000
    assert fetch(lab, url, "POST")[0] == 405
    assert fetch(lab, url + "metrics")[0] == 200

    # the DOM as Chromium built it, at a phone's width
    dom = run_chromium(lab, tmp_path, ["--window-size=412,915", "--dump-dom", url])
    sections = re.findall(r'<section class="camera" data-camera="([^"]+)" data-state="(\w+)"', dom)
    assert sections == [(mac, "disconnected" if down else "connected") for _, mac, down in CAMERAS]
    assert "<script" not in dom and '&lt;script&gt;alert("x")&lt;/script&gt;&amp;שער' in dom
    creek = dom.split('<section class="camera"')[CREEK + 1]
    assert "83.3% up of 24h observed (99%)" in html.unescape(creek)
    assert "3d observed (42%)" in creek  # the history began 3 days ago
    barn = dom.split('<section class="camera"')[3]
    assert "tcp" in barn and "refused" in barn  # why it is down
    assert "99.9% up of 3d observed" in barn  # a second down is not 100%

    # what a person sees: a desktop and a phone (tall enough to hold the whole page)
    shot_desktop = tmp_path / "desktop.png"
    for size, name in (("1000,1000", "desktop.png"), ("412,1700", "phone.png")):
        shot = tmp_path / name
        run_chromium(lab, tmp_path, [f"--window-size={size}", f"--screenshot={shot}", url])
        img = decode_png(shot.read_bytes())
        assert (img.width, img.height) == tuple(int(v) for v in size.split(","))
        check_screenshot(img)
    if os.environ.get("PUMAGUARD_HB_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "desktop.png", DOCS_PNG)
    # the docs show the page as it renders now (the screenshot just taken), not as it once
    # did: same size, same rows and badges, the bars where they are now
    assert_same_page(decode_png(DOCS_PNG.read_bytes()), decode_png(shot_desktop.read_bytes()))
    assert DOCS_PNG.stat().st_size < 200_000
    assert d.proc is not None and d.proc.poll() is None


def assert_same_page(docs: Image, now: Image) -> None:
    """``docs`` (docs/status-page.png) shows what ``now`` (this run's desktop screenshot)
    shows: the same rows, badges and timelines, within a few pixels; else the page changed
    and the docs' picture is stale (PUMAGUARD_HB_DOCS_SCREENSHOT=1 ./dev test renews it)."""
    stale = "docs/status-page.png is stale: run with PUMAGUARD_HB_DOCS_SCREENSHOT=1 to renew it"
    assert (docs.width, docs.height) == (now.width, now.height), stale
    check_screenshot(docs)
    assert badges(docs) == badges(now), stale
    then, current = timeline_bars(docs), timeline_bars(now)
    assert len(then) == len(current), stale
    for a, b in zip(then, current, strict=True):
        assert abs(a.y - b.y) <= 3 and abs(a.x0 - b.x0) <= 3 and abs(a.x1 - b.x1) <= 3, (
            stale,
            (a.y, a.x0, a.x1),
            (b.y, b.x0, b.x1),
        )
