"""The installed service in web UI mode beside the REAL PumaGuard web UI, in a booted systemd.

As an admin meets it (README "With the PumaGuard web UI", docs/webui.md): the .deb
installed in the container (the fixtures of conftest.py), PumaGuard's web UI (pumaguard
25.x from the host's ``.cache/webui-venv``, copied into the container at the same absolute
path: the container is the host's Debian release, so its ``/usr/bin/python3`` runs it) as a
unit of its own on 127.0.0.1:5000 with its heartbeat off, our service pointed at it with
``pumaguard-hb config set camera_heartbeat_webui_url`` and at its settings file with a
drop-in, fake cameras as TCP listeners on loopback addresses inside the container.

Network: only the container's own namespace (made by the fixture, nothing in it but
``lo``); every address is 127.0.5.x or 127.0.0.1.

Everything started here runs inside the container, which the fixture powers off (and
removes) also when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nspawn
import pytest

pytestmark = pytest.mark.systemd

UNIT = "pumaguard-heartbeat.service"
WEBUI_UNIT = "pumaguard-webui.service"
OWN_CONFIG = "/var/lib/pumaguard-heartbeat/heartbeat.yaml"  # the unit's --config
SOCKET = "/run/pumaguard/heartbeat.sock"
URL = "http://127.0.0.1:5000"

# The web UI's folder and file (the shared settings file), and its user.
WEBUI_USER = "pumaguard"
WEBUI_DIR = "/var/lib/pumaguard"
WEBUI_FILE = f"{WEBUI_DIR}/pumaguard-settings.yaml"

#: The web UI as installed for the tests (tests/webui/install.sh, by ./dev setup).
WEBUI_VENV = Path(
    os.environ.get("PUMAGUARD_WEBUI_VENV", nspawn.REPO / ".cache" / "webui-venv")
).resolve()
#: where the venv goes inside the container: not under /tmp or /run, which a booted
#: container covers with a tmpfs (a clone under /tmp, as CI's may be, would vanish). A venv
#: run as ``bin/python -m`` works from another path: it finds itself by pyvenv.cfg.
CONTAINER_VENV = "/opt/pumaguard-webui-venv"

CAM_UP = ("Microseven-up", "127.0.5.10", "aa:bb:cc:05:00:10")  # a TCP listener on :80
CAM_DOWN = ("Microseven-down", "127.0.5.11", "aa:bb:cc:05:00:11")  # nothing listens: refused
OLD = "2024-01-15T14:32:15Z"  # the down camera's last good contact, in the web UI's file

# The shared file at the web UI's first start, in its own (hyphenated) form. Its heartbeat
# is off (the documented setup); the down camera is "connected" in it (a stale state our
# daemon must correct); the interval here is the web UI's, ours wins from our own config.
WEBUI_SETTINGS = f"""camera-heartbeat-enabled: false
camera-heartbeat-interval: 60
plug-heartbeat-enabled: false
image-dimensions:
- 299
- 299
cameras:
- hostname: {CAM_DOWN[0]}
  ip_address: {CAM_DOWN[1]}
  mac_address: {CAM_DOWN[2]}
  last_seen: '{OLD}'
  status: connected
"""

# The web UI as a station runs it: its own user, its own unit, loopback, no mDNS.
WEBUI_SERVICE = f"""[Unit]
Description=PumaGuard web UI (test)

[Service]
User={WEBUI_USER}
Group={WEBUI_USER}
WorkingDirectory=/home/{WEBUI_USER}
Environment=HOME=/home/{WEBUI_USER} LANG=C.UTF-8 PYTHONUNBUFFERED=1 NO_PROXY=* no_proxy=*
ExecStart={CONTAINER_VENV}/bin/python -m pumaguard.web_ui --host 127.0.0.1 --port 5000 \
--no-mdns --settings {WEBUI_FILE}
"""

# The drop-in of docs/packaging.md ("systemctl edit pumaguard-heartbeat"): --settings names
# the web UI's file; the unit's own --config and --socket are kept. The daemon may write
# that folder (as the documented drop-in allows), so "it never writes the file in web UI
# mode" is its own doing, not the sandbox's.
DROPIN = f"""[Service]
ExecStart=
ExecStart=/usr/bin/pumaguard-heartbeat --settings {WEBUI_FILE} --config {OWN_CONFIG} \
--socket {SOCKET}
ReadWritePaths={WEBUI_DIR}
"""

# Inside the container: one request to the web UI, printed as {"code", "body"} JSON.
API = """
import json, sys, urllib.error, urllib.request
method, path = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request("http://127.0.0.1:5000" + path, data=data, method=method)
if data is not None:
    req.add_header("Content-Type", "application/json")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(req, timeout=10) as resp:
        code, raw = resp.status, resp.read()
except urllib.error.HTTPError as err:
    code, raw = err.code, err.read()
print(json.dumps({"code": code, "body": json.loads(raw) if raw else None}))
"""

# A fake camera's web server inside the container: accepts and closes.
LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 80)); s.listen(64)
while True:
    c, _ = s.accept(); c.close()
"""

WAIT = 90.0  # a bounded wait for anything (a loaded 2-core box): no timing is asserted


def setting(doc: dict[str, Any], name: str) -> Any:
    """A heartbeat key of a settings document, in either spelling."""
    return doc.get(name, doc.get(name.replace("_", "-")))


def require_webui_venv() -> None:
    """Skip (under CI: fail) without the web UI's venv, as tests/webui_harness.py does."""
    if (WEBUI_VENV / "bin" / "python").exists() and (WEBUI_VENV / "pyvenv.cfg").exists():
        return
    message = (
        f"the real PumaGuard web UI is not installed in {WEBUI_VENV}: "
        "run `sh tests/webui/install.sh` (./dev setup does)"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI must run the web UI tests)", pytrace=False)
    pytest.skip(message)


class Station:
    """The booted container with the package, the web UI and the fake cameras."""

    def __init__(self, c: nspawn.Container) -> None:
        self.c = c

    # -- diagnostics --------------------------------------------------------------------

    def logs(self) -> str:
        return (
            "\n--- journalctl -u pumaguard-heartbeat:\n"
            + self.c.journal(UNIT)[-4000:]
            + "\n--- journalctl -u pumaguard-webui:\n"
            + self.c.journal(WEBUI_UNIT)[-3000:]
        )

    def until(self, what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
        """``probe()`` until it returns something true; fail saying ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            last = probe()
            if last:
                return last
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not within {timeout}s (last: {last!r})" + self.logs()
                )
            time.sleep(0.5)

    # -- the web UI ---------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any] | None:
        """One request to the web UI from inside the container; None when it does not answer."""
        args = ["python3", "-c", API, method, path]
        if body is not None:
            args.append(json.dumps(body))
        proc = self.c.run(args, check=False, timeout=30)
        if proc.returncode != 0:
            return None
        out = json.loads(proc.stdout)
        return out["code"], out["body"]

    def webui_cameras(self) -> dict[str, dict[str, Any]]:
        """The web UI's camera list (``GET /api/dhcp/cameras``), by MAC; {} when down."""
        answer = self.api("GET", "/api/dhcp/cameras")
        if answer is None or answer[0] != 200:
            return {}
        return {cam["mac_address"]: cam for cam in answer[1]["cameras"]}

    def webui_running(self) -> bool:
        answer = self.api("GET", "/api/status")
        return answer is not None and answer[0] == 200 and answer[1].get("status") == "running"

    def start_webui(self) -> None:
        self.c.run(["systemctl", "start", WEBUI_UNIT], timeout=60)
        self.until("the web UI answers GET /api/status", self.webui_running)

    # -- our service --------------------------------------------------------------------

    def hb(self, *args: str, user: str | None = None) -> Any:
        return self.c.run(
            ["pumaguard-hb", *args], user=user, check=False, env={"NO_COLOR": "1"}, timeout=60
        )

    def status(self, user: str | None = None) -> dict[str, Any]:
        """``pumaguard-hb status --json`` (exit 1 only says a camera is disconnected)."""
        proc = self.hb("status", "--json", user=user)
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr + self.logs()
        data: dict[str, Any] = json.loads(proc.stdout)
        return data

    def our_cameras(self, user: str | None = None) -> dict[str, dict[str, Any]]:
        return {cam["mac_address"]: cam for cam in self.status(user)["cameras"]}

    def yaml_file(self, path: str) -> dict[str, Any]:
        out = self.c.run(
            [
                "python3",
                "-c",
                "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
                path,
            ]
        ).stdout
        doc: dict[str, Any] = json.loads(out) or {}
        return doc

    def file_cameras(self) -> dict[str, dict[str, Any]]:
        """The cameras in the shared file, by MAC."""
        return {x["mac_address"]: x for x in self.yaml_file(WEBUI_FILE).get("cameras") or []}

    def inode(self, path: str = WEBUI_FILE) -> int:
        return int(self.c.run(["stat", "-c", "%i", path]).stdout)

    def journal_lines(self, *extra: str) -> list[str]:
        return self.c.journal(UNIT, *extra).splitlines()


def test_service_in_web_ui_mode_beside_the_real_web_ui(installed: nspawn.Container) -> None:
    require_webui_venv()
    c = installed
    st = Station(c)
    t0 = time.monotonic()

    # -- the web UI: its user, its file (heartbeat off), its unit, inside the container ----
    shutil.copytree(WEBUI_VENV, c.root / CONTAINER_VENV.lstrip("/"), symlinks=True)
    c.run(["useradd", "--create-home", WEBUI_USER])
    c.run(["install", "-d", "-o", WEBUI_USER, "-g", "pumaguard-hb", "-m", "2775", WEBUI_DIR])
    c.write(WEBUI_FILE, WEBUI_SETTINGS, mode=0o664)
    c.run(["chown", f"{WEBUI_USER}:pumaguard-hb", WEBUI_FILE])
    c.write(f"/etc/systemd/system/{WEBUI_UNIT}", WEBUI_SERVICE)
    c.run(["systemctl", "daemon-reload"])
    st.start_webui()
    print(f"\nweb UI answering in the container after {time.monotonic() - t0:.1f}s")

    # -- the cameras: one up (a listener on :80), one refusing; the up one added in the web
    # UI through its API (as "disconnected": our daemon's probe must make it connected) ---
    c.run(
        ["systemd-run", "--unit=fake-camera-up", "python3", "-c", LISTENER, CAM_UP[1]],
        timeout=30,
    )
    st.until(
        "the fake camera listens",
        lambda: (
            c.run(
                [
                    "python3",
                    "-c",
                    f"import socket; socket.create_connection(('{CAM_UP[1]}', 80), 2)",
                ],
                check=False,
            ).returncode
            == 0
        ),
    )
    added = st.api(
        "POST",
        "/api/dhcp/cameras",
        {
            "hostname": CAM_UP[0],
            "ip_address": CAM_UP[1],
            "mac_address": CAM_UP[2],
            "status": "disconnected",
        },
    )
    assert added is not None and added[0] == 201, added
    assert set(st.webui_cameras()) == {CAM_UP[2], CAM_DOWN[2]}
    inode = st.inode()
    owner = c.run(["stat", "-c", "%U:%G %a", WEBUI_FILE]).stdout.strip()
    assert owner == f"{WEBUI_USER}:pumaguard-hb 664", owner

    # -- our service in web UI mode, the documented way ------------------------------------
    for key, value in (("camera_heartbeat_webui_url", URL), ("camera_heartbeat_interval", "2")):
        done = st.hb("config", "set", key, value)
        assert done.returncode == 0, done.stdout + done.stderr + st.logs()
    c.write("/etc/systemd/system/pumaguard-heartbeat.service.d/webui.conf", DROPIN)
    c.run(["systemctl", "daemon-reload"])
    c.run(["systemctl", "restart", UNIT], timeout=90)

    status = st.until(
        "status --json says web UI mode, reachable",
        lambda: (
            (s := st.status())["daemon"]["mode"] == "webui"
            and (s["daemon"]["webui"] or {}).get("reachable") is True
            and s
        ),
    )
    daemon = status["daemon"]
    assert daemon["webui"]["url"] == URL
    assert daemon["webui"]["problem"] is None
    assert daemon["settings_path"] == WEBUI_FILE
    assert daemon["config_path"] == OWN_CONFIG
    assert daemon["interval_s"] == 2  # ours (own config) wins over the web UI's 60
    assert daemon["enabled"] is True  # the shared switch is off: it is the web UI's
    started = [ln for ln in st.journal_lines() if "started:" in ln]
    assert started and f"web UI mode ({URL})" in started[-1], started
    print(f"service in web UI mode after {time.monotonic() - t0:.1f}s: {started[-1]}")

    # -- the web UI's screen shows our results -------------------------------------------
    def webui_shows_truth() -> dict[str, dict[str, Any]] | None:
        cams = st.webui_cameras()
        up, down = cams.get(CAM_UP[2]), cams.get(CAM_DOWN[2])
        if up and down and up["status"] == "connected" and down["status"] == "disconnected":
            return cams
        return None

    shown = st.until("the web UI shows up=connected, down=disconnected", webui_shows_truth)
    assert shown[CAM_DOWN[2]]["last_seen"] == OLD, shown  # its last good contact, kept
    assert shown[CAM_UP[2]]["last_seen"], shown

    # ... and a member of the group sees the same in `pumaguard-hb status`
    c.run(["useradd", "--create-home", "--groups", "pumaguard-hb", "alice"])
    ours = st.until(
        "pumaguard-hb status (as a group member) shows both",
        lambda: (
            (o := st.our_cameras(user="alice"))
            and o.get(CAM_UP[2], {}).get("status") == "connected"
            and o.get(CAM_DOWN[2], {}).get("status") == "disconnected"
            and o
        ),
    )
    assert ours[CAM_DOWN[2]]["last_seen"] == OLD, ours
    assert ours[CAM_UP[2]]["ip_address"] == CAM_UP[1]
    plain = st.hb("status", user="alice")
    assert plain.returncode == 1, plain.stdout + plain.stderr  # one camera is disconnected
    assert CAM_UP[0] in plain.stdout and CAM_DOWN[0] in plain.stdout, plain.stdout
    assert "web UI" in plain.stdout, plain.stdout

    # The web UI saved what it shows into its file itself (its own saves: in place).
    saved = st.until(
        "the web UI's file holds our results (saved by the web UI)",
        lambda: (
            (cams := st.file_cameras()).get(CAM_UP[2], {}).get("status") == "connected"
            and cams.get(CAM_DOWN[2], {}).get("status") == "disconnected"
            and cams
        ),
    )
    assert saved[CAM_DOWN[2]]["last_seen"] == OLD

    # -- one writer: the web UI. Our daemon never renamed over its file; our keys are ours --
    assert st.inode() == inode, "the shared file was replaced (renamed over)"
    own = st.yaml_file(OWN_CONFIG)  # a new file: written in the web UI's spelling (hyphens)
    assert setting(own, "camera_heartbeat_webui_url") == URL, own
    assert setting(own, "camera_heartbeat_interval") == 2, own
    shared = st.yaml_file(WEBUI_FILE)
    assert not any(k.startswith("camera_heartbeat") for k in shared), shared
    assert setting(shared, "camera_heartbeat_webui_url") is None, shared
    assert shared["camera-heartbeat-enabled"] is False
    assert shared["camera-heartbeat-interval"] == 60
    leftovers = c.run(["ls", "-A", WEBUI_DIR]).stdout.split()
    assert all(not n.startswith(".pumaguard-settings.yaml") for n in leftovers), leftovers

    # -- systemctl reload (after an admin's edit of our own file: a longer TCP timeout) ----
    pid = c.show(UNIT, "MainPID")
    c.run(
        ["sh", "-c", f"echo 'camera-heartbeat-tcp-timeout: 2' >> {OWN_CONFIG}"],
    )
    reload = c.run(["systemctl", "reload", UNIT], check=False, timeout=60)
    assert reload.returncode == 0, reload.stdout + reload.stderr + st.logs()
    assert c.show(UNIT, "ActiveState") == "active"
    assert c.show(UNIT, "MainPID") == pid
    after = st.until(
        "still web UI mode and reachable after the reload",
        lambda: (
            (s := st.status())["daemon"]["mode"] == "webui"
            and (s["daemon"]["webui"] or {}).get("reachable") is True
            and s
        ),
    )
    assert after["daemon"]["interval_s"] == 2
    st.until(
        "the edit is in force after the reload",
        lambda: st.status()["daemon"]["settings"]["camera_heartbeat_tcp_timeout"] == 2,
    )
    assert any("settings reloaded" in ln for ln in st.journal_lines()), st.logs()
    assert st.inode() == inode

    # -- the web UI stops: one warning, status says why, monitoring goes on --------------
    def webui_warnings() -> list[str]:
        return [
            ln
            for ln in st.journal_lines("-p", "warning")
            if URL in ln and "monitoring goes on" in ln
        ]

    assert webui_warnings() == [], webui_warnings()
    c.run(["systemctl", "stop", WEBUI_UNIT], timeout=60)
    down = st.until(
        "status shows daemon.webui.problem",
        lambda: (s := st.status())["daemon"]["webui"].get("problem") and s,
    )
    assert down["daemon"]["webui"]["reachable"] is False
    assert URL in down["daemon"]["webui"]["problem"], down["daemon"]["webui"]
    # several sweeps with the web UI down: still one warning, not one per sweep
    sweeps = down["daemon"]["sweeps"]
    st.until("three more sweeps", lambda: st.status()["daemon"]["sweeps"] >= sweeps + 3)
    warned = webui_warnings()
    assert len(warned) == 1, warned
    print(f"the one warning: {warned[0]}")
    st.until(
        "STATUS= says the web UI is not answering",
        lambda: "web UI not answering" in c.show(UNIT, "StatusText"),
    )

    # Meanwhile the up camera goes down: monitoring goes on without the web UI.
    c.run(["systemctl", "stop", "fake-camera-up"], timeout=30)
    ours = st.until(
        "status shows the camera that went down while the web UI was away",
        lambda: (o := st.our_cameras()).get(CAM_UP[2], {}).get("status") == "disconnected" and o,
    )
    last_good = ours[CAM_UP[2]]["last_seen"]
    assert last_good and last_good != OLD

    # -- the web UI comes back: the state is back (it restarted from its file, where the up
    # camera was still connected) and the problem is gone ---------------------------------
    st.start_webui()
    st.until(
        "status shows the web UI reachable again",
        lambda: (
            (w := st.status()["daemon"]["webui"]).get("reachable") is True
            and w.get("problem") is None
        ),
    )
    back = st.until(
        "the web UI shows the current state again",
        lambda: (
            (cams := st.webui_cameras()).get(CAM_UP[2], {}).get("status") == "disconnected"
            and cams.get(CAM_DOWN[2], {}).get("status") == "disconnected"
            and cams
        ),
    )
    assert back[CAM_UP[2]]["last_seen"] == last_good, (back, last_good)  # its last good contact
    assert back[CAM_DOWN[2]]["last_seen"] == OLD, back
    assert len(webui_warnings()) == 1, webui_warnings()
    assert any("answers again" in ln for ln in st.journal_lines()), st.logs()

    # Still one writer, after all of it: same inode, and still the web UI user's file (a
    # file our daemon wrote would belong to pumaguard-hb).
    assert st.inode() == inode, "the shared file was replaced (renamed over)"
    assert c.run(["stat", "-c", "%U:%G %a", WEBUI_FILE]).stdout.strip() == owner
    assert c.show(UNIT, "NRestarts") == "0"
    assert "Traceback" not in c.journal(UNIT)
    print(f"whole scenario {time.monotonic() - t0:.1f}s")
