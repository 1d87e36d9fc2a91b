"""Power cycling in web UI mode (issue 24): the plug is named by its MAC and found in the
real PumaGuard web UI's plug list (``GET /api/dhcp/plugs``, pumaguard 25.x); its mode there
decides: ``automatic`` is a deterrent (never cycled), ``on`` may be cycled.

The plug is the simulated Shelly Gen2 plug (tests/shelly_sim.py; a real plug cannot be in
a test) on a loopback address; the camera is a loopback address whose port refuses until
the plug's power has been off and on, then answers after a boot delay. The daemon, the
web UI and its settings file are real.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from harness import Daemon, Listeners, free_port, listeners, wait_for
from shelly_sim import ShellyPlug
from webui_harness import WebUIServer, camera_record, webui_factory, webui_settings

__all__ = ["listeners", "webui_factory"]  # fixtures, imported for pytest

WAIT = 60.0  # seconds: generous, for a loaded machine
CAMERA_MAC = "aa:bb:cc:61:00:02"


class LoopbackPlugCamera:
    """A camera on a loopback address and the simulated plug that powers it."""

    def __init__(self, listeners: Listeners, boot_time: float = 1.0) -> None:
        base = f"127.0.{secrets.randbelow(200) + 20}"
        self.camera_ip, self.plug_ip = f"{base}.{secrets.randbelow(100) + 2}", f"{base}.201"
        self.port = free_port(self.camera_ip)  # refused: the camera is hung
        self.listeners = listeners
        self.boot_time = boot_time
        self.cuts = 0
        self._timers: list[threading.Timer] = []
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.plug_ip, 80))
        sock.listen(64)
        self.plug = ShellyPlug(sock, on=True, on_power=self._power)
        self.mac = ":".join(self.plug.mac.lower()[i : i + 2] for i in range(0, 12, 2))

    def _power(self, on: bool) -> None:
        if not on:
            self.cuts += 1
            return
        timer = threading.Timer(self.boot_time, self.listeners.open, (self.camera_ip, self.port))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.plug.close()


@pytest.fixture
def powered(listeners: Listeners) -> Iterator[LoopbackPlugCamera]:
    cam = LoopbackPlugCamera(listeners)
    yield cam
    cam.close()


def test_a_web_ui_plug_found_by_mac_cycled_only_in_mode_on(
    tmp_path: Path,
    webui_factory: Callable[..., WebUIServer],
    powered: LoopbackPlugCamera,
) -> None:
    cam = powered
    shared = tmp_path / "pumaguard-settings.yaml"
    record = camera_record("Microseven-Gate", cam.camera_ip, CAMERA_MAC, status="disconnected")
    shared.write_text(yaml.safe_dump(webui_settings([record]), sort_keys=False))
    webui = webui_factory(shared)
    code, _ = webui.request(
        "POST",
        "/api/dhcp/plugs",
        {
            "hostname": f"shellyplugsg3-{cam.plug.mac.lower()}",
            "ip_address": cam.plug_ip,
            "mac_address": cam.mac,
            "mode": "automatic",
        },
    )
    assert code in (200, 201), code
    (tmp_path / "own").mkdir(mode=0o755)
    own = tmp_path / "own" / "heartbeat.yaml"  # only root may write it: privileged keys count
    own.write_text(
        yaml.safe_dump(
            {
                "camera_heartbeat_interval": 1,
                "camera_heartbeat_method": "tcp",
                "camera_heartbeat_tcp_port": cam.port,
                "camera_heartbeat_tcp_timeout": 1,
                "camera_heartbeat_power_cycle": True,
                "camera_heartbeat_power_cycle_after": 2,
                "camera_heartbeat_power_cycle_off_time": 1,
                "camera_heartbeat_power_cycle_boot_time": 15,
                "camera_heartbeat_cameras": {CAMERA_MAC: {"heartbeat_plug": cam.mac}},
            }
        )
    )
    d = Daemon(tmp_path, shared).start(args=["--webui", webui.url, "--config", str(own)])
    wait_for(lambda: "mode in the web UI is 'automatic'" in d.log(), WAIT)
    wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= 6, WAIT)
    assert cam.cuts == 0  # a deterrent is never a camera's power

    code, _ = webui.request("PUT", f"/api/dhcp/plugs/{cam.mac}/mode", {"mode": "on"})
    assert code == 200, code
    wait_for(lambda: cam.cuts == 1, WAIT)
    wait_for(lambda: "recovered: it answers again" in d.log(), WAIT)
    wait_for(lambda: webui.cameras_by_mac()[CAMERA_MAC]["status"] == "connected", WAIT)
    assert cam.cuts == 1
    d.stop()
