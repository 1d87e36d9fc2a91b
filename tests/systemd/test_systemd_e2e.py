"""The product end to end, as an admin meets it: the .deb installed in a booted
systemd, cameras in a network namespace of their own, the CLI run by a group
member and by somebody else, the journal, reload, crash restart, dnsmasq.

Network: the container lives in a namespace made here ("station"), the
cameras in another ("cameras"), joined by one veth pair; the addresses are
10.204.x.y and exist only inside those two namespaces.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nspawn
import pytest

pytestmark = pytest.mark.systemd

UNIT = "pumaguard-heartbeat.service"
SETTINGS = "/var/lib/pumaguard-heartbeat/pumaguard-settings.yaml"
OWN_CONFIG = "/var/lib/pumaguard-heartbeat/heartbeat.yaml"  # the unit's --config
HOOK = "/usr/lib/pumaguard-heartbeat/dnsmasq-dhcp-script"

STATION_IP = "10.204.1.1"
CAM_UP = "10.204.1.10"  # answers ping and TCP port 80
CAM_PING_ONLY = "10.204.1.11"  # answers ping, nothing listens on port 80
CAM_SILENT = "10.204.1.12"  # nobody has this address: everything times out

# A fake camera's web server: accepts and closes, stops by itself.
LISTENER = """
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{ip}", 80)); s.listen(64); s.settimeout(1)
end = time.monotonic() + 600
while time.monotonic() < end:
    try:
        c, _ = s.accept(); c.close()
    except OSError:
        pass
"""

WAIT_LISTENING = """
import socket, sys, time
end = time.monotonic() + 10
while True:
    try:
        socket.create_connection((sys.argv[1], 80), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > end:
            raise
        time.sleep(0.05)
"""


def start_camera(ns: nspawn.NetNS, ip: str) -> Any:
    """A fake camera's web server on ip:80 in ``ns``, listening when this returns."""
    proc = ns.popen("python3", "-c", LISTENER.format(ip=ip))
    ns.exec("python3", "-c", WAIT_LISTENING, ip, timeout=20)
    return proc


@dataclass
class Station:
    """A field station: the container, and the camera network beside it."""

    c: nspawn.Container
    cams: nspawn.NetNS
    station_if: str
    cams_if: str
    helpers: list[Any] = field(default_factory=list)

    def settings(self, path: str = SETTINGS) -> dict[str, Any]:
        """The settings file (or, given its path, the daemon's own config) as left."""
        out = self.c.run(
            [
                "python3",
                "-c",
                "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
                path,
            ]
        ).stdout
        return json.loads(out) or {}

    def cameras(self) -> dict[str, dict[str, Any]]:
        """Cameras in the settings file, by IP address."""
        return {cam.get("ip_address"): cam for cam in self.settings().get("cameras") or []}

    def wait_file(self, ip: str, status: str, timeout: float = 20) -> dict[str, Any]:
        """Wait until the settings file shows camera ``ip`` with ``status``: STATUS= is sent
        as soon as a camera changes state, the file is written when the sweep ends."""
        deadline = time.monotonic() + timeout
        while True:
            cam = self.cameras().get(ip, {})
            if cam.get("status") == status or time.monotonic() > deadline:
                return cam
            time.sleep(0.2)

    def write_settings(self, text: str) -> None:
        """Replace the settings file (as an admin would, owned by the service user)."""
        self.c.write(SETTINGS, text, mode=0o640)
        self.c.run(["chown", "pumaguard-hb:pumaguard-hb", SETTINGS])

    def wait_status(self, expected: str, timeout: float = 20) -> str:
        """Wait until systemd's StatusText contains ``expected``."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.c.show(UNIT, "StatusText")
            if expected in text:
                return text
            time.sleep(0.2)
        raise AssertionError(
            f"StatusText {text!r} never contained {expected!r}\n" + self.c.journal(UNIT)[-3000:]
        )

    def hb(self, *args: str, user: str | None = None, check: bool = False) -> Any:
        """Run pumaguard-hb in the container (as root, or as ``user``)."""
        return self.c.run(
            ["pumaguard-hb", *args], user=user, check=check, env={"NO_COLOR": "1"}, timeout=60
        )


def settings_yaml(method: str, interval: int = 2, **extra: Any) -> str:
    """A settings file with the three test cameras."""
    lines = [
        "camera_heartbeat_enabled: true",
        f"camera_heartbeat_interval: {interval}",
        f"camera_heartbeat_method: {method}",
        "camera_heartbeat_tcp_port: 80",
        "camera_heartbeat_tcp_timeout: 1",
        "camera_heartbeat_icmp_timeout: 1",
        *(f"{k}: {v}" for k, v in extra.items()),
        "cameras:",
    ]
    for name, ip, mac in (
        ("Microseven-up", CAM_UP, "aa:bb:cc:00:00:10"),
        ("Microseven-ping", CAM_PING_ONLY, "aa:bb:cc:00:00:11"),
        ("Microseven-silent", CAM_SILENT, "aa:bb:cc:00:00:12"),
    ):
        lines += [
            f"- hostname: {name}",
            f"  ip_address: {ip}",
            f"  mac_address: '{mac}'",
            "  last_seen: '2024-01-15T14:32:15Z'",
            "  status: disconnected",
            "  note: kept by the web UI",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def station(base_rootfs: Path, deb: Path) -> Iterator[Station]:
    """Container (package installed) + a camera namespace with two live cameras."""
    station_ns = nspawn.NetNS("pghb-st")
    cams = nspawn.NetNS("pghb-cam")
    try:
        st_if, cam_if = nspawn.veth_link(
            station_ns, f"{STATION_IP}/24", cams, [f"{CAM_UP}/24", f"{CAM_PING_ONLY}/24"]
        )
        listener = start_camera(cams, CAM_UP)
        with nspawn.background(listener), nspawn.Container(base_rootfs, netns=station_ns) as c:
            nspawn.install_deb(c, deb)
            yield Station(c, cams, st_if, cam_if)
    finally:
        cams.delete()
        station_ns.delete()


def test_cameras_tcp_icmp_journal_and_reload(station: Station) -> None:
    st, c = station, station.c
    st.write_settings(settings_yaml("tcp"))
    c.run(["systemctl", "reload", UNIT], timeout=30)
    st.wait_status("1/3 cameras connected")
    assert st.wait_file(CAM_UP, "connected")["status"] == "connected"
    cams = st.cameras()
    assert cams[CAM_UP]["last_seen"] != "2024-01-15T14:32:15Z"
    assert cams[CAM_PING_ONLY]["status"] == "disconnected"  # refused
    assert cams[CAM_SILENT]["status"] == "disconnected"  # timed out
    assert cams[CAM_SILENT]["last_seen"] == "2024-01-15T14:32:15Z"  # kept
    assert all(cam["note"] == "kept by the web UI" for cam in cams.values())

    # Raw ICMP as the unprivileged service user (CAP_NET_RAW from the unit).
    st.write_settings(settings_yaml("icmp"))
    c.run(["systemctl", "reload", UNIT], timeout=30)
    st.wait_status("2/3 cameras connected")
    assert st.wait_file(CAM_PING_ONLY, "connected")["status"] == "connected"

    # A camera goes away: one warning in the journal, with name and address.
    st.cams.exec("ip", "addr", "del", f"{CAM_PING_ONLY}/24", "dev", st.cams_if)
    st.wait_status("1/3 cameras connected")
    warnings = c.journal(UNIT, "-p", "warning")
    assert "Microseven-ping" in warnings and CAM_PING_ONLY in warnings, warnings
    print("\njournalctl -p warning:\n" + warnings)
    assert len([ln for ln in warnings.splitlines() if "Microseven-ping" in ln]) == 1
    assert "Traceback" not in c.journal(UNIT)

    # An invalid value in a reload: old settings kept, one clear error, still running.
    st.write_settings(settings_yaml("icmp", interval=-5))
    c.run(["systemctl", "reload", UNIT], timeout=30)
    time.sleep(1)
    assert c.show(UNIT, "ActiveState") == "active"
    errors = c.journal(UNIT, "-p", "err")
    assert "camera_heartbeat_interval" in errors, errors


def test_rewritten_settings_file_keeps_a_group_that_is_not_the_daemons(station: Station) -> None:
    """The web UI's group on the shared file survives the daemon's writes (needs fchown,
    which the unit's SystemCallFilter= must allow; the kernel allows it because the
    service user is a member of that group)."""
    st, c = station, station.c
    c.run(["groupadd", "--system", "pgwebui"])
    c.run(["usermod", "--append", "--groups", "pgwebui", "pumaguard-hb"])
    # stopped while the file is set up: a running daemon (not yet in the group) would
    # notice the new file at once and write it back with its own group
    c.run(["systemctl", "stop", UNIT], timeout=60)
    st.write_settings(settings_yaml("tcp"))
    c.run(["chgrp", "pgwebui", SETTINGS])
    c.run(["chmod", "0660", SETTINGS])
    c.run(["systemctl", "start", UNIT], timeout=60)  # the new group membership
    st.wait_status("1/3 cameras connected")
    deadline = time.monotonic() + 20
    while st.cameras()[CAM_UP]["status"] != "connected" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert st.cameras()[CAM_UP]["status"] == "connected", c.journal(UNIT)  # it was rewritten
    mode, owner, group = c.run(["stat", "-c", "%a %U %G", SETTINGS]).stdout.split()
    assert (mode, owner, group) == ("660", "pumaguard-hb", "pgwebui"), c.journal(UNIT)


@pytest.mark.daemon_log(exit=(0, 78))
def test_invalid_settings_at_start_exit_78_no_restart(station: Station) -> None:
    st, c = station, station.c
    c.run(["systemctl", "stop", UNIT], timeout=30)
    st.write_settings(settings_yaml("carrier-pigeon"))
    start = c.run(["systemctl", "start", UNIT], check=False, timeout=60)
    assert start.returncode != 0
    time.sleep(1)
    assert c.show(UNIT, "ExecMainStatus") == "78"
    assert c.show(UNIT, "NRestarts") == "0"
    assert c.show(UNIT, "ActiveState") == "failed"
    journal = c.journal(UNIT)
    assert "camera_heartbeat_method" in journal and "carrier-pigeon" in journal, journal
    check = c.run(
        ["pumaguard-heartbeat", "--settings", SETTINGS, "--check-config"],
        user="pumaguard-hb",
        check=False,
    )
    assert check.returncode == 78


@pytest.mark.daemon_log(allow=[r"[Ww]atchdog timeout"])  # systemd says it, at err
def test_kill_9_restarts_and_watchdog(station: Station) -> None:
    st, c = station, station.c
    st.write_settings(settings_yaml("tcp"))
    c.write(
        "/etc/systemd/system/pumaguard-heartbeat.service.d/test.conf",
        "[Service]\nWatchdogSec=2\nRestartSec=1\n",
    )
    c.run(["systemctl", "daemon-reload"])
    c.run(["systemctl", "restart", UNIT], timeout=60)
    first = c.show(UNIT, "MainPID")

    # The event loop feeds a 2 s watchdog: alive after 5 s, not restarted.
    time.sleep(5)
    assert c.show(UNIT, "NRestarts") == "0"
    assert c.show(UNIT, "MainPID") == first

    # (systemctl kill: the container has no procps, as a minimal system)
    c.run(["systemctl", "kill", "--signal=KILL", "--kill-whom=main", UNIT])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if c.show(UNIT, "NRestarts") == "1" and c.show(UNIT, "ActiveState") == "active":
            break
        time.sleep(0.2)
    assert c.show(UNIT, "NRestarts") == "1", c.journal(UNIT)
    assert c.show(UNIT, "ActiveState") == "active"
    assert c.show(UNIT, "MainPID") != first
    st.wait_status("1/3 cameras connected")

    # A hung daemon (SIGSTOP) is killed by the watchdog and restarted.
    c.run(["systemctl", "kill", "--signal=STOP", "--kill-whom=main", UNIT])
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and c.show(UNIT, "NRestarts") != "2":
        time.sleep(0.5)
    assert c.show(UNIT, "NRestarts") == "2", c.journal(UNIT)
    assert "watchdog" in c.journal(UNIT).lower()


def test_cli_as_group_member_and_stranger(station: Station) -> None:
    st, c = station, station.c
    st.write_settings(settings_yaml("tcp"))
    c.run(["systemctl", "reload", UNIT], timeout=30)
    st.wait_status("1/3 cameras connected")
    c.run(["useradd", "--create-home", "--groups", "pumaguard-hb", "alice"])
    c.run(["useradd", "--create-home", "bob"])

    # A member: status works, and exit 1 tells that a camera is disconnected.
    status = st.hb("--json", "status", user="alice")
    assert status.returncode == 1, status.stdout + status.stderr
    data = json.loads(status.stdout)
    text = json.dumps(data)
    for ip in (CAM_UP, CAM_PING_ONLY, CAM_SILENT):
        assert ip in text
    plain = st.hb("status", user="alice")
    assert "\x1b[" not in plain.stdout  # no colour codes off a terminal
    assert "Microseven-up" in plain.stdout

    check = st.hb("--json", "check-now", user="alice")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "Traceback" not in check.stderr

    # Settings changed through the daemon are validated and persisted in its own config
    # (the unit's --config), which wins over the shared file.
    shared_interval = st.settings().get("camera_heartbeat_interval")
    assert st.hb("config", "set", "camera_heartbeat_interval", "7", user="alice").returncode == 0
    assert st.settings(OWN_CONFIG)["camera_heartbeat_interval"] == 7
    assert st.settings().get("camera_heartbeat_interval") == shared_interval
    bad = st.hb("config", "set", "camera_heartbeat_interval", "-1", user="alice")
    assert bad.returncode == 6, bad.stdout + bad.stderr
    assert st.settings(OWN_CONFIG)["camera_heartbeat_interval"] == 7
    assert st.hb("check-now", "no-such-camera", user="alice").returncode == 5
    assert st.hb("no-such-command", user="alice").returncode == 2
    assert st.hb("reload", user="alice").returncode == 0

    # Not a member: one clear line, exit 4, no traceback.
    denied = st.hb("status", user="bob")
    assert denied.returncode == 4, denied.stdout + denied.stderr
    assert "permission denied" in (denied.stdout + denied.stderr).lower()
    assert "pumaguard-hb" in denied.stdout + denied.stderr
    assert "Traceback" not in denied.stderr
    assert st.hb("config", "set", "camera_heartbeat_interval", "9", user="bob").returncode == 4

    # All cameras up: exit 0.
    st.cams.exec("ip", "addr", "add", f"{CAM_SILENT}/24", "dev", st.cams_if)
    with (
        nspawn.background(start_camera(st.cams, CAM_PING_ONLY)),
        nspawn.background(start_camera(st.cams, CAM_SILENT)),
    ):
        # the cameras' servers need a moment to listen (bounded retry, not a sleep)
        for _ in range(20):
            ok = st.hb("--json", "check-now", user="alice")
            if ok.returncode == 0:
                break
            time.sleep(0.5)
        assert ok.returncode == 0, ok.stdout + ok.stderr

    # Daemon stopped: exit 3.
    c.run(["systemctl", "stop", UNIT], timeout=30)
    down = st.hb("status", user="alice")
    assert down.returncode == 3, down.stdout + down.stderr


def test_dnsmasq_lease_marks_camera_connected(station: Station) -> None:
    st, c = station, station.c
    st.write_settings(settings_yaml("icmp", interval=300))
    c.run(["systemctl", "reload", UNIT], timeout=30)
    c.run(
        [
            "cp",
            "/usr/share/doc/pumaguard-heartbeat/examples/dnsmasq-pumaguard-heartbeat.conf.example",
            "/etc/dnsmasq.d/pumaguard-heartbeat.conf",
        ]
    )
    c.write(
        "/etc/dnsmasq.d/test-lan.conf",
        f"port=0\ninterface={st.station_if}\nbind-interfaces\n"
        "dhcp-range=10.204.1.100,10.204.1.150,255.255.255.0,1h\n",
    )
    started = c.run(["systemctl", "enable", "--now", "dnsmasq.service"], timeout=60, check=False)
    assert started.returncode == 0, c.journal("dnsmasq.service")

    # A camera asks for a lease (udhcpc from the container's tree, run in the
    # cameras' namespace); dnsmasq runs the hook; the daemon takes it.
    mac = st.cams.exec("cat", f"/sys/class/net/{st.cams_if}/address").stdout.strip()
    st.cams.exec(
        "chroot",
        str(c.root),
        "udhcpc",
        "-i",
        st.cams_if,
        "-n",
        "-q",
        "-f",
        "-t",
        "5",
        "-T",
        "1",
        "-x",
        "hostname:Microseven-dhcp",
        "-s",
        "/bin/true",
        timeout=30,
    )
    deadline = time.monotonic() + 20
    found: dict[str, Any] = {}
    while time.monotonic() < deadline and not found:
        for cam in st.settings().get("cameras") or []:
            if str(cam.get("mac_address", "")).lower() == mac.lower():
                found = cam
        time.sleep(0.5)
    assert found, c.journal("dnsmasq.service") + c.journal(UNIT)
    assert found["hostname"] == "Microseven-dhcp"
    assert found["status"] == "connected"
    assert found["ip_address"].startswith("10.204.1.1")

    # The camera takes its address (udhcpc ran with a no-op script), so
    # that sweeps agree with the lease.
    st.cams.exec("ip", "addr", "add", f"{found['ip_address']}/24", "dev", st.cams_if)

    # With the daemon down the hook writes the file itself (as root, as
    # dnsmasq runs it), and the daemon can still write the file afterwards.
    c.run(["systemctl", "stop", UNIT], timeout=30)
    hook = c.run([HOOK, "del", mac, found["ip_address"], "Microseven-dhcp"], check=False)
    assert hook.returncode == 0, hook.stdout + hook.stderr
    after = {str(x.get("mac_address", "")).lower(): x for x in st.settings()["cameras"]}
    assert after[mac.lower()]["status"] == "disconnected"
    c.run(["systemctl", "start", UNIT], timeout=60)  # first sweep: it answers ping
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = {str(x.get("mac_address", "")).lower(): x for x in st.settings()["cameras"]}
        if after[mac.lower()]["status"] == "connected":
            break
        time.sleep(0.5)
    assert after[mac.lower()]["status"] == "connected", c.journal(UNIT)
    assert "cannot write" not in c.show(UNIT, "StatusText")
    assert "Traceback" not in c.journal(UNIT)


#: A file in the form the PumaGuard web UI writes (the project's own copy).
WEBUI_FIXTURE = nspawn.REPO / "tests/fixtures/pumaguard-webui-settings.yaml"


WEBUI_DIR = "/home/pumaguard/.config/pumaguard"
WEBUI_FILE = f"{WEBUI_DIR}/pumaguard-settings.yaml"
# The drop-in docs/packaging.md tells admins to write with `systemctl edit`.
SOCKET = "/run/pumaguard/heartbeat.sock"
WEBUI_DROPIN = f"""[Service]
ExecStart=
ExecStart=/usr/bin/pumaguard-heartbeat --settings {WEBUI_FILE} --socket {SOCKET}
ReadWritePaths={WEBUI_DIR}
ProtectHome=read-only
"""


def test_service_on_the_web_ui_settings_file(station: Station) -> None:
    """The documented drop-in points the service at the web UI's file in /home."""
    st, c = station, station.c
    # The fixture's cameras, moved onto the test network: .100 answers.
    text = WEBUI_FIXTURE.read_text().replace("192.168.52.", "10.204.1.")
    st.cams.exec("ip", "addr", "add", "10.204.1.100/24", "dev", st.cams_if)
    c.run(["useradd", "--create-home", "--groups", "pumaguard-hb", "pumaguard"])
    # Debian 13 makes new homes private (0700): the service must pass through (docs say so)
    c.run(["chmod", "o+x", "/home/pumaguard"])
    c.run(["install", "-d", "-o", "pumaguard", "-g", "pumaguard-hb", "-m", "2775", WEBUI_DIR])
    c.write(WEBUI_FILE, text, mode=0o664)
    c.run(["chown", "pumaguard:pumaguard-hb", WEBUI_FILE])
    c.write("/etc/systemd/system/pumaguard-heartbeat.service.d/override.conf", WEBUI_DROPIN)
    c.run(["systemctl", "daemon-reload"])

    with nspawn.background(start_camera(st.cams, "10.204.1.100")):
        c.run(["systemctl", "restart", UNIT], timeout=60)
        deadline = time.monotonic() + 20
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            out = c.run(
                [
                    "python3",
                    "-c",
                    "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
                    WEBUI_FILE,
                ]
            )
            doc = json.loads(out.stdout)
            cams = {cam["mac_address"]: cam for cam in doc["cameras"]}
            if cams["aa:bb:cc:dd:ee:ff"]["last_seen"] != "2024-01-15T14:32:15Z":
                break
            time.sleep(0.5)
    cams = {cam["mac_address"]: cam for cam in doc["cameras"]}
    assert cams["aa:bb:cc:dd:ee:ff"]["status"] == "connected", c.journal(UNIT)
    assert cams["aa:bb:cc:dd:ee:ff"]["last_seen"] != "2024-01-15T14:32:15Z", c.journal(UNIT)
    assert cams["aa:bb:cc:dd:ee:01"]["last_seen"] == "2024-01-15T09:02:44Z"
    # Everything else the web UI keeps is still there, in its own spelling.
    original = json.loads(
        c.run(
            ["python3", "-c", "import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
            input=text,
        ).stdout
    )
    for key, value in original.items():
        if key != "cameras":
            assert doc.get(key) == value, key
    assert not any(k.startswith("camera_heartbeat") for k in doc)
    # Mode and group stay; the owner becomes the service's user (it has no
    # CAP_CHOWN), which is why docs/packaging.md puts the web UI's user in
    # the group: then both sides can still write the file.
    mode, _owner, group = c.run(["stat", "-c", "%a %U %G", WEBUI_FILE]).stdout.split()
    assert (mode, group) == ("664", "pumaguard-hb")
    c.run(
        [
            "runuser",
            "-u",
            "pumaguard",
            "--",
            "python3",
            "-c",
            "import sys; p = sys.argv[1]; t = open(p).read(); open(p, 'w').write(t)",
            WEBUI_FILE,
        ]
    )
    assert "cannot write" not in c.show(UNIT, "StatusText")
    assert "Traceback" not in c.journal(UNIT)
