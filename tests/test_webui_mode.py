"""Web UI mode end to end: the real daemon, the real CLI and the real PumaGuard web UI.

The web UI (pumaguard 25.x, tests/webui/install.sh) runs on a loopback port over the
shared settings file, its own heartbeat off (the documented setup); the daemon runs with
``--webui URL --config OWN``; fake cameras are TCP listeners on 127.0.60.x. What is
checked is what the station's people see: the web UI's camera list and its event stream,
``pumaguard-hb status``, and the shared file, which only the web UI writes.

Intervals are 1 s; every wait is bounded with a generous margin (a loaded 2-core
machine); nothing asserts how fast something happened. docs/webui.md has the facts about
the web UI these tests rely on.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Daemon, wait_for
from helpers_cli import Listeners, clean_env, hook_folder, run_cli, run_hook
from webui_harness import (
    WebUIServer,
    camera_record,
    webui_factory,
    webui_settings,
    write_webui_settings,
)

__all__ = ["webui_factory"]  # the fixture, imported for pytest

UP = ("Microseven-Gate", "127.0.60.2", "aa:bb:cc:60:00:02")
DOWN = ("Microseven-Creek", "127.0.60.3", "aa:bb:cc:60:00:03")
SPARE = ("Microseven-Barn", "127.0.60.4", "aa:bb:cc:60:00:04")  # listens; not in the file
OLD = "2024-01-15T14:32:15Z"
WAIT = 60.0  # bound of every wait: many intervals, on a loaded machine


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(stamp: str | None) -> float:
    assert stamp, stamp
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - when).total_seconds()


class Station:
    """A station in web UI mode: the web UI's file and process, our own config, cameras."""

    def __init__(
        self,
        tmp: Path,
        make_webui: Callable[..., WebUIServer],
        listeners: Listeners,
        cameras: list[dict[str, Any]],
        shared: dict[str, Any] | None = None,
        own: dict[str, Any] | None = None,
        start_webui: bool = True,
    ) -> None:
        self.tmp = tmp
        self.listeners = listeners
        # UP and SPARE answer on one port; DOWN's address has nothing on it: refused
        self.port = listeners.open_same_port([UP[1], SPARE[1]])
        shared_keys: dict[str, Any] = {"camera-heartbeat-tcp-port": self.port}
        shared_keys.update(shared or {})
        self.shared = write_webui_settings(
            tmp / "pumaguard-settings.yaml", webui_settings(cameras, **shared_keys)
        )
        # our own config in a folder only root may write: the daemon runs as root here, and a
        # privileged key is honoured only from such a place (docs/security.md)
        (tmp / "own").mkdir(mode=0o755, exist_ok=True)
        self.own = tmp / "own" / "heartbeat.yaml"
        own_doc: dict[str, Any] = {
            "camera_heartbeat_interval": 1,
            "camera_heartbeat_method": "tcp",
            "camera_heartbeat_tcp_port": self.port,
            "camera_heartbeat_tcp_timeout": 1,
        }
        own_doc.update(own or {})
        self.own.write_text(yaml.safe_dump(own_doc, sort_keys=False))
        self.webui = make_webui(self.shared, start=start_webui)
        self.daemon = Daemon(tmp, self.shared)
        self.inode = os.stat(self.shared).st_ino

    @property
    def url(self) -> str:
        return self.webui.url

    def start_daemon(
        self, args: list[str] | None = None, env: dict[str, str] | None = None, wait: bool = True
    ) -> Daemon:
        if args is None:
            args = ["--webui", self.url, "--config", str(self.own)]
        return self.daemon.start(args=args, env=env, wait=wait)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.daemon.call("status")
        return status

    def ours(self) -> dict[str, dict[str, Any]]:
        """The daemon's cameras by MAC."""
        return {c["mac_address"]: c for c in self.status()["cameras"] if c.get("mac_address")}

    def theirs(self) -> dict[str, dict[str, Any]]:
        """The web UI's cameras by MAC."""
        return self.webui.cameras_by_mac()

    def cli(self, *args: str) -> Any:
        return run_cli(*args, env=clean_env(PUMAGUARD_HB_SOCKET=str(self.daemon.socket)))

    def sweeps(self) -> int:
        return int(self.status()["daemon"]["sweeps"])

    def wait_sweeps(self, n: int) -> None:
        """Wait (bounded) until ``n`` more sweeps have run."""
        target = self.sweeps() + n
        wait_for(lambda: self.sweeps() >= target, WAIT, 0.2)

    def wait_webui(self, mac: str, timeout: float = WAIT, **want: Any) -> dict[str, Any]:
        """Wait (bounded) until the web UI shows camera ``mac`` with the fields ``want``."""

        def shown() -> dict[str, Any] | None:
            cam = self.theirs().get(mac)
            if cam is not None and all(cam.get(k) == v for k, v in want.items()):
                return cam
            return None

        try:
            found: dict[str, Any] = wait_for(shown, timeout, 0.2)
        except AssertionError:
            raise AssertionError(
                f"the web UI does not show {mac} with {want}: {self.theirs().get(mac)}\n"
                f"daemon log:\n{self.daemon.log()[-4000:]}"
            ) from None
        return found

    def assert_one_writer(self) -> None:
        """The shared file is still the web UI's: same inode (it truncates in place; we
        never replace it)."""
        assert os.stat(self.shared).st_ino == self.inode, "the shared file was replaced"
        temps = list(self.tmp.glob(".pumaguard-settings.yaml.tmp*"))
        assert not temps, temps


@pytest.fixture
def station(
    tmp_path: Path, webui_factory: Callable[..., WebUIServer]
) -> Iterator[Callable[..., Station]]:
    """``make(cameras, shared=..., own=...)``: a Station; everything stopped afterwards."""
    listeners = Listeners()
    made: list[Station] = []
    # a folder the dnsmasq hook run as root may use: it acts as the folder's owner
    folder = hook_folder()
    where = folder.__enter__()

    def make(cameras: list[dict[str, Any]], **kw: Any) -> Station:
        s = Station(where, webui_factory, listeners, cameras, **kw)
        made.append(s)
        return s

    try:
        yield make
    finally:
        for s in made:
            s.daemon.stop()
        listeners.close_all()
        folder.__exit__(None, None, None)


def two_cameras() -> list[dict[str, Any]]:
    """UP is up but the file says disconnected; DOWN is down but the file says connected."""
    return [
        camera_record(*UP, status="disconnected", last_seen=OLD),
        camera_record(*DOWN, status="connected", last_seen=OLD),
    ]


# -- our results in the web UI -------------------------------------------------------------



# Keys every version of the shared file has: the tests' first document (webui_settings) and
# every save of the web UI (a sorted dump of all its settings) both hold these, as booleans
# or lists; a web UI save (it starts with YOLO-model-filename, the first key in its sort
# order) ends with WEBUI_LAST.
ALWAYS = {"cameras": list, "image-dimensions": list, "plug-heartbeat-enabled": bool}
WEBUI_FIRST, WEBUI_LAST = "YOLO-model-filename", "with-augmentation"


def whole(text: str) -> bool:
    """``text`` is a whole shared file, not a read of one being rewritten (cut short)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    if not isinstance(doc, dict) or not text.endswith("\n"):
        return False
    if not all(isinstance(doc.get(k), t) for k, t in ALWAYS.items()):
        return False
    return WEBUI_FIRST not in doc or isinstance(doc.get(WEBUI_LAST), bool)


def shared_text(s: Any, timeout: float = 10.0) -> str:
    """The web UI's settings file as a whole: the web UI rewrites it without a lock
    (truncate, then write), so a read may catch it empty or half written, and half a file
    may still parse; read again until it is whole (:func:`whole`: the keys always there are
    there, up to the last one), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        text = s.shared.read_text()
        if whole(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{s.shared} never read whole within {timeout}s: {text[:200]!r}")
        time.sleep(0.05)


def stop_webui_whole(s: Any) -> None:
    """Stop the web UI with its file whole. It saves by truncating and then writing, without
    a lock: stopped in the middle of a save, it leaves a torn file that stays torn. Started
    again on that file it would load no cameras and save that (seen once: a whole file with
    an empty camera list), so a torn stop is not restarted: the last whole save read just
    before the stop is put back, as the cut-short save would have left it."""
    last = ""
    for _ in range(100):  # a whole read: the web UI may be saving right now
        last = s.shared.read_text()
        if whole(last):
            break
        time.sleep(0.05)
    assert whole(last), "the web UI's file was never whole in 5 s"
    s.webui.stop()
    if not whole(s.shared.read_text()):
        s.shared.write_text(last)


def shared_doc(s: Any) -> dict[str, Any]:
    """:func:`shared_text`, parsed."""
    doc = yaml.safe_load(shared_text(s))
    assert isinstance(doc, dict)
    return doc


def test_our_status_and_last_seen_reach_its_list_and_its_event_stream(station) -> None:
    s = station(two_cameras())
    with s.webui.events(timeout=WAIT * 3) as events:
        s.start_daemon()
        up = s.wait_webui(UP[2], status="connected")
        assert up["last_seen"] != OLD and ago(up["last_seen"]) < 600
        down = s.wait_webui(DOWN[2], status="disconnected")
        assert down["last_seen"] == OLD  # the last good contact, not the time of the del
        connected = events.wait_for(
            lambda e: e["type"] == "camera_connected" and e["data"]["mac_address"] == UP[2]
        )
        assert connected["data"]["status"] == "connected"
        gone = events.wait_for(
            lambda e: e["type"] == "camera_disconnected" and e["data"]["mac_address"] == DOWN[2]
        )
        assert gone["data"]["last_seen"] == OLD

        status = s.status()
        assert status["daemon"]["mode"] == "webui"
        assert status["daemon"]["webui"]["url"] == s.url
        assert status["daemon"]["webui"]["reachable"] is True
        assert status["daemon"]["webui"]["problem"] is None
        ours = s.ours()
        assert ours[UP[2]]["status"] == "connected"
        assert (ours[DOWN[2]]["status"], ours[DOWN[2]]["last_seen"]) == ("disconnected", OLD)

        # the camera goes down: the web UI shows it down with our last good contact
        s.listeners.close((UP[1], s.port))
        s.wait_webui(UP[2], status="disconnected")
        ours = s.ours()
        assert ours[UP[2]]["status"] == "disconnected"
        last_good = ours[UP[2]]["last_seen"]
        assert last_good != OLD
        shown = s.wait_webui(UP[2], status="disconnected", last_seen=last_good)
        assert ago(shown["last_seen"]) < 600
        offline = events.wait_for(
            lambda e: e["type"] == "camera_disconnected" and e["data"]["mac_address"] == UP[2]
        )
        assert offline["data"]["last_seen"] == last_good
        # and it kept that last_seen over more sweeps while down
        s.wait_sweeps(3)
        assert s.theirs()[UP[2]]["last_seen"] == last_good
        assert s.ours()[UP[2]]["last_seen"] == last_good

    # the web UI's own saves put our results in its file; it alone wrote it
    doc = shared_doc(s)
    on_disk = {c["mac_address"]: c for c in doc["cameras"]}
    assert (on_disk[UP[2]]["status"], on_disk[UP[2]]["last_seen"]) == ("disconnected", last_good)
    assert (on_disk[DOWN[2]]["status"], on_disk[DOWN[2]]["last_seen"]) == ("disconnected", OLD)
    s.assert_one_writer()


def test_a_camera_never_seen_goes_down_as_never_seen(station) -> None:
    """A camera added with ``pumaguard-hb camera add`` that never answers: the web UI's
    add sets its last_seen to now, but there was no good contact, so our ``del`` carries
    null ("never") and the web UI shows that, not the time of the add.

    (A camera added in the web UI itself keeps the web UI's add time: from its list alone
    that cannot be told from a DHCP lease, which is a contact.)
    """
    s = station([])
    s.start_daemon()
    done = s.cli("camera", "add", DOWN[0], DOWN[1], "--mac", DOWN[2])
    assert done.returncode == 0, (done.stdout, done.stderr)
    s.wait_webui(DOWN[2], status="disconnected", last_seen=None)
    ours = s.ours()[DOWN[2]]
    assert (ours["status"], ours["last_seen"]) == ("disconnected", None)
    s.wait_sweeps(2)
    assert s.theirs()[DOWN[2]]["last_seen"] is None
    s.assert_one_writer()


def test_the_shared_switch_off_and_ours_on(station) -> None:
    """``camera-heartbeat-enabled: false`` in the web UI's file is its own heartbeat's
    switch: our daemon probes anyway; ``camera_heartbeat_enabled`` in our config is ours."""
    s = station(two_cameras(), shared={"camera-heartbeat-enabled": False})
    assert shared_doc(s)["camera-heartbeat-enabled"] is False
    s.start_daemon()
    s.wait_webui(UP[2], status="connected")
    assert s.status()["daemon"]["enabled"] is True
    # (the sweep's report may reach the web UI before the sweep is counted as done)
    wait_for(lambda: s.sweeps() >= 1, WAIT, 0.2)

    # ours off, through our own config (config set writes there)
    done = s.cli("config", "set", "camera_heartbeat_enabled", "false")
    assert done.returncode == 0, done.stderr
    own = yaml.safe_load(s.own.read_text())
    assert own.get("camera_heartbeat_enabled", own.get("camera-heartbeat-enabled")) is False
    wait_for(lambda: s.status()["daemon"]["enabled"] is False, WAIT, 0.2)
    assert "camera_heartbeat_enabled" not in shared_text(s)
    sweeps = s.sweeps()
    time.sleep(3)  # three intervals: no new sweep while ours is off
    assert s.sweeps() <= sweeps + 1  # (one in flight at the switch may still finish)
    done = s.cli("check-now")
    assert done.returncode == 6, (done.returncode, done.stdout, done.stderr)

    # and on again
    assert s.cli("config", "set", "camera_heartbeat_enabled", "true").returncode == 0
    s.wait_sweeps(1)
    s.assert_one_writer()


def test_our_own_config_off_switch_at_start(station) -> None:
    s = station(
        two_cameras(),
        shared={"camera-heartbeat-enabled": True},
        own={"camera_heartbeat_enabled": False},
    )
    s.start_daemon()
    status = s.status()
    assert status["daemon"]["enabled"] is False
    assert status["daemon"]["mode"] == "webui"


def test_the_web_ui_own_heartbeat_would_probe_when_its_switch_is_on(station) -> None:
    """The other side of the switch, measured: with ``camera-heartbeat-enabled: true`` the
    web UI probes by itself (and saves), which is why the guide turns it off."""
    s = station(
        [camera_record(*UP, status="disconnected", last_seen=OLD)],
        shared={"camera-heartbeat-enabled": True, "camera-heartbeat-interval": 1},
    )
    s.wait_webui(UP[2], status="connected")  # its own probe, no daemon running


# -- settings ------------------------------------------------------------------------------


class Hooks:
    """A webhook receiver on loopback."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        received = self.got

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with contextlib.suppress(ValueError):
                    received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    try:
        yield h
    finally:
        h.close()


def test_our_settings_are_intact_after_many_web_ui_saves(station, hooks: Hooks) -> None:
    s = station(
        two_cameras(),
        own={
            "camera_heartbeat_failure_threshold": 2,
            "camera_heartbeat_webhooks": [hooks.url],
            "camera_heartbeat_hostname_patterns": ["Microseven*", "Axis*"],
        },
    )
    own_before = s.own.read_bytes()
    s.start_daemon()
    s.wait_webui(UP[2], status="connected")
    # many saves of the web UI's file, by the web UI itself: events and cameras of its API
    for i in range(30):
        mac = f"aa:bb:cc:60:01:{i:02x}"
        code, _ = s.webui.request(
            "POST",
            "/api/dhcp/event",
            {
                "action": "add",
                "mac_address": mac,
                "ip_address": f"127.0.61.{i + 1}",
                "hostname": f"Reolink-{i}",
                "timestamp": iso(datetime.now(UTC)),
            },
        )
        assert code == 200
        code, _ = s.webui.request("DELETE", f"/api/dhcp/cameras/{mac}")
        assert code == 200
    web_doc = shared_doc(s)
    assert not any(k.endswith(("failure-threshold", "failure_threshold")) for k in web_doc)
    s.wait_sweeps(2)

    assert s.own.read_bytes() == own_before  # nobody touched our file
    settings = s.status()["daemon"]["settings"]
    assert settings["camera_heartbeat_failure_threshold"] == 2
    assert settings["camera_heartbeat_webhooks"] == ["http://***"]  # secret: shown redacted
    hooks_got = s.cli("--json", "config", "get", "--show-secrets", "camera_heartbeat_webhooks")
    assert json.loads(hooks_got.stdout)["value"] == [hooks.url], hooks_got.stderr
    assert settings["camera_heartbeat_hostname_patterns"] == ["Microseven*", "Axis*"]
    got = s.cli("config", "get", "camera_heartbeat_failure_threshold")
    assert (got.returncode, got.stdout.strip()) == (0, "2")

    # and they are in force: a camera down after 2 failed sweeps, announced by webhook
    s.listeners.close((UP[1], s.port))
    s.wait_webui(UP[2], status="disconnected")
    down = wait_for(
        lambda: [
            h
            for h in hooks.got
            if h.get("event") == "camera_down" and h["camera"]["mac_address"] == UP[2]
        ],
        WAIT,
        0.2,
    )
    assert down[0]["status"] == "disconnected"
    s.assert_one_writer()


def test_config_set_writes_our_own_file_not_the_web_ui_file(station) -> None:
    s = station(two_cameras())
    s.start_daemon()
    s.wait_webui(UP[2], status="connected")
    shared_before = shared_doc(s)
    done = s.cli("config", "set", "camera_heartbeat_failure_threshold", "4")
    assert done.returncode == 0, done.stderr
    own = yaml.safe_load(s.own.read_text())
    assert own["camera_heartbeat_failure_threshold"] == 4
    assert own["camera_heartbeat_tcp_port"] == s.port  # the rest of our file is kept
    got = s.cli("config", "get", "camera_heartbeat_failure_threshold")
    assert got.stdout.strip() == "4"
    shared_after = shared_doc(s)
    assert shared_after.keys() == shared_before.keys()
    s.assert_one_writer()


@pytest.mark.parametrize("how", ["flag", "env", "key", "hyphen-key", "config-env"])
def test_ways_to_name_the_web_ui(station, how: str) -> None:
    s = station(two_cameras())
    args: list[str] = ["--config", str(s.own)]
    env: dict[str, str] = {}
    own = yaml.safe_load(s.own.read_text())
    if how == "flag":
        args += ["--webui", s.url]
    elif how == "env":
        env["PUMAGUARD_WEBUI_URL"] = s.url
    elif how == "key":
        own["camera_heartbeat_webui_url"] = s.url
    elif how == "hyphen-key":
        own["camera-heartbeat-webui-url"] = s.url
    else:  # the own config named by $PUMAGUARD_HB_CONFIG
        own["camera_heartbeat_webui_url"] = s.url
        args = []
        env["PUMAGUARD_HB_CONFIG"] = str(s.own)
    s.own.write_text(yaml.safe_dump(own))
    s.start_daemon(args=args, env=env)
    status = s.status()
    assert status["daemon"]["mode"] == "webui"
    assert status["daemon"]["webui"]["url"] == s.url
    s.wait_webui(UP[2], status="connected")
    s.assert_one_writer()


def test_standalone_mode_is_reported_as_such(station) -> None:
    s = station(two_cameras())
    s.webui.stop()
    standalone = s.tmp / "standalone.yaml"
    write_webui_settings(standalone, webui_settings([]))
    d = Daemon(s.tmp / "alone", standalone)
    (s.tmp / "alone").mkdir()
    d.start(env={"PUMAGUARD_WEBUI_URL": ""})
    try:
        status = d.call("status")
        assert status["daemon"]["mode"] == "standalone"
    finally:
        d.stop()


@pytest.mark.daemon_log(exit=78)
def test_an_invalid_web_ui_url_stops_the_start_with_exit_78(station) -> None:
    s = station(two_cameras())
    s.start_daemon(args=["--webui", "ftp://127.0.0.1:5000", "--config", str(s.own)], wait=False)
    wait_for(lambda: s.daemon.proc is not None and s.daemon.proc.poll() is not None, 30)
    assert s.daemon.proc is not None and s.daemon.proc.returncode == 78


# -- cameras added on either side ----------------------------------------------------------


def test_a_camera_added_and_removed_in_the_web_ui_is_monitored_and_dropped(station) -> None:
    s = station(two_cameras())
    s.start_daemon()
    s.wait_webui(UP[2], status="connected")
    code, _ = s.webui.request(
        "POST",
        "/api/dhcp/cameras",
        {
            "hostname": SPARE[0],
            "ip_address": SPARE[1],
            "mac_address": SPARE[2],
            "status": "disconnected",
        },
    )
    assert code == 201
    wait_for(lambda: s.ours().get(SPARE[2], {}).get("status") == "connected", WAIT, 0.2)
    s.wait_webui(SPARE[2], status="connected")
    code, _ = s.webui.request("DELETE", f"/api/dhcp/cameras/{SPARE[2]}")
    assert code == 200
    wait_for(lambda: SPARE[2] not in s.ours(), WAIT, 0.2)
    s.wait_sweeps(2)
    assert SPARE[2] not in s.theirs()  # we did not bring it back
    s.assert_one_writer()


def test_camera_add_and_remove_with_the_cli_go_to_the_web_ui(station) -> None:
    s = station(two_cameras())
    s.start_daemon()
    s.wait_webui(UP[2], status="connected")
    # a name the web UI's own rule would not call a camera: added through its API anyway
    done = s.cli("camera", "add", "Yard-Cam", SPARE[1], "--mac", SPARE[2].upper())
    assert done.returncode == 0, (done.stdout, done.stderr)
    cam = s.wait_webui(SPARE[2], status="connected")
    assert (cam["hostname"], cam["ip_address"]) == ("Yard-Cam", SPARE[1])
    assert s.ours()[SPARE[2]]["status"] == "connected"
    # it stays (the web UI's next saves do not lose it: it is in its memory)
    s.wait_sweeps(3)
    assert SPARE[2] in s.theirs()
    assert SPARE[2] in {c["mac_address"] for c in shared_doc(s)["cameras"]}

    # without a MAC: refused, saying why
    done = s.cli("camera", "add", "No-Mac-Cam", "127.0.60.9")
    assert done.returncode in (2, 6), (done.returncode, done.stdout, done.stderr)
    assert "MAC" in done.stderr and "web UI" in done.stderr, done.stderr
    assert "127.0.60.9" not in {c["ip_address"] for c in s.theirs().values()}

    done = s.cli("camera", "add", "Yard-Cam-Again", SPARE[1], "--mac", SPARE[2])
    assert done.returncode == 6, (done.returncode, done.stdout, done.stderr)  # exists already

    done = s.cli("camera", "remove", SPARE[2])
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert SPARE[2] not in s.theirs()
    wait_for(lambda: SPARE[2] not in s.ours(), WAIT, 0.2)
    done = s.cli("camera", "remove", SPARE[2])
    assert done.returncode == 5, (done.returncode, done.stdout, done.stderr)
    s.assert_one_writer()


def test_dhcp_events_are_forwarded_to_the_web_ui(station) -> None:
    s = station(two_cameras(), own={"camera_heartbeat_hostname_patterns": ["Microseven*", "Axis*"]})
    s.start_daemon()
    s.wait_webui(UP[2], status="connected")
    env = clean_env(PUMAGUARD_HB_SOCKET=str(s.daemon.socket))

    # a name both rules know, through the CLI
    done = run_cli("dhcp-event", "add", SPARE[2], SPARE[1], "Microseven-Pond", env=env)
    assert done.returncode == 0, (done.stdout, done.stderr)
    cam = s.wait_webui(SPARE[2], status="connected")
    assert cam["hostname"] == "Microseven-Pond"
    wait_for(lambda: SPARE[2] in s.ours(), WAIT, 0.2)

    # a name only our patterns know, through dnsmasq's hook: added to the web UI first
    axis = ("Axis-Yard", UP[1], "aa:bb:cc:60:00:0a")
    done = run_hook("add", axis[2], axis[1], axis[0], env=env)
    assert done.returncode == 0, done.stderr
    cam = s.wait_webui(axis[2])
    assert cam["hostname"] == "Axis-Yard"
    wait_for(lambda: axis[2] in s.ours(), WAIT, 0.2)

    # a device neither rule knows: neither side takes it
    done = run_cli("dhcp-event", "add", "aa:bb:cc:60:00:0b", "127.0.60.11", "laptop", env=env)
    assert done.returncode == 0, (done.stdout, done.stderr)
    s.wait_sweeps(2)
    assert "aa:bb:cc:60:00:0b" not in s.theirs()
    assert "aa:bb:cc:60:00:0b" not in s.ours()

    # a lease released for a camera already down: its last good contact is kept
    s.wait_webui(DOWN[2], status="disconnected", last_seen=OLD)
    done = run_cli("dhcp-event", "del", DOWN[2], DOWN[1], DOWN[0], env=env)
    assert done.returncode == 0, (done.stdout, done.stderr)
    s.wait_sweeps(2)
    assert s.theirs()[DOWN[2]]["status"] == "disconnected"
    assert s.theirs()[DOWN[2]]["last_seen"] == OLD
    s.assert_one_writer()


def test_the_hook_without_the_daemon_sends_to_the_web_ui_and_keeps_last_seen(station) -> None:
    """The daemon stopped, the web UI running: dnsmasq's hook passes events straight to the
    web UI (never writing its file), and a ``del`` keeps the camera's last good contact."""
    s = station(two_cameras())
    s.own.write_text(s.own.read_text() + f"camera_heartbeat_webui_url: {s.url}\n")
    s.start_daemon(args=["--config", str(s.own)])
    s.wait_webui(UP[2], status="connected")
    s.daemon.stop()
    up = s.theirs()[UP[2]]
    env = clean_env(
        PUMAGUARD_HB_SOCKET=str(s.daemon.socket),
        PUMAGUARD_HB_CONFIG=str(s.own),
        PUMAGUARD_SETTINGS=str(s.shared),
    )
    done = run_hook("del", UP[2], UP[1], UP[0], env=env)
    assert done.returncode == 0, done.stderr
    cam = s.wait_webui(UP[2], status="disconnected")
    assert cam["last_seen"] == up["last_seen"], (cam, up)  # not null, not now
    done = run_hook("add", SPARE[2], SPARE[1], "Microseven-New", env=env)
    assert done.returncode == 0, done.stderr
    cam = s.wait_webui(SPARE[2], status="connected")
    assert ago(cam["last_seen"]) < 600
    s.assert_one_writer()


# -- the web UI restarted, down, absent ----------------------------------------------------


def test_the_web_ui_restarted_from_an_old_file_is_brought_back_to_the_truth(station) -> None:
    s = station(two_cameras())
    s.start_daemon()
    s.wait_webui(UP[2], status="connected")
    s.wait_webui(DOWN[2], status="disconnected")
    # while the web UI is down, UP goes down and DOWN comes up; the file still says otherwise
    stop_webui_whole(s)
    s.listeners.close((UP[1], s.port))
    down_port = s.listeners.open(DOWN[1], s.port)
    wait_for(lambda: s.ours()[UP[2]]["status"] == "disconnected", WAIT, 0.2)
    wait_for(lambda: s.ours()[DOWN[2]]["status"] == "connected", WAIT, 0.2)
    status = s.status()
    assert status["daemon"]["webui"]["reachable"] is False
    problem = status["daemon"]["webui"]["problem"]
    assert problem and "refused" in problem, problem
    s.wait_sweeps(3)  # monitoring goes on, fresh results
    status = s.status()
    assert status["daemon"]["last_sweep"]["started_at"] > time.time() - 30
    # the first failure may be a reset or a timeout (the web UI stopping mid-request), later
    # ones refused: what is said once is the web UI not answering, whatever the error
    lines = [
        ln
        for ln in s.daemon.log().splitlines()
        if s.url in ln and "results are sent when it answers again" in ln
    ]
    assert len(lines) == 1, lines  # said once, not once per sweep
    file_says = {
        c["mac_address"]: c["status"] for c in shared_doc(s)["cameras"]
    }
    assert file_says == {UP[2]: "connected", DOWN[2]: "disconnected"}  # we did not write it

    s.webui.start()  # same port, same (old) file
    s.wait_webui(UP[2], status="disconnected")
    s.wait_webui(DOWN[2], status="connected")
    wait_for(lambda: s.status()["daemon"]["webui"]["problem"] is None, WAIT, 0.2)
    assert s.status()["daemon"]["webui"]["reachable"] is True
    last_good = s.ours()[UP[2]]["last_seen"]
    s.wait_webui(UP[2], status="disconnected", last_seen=last_good)
    assert down_port
    s.assert_one_writer()


def test_a_web_ui_absent_at_start_is_waited_for(station) -> None:
    s = station(two_cameras(), start_webui=False)
    before = s.shared.read_bytes()
    s.start_daemon()
    status = s.status()
    assert status["daemon"]["mode"] == "webui"
    wait_for(lambda: s.status()["daemon"]["webui"]["problem"] is not None, WAIT, 0.2)
    status = s.status()
    assert status["daemon"]["webui"]["reachable"] is False
    assert "refused" in status["daemon"]["webui"]["problem"]
    s.wait_sweeps(3)  # the daemon runs on
    assert s.daemon.proc is not None and s.daemon.proc.poll() is None
    assert os.stat(s.shared).st_ino == s.inode
    assert s.shared.read_bytes() == before  # nothing written while the web UI is away

    s.webui.start()
    s.wait_webui(UP[2], status="connected")
    s.wait_webui(DOWN[2], status="disconnected", last_seen=OLD)
    wait_for(lambda: s.status()["daemon"]["webui"]["reachable"] is True, WAIT, 0.2)
    assert s.status()["daemon"]["webui"]["problem"] is None
    s.assert_one_writer()


def test_a_web_ui_answering_errors_does_not_stop_monitoring(station) -> None:
    """Something else answers on the web UI's port (HTTP 500 to everything): monitoring
    goes on, the problem is shown once; the real web UI back on the port is caught up."""
    s = station(two_cameras(), start_webui=False)

    class Broken(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _fail(self) -> None:
            self.send_response(500)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_DELETE = _fail

    broken = http.server.ThreadingHTTPServer(("127.0.0.1", s.webui.port), Broken)
    thread = threading.Thread(target=broken.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        s.start_daemon()
        wait_for(lambda: s.status()["daemon"]["webui"]["problem"] is not None, WAIT, 0.2)
        problem = s.status()["daemon"]["webui"]["problem"]
        assert "HTTP 500" in problem, problem
        s.wait_sweeps(3)
        lines = [ln for ln in s.daemon.log().splitlines() if "HTTP 500" in ln]
        assert len(lines) == 1, lines
    finally:
        broken.shutdown()
        broken.server_close()
        thread.join(5)
    s.webui.start()
    s.wait_webui(UP[2], status="connected")
    s.wait_webui(DOWN[2], status="disconnected")
    s.assert_one_writer()


# -- one writer ----------------------------------------------------------------------------


def test_nothing_to_report_means_no_save_and_the_file_untouched(station) -> None:
    """The web UI already shows the truth (UP connected and seen a moment ago, DOWN
    disconnected): over several sweeps our daemon sends nothing, so the web UI saves
    nothing, and the file's bytes and inode are unchanged."""
    recent = iso(datetime.now(UTC) - timedelta(seconds=5))
    s = station(
        [
            camera_record(*UP, status="connected", last_seen=recent),
            camera_record(*DOWN, status="disconnected", last_seen=OLD),
        ]
    )
    before = s.shared.read_bytes()
    mtime = os.stat(s.shared).st_mtime_ns
    s.start_daemon()
    s.wait_sweeps(5)
    assert s.ours()[UP[2]]["status"] == "connected"
    assert s.ours()[DOWN[2]]["status"] == "disconnected"
    assert s.shared.read_bytes() == before
    assert os.stat(s.shared).st_mtime_ns == mtime
    s.assert_one_writer()


def test_the_shared_file_inode_stays_through_everything(station) -> None:
    """A busy session: CLI add/remove, DHCP events, config set, check-now, a web UI restart.
    The shared file is always the web UI's own (same inode; no temp files of ours)."""
    s = station(two_cameras())
    s.start_daemon()
    s.wait_webui(UP[2], status="connected")
    env = clean_env(PUMAGUARD_HB_SOCKET=str(s.daemon.socket))
    for _ in range(3):
        assert s.cli("camera", "add", SPARE[0], SPARE[1], "--mac", SPARE[2]).returncode == 0
        assert run_cli("dhcp-event", "old", SPARE[2], SPARE[1], "", env=env).returncode == 0
        assert s.cli("check-now").returncode in (0, 1)
        assert s.cli("camera", "remove", SPARE[2]).returncode == 0
        s.assert_one_writer()
    assert s.cli("config", "set", "camera_heartbeat_interval", "2").returncode == 0
    s.webui.restart()
    s.wait_webui(UP[2], status="connected")
    s.wait_sweeps(2)
    s.assert_one_writer()
    assert "camera_heartbeat_interval" not in shared_text(s)
    assert yaml.safe_load(s.own.read_text())["camera_heartbeat_interval"] == 2


def test_status_text_names_the_web_ui(station) -> None:
    s = station(two_cameras())
    s.start_daemon()
    s.wait_webui(UP[2], status="connected")
    done = s.cli("status")
    assert done.returncode in (0, 1), done.stderr
    assert s.url in done.stdout, done.stdout
    js = s.cli("status", "--json")
    doc = json.loads(js.stdout)
    assert doc["daemon"]["mode"] == "webui"
    assert set(doc["daemon"]["webui"]) >= {"url", "reachable", "problem"}


def test_the_guide_config_set_of_the_url_then_a_restart(station) -> None:
    """docs/webui.md step 2 for the service: ``config set camera_heartbeat_webui_url`` writes
    our own config; after a restart the daemon is in web UI mode."""
    s = station(two_cameras())
    # standalone first, on a settings file of its own (as the service's default)
    (s.tmp / "standalone").mkdir()
    alone = Daemon(s.tmp / "standalone", s.tmp / "standalone" / "pumaguard-settings.yaml")
    alone.start(args=["--config", str(s.own)])
    try:
        assert alone.call("status")["daemon"]["mode"] == "standalone"
        done = run_cli(
            "config",
            "set",
            "camera_heartbeat_webui_url",
            s.url,
            env=clean_env(PUMAGUARD_HB_SOCKET=str(alone.socket)),
        )
        assert done.returncode == 0, (done.stdout, done.stderr)
    finally:
        alone.stop()
    assert yaml.safe_load(s.own.read_text())["camera_heartbeat_webui_url"] == s.url
    s.start_daemon(args=["--config", str(s.own)])
    status = s.status()
    assert status["daemon"]["mode"] == "webui"
    assert status["daemon"]["webui"]["url"] == s.url
    s.wait_webui(UP[2], status="connected")
    s.assert_one_writer()


def test_a_dhcp_event_while_the_web_ui_is_down_reaches_it_on_its_return(station) -> None:
    """No result is lost: a lease event the daemon got while the web UI was away is sent
    when it answers again (and the camera is monitored meanwhile)."""
    s = station(two_cameras())
    s.start_daemon()
    s.wait_webui(UP[2], status="connected")
    stop_webui_whole(s)
    env = clean_env(PUMAGUARD_HB_SOCKET=str(s.daemon.socket))
    done = run_cli("dhcp-event", "add", SPARE[2], SPARE[1], "Microseven-Pond", env=env)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    wait_for(lambda: s.ours().get(SPARE[2], {}).get("status") == "connected", WAIT, 0.2)
    s.wait_sweeps(2)
    # we did not write it into the web UI's file ourselves: no byte of it names the camera
    assert SPARE[2] not in s.shared.read_text()
    s.webui.start()
    cam = s.wait_webui(SPARE[2], status="connected")
    assert cam["hostname"] == "Microseven-Pond"
    s.wait_sweeps(2)
    assert SPARE[2] in s.ours()
    s.assert_one_writer()
