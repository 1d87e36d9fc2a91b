"""A real dnsmasq with the shipped hook, and a real DHCP client asking for a lease.

dnsmasq serves DHCP on the lab's veth in the prober namespace; busybox's udhcpc asks
from the cameras namespace, with the hostname a camera would send. The daemon runs in
the prober namespace with monitoring off, so only DHCP events change the cameras.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import REPO, Daemon, wait_for, write_settings
from helpers_cli import give_to_nobody
from netlab import CAMERAS_VETH, PROBER_VETH, Lab, lab_fixture, requires_root_netns

pytestmark = [pytest.mark.netns, requires_root_netns]

lab = lab_fixture()
HOOK = REPO / "systemd" / "dnsmasq-dhcp-script"
CAMERA_MAC = "02:00:00:00:aa:01"
OTHER_MAC = "02:00:00:00:aa:02"


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="phb-dnsmasq-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_dnsmasq(lab: Lab, folder: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    for tool in ("dnsmasq", "udhcpc"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} not installed (apt-get install dnsmasq-base udhcpc; ./dev setup does it)"
            )
    lab.run(["ip", "addr", "add", "10.203.250.1/24", "dev", PROBER_VETH], check=True)
    log = open(folder / "dnsmasq.log", "wb")  # noqa: SIM115 - the lab kills the process
    proc = lab.popen(
        [
            "dnsmasq",
            "--keep-in-foreground",
            "--log-facility=-",
            "--port=0",
            "--user=root",
            f"--interface={PROBER_VETH}",
            "--bind-interfaces",
            "--log-dhcp",
            "--dhcp-range=10.203.250.100,10.203.250.150,255.255.255.0,1h",
            f"--dhcp-leasefile={folder / 'leases'}",
            f"--pid-file={folder / 'dnsmasq.pid'}",
            f"--dhcp-script={HOOK}",
            "--conf-file=/dev/null",
        ],
        env=env,
        stdout=log,
        stderr=log,
    )
    wait_for(
        lambda: (
            "started" in (folder / "dnsmasq.log").read_text(errors="replace")
            or proc.poll() is not None
        )
    )
    assert proc.poll() is None, (folder / "dnsmasq.log").read_text()
    return proc


def udhcpc(lab: Lab, mac: str, hostname: str, *extra: str) -> list[str]:
    subprocess.run(
        ["ip", "-n", lab.cameras, "link", "set", CAMERAS_VETH, "address", mac],
        check=True,
        timeout=30,
    )
    return [
        "ip",
        "netns",
        "exec",
        lab.cameras,
        "udhcpc",
        "-i",
        CAMERAS_VETH,
        "-f",
        "-t",
        "5",
        "-T",
        "1",
        "-x",
        f"hostname:{hostname}",
        "-s",
        "/bin/true",
        *extra,
    ]


def lease(lab: Lab, mac: str, hostname: str) -> None:
    """A device with ``mac`` asks for a lease, sending ``hostname``."""
    subprocess.run(
        udhcpc(lab, mac, hostname, "-n", "-q"), check=True, timeout=60, capture_output=True
    )


def lease_then_release(lab: Lab, folder: Path, mac: str, hostname: str) -> None:
    """A device takes a lease, configures the address, and gives it back when it stops."""
    events = folder / "udhcpc-events"
    script = folder / "udhcpc-script"
    script.write_text(f'#!/bin/sh\necho "$1" >> {events}\n')
    script.chmod(0o755)
    argv = udhcpc(lab, mac, hostname, "-R")
    argv[argv.index("/bin/true")] = str(script)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # udhcpc runs its script with "bound" once it holds the lease: only then does
        # SIGTERM make it send DHCPRELEASE (-R)
        wait_for(lambda: events.exists() and "bound" in events.read_text(), timeout=20)
        ip = _leased_ip(folder, mac)
        subprocess.run(
            ["ip", "-n", lab.cameras, "addr", "add", f"{ip}/24", "dev", CAMERAS_VETH],
            check=True,
            timeout=30,
        )
    finally:
        proc.terminate()
        proc.wait(10)


def _leased_ip(folder: Path, mac: str) -> str:
    for line in (folder / "leases").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[1] == mac:
            return fields[2]
    raise AssertionError(f"no lease for {mac}")


def cameras(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    doc = yaml.safe_load(path.read_text()) or {}
    return {c["mac_address"]: c for c in doc.get("cameras") or []}


def test_leases_reach_the_daemon_and_the_file(lab: Lab, folder: Path) -> None:
    folder.chmod(0o755)
    d = Daemon(folder)
    write_settings(
        d.settings, {"camera-heartbeat-enabled": False, "plugs": [{"x": 1}], "cameras": []}
    )
    env = {
        **os.environ,
        "PUMAGUARD_HB_SOCKET": str(d.socket),
        "PUMAGUARD_SETTINGS": str(d.settings),
        "PUMAGUARD_HB_PYTHON": sys.executable,
    }
    d.start(prefix=lab.command([]))
    start_dnsmasq(lab, folder, env)

    # a camera gets a lease: it appears, connected, in the daemon and the file
    lease(lab, CAMERA_MAC, "Microseven-M7B77-Gate")
    wait_for(lambda: CAMERA_MAC in cameras(d.settings), timeout=20)
    cam = {c["mac_address"]: c for c in d.call("status")["cameras"]}[CAMERA_MAC]
    assert (cam["hostname"], cam["status"]) == ("Microseven-M7B77-Gate", "connected")
    assert cam["ip_address"].startswith("10.203.250.1")
    cli = subprocess.run(
        [sys.executable, "-m", "pumaguard_hb_cli", "--socket", str(d.socket), "status"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'cli'}"},
    )
    assert "Microseven-M7B77-Gate" in cli.stdout, cli.stdout + cli.stderr

    # a laptop gets a lease too: it is not a camera
    lease(lab, OTHER_MAC, "alice-laptop")

    # proof that the hook ran for this lease and the daemon decided: its log line (written
    # after the decision), then what it did not do
    def about_the_laptop() -> list[str]:
        return [ln for ln in d.log().splitlines() if OTHER_MAC in ln]

    lines = wait_for(about_the_laptop, timeout=20)
    assert all("not a camera, ignored" in ln for ln in lines), lines
    assert OTHER_MAC not in cameras(d.settings)
    assert OTHER_MAC not in {c["mac_address"] for c in d.call("status")["cameras"]}

    # the camera gives its lease back: disconnected
    lease_then_release(lab, folder, CAMERA_MAC, "Microseven-M7B77-Gate")
    dnsmasq_log = folder / "dnsmasq.log"
    try:
        wait_for(lambda: cameras(d.settings)[CAMERA_MAC]["status"] == "disconnected", timeout=20)
    except AssertionError:
        raise AssertionError(dnsmasq_log.read_text(errors="replace")[-3000:]) from None
    assert "DHCPRELEASE" in dnsmasq_log.read_text(errors="replace")

    # with the daemon stopped, the hook writes the file itself: nothing is lost
    d.stop()
    give_to_nobody(folder)  # the service's folder is its user's: the root hook acts as them
    lease(lab, CAMERA_MAC, "unknown")  # "unknown" never replaces a known hostname
    wait_for(lambda: cameras(d.settings)[CAMERA_MAC]["status"] == "connected", timeout=20)
    doc = yaml.safe_load(d.settings.read_text())
    assert doc["cameras"][0]["hostname"] == "Microseven-M7B77-Gate"
    assert doc["plugs"] == [{"x": 1}]
    log = (folder / "dnsmasq.log").read_text(errors="replace")
    assert "Traceback" not in log
