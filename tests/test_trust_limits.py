"""Nothing another party controls freezes or grows the daemon (issue 20, items 6 and 9).

As the attacker would: idle and slow-drip connections to the metrics listener (any local
user may connect to it), scrapes hammering it between two sweeps, and cameras that come
and go without end. Real daemon processes, real sockets, loopback only.
"""

from __future__ import annotations

import re
import select
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from harness import Daemon, camera, free_port, wait_for, write_settings

from pumaguard_hb.model.events import StateChange
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.outputs.alerts import Alerts
from pumaguard_hb.outputs.metrics import HEAD_TIMEOUT, MAX_CLIENTS


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, dict(resp.headers), resp.read()


def try_get(url: str) -> tuple[int, dict[str, str], bytes] | None:
    try:
        return get(url)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def sample(body: bytes, name: str, **labels: str) -> float | None:
    """The value of one series of the exposition text (labels: those that must match)."""
    for line in body.decode().splitlines():
        if not line.startswith(f"pumaguard_heartbeat_{name}"):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != f"pumaguard_heartbeat_{name}":
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


def listener_daemon(d: Daemon, tmp: Path) -> str:
    """A daemon with one camera (refused port) and the listener on; its base URL."""
    port = free_port()
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 3600,
            "camera-heartbeat-tcp-port": 1,
            "camera-heartbeat-tcp-timeout": 1,
            "camera-heartbeat-metrics-listen": f"127.0.0.1:{port}",
            "cameras": [camera("Microseven-Gate", "127.0.0.2", "00:11:22:33:44:01")],
        },
    )
    d.start(args=["--state-dir", str(tmp / "state")])
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: try_get(base + "/metrics"), timeout=30)
    return base


def closed_by_peer(s: socket.socket) -> bool:
    """True once the daemon has closed ``s`` (EOF or reset), without waiting."""
    ready, _, _ = select.select([s], [], [], 0)
    if not ready:
        return False
    try:
        return s.recv(4096) == b""
    except OSError:
        return True


def test_idle_connections_beyond_the_limit_do_not_lock_out_a_scrape(
    tmp_path: Path, daemon_factory: Any
) -> None:
    d: Daemon = daemon_factory()
    base = listener_daemon(d, tmp_path)
    port = int(base.rsplit(":", 1)[1])
    sweeps = d.call("status")["daemon"]["sweeps"]
    idle = [
        socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3 * MAX_CLIENTS)
    ]
    try:
        # the attacker's connections fill every slot: a scrape still gets its answer (the
        # daemon cuts the longest idle one for it; before, it closed the newcomer unanswered
        # until the idle ones timed out, and an attacker reconnecting kept that up for ever)
        code, _, body = get(base + "/metrics")
        assert code == 200 and b'pumaguard_heartbeat_camera_up{camera="00:11:22:33:44:01"' in body
        # the oldest idle ones were cut; at most MAX_CLIENTS of them are still held open
        wait_for(lambda: sum(closed_by_peer(s) for s in idle) >= 2 * MAX_CLIENTS, timeout=30)
        # probing goes on: a sweep on demand completes while they hold their connections
        d.call("check_now")
        assert d.call("status")["daemon"]["sweeps"] > sweeps
        # and the listener says what it cut
        body = get(base + "/metrics")[2]
        assert (sample(body, "listener_connections_cut_total", reason="idle") or 0) >= (
            2 * MAX_CLIENTS
        )
    finally:
        for s in idle:
            s.close()


def test_a_slow_drip_client_is_cut_after_the_head_timeout(
    tmp_path: Path, daemon_factory: Any
) -> None:
    d: Daemon = daemon_factory()
    base = listener_daemon(d, tmp_path)
    port = int(base.rsplit(":", 1)[1])
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 60 + b"\r\n\r\n"
    sent, cut, answer = 0, False, b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        # one byte a second: the head would take ~80 s; the daemon cuts it after
        # HEAD_TIMEOUT (5 s), long before the head is whole (bounded: one pass over it)
        for i in range(len(head) - 1):
            ready, _, _ = select.select([s], [], [], 1.0)
            if ready:
                try:
                    answer = s.recv(4096)
                except OSError:
                    answer = b""
                cut = answer == b""
                break
            try:
                s.sendall(head[i : i + 1])
            except OSError:
                cut = True
                break
            sent += 1
    assert cut and answer == b"", "the dripping client was answered or never cut"
    assert sent < len(head) - 1
    assert sent >= HEAD_TIMEOUT - 1  # it was given its time (cut by the timeout, not at once)
    # and others are served meanwhile and after
    body = wait_for(lambda: try_get(base + "/metrics"), timeout=30)[2]
    d.call("check_now")  # a new build, with the count of what was cut
    body = get(base + "/metrics")[2]
    assert (sample(body, "listener_connections_cut_total", reason="timeout") or 0) >= 1


def _settled_etag(url: str) -> str:
    """Wait until two answers a moment apart are the same build (the sweep at start and
    its write are over); its ETag."""

    def same() -> str | None:
        first = get(url)[1].get("ETag")
        time.sleep(0.5)
        second = get(url)[1].get("ETag")
        return first if first is not None and first == second else None

    return str(wait_for(same, timeout=30))


def test_requests_between_two_sweeps_share_one_build(tmp_path: Path, daemon_factory: Any) -> None:
    d: Daemon = daemon_factory()
    base = listener_daemon(d, tmp_path)
    wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= 1, timeout=30)
    etag = _settled_etag(base + "/metrics")
    answers = [get(base + "/metrics") for _ in range(20)]
    # one build served 20 times: the same ETag and the very same bytes, and the count of
    # builds in it did not move (a build per request would count each one)
    assert {a[1]["ETag"] for a in answers} == {etag}
    assert len({a[2] for a in answers}) == 1
    builds = sample(answers[0][2], "listener_builds_total", what="metrics")
    assert builds is not None and builds >= 1
    page_tag = _settled_etag(base + "/")
    pages = [get(base + "/") for _ in range(10)]
    assert {p[1]["ETag"] for p in pages} == {page_tag}
    assert pages[0][1]["Content-Security-Policy"].startswith("default-src 'none'")
    # a sweep changes the figures: the next request gets a new build, once
    d.call("check_now")
    after = get(base + "/metrics")
    assert after[1]["ETag"] != etag
    assert (sample(after[2], "listener_builds_total", what="metrics") or 0) > builds
    assert get(base + "/")[1]["ETag"] != page_tag


# -- item 6: cameras that are gone are forgotten ---------------------------------------------


def _settled(d: Daemon, ids: set[str]) -> dict[str, Any] | None:
    """Status once the daemon has the list ``ids``, judged every camera and written it."""
    s = d.call("status")
    cams = {c["id"]: c for c in s["cameras"]}
    if set(cams) != ids or s["daemon"]["sweeping"]:
        return None
    if not all(c["checked_at"] for c in cams.values()):
        return None
    time.sleep(0.5)
    again = d.call("status")["daemon"]
    if again["writes"] != s["daemon"]["writes"] or again["sweeping"]:
        return None
    return s


def _changes_of(d: Daemon, cid: str) -> float | None:
    text = d.call("metrics")["text"].encode()
    return sample(text, "camera_state_changes_total", camera=cid)


def test_a_camera_that_is_gone_is_forgotten(tmp_path: Path, daemon_factory: Any) -> None:
    d: Daemon = daemon_factory()
    base = {"camera-heartbeat-interval": 3600, "camera-heartbeat-tcp-port": 1}
    gate = camera("Microseven-Gate", "127.0.0.2", "00:11:22:33:44:01", status="connected")
    twice = camera("Microseven-Creek", "127.0.0.3", "00:11:22:33:44:02")
    other = camera("Microseven-Barn", "127.0.0.4", "00:11:22:33:44:03")
    both = {"00:11:22:33:44:01", "00:11:22:33:44:02"}
    write_settings(d.settings, {**base, "cameras": [gate, twice, twice]})
    d.start(args=["--state-dir", str(tmp_path / "state")])
    wait_for(lambda: _settled(d, both), timeout=60)
    assert _changes_of(d, "00:11:22:33:44:01") == 1  # connected (as listed) -> down
    dup = re.compile(r"camera .*00:11:22:33:44:02.* is listed twice")
    assert len(dup.findall(d.log())) == 1
    # both leave the list ...
    write_settings(d.settings, {**base, "cameras": [other]})
    wait_for(lambda: _settled(d, {"00:11:22:33:44:03"}), timeout=60)
    # ... and come back: they are new cameras. Before, the daemon still held their state:
    # the gate's count went on from 1 to 2 and the duplicate was never said again (and
    # every id ever seen stayed in memory)
    write_settings(d.settings, {**base, "cameras": [gate, twice, twice]})
    wait_for(lambda: _settled(d, both), timeout=60)
    assert _changes_of(d, "00:11:22:33:44:01") == 1
    wait_for(lambda: len(dup.findall(d.log())) == 2, timeout=10)


def test_alerts_forget_a_camera_that_is_gone() -> None:
    alerts = Alerts(lambda: Settings())  # no channel configured: only the bookkeeping
    for round_no in range(10):
        ids = [f"02:00:00:00:{round_no:02x}:{i:02x}" for i in range(100)]
        for cid in ids:
            alerts.notify(
                StateChange(
                    cid, "cam", "127.0.0.9", cid, "connected", "disconnected", 1.0, "x", "tcp"
                )
            )
        assert len(alerts.since) == 100
        for cid in ids:  # the monitor's forgetters are told each camera that is gone
            alerts.forget(cid)
    assert alerts.since == {}
