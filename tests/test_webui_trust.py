"""Web UI mode and trust (issue 20, items 3, 6, 8 and 11): what the web UI (or whatever
answers on its port) cannot do to the daemon, and monitoring with the web UI down at start.

- Item 3: a web UI camera record gives a camera's hostname, IP and MAC only: per-camera
  probe overrides in it (or in the shared file the daemon reads at start) are ignored,
  said once per camera and key; the daemon's own file (``camera_heartbeat_cameras``) is
  where overrides come from.
- Item 8: publishing runs beside the sweeps: a web UI that takes seconds per request
  never holds up a sweep, and once it answers it gets the latest state.
- Item 11: with nothing on the web UI's port at start, the cameras of the shared file (or
  of the list the web UI gave last, kept in the state folder) are probed from the first
  sweep; the real web UI started later shows the results.
- Item 6: more than MAX_CAMERAS cameras from the web UI: the first MAX_CAMERAS are
  monitored, one clear error.

The real PumaGuard web UI (tests/webui_harness.py) is used wherever it can show the
behaviour. Three tests use a small stand-in HTTP server on loopback instead, each for a
reason the real one cannot give: the real web UI keeps exactly five fields per camera
(so it can never serve a record with overrides: only another program on its port, or
another version, can); its answers cannot be slowed down on demand (item 8 needs to
control the timing of each answer); and putting 4097 cameras into it takes 4097 saves of
its file.

Intervals are 1 s; waits are bounded and generous (a loaded 2-core machine); nothing
asserts how fast something happened.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Daemon, wait_for
from helpers_cli import Listeners
from webui_harness import (
    WebUIServer,
    camera_record,
    webui_factory,
    webui_settings,
    write_webui_settings,
)

from pumaguard_hb.model.checks import MAX_CAMERAS

__all__ = ["webui_factory"]  # the fixture, imported for pytest

UP = ("Microseven-Gate", "127.0.62.2", "aa:bb:cc:62:00:02")
DOWN = ("Microseven-Creek", "127.0.62.3", "aa:bb:cc:62:00:03")  # nothing listens: refused
SIDE = ("Microseven-Side", "127.0.62.4", "aa:bb:cc:62:00:04")  # listens on its own port only
OLD = "2024-01-15T14:32:15Z"
WAIT = 60.0


# -- a stand-in for the web UI (only where the real one cannot show it; see above) ----------


class StandIn:
    """A web UI API on loopback: ``GET /api/dhcp/cameras`` from ``records``, ``POST
    /api/dhcp/event`` applied to them as the real web UI does; ``slow``: each event is held
    for ``hold`` seconds (under the daemon's 5 s deadline) and then answered, unapplied."""

    def __init__(self, records: list[dict[str, Any]], hold: float = 4.0) -> None:
        self.records = {r["mac_address"]: dict(r) for r in records}
        self.extra: list[dict[str, Any]] = []  # more records, served after ``records``
        self.hold = hold
        self.slow = False
        self.lock = threading.Lock()
        self.held: int | None = None  # id of the event request being held, if one is
        self.events: list[tuple[bool, dict[str, Any]]] = []  # (slow when it came, body)
        self.list_calls = 0
        self._next_id = 0
        self._stop = threading.Event()
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path != "/api/dhcp/cameras":
                    self._reply(200, {"status": "running"})
                    return
                with stand_in.lock:
                    stand_in.list_calls += 1
                    cams = [dict(r) for r in stand_in.records.values()] + stand_in.extra
                self._reply(200, {"cameras": cams, "count": len(cams)})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                stand_in.event(body)
                self._reply(200, {"status": "success", "data": {"device_type": "camera"}})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self.thread.start()

    def event(self, body: dict[str, Any]) -> None:
        with self.lock:
            slow = self.slow
            self.events.append((slow, body))
            if slow:
                self._next_id += 1
                me = self.held = self._next_id
        if slow:
            self._stop.wait(self.hold)  # bounded; close() ends it at once
            with self.lock:
                if self.held == me:
                    self.held = None
            return
        with self.lock:
            record = self.records.get(body.get("mac_address"))
            if record is not None and body.get("action") in ("add", "old", "del"):
                record["status"] = "disconnected" if body["action"] == "del" else "connected"
                record["last_seen"] = body.get("timestamp")

    def record(self, mac: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.records[mac])

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def stand_ins() -> Iterator[Callable[..., StandIn]]:
    made: list[StandIn] = []

    def make(records: list[dict[str, Any]], **kw: Any) -> StandIn:
        s = StandIn(records, **kw)
        made.append(s)
        return s

    try:
        yield make
    finally:
        for s in made:
            s.close()


@pytest.fixture
def listeners() -> Iterator[Listeners]:
    made = Listeners()
    try:
        yield made
    finally:
        made.close_all()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """``make(shared, url, own_doc)``: a daemon in web UI mode (own config file written)."""
    made: list[Daemon] = []

    def make(shared: Path, url: str, own: dict[str, Any], wait: bool = True) -> Daemon:
        own_path = tmp_path / "heartbeat.yaml"
        own_path.write_text(yaml.safe_dump(own, sort_keys=False))
        os.chmod(own_path, 0o600)
        d = Daemon(tmp_path, shared)
        made.append(d)
        return d.start(args=["--webui", url, "--config", str(own_path)], wait=wait)

    try:
        yield make
    finally:
        for d in made:
            d.stop()


def own_doc(port: int, **more: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "camera_heartbeat_interval": 1,
        "camera_heartbeat_method": "tcp",
        "camera_heartbeat_tcp_port": port,
        "camera_heartbeat_tcp_timeout": 1,
    }
    doc.update(more)
    return doc


def status(d: Daemon) -> dict[str, Any]:
    found: dict[str, Any] = d.call("status")
    return found


def ours(d: Daemon) -> dict[str, dict[str, Any]]:
    return {c["mac_address"]: c for c in status(d)["cameras"] if c.get("mac_address")}


def sweeps(d: Daemon) -> int:
    return int(status(d)["daemon"]["sweeps"])


def wait_sweeps(d: Daemon, n: int) -> None:
    target = sweeps(d) + n
    wait_for(lambda: sweeps(d) >= target, WAIT, 0.2)


class Trap:
    """A listener that counts the connections it gets: where a hostile record points."""

    def __init__(self, ip: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def traps() -> Iterator[Callable[[str], Trap]]:
    made: list[Trap] = []

    def make(ip: str) -> Trap:
        t = Trap(ip)
        made.append(t)
        return t

    try:
        yield make
    finally:
        for t in made:
            t.close()


def ignored_lines(d: Daemon, key: str) -> list[str]:
    return [ln for ln in d.log().splitlines() if f"{key} ignored" in ln]


# -- item 3: records from the web UI do not steer the probes --------------------------------


def test_a_web_ui_record_cannot_point_a_probe_elsewhere(
    tmp_path: Path, stand_ins: Any, listeners: Listeners, daemons: Any, traps: Any
) -> None:
    """An attacker edits UP's record (anybody on the network can, through the web UI or
    something answering on its port) to probe their port and path: ignored, said once per
    camera and key; the camera is probed as the daemon's own file says. SIDE's override in
    our own file (camera_heartbeat_cameras) is honoured: the trusted way."""
    port = listeners.open_same_port([UP[1]])
    _, side_port = listeners.open(SIDE[1])
    trap = traps(UP[1])
    hostile = camera_record(*UP) | {
        "heartbeat_port": trap.port,
        "heartbeat-method": "http",
        "heartbeat_path": "/steal?x=1",
    }
    web = stand_ins([hostile, camera_record(*SIDE)])
    shared = write_webui_settings(tmp_path / "pumaguard-settings.yaml", webui_settings([]))
    own = own_doc(port, camera_heartbeat_cameras={SIDE[2]: {"heartbeat_port": side_port}})
    d = daemons(shared, web.url, own)
    wait_for(lambda: ours(d).get(UP[2], {}).get("status") == "connected", WAIT, 0.2)
    wait_for(lambda: ours(d).get(SIDE[2], {}).get("status") == "connected", WAIT, 0.2)
    calls = web.list_calls
    wait_for(lambda: web.list_calls >= calls + 3, WAIT, 0.2)  # the record read again, 3 times
    wait_sweeps(d, 2)
    assert trap.hits == 0
    cam = ours(d)[UP[2]]
    assert cam["overrides"] == {} and cam["method"] == "tcp", cam
    for key in ("heartbeat_port", "heartbeat-method", "heartbeat_path"):
        lines = ignored_lines(d, key)
        assert len(lines) == 1, (key, lines)  # once, not once per listing
        assert "Microseven-Gate" in lines[0] and "camera_heartbeat_cameras" in lines[0]


# -- item 8: a slow web UI never delays a sweep ---------------------------------------------


def test_a_slow_web_ui_does_not_delay_the_sweeps_and_gets_the_latest_state(
    tmp_path: Path, stand_ins: Any, listeners: Listeners, daemons: Any
) -> None:
    """Each report is held 4 s by the web UI (and not taken, so the daemon keeps sending
    at every listing). Were publishing inside the sweep, no sweep could end while a report
    is held; beside it, sweeps go on (interval 1 s) while one is. Then UP goes down, the web UI
    answers again: what it gets for UP is the latest state (down), not the backlog."""
    port = listeners.open_same_port([UP[1]])
    # both shown connected, seen long ago: UP's last_seen is due for a refresh, DOWN is down
    web = stand_ins(
        [camera_record(*UP, status="connected"), camera_record(*DOWN, status="connected")]
    )
    web.slow = True
    shared = write_webui_settings(tmp_path / "pumaguard-settings.yaml", webui_settings([]))
    d = daemons(shared, web.url, own_doc(port))
    wait_for(lambda: web.held is not None, WAIT, 0.05)

    # (held request, sweeps) samples taken while that one request was held
    seen: dict[int, list[int]] = {}
    deadline = time.monotonic() + 90
    best = 0
    while best < 2 and time.monotonic() < deadline:
        before = web.held
        n = sweeps(d)
        after = web.held
        if before is not None and before == after:
            seen.setdefault(before, []).append(n)
            best = max(best, max(seen[before]) - min(seen[before]))
        time.sleep(0.1)
    spans = {h: (min(n), max(n)) for h, n in seen.items()}
    assert best >= 2, f"sweeps (first, last) while each report was held: {spans}"
    assert ours(d)[UP[2]]["status"] == "connected"

    listeners.close((UP[1], port))  # UP goes down while the web UI is still slow
    wait_for(lambda: ours(d)[UP[2]]["status"] == "disconnected", WAIT, 0.2)
    with web.lock:
        web.slow = False
    wait_for(lambda: web.record(UP[2])["status"] == "disconnected", WAIT, 0.2)
    wait_for(lambda: web.record(DOWN[2])["status"] == "disconnected", WAIT, 0.2)
    wait_sweeps(d, 2)
    with web.lock:
        after_release = [b for slow, b in web.events if not slow]
    up_actions = [b["action"] for b in after_release if b["mac_address"] == UP[2]]
    assert up_actions and set(up_actions) == {"del"}, up_actions  # the latest state only
    assert web.record(UP[2])["status"] == "disconnected"
    assert status(d)["daemon"]["webui"]["problem"] is None


# -- item 11: the web UI down at start -----------------------------------------------------


def test_web_ui_down_at_start_the_shared_files_cameras_are_probed_from_the_first_sweep(
    tmp_path: Path,
    webui_factory: Callable[..., WebUIServer],
    listeners: Listeners,
    daemons: Any,
    traps: Any,
) -> None:
    """Nothing listens on the web UI's port; the shared file lists UP and DOWN. They are
    probed in the first sweep (read-only: the file is untouched); a probe override planted
    in the shared file is ignored like one from the web UI. Then the real web UI starts and
    shows what the daemon observed."""
    port = listeners.open_same_port([UP[1]])
    trap = traps(UP[1])
    planted = camera_record(*UP, status="disconnected", last_seen=OLD) | {
        "heartbeat_port": trap.port
    }
    shared = write_webui_settings(
        tmp_path / "pumaguard-settings.yaml",
        webui_settings([planted, camera_record(*DOWN, status="connected", last_seen=OLD)]),
    )
    before = shared.read_bytes()
    web = webui_factory(shared, start=False)
    d = daemons(shared, web.url, own_doc(port))
    wait_for(lambda: sweeps(d) >= 1, WAIT, 0.1)
    st = status(d)
    assert st["daemon"]["webui"]["reachable"] is not True
    cams = {c["mac_address"]: c for c in st["cameras"]}
    assert set(cams) == {UP[2], DOWN[2]}
    assert all(c["checked_at"] is not None for c in cams.values()), cams  # in the first sweep
    assert st["daemon"]["webui"]["cameras_from"] == str(shared)
    assert f"monitoring the 2 cameras listed in {shared}" in d.log()
    wait_for(lambda: ours(d)[UP[2]]["status"] == "connected", WAIT, 0.2)
    wait_for(lambda: ours(d)[DOWN[2]]["status"] == "disconnected", WAIT, 0.2)
    assert trap.hits == 0
    assert len(ignored_lines(d, "heartbeat_port")) == 1
    assert shared.read_bytes() == before  # read-only

    web.start()  # the web UI comes up late: it shows our results
    wait_for(lambda: web.cameras_by_mac().get(UP[2], {}).get("status") == "connected", WAIT, 0.2)
    down = wait_for(
        lambda: (c := web.cameras_by_mac().get(DOWN[2])) and c["status"] == "disconnected" and c,
        WAIT,
        0.2,
    )
    assert down["last_seen"] == OLD  # the last good contact kept
    wait_for(lambda: status(d)["daemon"]["webui"]["cameras_from"] == "web UI", WAIT, 0.2)


def test_web_ui_down_at_start_the_cached_list_is_probed_from_the_first_sweep(
    tmp_path: Path,
    webui_factory: Callable[..., WebUIServer],
    listeners: Listeners,
    daemons: Any,
) -> None:
    """Run 1: the web UI gives its list; the daemon keeps it in its state folder (0600,
    rewritten only when the list changes). Run 2 after a power cut that left the web UI's
    file empty (it truncates, then writes): the web UI cannot start, nothing is on its
    port, the shared file lists nothing; the cached cameras are probed from the first
    sweep. Then the web UI is repaired and started: it shows the results."""
    port = listeners.open_same_port([UP[1]])
    cameras = [
        camera_record(*UP, status="disconnected", last_seen=OLD),
        camera_record(*DOWN, status="connected", last_seen=OLD),
    ]
    shared = write_webui_settings(tmp_path / "pumaguard-settings.yaml", webui_settings(cameras))
    web = webui_factory(shared)
    d = daemons(shared, web.url, own_doc(port))
    wait_for(lambda: web.cameras_by_mac()[UP[2]]["status"] == "connected", WAIT, 0.2)
    cache = tmp_path / "state" / "webui-cameras.json"
    wait_for(cache.exists, WAIT, 0.2)
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    assert {c["mac_address"] for c in json.loads(cache.read_text())["cameras"]} == {
        UP[2],
        DOWN[2],
    }
    wait_for(lambda: status(d)["daemon"]["webui"]["reports"] >= 2, WAIT, 0.2)
    wait_sweeps(d, 2)
    written = os.stat(cache).st_mtime_ns
    wait_sweeps(d, 3)  # nothing changed in the list: not rewritten
    assert os.stat(cache).st_mtime_ns == written
    d.stop()
    web.stop()

    shared.write_bytes(b"")  # the power cut, between the web UI's truncate and its write
    d = daemons(shared, web.url, own_doc(port))
    wait_for(lambda: sweeps(d) >= 1, WAIT, 0.1)
    st = status(d)
    cams = {c["mac_address"]: c for c in st["cameras"]}
    assert set(cams) == {UP[2], DOWN[2]}, st
    assert all(c["checked_at"] is not None for c in cams.values()), cams
    assert st["daemon"]["webui"]["cameras_from"] == str(cache)
    assert shared.read_bytes() == b""  # never written by us
    wait_for(lambda: ours(d)[UP[2]]["status"] == "connected", WAIT, 0.2)

    write_webui_settings(shared, webui_settings(cameras))  # repaired from a backup
    web.start()
    wait_for(lambda: web.cameras_by_mac()[UP[2]]["status"] == "connected", WAIT, 0.2)
    wait_for(lambda: web.cameras_by_mac()[DOWN[2]]["status"] == "disconnected", WAIT, 0.2)


# -- item 6: at most MAX_CAMERAS cameras from the web UI -------------------------------------


def test_more_than_max_cameras_from_the_web_ui_is_one_clear_error(
    tmp_path: Path, stand_ins: Any, listeners: Listeners, daemons: Any
) -> None:
    """4097 records (no IP: listed, not probed, so the test stays light): the first 4096
    are monitored, one ERROR line however many times the list is read, shown in status."""
    port = listeners.open_same_port([UP[1]])
    web = stand_ins([camera_record(*UP)])
    web.extra = [
        {"hostname": f"Reolink-{i}", "mac_address": f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}"}
        for i in range(MAX_CAMERAS)
    ]
    shared = write_webui_settings(tmp_path / "pumaguard-settings.yaml", webui_settings([]))
    d = daemons(shared, web.url, own_doc(port))
    d.expect(allow=[r"lists 4097 cameras: at most 4096 are monitored"])
    wait_for(lambda: status(d)["daemon"]["webui"]["list_problem"], WAIT, 0.5)
    calls = web.list_calls
    wait_for(lambda: web.list_calls >= calls + 3, WAIT, 0.5)
    st = status(d)
    assert st["summary"]["total"] == MAX_CAMERAS
    assert UP[2] in {c["mac_address"] for c in st["cameras"]}  # the first ones are kept
    lines = [ln for ln in d.log().splitlines() if "lists 4097 cameras" in ln]
    assert len(lines) == 1, lines
    assert "ERROR" in lines[0] and f"at most {MAX_CAMERAS}" in lines[0]
