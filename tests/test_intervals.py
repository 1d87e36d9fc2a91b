"""Per-camera check intervals (docs/intervals.md): a real daemon, real counting listeners
on loopback, driven by the real CLI; in web UI mode beside the real PumaGuard web UI.

Intervals are scaled down (2 s and 6 s); every wait is bounded and generous.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import REPO, Daemon, camera, wait_for, write_settings
from helpers_cli import clean_env, run_cli
from webui_harness import WebUIServer, camera_record, webui_factory, webui_settings
from webui_harness import write_webui_settings as write_webui

__all__ = ["webui_factory"]  # the fixture, imported for pytest

FAST = ("Microseven-Gate", "127.0.61.2", "aa:bb:cc:61:00:02")  # every 2 s
SLOW = ("Microseven-Battery", "127.0.61.3", "aa:bb:cc:61:00:03")  # every 6 s
WINDOW = 18.0  # seconds of counting: 9 checks of the fast camera, 3 of the slow one


class Counter:
    """A TCP listener that counts the connections (probes) it accepts."""

    def __init__(self, ip: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.count += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def counters() -> Iterator[Callable[[str], Counter]]:
    made: list[Counter] = []

    def make(ip: str) -> Counter:
        made.append(Counter(ip))
        return made[-1]

    yield make
    for c in made:
        c.close()


def cli_json(d: Daemon, *args: str) -> Any:
    done = run_cli(*args, "--json", env=clean_env(PUMAGUARD_HB_SOCKET=str(d.socket)))
    assert done.stdout, done
    return json.loads(done.stdout)


def by_mac(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["mac_address"]: c for c in status["cameras"]}


def count_window(d: Daemon, fast: Counter, slow: Counter) -> tuple[int, int, int]:
    """Probes of each camera and sweeps of the daemon over WINDOW seconds."""
    s0, f0, w0 = d.call("status")["daemon"]["sweeps"], fast.count, slow.count
    time.sleep(WINDOW)
    s1, f1, w1 = d.call("status")["daemon"]["sweeps"], fast.count, slow.count
    return f1 - f0, w1 - w0, s1 - s0


def test_each_camera_on_its_own_interval_gathered_into_shared_sweeps(
    tmp_path: Path, counters: Callable[[str], Counter]
) -> None:
    fast, slow = counters(FAST[1]), counters(SLOW[1])
    d = Daemon(tmp_path)
    write_settings(d.settings, {
        "camera-heartbeat-interval": 3600,  # the global interval: never reached here
        "camera-heartbeat-tcp-timeout": 1,
        "cameras": [
            camera(*FAST, heartbeat_interval=2, heartbeat_port=fast.port),
            camera(*SLOW, **{"heartbeat-interval": 6, "heartbeat-port": slow.port}),
        ],
    })
    d.start()
    wait_for(lambda: fast.count >= 1 and slow.count >= 1, timeout=20)  # new: due at once
    n_fast, n_slow, sweeps = count_window(d, fast, slow)
    print(f"in {WINDOW}s: fast {n_fast} probes, slow {n_slow}, sweeps {sweeps}")
    assert 5 <= n_fast <= 11, n_fast  # 9 expected
    assert 1 <= n_slow <= 4, n_slow  # 3 expected
    assert 2.0 <= n_fast / n_slow <= 6.0
    # the slow camera never woke the daemon on its own: it shares the fast one's sweeps
    assert sweeps <= n_fast + 1, (sweeps, n_fast)
    status = cli_json(d, "status")
    cams = by_mac(status)
    assert cams[FAST[2]]["interval_s"] == 2 and cams[SLOW[2]]["interval_s"] == 6
    assert 0 <= cams[SLOW[2]]["next_check_in_s"] <= 6
    assert 0 <= status["daemon"]["next_check_in_s"] <= 2
    assert status["daemon"]["interval_s"] == 3600
    assert all(c["status"] == "connected" for c in cams.values())
    # check-now checks everything at once and moves each camera's next check
    before = (fast.count, slow.count)
    report = cli_json(d, "check-now")
    assert report["cameras"][SLOW[2]]["reachable"] and report["cameras"][FAST[2]]["reachable"]
    assert fast.count >= before[0] + 1 and slow.count >= before[1] + 1
    assert by_mac(d.call("status"))[SLOW[2]]["next_check_in_s"] >= 4.5
    assert d.stop() == 0


def test_invalid_interval_is_reported_and_the_global_one_used(
    tmp_path: Path, counters: Callable[[str], Counter]
) -> None:
    fast = counters(FAST[1])
    d = Daemon(tmp_path)
    write_settings(d.settings, {
        "camera-heartbeat-interval": 2,
        "camera-heartbeat-tcp-timeout": 1,
        "camera-heartbeat-tcp-port": fast.port,
        "cameras": [camera(*FAST, heartbeat_interval="soon" * 500)],
    })
    d.start()
    wait_for(lambda: fast.count >= 3, timeout=30)  # probed, on the global 2 s
    cam = by_mac(cli_json(d, "status"))[FAST[2]]
    assert cam["status"] == "connected" and cam["problem"] is None
    assert "heartbeat_interval" in cam["notice"] and "camera_heartbeat_interval" in cam["notice"]
    assert len(cam["notice"]) < 300
    assert cam["interval_s"] == 2
    assert d.log().count("using camera_heartbeat_interval") == 1  # said once, not per sweep
    assert d.stop() == 0


def test_overrides_by_mac_in_the_own_config_win_and_config_set_replans(
    tmp_path: Path, counters: Callable[[str], Counter]
) -> None:
    fast, slow = counters(FAST[1]), counters(SLOW[1])
    d = Daemon(tmp_path)
    write_settings(d.settings, {
        "camera-heartbeat-interval": 3600,
        "camera-heartbeat-tcp-timeout": 1,
        "cameras": [camera(*FAST, heartbeat_interval=3600, heartbeat_port=fast.port),
                    camera(*SLOW, heartbeat_port=slow.port)],
    })
    own = tmp_path / "heartbeat.yaml"
    own.write_text(yaml.safe_dump({"camera_heartbeat_cameras": {
        FAST[2].upper().replace(":", "-"): {"heartbeat_interval": 2},  # normalised
    }}))
    d.start(args=["--config", str(own)])
    wait_for(lambda: fast.count >= 4, timeout=30)  # the own config's 2 s, not the entry's
    assert slow.count == 1  # checked once at start, then every hour
    assert by_mac(d.call("status"))[FAST[2]]["interval_s"] == 2
    # config set of the whole mapping from the CLI: validated, written to the own config
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    value = json.dumps({FAST[2]: {"heartbeat_interval": 2}, SLOW[2]: {"heartbeat-interval": 2}})
    done = run_cli("config", "set", "camera_heartbeat_cameras", value, env=env)
    assert done.returncode == 0, done
    written = yaml.safe_load(own.read_text())["camera_heartbeat_cameras"]
    assert written == {FAST[2]: {"heartbeat_interval": 2}, SLOW[2]: {"heartbeat_interval": 2}}
    mark = slow.count
    wait_for(lambda: slow.count >= mark + 3, timeout=30)  # re-planned without a restart
    # hostile values are refused with one clear line; nothing is written
    for bad in (json.dumps({FAST[2]: {"heartbeat_interval": -1}}), "{not-a-mac: {}}",
                json.dumps({FAST[2]: {"rm_rf": 1}}), "[1, 2]"):
        done = run_cli("config", "set", "camera_heartbeat_cameras", bad, env=env)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done
        assert "camera_heartbeat_cameras" in done.stderr + done.stdout, done
    assert yaml.safe_load(own.read_text())["camera_heartbeat_cameras"] == written
    assert d.stop() == 0


def test_invalid_overrides_by_mac_fail_check_config_with_one_line(tmp_path: Path) -> None:
    own = tmp_path / "heartbeat.yaml"
    own.write_text(yaml.safe_dump({"camera_heartbeat_cameras": {FAST[2]: {
        "heartbeat_interval": 0}}}))
    done = subprocess.run(
        [sys.executable, "-m", "pumaguard_hb", "--check-config", "--settings",
         str(tmp_path / "none.yaml"), "--config", str(own)],
        capture_output=True, text=True, timeout=30, cwd=REPO,
        env=clean_env(PYTHONPATH=str(REPO)),
    )
    assert done.returncode == 78, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "camera_heartbeat_cameras" in lines[0], done.stderr
    assert "heartbeat_interval" in lines[0] and str(own) in lines[0], done.stderr


def test_webui_mode_overrides_by_mac_and_the_list_is_not_hammered(
    tmp_path: Path, counters: Callable[[str], Counter], webui_factory: Callable[..., WebUIServer]
) -> None:
    fast, slow = counters(FAST[1]), counters(SLOW[1])
    shared = write_webui(tmp_path / "pumaguard-settings.yaml", webui_settings(
        [camera_record(*FAST), camera_record(*SLOW)]))
    own = tmp_path / "heartbeat.yaml"
    own.write_text(yaml.safe_dump({
        "camera_heartbeat_interval": 60,
        "camera_heartbeat_tcp_timeout": 1,
        "camera_heartbeat_cameras": {  # the web UI deletes unknown camera fields: here instead
            FAST[2]: {"heartbeat_interval": 2, "heartbeat_port": fast.port},
            SLOW[2]: {"heartbeat_interval": 6, "heartbeat_port": slow.port},
        },
    }))
    webui = webui_factory(shared)
    d = Daemon(tmp_path, shared)
    d.start(args=["--webui", webui.url, "--config", str(own)])
    wait_for(lambda: fast.count >= 1 and slow.count >= 1, timeout=30)
    polls0 = d.call("status")["daemon"]["list_polls"]
    n_fast, n_slow, sweeps = count_window(d, fast, slow)
    polls = d.call("status")["daemon"]["list_polls"] - polls0
    print(f"web UI mode, {WINDOW}s: fast {n_fast}, slow {n_slow}, sweeps {sweeps}, polls {polls}")
    assert 5 <= n_fast <= 11 and 1 <= n_slow <= 4, (n_fast, n_slow)
    assert sweeps <= n_fast + 1
    assert 1 <= polls <= WINDOW / 5 + 2, polls  # at most one poll of the web UI per 5 s
    def both_connected() -> bool:  # both cameras listed, each connected (never vacuous)
        status = {c["mac_address"]: c["status"] for c in webui.cameras()}
        return status == {FAST[2]: "connected", SLOW[2]: "connected"}

    wait_for(both_connected, timeout=30)
    assert d.stop() == 0


def test_an_edited_interval_is_replanned_without_a_restart(
    tmp_path: Path, counters: Callable[[str], Counter]
) -> None:
    fast = counters(FAST[1])
    d = Daemon(tmp_path)
    doc = {
        "camera-heartbeat-interval": 3600,
        "camera-heartbeat-tcp-timeout": 1,
        "cameras": [camera(*FAST, heartbeat_interval=3600, heartbeat_port=fast.port)],
    }
    write_settings(d.settings, doc)
    d.start()
    wait_for(lambda: fast.count >= 1, timeout=20)
    assert by_mac(d.call("status"))[FAST[2]]["next_check_in_s"] > 3000
    written = yaml.safe_load(d.settings.read_text())  # with the daemon's status in it
    written["cameras"][0]["heartbeat_interval"] = 1
    write_settings(d.settings, written)  # noticed by the file watch (2 s)
    mark = fast.count
    wait_for(lambda: fast.count >= mark + 3, timeout=30)
    cam = by_mac(d.call("status"))[FAST[2]]
    assert cam["interval_s"] == 1 and cam["next_check_in_s"] <= 1
    assert d.stop() == 0


def test_last_seen_only_news_is_not_written_every_short_sweep(
    tmp_path: Path, counters: Callable[[str], Counter]
) -> None:
    fast = counters(FAST[1])
    d = Daemon(tmp_path)
    write_settings(d.settings, {
        "camera-heartbeat-interval": 3600,  # last_seen-only writes: at most every 300 s
        "camera-heartbeat-tcp-timeout": 1,
        "cameras": [camera(*FAST, heartbeat_interval=1, heartbeat_port=fast.port)],
    })
    d.start()
    wait_for(lambda: yaml.safe_load(d.settings.read_text())["cameras"][0]["status"]
             == "connected", timeout=20)  # the first sweep is written  # fmt: skip
    s0, n0 = d.call("status")["daemon"], fast.count
    wait_for(lambda: fast.count >= n0 + 4, timeout=30)
    s1 = d.call("status")["daemon"]
    assert s1["sweeps"] - s0["sweeps"] >= 3
    assert s1["writes"] == s0["writes"]  # only last_seen changed: held back
    assert s1["writes_held"] - s0["writes_held"] >= 3
    # check-now always publishes what it found: the newer last_seen is written
    before = d.call("status")["daemon"]["writes"]
    report = d.call("check_now")
    assert d.call("status")["daemon"]["writes"] == before + 1
    shown = yaml.safe_load(d.settings.read_text())["cameras"][0]["last_seen"]
    assert shown == report["cameras"][FAST[2]]["last_seen"]
    # a change of state is written at once, not 300 s later
    fast.close()
    wait_for(lambda: yaml.safe_load(d.settings.read_text())["cameras"][0]["status"]
             == "disconnected", timeout=30)  # fmt: skip
    assert d.stop() == 0
    assert yaml.safe_load(d.settings.read_text())["cameras"][0]["status"] == "disconnected"
