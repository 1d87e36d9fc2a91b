"""Power-cycling a hung camera (issue 24, docs/power-cycle.md): the real daemon, in a
network namespace, against a simulated Shelly Gen2 plug that powers a simulated camera.

The plug (tests/shelly_sim.py) is a fake because a real plug cannot be in a test; the
camera is a lab address in the cameras namespace (tests/power_lab.py): a hung camera
answers nothing until its power has been off and on, then boots after a delay; a dead
one never comes back. Everything else is real: the daemon, its socket, the CLI, the state
folder, SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, camera, wait_for, write_settings
from helpers_cli import clean_env, run_cli, unprivileged_python
from netlab import Lab, lab_fixture, requires_root_netns
from power_lab import PoweredCamera

pytestmark = [pytest.mark.netns, requires_root_netns]

lab = lab_fixture()

BOUND = 60.0  # seconds: generous, for a loaded machine
BASE = {
    "camera_heartbeat_interval": 1,
    "camera_heartbeat_method": "tcp",
    "camera_heartbeat_tcp_timeout": 1,
    "camera_heartbeat_power_cycle": True,
    "camera_heartbeat_power_cycle_after": 2,
    "camera_heartbeat_power_cycle_off_time": 1,
    "camera_heartbeat_power_cycle_boot_time": 15,
}


def mac(i: int) -> str:
    return f"02:00:00:00:24:{i:02x}"


def powered(name: str, i: int, cam: PoweredCamera, **extra: Any) -> dict[str, Any]:
    return camera(name, cam.camera_ip, mac(i), heartbeat_plug=cam.plug_url, **extra)


def healthy(lab: Lab, name: str, i: int) -> dict[str, Any]:
    ip = lab.add_camera_ip("answering")
    lab.tcp_listener(ip, 80)
    return camera(name, ip, mac(i))


def start(lab: Lab, d: Daemon, cameras: list[dict[str, Any]], **keys: Any) -> Daemon:
    write_settings(d.settings, {**BASE, **keys, "cameras": cameras})
    return d.start(prefix=lab.command([]))


def switch_sets(cam: PoweredCamera) -> list[dict[str, Any]]:
    assert cam.plug is not None
    return [dict(params) for method, params in list(cam.plug.calls) if method == "Switch.Set"]


def record(d: Daemon, i: int) -> dict[str, Any]:
    doc = json.loads((d.tmp / "state" / "power-cycles.json").read_text())
    return dict(doc[mac(i)])


def by_name(d: Daemon) -> dict[str, dict[str, Any]]:
    return {c["hostname"]: c for c in d.call("status")["cameras"]}


def event_recorder(tmp_path: Path) -> tuple[str, Path]:
    """An on-change command that appends each event's name and cycle count to a file."""
    events = tmp_path / "events.txt"
    script = tmp_path / "record-event"
    script.write_text(
        f'#!/bin/sh\necho "$PUMAGUARD_HB_EVENT $PUMAGUARD_HB_CYCLES_TODAY" >> {events}\n'
    )
    script.chmod(0o700)
    return str(script), events


def recorded(events: Path) -> list[str]:
    return events.read_text().splitlines() if events.exists() else []


def test_one_cycle_brings_a_hung_camera_back(lab: Lab, tmp_path: Path) -> None:
    cam = PoweredCamera(lab, state="hung", boot_time=2)
    command, events = event_recorder(tmp_path)
    d = start(
        lab,
        Daemon(tmp_path),
        [powered("Gate", 1, cam), healthy(lab, "Barn", 2)],
        camera_heartbeat_on_change_command=command,
    )
    wait_for(lambda: "power cycle of Gate" in d.log() and "recovered" in d.log(), BOUND)
    wait_for(lambda: by_name(d)["Gate"]["status"] == "connected", BOUND)
    assert cam.powered_off_count == 1
    cut = switch_sets(cam)[0]
    assert cut.get("on") is False and float(cut.get("toggle_after", 0)) == 1.0, cut
    rec = record(d, 1)
    assert (len(rec["cycles"]), rec["last_outcome"], rec["running"]) == (1, "recovered", None)
    assert os.stat(d.tmp / "state" / "power-cycles.json").st_mode & 0o777 == 0o600
    wait_for(lambda: "camera_recovered_after_power_cycle 1" in recorded(events), BOUND)
    power = [e for e in recorded(events) if "power" in e]
    assert power == ["camera_power_cycled 1", "camera_recovered_after_power_cycle 1"], power
    view = by_name(d)["Gate"]["power"]
    assert (view["cycles_today"], view["last_outcome"], view["needs_visit"]) == (
        1,
        "recovered",
        False,
    )
    text = d.call("metrics")["text"]
    assert re.search(
        r'^pumaguard_heartbeat_power_cycles_total\{[^}]*camera="02:00:00:00:24:01"[^}]*'
        r'outcome="recovered"[^}]*\} 1$',
        text,
        re.M,
    ), text
    time.sleep(5)  # connected now: no second cycle, whatever the sweeps say
    assert cam.powered_off_count == 1
    d.stop()


@pytest.mark.daemon_log(allow=[r"password refused"])
def test_no_cycle_when_the_plug_is_off_silent_or_refuses_us(lab: Lab, tmp_path: Path) -> None:
    off = PoweredCamera(lab, state="dead", plug_on=False)
    silent = PoweredCamera(lab, state="hung")
    assert silent.plug is not None
    silent.plug.answering = False  # a hung plug: accepts, never answers
    locked = PoweredCamera(lab, state="hung", password="right horse battery")
    cameras = [
        powered("Off", 1, off),
        powered("Silent", 2, silent),
        powered("Locked", 3, locked, heartbeat_plug_password="wrong"),
        *(healthy(lab, f"Ok{i}", 10 + i) for i in range(3)),  # 3 of 6 down: a camera each
    ]
    d = start(lab, Daemon(tmp_path), cameras)
    lines = {
        "Off": "its plug is off",
        "Silent": "its plug does not answer",
        "Locked": "password refused",
    }
    for name, words in lines.items():
        wait_for(lambda n=name, w=words: any(
            f"power cycle of {n} " in line and w in line for line in d.log().splitlines()
        ), BOUND)  # fmt: skip
    time.sleep(4)  # more sweeps: still no cut, and each reason said once
    assert [c.powered_off_count for c in (off, silent, locked)] == [0, 0, 0]
    assert d.log().count("its plug is off") == 1, d.log()
    assert "right horse battery" not in d.log() and "wrong" not in d.log()
    d.stop()


def test_no_cycle_while_most_of_the_station_is_down_then_one(lab: Lab, tmp_path: Path) -> None:
    cam = PoweredCamera(lab, state="hung", boot_time=1)
    others = [lab.add_camera_ip("silent") for _ in range(2)]
    cameras = [powered("Gate", 1, cam)] + [
        camera(f"Cam{i}", ip, mac(10 + i)) for i, ip in enumerate(others)
    ]
    d = start(lab, Daemon(tmp_path), cameras)
    wait_for(lambda: "3 of the station's 3 cameras are down" in d.log(), BOUND)
    time.sleep(4)
    assert cam.powered_off_count == 0
    for ip in others:  # the network is back: only the hung camera is down
        lab.tcp_listener(ip, 80)
        lab.make_answering(ip)
    wait_for(lambda: cam.powered_off_count == 1, BOUND)
    wait_for(lambda: by_name(d)["Gate"]["status"] == "connected", BOUND)
    d.stop()


def test_the_daily_maximum_holds_across_a_restart_then_one_visit(lab: Lab, tmp_path: Path) -> None:
    cam = PoweredCamera(lab, state="dead")
    cameras = [powered("Gate", 1, cam), healthy(lab, "Barn", 2)]
    keys = {
        "camera_heartbeat_power_cycle_max_per_day": 2,
        "camera_heartbeat_power_cycle_boot_time": 3,
    }
    command, events = event_recorder(tmp_path)
    d = start(lab, Daemon(tmp_path), cameras, **keys, camera_heartbeat_on_change_command=command)
    wait_for(lambda: "not recovered" in d.log(), BOUND)
    assert d.stop() == 0
    assert len(record(d, 1)["cycles"]) == 1
    d.start(prefix=lab.command([]))
    wait_for(lambda: "needs a visit" in d.log(), BOUND)
    time.sleep(6)  # the after delay passes again and again: no third cut
    assert cam.powered_off_count == 2
    rec = record(d, 1)
    assert (len(rec["cycles"]), rec["visit"], rec["last_outcome"]) == (2, True, "not recovered")
    visits = [line for line in d.log().splitlines() if "needs a visit" in line]
    assert len([v for v in visits if "did not bring it back (" in v]) == 1, visits
    wait_for(lambda: "camera_needs_visit 2" in recorded(events), BOUND)
    assert [e for e in recorded(events) if "power" in e or "visit" in e] == [
        "camera_power_cycled 1",
        "camera_power_cycled 2",
        "camera_needs_visit 2",
    ]
    assert by_name(d)["Gate"]["power"]["needs_visit"] is True
    d.stop()


@pytest.mark.daemon_log(exit=(0, -9))  # killed right after the cut
def test_the_plug_gives_the_power_back_when_the_daemon_dies_after_the_cut(
    lab: Lab, tmp_path: Path
) -> None:
    cam = PoweredCamera(lab, state="hung", boot_time=1)
    cameras = [powered("Gate", 1, cam), healthy(lab, "Barn", 2)]
    d = start(lab, Daemon(tmp_path), cameras, camera_heartbeat_power_cycle_off_time=3)
    wait_for(lambda: cam.powered_off_count == 1, BOUND)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(30)
    wait_for(lambda: cam.answering, BOUND)  # the plug's own timer, nobody else
    assert record(d, 1)["running"] is not None  # the record says a cycle was under way
    d.start(prefix=lab.command([]))
    wait_for(lambda: "was interrupted by a stop of the daemon; it counts" in d.log(), BOUND)
    wait_for(lambda: by_name(d)["Gate"]["status"] == "connected", BOUND)
    rec = record(d, 1)
    assert (len(rec["cycles"]), rec["last_outcome"], rec["running"]) == (
        1,
        "interrupted by a restart",
        None,
    )
    assert cam.powered_off_count == 1
    d.stop()


def test_power_cycle_by_hand_from_the_cli(lab: Lab, tmp_path: Path) -> None:
    cam = PoweredCamera(lab, state="hung", boot_time=1)
    cameras = [powered("Gate", 1, cam), healthy(lab, "Barn", 2)]
    # automatic cycling off: by hand still works, without the after delay
    d = start(
        lab,
        Daemon(tmp_path),
        cameras,
        camera_heartbeat_power_cycle=False,
        camera_heartbeat_power_cycle_after=3600,
    )
    wait_for(lambda: by_name(d)["Gate"]["status"] == "disconnected", BOUND)
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))

    no_plug = run_cli("power-cycle", "Barn", "--yes", env=env)
    assert no_plug.returncode == 6, no_plug.stderr
    assert "has no heartbeat_plug" in no_plug.stderr
    unknown = run_cli("power-cycle", "Nowhere", "--yes", env=env)
    assert unknown.returncode == 5, unknown.stderr
    no_tty = run_cli("power-cycle", "Gate", env=env)  # nobody to ask: --yes is needed
    assert no_tty.returncode == 2 and "--yes" in no_tty.stderr
    connected = run_cli("power-cycle", "Barn", "--yes", env=env)
    assert connected.returncode == 6
    assert cam.powered_off_count == 0

    done = run_cli("power-cycle", "Gate", "--yes", "--json", env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["cycled"], result["outcome"], result["cycles_today"]) == (True, "recovered", 1)
    assert cam.powered_off_count == 1
    assert by_name(d)["Gate"]["status"] == "connected"
    again = run_cli("power-cycle", "Gate", "--yes", env=env)
    assert again.returncode == 6 and "it is connected" in again.stderr

    # not a member of the group: refused before anything is cut
    os.chmod(d.socket, 0o666)  # reading allowed to all; changing stays the group's
    outsider = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    python = unprivileged_python(outsider)
    assert python is not None, "no python3 with click and rich for nobody (./dev setup)"
    cam.hang()
    denied = run_cli("power-cycle", "Gate", "--yes", env=env, prefix=outsider, python=python)
    assert denied.returncode == 4, denied.stderr
    assert cam.powered_off_count == 1
    d.stop()


def test_a_file_others_may_write_cannot_cut_power(lab: Lab, tmp_path: Path) -> None:
    """A member of the group writes the power-cycle keys and a plug into the daemon's
    group-writable settings file: nothing is cut. The same file made 0600 and reloaded
    cuts the power (so the test would see a cut)."""
    cam = PoweredCamera(lab, state="hung", boot_time=1)
    d = Daemon(tmp_path)
    write_settings(d.settings, {**BASE, "cameras": [powered("Gate", 1, cam)]})
    d.settings.chmod(0o664)
    d.start(prefix=lab.command([]))
    wait_for(lambda: "camera_heartbeat_power_cycle ignored" in d.log(), BOUND)
    wait_for(lambda: "cameras: heartbeat_plug ignored" in d.log(), BOUND)
    wait_for(lambda: by_name(d)["Gate"]["status"] == "disconnected", BOUND)
    time.sleep(5)  # well past the after delay
    assert cam.powered_off_count == 0
    d.settings.chmod(0o600)
    d.signal(signal.SIGHUP)
    wait_for(lambda: cam.powered_off_count == 1, BOUND)
    wait_for(lambda: by_name(d)["Gate"]["status"] == "connected", BOUND)
    d.stop()
