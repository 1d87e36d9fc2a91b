"""Actions on state change against real receivers: a real daemon, real HTTP servers on
loopback, cameras as real TCP listeners, a real command. Only loopback is used."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Listeners, camera, free_port, wait_for, write_settings
from receiver import Receiver

from pumaguard_hb.model.events import StateChange
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.outputs.actions import Actions, event_body
from pumaguard_hb.outputs.webhook import post_json

MAC1, MAC2 = "aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


# -- receivers ----------------------------------------------------------------------------


class DeadReceiver:
    """Accepts connections and never answers (nor reads): a hung webhook receiver."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hung"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        for conn in self.conns:
            conn.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def dead() -> Iterator[DeadReceiver]:
    r = DeadReceiver()
    yield r
    r.close()


def settings_doc(cameras: list[dict[str, object]], **keys: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "camera-heartbeat-interval": 3600,
        "camera-heartbeat-method": "tcp",
        "camera-heartbeat-tcp-timeout": 1,
        "cameras": cameras,
    }
    doc.update(keys)
    return doc


def events(r: Receiver, path: str = "/hook") -> list[str]:
    return [p["body"]["event"] for p in r.got(path)]


# -- webhooks against a real daemon ---------------------------------------------------------


def test_webhook_down_and_recovery(
    daemon_factory, listeners: Listeners, receiver: Receiver
) -> None:
    cam = listeners.open("127.0.0.31")
    d = daemon_factory()
    write_settings(d.settings, settings_doc(
        [camera("Microseven-gate", cam[0], MAC1, status="connected")],
        **{"camera-heartbeat-tcp-port": cam[1], "camera_heartbeat_webhooks": [receiver.url()]},
    ))
    d.start()
    wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= 1)
    assert receiver.got() == []  # connected -> connected is no change, nothing is sent

    listeners.close(cam)
    before = time.time()
    d.call("check_now")
    (down,) = wait_for(lambda: receiver.got(event="camera_down"), 5)
    body = down["body"]
    assert body["version"] == 1
    assert body["camera"] == {"id": MAC1, "hostname": "Microseven-gate",
                              "ip_address": "127.0.0.31", "mac_address": MAC1}
    assert (body["status"], body["previous_status"]) == ("disconnected", "connected")
    assert ISO.match(body["at"])
    assert abs(time.mktime(time.strptime(body["at"], "%Y-%m-%dT%H:%M:%SZ"))
               - time.mktime(time.gmtime(before))) < 5
    assert body["method"] == "tcp" and "refused" in body["reason"]
    assert body["rtt_ms"] is None
    assert body["message"].startswith("camera Microseven-gate (127.0.0.31) is down: ")
    assert re.fullmatch(r"[0-9a-f]{32}", body["event_id"])
    headers = down["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("pumaguard-heartbeat/")

    listeners.open(*cam)  # the camera is back
    d.call("check_now")
    (up,) = wait_for(lambda: receiver.got(event="camera_up"), 5)
    assert (up["body"]["status"], up["body"]["previous_status"]) == ("connected", "disconnected")
    assert up["body"]["rtt_ms"] is not None and up["body"]["rtt_ms"] >= 0
    assert up["body"]["event_id"] != body["event_id"]
    assert events(receiver) == ["camera_down", "camera_up"]  # in order
    assert d.stop() == 0


def test_webhook_retries_5xx_not_4xx(daemon_factory, receiver: Receiver) -> None:
    receiver.plan["/flaky"] = [500, 503]
    receiver.plan["/gone"] = [404, 404, 404]
    d = daemon_factory()
    port = free_port("127.0.0.32")
    write_settings(d.settings, settings_doc(
        [camera("Microseven-flaky", "127.0.0.32", MAC1, status="connected")],
        **{"camera-heartbeat-tcp-port": port,
           "camera_heartbeat_webhooks": [receiver.url("/flaky"), receiver.url("/gone")]},
    ))
    d.start()  # the first sweep finds the camera down
    tries = wait_for(lambda: len(receiver.got("/flaky")) == 3 and receiver.got("/flaky"), 10)
    assert [t["answered"] for t in tries] == [500, 503, 200]
    assert len({t["body"]["event_id"] for t in tries}) == 1  # the same event, retried
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(tries)]
    assert 0.9 < gaps[0] < 1.8 and 1.9 < gaps[1] < 2.8, gaps  # backoff 1 s, then 2 s
    time.sleep(0.5)
    assert len(receiver.got("/gone")) == 1  # a 4xx is not retried
    log = d.log()
    assert re.search(r"webhook #2 http://127\.0\.0\.1:\d+/…: camera_down of Microseven-flaky "
                     r"not delivered after 1 attempt in [0-9.]+s: HTTP 404 Not Found: no thanks",
                     log), log
    assert "#1" not in "".join(line for line in log.splitlines() if "not delivered" in line)
    assert "/gone" not in log and "/flaky" not in log  # paths may hold tokens: not logged
    assert d.stop() == 0


def test_dead_receiver_blocks_nothing_and_shutdown_is_quick(
    daemon_factory, listeners: Listeners, receiver: Receiver, dead: DeadReceiver
) -> None:
    first = listeners.open("127.0.0.33")
    cams = [first, listeners.open("127.0.0.34", first[1])]  # one port number for both
    d = daemon_factory()
    write_settings(d.settings, settings_doc(
        [camera("Microseven-a", cams[0][0], MAC1, status="connected"),
         camera("Microseven-b", cams[1][0], MAC2, status="connected")],
        **{"camera-heartbeat-tcp-port": cams[0][1],
           "camera_heartbeat_webhooks": [dead.url, receiver.url()]},
    ))
    d.start()
    wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= 1)
    for i, cam in enumerate(cams):
        listeners.close(cam)
        started = time.monotonic()
        d.call("check_now")
        took = time.monotonic() - started
        # waiting for the hung receiver would cost its 5 s HTTP timeout (and retries): well
        # under that, with room for a loaded machine's noise, means nothing waited for it
        assert took < 4.0, took  # the hung receiver does not slow the sweep
        wait_for(lambda n=i + 1: len(receiver.got(event="camera_down")) == n, 4.5)
        assert time.monotonic() - started < 4.5  # nor the other URL
    wait_for(lambda: len(dead.conns) >= 1, 5)  # the hung receiver is being tried
    started = time.monotonic()
    assert d.stop() == 0
    took = time.monotonic() - started
    assert took < 4.0, took  # pending deliveries dropped, not waited for (5 s timeout each)
    log = d.log()
    assert "dropped 2 pending actions" in log, log  # one in flight, one waiting behind it
    assert "Traceback" not in log


# -- the command ------------------------------------------------------------------------------


RECORDER = """\
import json, os, sys
out = sys.argv[1]
record = {k: v for k, v in os.environ.items() if k.startswith("PUMAGUARD_HB_")}
record["argv"] = sys.argv[2:]
record["stdin"] = sys.stdin.read()
record["stdin_target"] = os.readlink("/proc/self/fd/0")
with open(out, "a") as f:
    f.write(json.dumps(record) + "\\n")
"""

FAILING = "import sys\nprint('boom: the siren is unplugged')\nprint('more')\nsys.exit(3)\n"


def test_command_gets_event_in_env(daemon_factory, listeners: Listeners, tmp_path: Path) -> None:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    out = tmp_path / "events.jsonl"
    cam = listeners.open("127.0.0.35")
    command = shlex.join([sys.executable, str(script), str(out)]) + " 'two words' $HOME"
    d = daemon_factory()
    write_settings(d.settings, settings_doc(
        [camera("Microseven-cmd", cam[0], MAC1, status="disconnected")],
        **{"camera-heartbeat-tcp-port": cam[1], "camera_heartbeat_on_change_command": command},
    ))
    d.start()  # the first sweep finds the camera up: a recovery
    (up,) = wait_for(lambda: out.exists() and out.read_text().splitlines(), 5)
    listeners.close(cam)
    d.call("check_now")
    lines = wait_for(lambda: len(out.read_text().splitlines()) == 2
                     and out.read_text().splitlines(), 5)
    up, down = (json.loads(line) for line in lines)
    assert up["PUMAGUARD_HB_EVENT"] == "camera_up"
    assert up["PUMAGUARD_HB_PREVIOUS_STATUS"] == "disconnected"
    assert float(up["PUMAGUARD_HB_RTT_MS"]) >= 0
    assert down["PUMAGUARD_HB_EVENT"] == "camera_down"
    assert down["argv"] == ["two words", "$HOME"]  # no shell
    assert down["stdin"] == "" and down["stdin_target"] == "/dev/null"
    assert down["PUMAGUARD_HB_CAMERA_ID"] == MAC1
    assert down["PUMAGUARD_HB_HOSTNAME"] == "Microseven-cmd"
    assert down["PUMAGUARD_HB_IP"] == "127.0.0.35"
    assert down["PUMAGUARD_HB_MAC"] == MAC1
    assert down["PUMAGUARD_HB_STATUS"] == "disconnected"
    assert down["PUMAGUARD_HB_PREVIOUS_STATUS"] == "connected"
    assert ISO.match(down["PUMAGUARD_HB_AT"])
    assert "refused" in down["PUMAGUARD_HB_REASON"]
    assert down["PUMAGUARD_HB_METHOD"] == "tcp"
    assert down["PUMAGUARD_HB_RTT_MS"] == ""
    body = json.loads(down["PUMAGUARD_HB_JSON"])
    assert body["event"] == "camera_down" and body["version"] == 1
    assert body["event_id"] == down["PUMAGUARD_HB_EVENT_ID"]

    # a reload takes effect: a failing command is logged with its status and first line
    failing = tmp_path / "fail.py"
    failing.write_text(FAILING)
    d.call("config_set", {"key": "camera_heartbeat_on_change_command",
                          "value": shlex.join([sys.executable, str(failing)])})
    listeners.open(*cam)
    d.call("check_now")
    wait_for(lambda: "exited with status 3" in d.log(), 5)
    assert re.search(r"on-change command for camera_up of Microseven-cmd exited with status 3: "
                     r"boom: the siren is unplugged$", d.log(), re.M), d.log()
    assert len(out.read_text().splitlines()) == 2  # the old command no longer runs
    assert d.stop() == 0


def test_webhooks_set_at_runtime(daemon_factory, listeners: Listeners, receiver: Receiver) -> None:
    cam = listeners.open("127.0.0.36")
    d = daemon_factory()
    write_settings(d.settings, settings_doc(
        [camera("Microseven-late", cam[0], MAC1, status="connected")],
        **{"camera-heartbeat-tcp-port": cam[1]},
    ))
    d.start()
    wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= 1)
    d.call("config_set", {"key": "camera_heartbeat_webhooks", "value": [receiver.url("/new")]})
    listeners.close(cam)
    d.call("check_now")
    wait_for(lambda: events(receiver, "/new") == ["camera_down"], 5)
    assert d.stop() == 0


# -- in process: the queue, overflow, shutdown ------------------------------------------------


def change(i: int, new: str = "disconnected") -> StateChange:
    return StateChange(f"aa:bb:cc:00:00:{i:02x}", f"cam{i}", f"10.0.0.{i}", "", "connected",
                       new, time.time(), "tcp refused", "tcp")


def test_overflow_drops_oldest_once_per_burst(dead: DeadReceiver, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="pumaguard_hb")

    async def main() -> tuple[float, int, list[str]]:
        actions = Actions(lambda: Settings(webhooks=(dead.url,)), queue_size=5, http_timeout=30)
        started = time.perf_counter()
        for i in range(1000):
            actions.notify(change(i % 250))
        took = time.perf_counter() - started
        pending = actions.pending
        channel = actions.webhooks[dead.url]
        waiting = [item["camera"]["hostname"] for item in channel.items]
        await actions.close(grace=0.05)
        return took, pending, waiting

    took, pending, waiting = asyncio.run(main())
    assert took < 5.0, took  # the listener only queues: one blocked send would take 30 s
    assert pending == 5
    assert waiting == [f"cam{i}" for i in range(245, 250)]  # the newest are kept
    warnings = [r.getMessage() for r in caplog.records if "dropping the oldest" in r.getMessage()]
    assert len(warnings) == 1
    assert any("dropped 5 pending actions" in r.getMessage() for r in caplog.records)


def test_post_json_errors(receiver: Receiver) -> None:
    body = json.dumps(event_body(change(1))).encode()

    async def main() -> None:
        assert await post_json(receiver.url("/ok"), body) == 200
        receiver.plan["/bad"] = [400]
        with pytest.raises(Exception, match="HTTP 400 Bad Request: no thanks"):
            await post_json(receiver.url("/bad"), body)
        with pytest.raises(ConnectionRefusedError):
            await post_json(f"http://127.0.0.1:{free_port()}/x", body)
        port = receiver.server.server_address[1]
        assert await post_json(f"http://localhost:{port}/named?token=1", body) == 200  # by name
        with pytest.raises(OSError):  # TLS to a plain HTTP server
            await post_json(f"https://127.0.0.1:{port}/tls", body)

    asyncio.run(main())
    (ok,) = receiver.got("/ok")
    assert ok["body"]["camera"]["hostname"] == "cam1"
    assert ok["headers"]["connection"] == "close"
    (named,) = receiver.got("/named?token=1")
    assert named["headers"]["host"] == f"localhost:{receiver.server.server_address[1]}"
