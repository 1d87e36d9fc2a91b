"""Power events in every output and view (issue 24, docs/power-cycle.md): the webhooks and
the command (a real HTTP receiver on loopback, a real command), the alert mail (a real SMTP
server on loopback), the metrics text, ``status``/``--json`` (a real monitor and real power
cycling read back from its state file), the status page and ``pumaguard-hb status`` at 80
columns. Hostile camera names and reasons reach no terminal, mail header or page unescaped.
Only loopback is used."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import logging
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from harness import REPO, camera, free_port, write_settings
from receiver import Receiver
from rich.cells import cell_len
from rich.console import Console

from pumaguard_hb import status as status_view
from pumaguard_hb.devices.power_cycle import STATE_FILE, PowerCycles
from pumaguard_hb.model.events import (
    NEEDS_VISIT,
    POWER_CYCLED,
    RECOVERED_AFTER_CYCLE,
    PowerEvent,
    PowerListener,
    StateChange,
)
from pumaguard_hb.model.power import INTERRUPTED, NOT_RECOVERED, PLUG_FAILED, RECOVERED
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.monitor import Monitor
from pumaguard_hb.outputs import metrics
from pumaguard_hb.outputs.actions import Actions
from pumaguard_hb.outputs.alerts import Alerts
from pumaguard_hb.outputs.page import render_page
from pumaguard_hb.probes.icmp import IcmpAccess, IcmpMode
from pumaguard_hb.stores.own_files import write_json
from pumaguard_hb.stores.settings_file import SettingsFile

sys.path.insert(0, str(REPO / "cli"))  # the CLI package, also where it is not installed
from pumaguard_hb_cli import render

GATE, BARN, SHED = "aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02", "aa:bb:cc:dd:ee:03"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
FROM, TO = "hb@station.test", "ranger@example.test"
# what a hostile DHCP client, camera or plug could put in a name or a reason
EVIL_NAME = "Gate\x1b[2J\x1b]0;pwned\x07-Cam\r\nBcc: evil@attacker.test\u202e" + "x" * 5000
EVIL_REASON = "plug said \x1b[31mred\x1b[0m\r\nX-Injected: 1\x00<script>alert(1)</script>"
TERMINAL_CONTROLS = ("\x1b[2J", "\x1b]0;", "\x07", "\x1b[31mred", "\r", "\x00")


def event(kind: str, name: str = "Gate-Cam", reason: str = "", cycles: int = 1,
          cid: str = GATE, ip: str = "192.0.2.7") -> PowerEvent:  # fmt: skip
    reasons = {
        POWER_CYCLED: "power off for 10 s: disconnected for 5m 3s, its plug is on",
        RECOVERED_AFTER_CYCLE: "it answers again",
        NEEDS_VISIT: "3 power cycles in 24 h did not bring it back (no answer 120 s after "
        "power on)",
    }
    return PowerEvent(cid, name, ip, cid, kind, time.time(), reason or reasons[kind], cycles)


async def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return found


# -- webhooks and the command ------------------------------------------------------------------

RECORDER = """import json, os, sys
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({k: v for k, v in os.environ.items()}) + "\\n")
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_power_events_reach_webhooks_and_the_command(receiver: Receiver, tmp_path: Path) -> None:
    script, out = tmp_path / "record.py", tmp_path / "events.jsonl"
    script.write_text(RECORDER)
    s = Settings(
        webhooks=(receiver.url(),),
        on_change_command=shlex.join([sys.executable, str(script), str(out)]),
    )
    sent = [event(POWER_CYCLED), event(RECOVERED_AFTER_CYCLE), event(NEEDS_VISIT, cycles=3)]

    async def go() -> None:
        actions = Actions(lambda: s)
        down = StateChange(GATE, "Gate-Cam", "192.0.2.7", GATE, "connected", "disconnected",
                           time.time(), "tcp 192.0.2.7:80 refused", "tcp")  # fmt: skip
        actions.notify(down)
        for e in sent:
            actions.power(e)
        await until(lambda: len(receiver.got()) == 4)
        await until(lambda: out.exists() and len(out.read_text().splitlines()) == 4)
        await actions.close()

    asyncio.run(go())
    bodies = receiver.bodies()
    assert [b["event"] for b in bodies] == [  # in the order they happened
        "camera_down",
        "camera_power_cycled",
        "camera_recovered_after_power_cycle",
        "camera_needs_visit",
    ]
    assert set(bodies[0]) >= {"status", "previous_status", "method", "rtt_ms"}  # unchanged
    for body, e in zip(bodies[1:], sent, strict=True):
        assert set(body) == {"version", "event", "event_id", "camera", "at", "reason",
                             "cycles_today", "message", "station", "daemon_version"}  # fmt: skip
        assert body["version"] == 1 and re.fullmatch(r"[0-9a-f]{32}", body["event_id"])
        assert body["camera"] == {"id": GATE, "hostname": "Gate-Cam",
                                  "ip_address": "192.0.2.7", "mac_address": GATE}  # fmt: skip
        assert ISO.match(body["at"]) and body["reason"] == e.reason
        assert body["cycles_today"] == e.cycles_today and body["station"]
    assert bodies[1]["message"] == (
        "camera Gate-Cam (192.0.2.7): power-cycled — power off for 10 s: disconnected for "
        "5m 3s, its plug is on"
    )
    assert bodies[3]["message"].startswith(
        "camera Gate-Cam (192.0.2.7) needs a visit: 3 power cycles in 24 h did not bring it back"
    )
    assert len({b["event_id"] for b in bodies}) == 4

    # commands start in order, up to 4 at once: they may finish in any order
    by_event = {e["PUMAGUARD_HB_EVENT"]: e for e in map(json.loads, out.read_text().splitlines())}
    envs = [by_event[b["event"]] for b in bodies]
    down, cycled, _back, visit = envs
    assert "PUMAGUARD_HB_CYCLES_TODAY" not in down  # a change's environment is as it was
    assert down["PUMAGUARD_HB_STATUS"] == "disconnected"
    assert visit["PUMAGUARD_HB_CYCLES_TODAY"] == "3" and cycled["PUMAGUARD_HB_CYCLES_TODAY"] == "1"
    for env, body in zip(envs[1:], bodies[1:], strict=True):
        assert env["PUMAGUARD_HB_CAMERA_ID"] == GATE and env["PUMAGUARD_HB_IP"] == "192.0.2.7"
        assert env["PUMAGUARD_HB_HOSTNAME"] == "Gate-Cam" and env["PUMAGUARD_HB_MAC"] == GATE
        assert env["PUMAGUARD_HB_REASON"] == body["reason"]
        assert env["PUMAGUARD_HB_MESSAGE"] == body["message"]
        assert ISO.match(env["PUMAGUARD_HB_AT"])
        for empty in ("STATUS", "PREVIOUS_STATUS", "METHOD", "RTT_MS"):  # no sense for power
            assert env[f"PUMAGUARD_HB_{empty}"] == ""
        assert json.loads(env["PUMAGUARD_HB_JSON"])["event_id"] == env["PUMAGUARD_HB_EVENT_ID"]
    assert {json.loads(e["PUMAGUARD_HB_JSON"])["event_id"] for e in envs} == {
        b["event_id"] for b in bodies
    }  # the same event in both


def test_nothing_is_queued_without_actions() -> None:
    async def go() -> Actions:
        actions = Actions(lambda: Settings())
        actions.power(event(NEEDS_VISIT))
        return actions

    actions = asyncio.run(go())
    assert actions.pending == 0 and not actions.webhooks and actions.command is None


FAILING = "import sys; print('siren unplugged'); sys.exit(3)"


def test_hostile_power_event_in_json_env_and_log(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script, out = tmp_path / "record.py", tmp_path / "events.jsonl"
    script.write_text(RECORDER + FAILING.replace("; ", "\n") + "\n")
    s = Settings(
        webhooks=(receiver.url(),),
        on_change_command=shlex.join([sys.executable, str(script), str(out)]),
    )
    e = event(POWER_CYCLED, name=EVIL_NAME, reason=EVIL_REASON)
    caplog.set_level(logging.WARNING, "pumaguard_hb")

    async def go() -> None:
        actions = Actions(lambda: s)
        actions.power(e)
        await until(receiver.got)
        await until(lambda: "exited with status 3" in caplog.text)
        await actions.close()

    asyncio.run(go())
    ((post,),) = [receiver.got()]
    body = post["body"]  # JSON carries the text as it is, escaped by the encoder
    assert body["camera"]["hostname"] == EVIL_NAME and body["reason"] == EVIL_REASON
    assert set(post["headers"]) == {"host", "user-agent", "content-type", "accept",
                                    "content-length", "connection"}  # fmt: skip
    (env,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert env["PUMAGUARD_HB_HOSTNAME"] == EVIL_NAME  # an environment may hold these
    assert env["PUMAGUARD_HB_REASON"] == EVIL_REASON.replace("\x00", "\ufffd")  # not NUL
    assert json.loads(env["PUMAGUARD_HB_JSON"])["reason"] == EVIL_REASON
    (line,) = [r.getMessage() for r in caplog.records if "exited with status 3" in r.message]
    assert line.startswith("on-change command for camera_power_cycled of Gate\\x1b[2J")
    assert line.isprintable()  # one line in the journal, no escape reaches a terminal


# -- the alert mail -------------------------------------------------------------------------------


class Smtp:
    """aiosmtpd on 127.0.0.1, plain, no login: it keeps every message (as in test_alerts.py)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                msg = email.message_from_bytes(
                    envelope.original_content, policy=email.policy.default
                )
                with outer.lock:
                    outer.messages.append(msg)  # type: ignore[arg-type]
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     ready_timeout=20)  # fmt: skip
        self.controller.start()

    def got(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    s = Smtp()
    yield s
    s.stop()


def mail_settings(smtp: Smtp) -> Settings:
    return Settings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="none",
                    smtp_from=FROM, smtp_to=(TO,), smtp_timeout=10, alert_delay=0.3,
                    station="creek-station")  # fmt: skip


def text(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


def change(cid: str, name: str, old: str, new: str) -> StateChange:
    return StateChange(cid, name, "192.0.2.8", cid, old, new, time.time(), "tcp refused", "tcp")


def mails(smtp: Smtp, feed: Callable[[Alerts], None]) -> list[EmailMessage]:
    """Feed one burst to a real Alerts and return the mails the server got."""

    async def go() -> list[EmailMessage]:
        alerts = Alerts(lambda: mail_settings(smtp), lambda: (1, 3))
        feed(alerts)
        got = await until(smtp.got)
        await asyncio.sleep(0.5)  # nothing more comes
        await alerts.close()
        return got

    return asyncio.run(go())


def test_power_events_join_the_burst_and_a_visit_comes_first(smtp: Smtp) -> None:
    def feed(alerts: Alerts) -> None:
        alerts.notify(change(BARN, "Barn-Cam", "connected", "disconnected"))
        alerts.power(event(POWER_CYCLED))
        # the gate went down and back within the window, then needs a visit: never dropped
        alerts.notify(change(GATE, "Gate-Cam", "connected", "disconnected"))
        alerts.notify(change(GATE, "Gate-Cam", "disconnected", "connected"))
        alerts.power(event(NEEDS_VISIT, cycles=3))
        assert alerts.info()["waiting_changes"] == 5

    (msg,) = mails(smtp, feed)
    assert str(msg["Subject"]) == (
        "[creek-station] 1 camera needs a visit, 1 camera down, 1 down and back, 1 power-cycled"
    )
    body = text(msg)
    assert (
        body.index("Needs a visit (1):") < body.index("Down (1):") < body.index("Power cycles (1):")
    )
    assert (
        "- Gate-Cam (192.0.2.7) needs a visit: 3 power cycles in 24 h did not bring it back "
        "(no answer 120 s after power on)\n" in body
    )
    assert (
        "- Gate-Cam (192.0.2.7): power-cycled — power off for 10 s: disconnected for 5m 3s, "
        "its plug is on\n    at " in body
    )
    assert "; 3 power cycles in 24 h" in body and "; 1 power cycle in 24 h" in body
    assert "Down and back (1):" in body and "Now 1 of 3 cameras are connected." in body


def test_a_lone_power_event_is_a_message_of_its_own(smtp: Smtp) -> None:
    (msg,) = mails(smtp, lambda a: a.power(event(RECOVERED_AFTER_CYCLE)))
    assert str(msg["Subject"]) == "[creek-station] 1 recovered after power cycle: Gate-Cam"
    assert "- Gate-Cam (192.0.2.7): recovered after power cycle — it answers again" in text(msg)


def test_hostile_names_and_reasons_stay_one_line_in_the_mail(smtp: Smtp) -> None:
    def feed(alerts: Alerts) -> None:
        alerts.power(event(NEEDS_VISIT, name=EVIL_NAME, reason=EVIL_REASON, cycles=3))

    (msg,) = mails(smtp, feed)
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert len(msg.get_all("Subject") or []) == 1 and str(msg["To"]) == TO
    subject = str(msg["Subject"])
    assert subject.startswith("[creek-station] 1 camera needs a visit: Gate [2J ]0;pwned -Cam")
    assert subject.isprintable() and len(subject) < 120
    body = text(msg)
    assert not any(c in body for c in TERMINAL_CONTROLS) and "\u202e" not in body
    (line,) = [line for line in body.splitlines() if "needs a visit:" in line]
    assert line.startswith("- Gate [2J ]0;pwned -Cam Bcc: evil@attacker.test")
    assert "x" * 30 in line and "x" * 100 not in line  # a long name is cut short
    assert "plug said [31mred [0m X-Injected: 1 <script>alert(1)</script>" in line


# -- metrics ---------------------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-z_]+)(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def samples(text: str, name: str) -> dict[str, float]:
    """The samples of one metric, labels → value; every line is well formed."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        if m.group(1) == name:
            out[m.group(2)] = float(m.group(3))
    return out


class Power:
    """The part of power cycling the figures read: ``counts`` and ``view`` (a unit of the
    text, as the status dict is)."""

    def __init__(self, counts: dict[tuple[str, str], int], views: dict[str, Any]) -> None:
        self.counts = counts
        self.views = views
        self.listeners: list[PowerListener] = []

    def view(self, cid: str) -> dict[str, Any] | None:
        return self.views.get(cid)


EVIL_ID = 'ip:a"b\\c\nd'
VIEWS = {
    GATE: {"cycles_today": 2, "last_outcome": RECOVERED, "running": False, "needs_visit": False},
    EVIL_ID: {"cycles_today": 3, "last_outcome": NOT_RECOVERED, "running": False,
              "needs_visit": True},
}  # fmt: skip


def metrics_status() -> dict[str, Any]:
    cams = [{"id": cid, "hostname": "", "ip_address": "", "status": "disconnected"}
            for cid in (GATE, EVIL_ID, SHED)]  # fmt: skip
    for cam in cams:
        if cam["id"] in VIEWS:
            cam["power"] = VIEWS[cam["id"]]  # as status.py gives it
    return {"daemon": {"settings": {"camera_heartbeat_station": "north-gate"}}, "cameras": cams}


def test_power_cycle_metrics() -> None:
    power = Power({(GATE, RECOVERED): 2, (EVIL_ID, NOT_RECOVERED): 2, (EVIL_ID, PLUG_FAILED): 1,
                   ("gone", INTERRUPTED): 1}, VIEWS)  # fmt: skip
    text = metrics.render(metrics_status(), {}, power)
    total = samples(text, "pumaguard_heartbeat_power_cycles_total")
    evil = 'camera="ip:a\\"b\\\\c\\nd"'  # escaped as every label value
    assert total == {
        **{f'{{camera="{GATE}",outcome="{o}",station="north-gate"}}': float(o == RECOVERED) * 2
           for o in (RECOVERED, NOT_RECOVERED, INTERRUPTED, PLUG_FAILED)},
        **{f'{{{evil},outcome="{o}",station="north-gate"}}': n
           for o, n in ((RECOVERED, 0), (NOT_RECOVERED, 2), (INTERRUPTED, 0), (PLUG_FAILED, 1))},
        **{f'{{camera="gone",outcome="{o}",station="north-gate"}}': float(o == INTERRUPTED)
           for o in (RECOVERED, NOT_RECOVERED, INTERRUPTED, PLUG_FAILED)},
    }  # fmt: skip
    assert samples(text, "pumaguard_heartbeat_power_cycles_today") == {
        f'{{camera="{GATE}",station="north-gate"}}': 2,
        f'{{{evil},station="north-gate"}}': 3,
    }  # the shed has no record: no sample
    assert "# TYPE pumaguard_heartbeat_power_cycles_total counter" in text
    assert "# TYPE pumaguard_heartbeat_power_cycles_today gauge" in text
    promtool_check(text)


def test_power_cycle_metrics_without_power_cycling() -> None:
    st = metrics_status()
    for cam in st["cameras"]:
        cam.pop("power", None)
    text = metrics.render(st, {}, None)
    for name, kind in (("power_cycles_total", "counter"), ("power_cycles_today", "gauge")):
        assert f"# HELP pumaguard_heartbeat_{name} " in text
        assert f"# TYPE pumaguard_heartbeat_{name} {kind}" in text
        assert samples(text, f"pumaguard_heartbeat_{name}") == {}
    promtool_check(text)


def promtool_check(text: str) -> None:
    tool = shutil.which("promtool") or shutil.which("promtool", path=str(REPO / ".cache/tools"))
    if tool is None:
        print("promtool not installed: the text is checked by the parser above only")
        return
    done = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


# -- status and --json: a real monitor, real power cycling read back from its state file -----


@pytest.fixture
def monitor(tmp_path: Path) -> Monitor:
    """A monitor of three cameras (not started) whose power cycling finds, in its state
    folder, two cycles of the gate today (the last recovered) and three of the barn (it
    needs a visit), as a daemon would after a restart."""
    settings = write_settings(tmp_path / "settings.yaml", {
        "camera-heartbeat-method": "tcp",
        "cameras": [camera("Gate-Cam", "192.0.2.7", GATE), camera("Barn-Cam", "192.0.2.8", BARN),
                    camera("Shed-Cam", "192.0.2.9", SHED)],
    })  # fmt: skip
    m = Monitor(SettingsFile(settings), IcmpAccess(IcmpMode.UNAVAILABLE, "not needed here"))
    m.load()
    now = time.time()
    write_json(tmp_path / "state" / STATE_FILE, {
        GATE: {"cycles": [now - 7200, now - 600], "last_outcome": RECOVERED, "last_end": now - 500},
        BARN: {"cycles": [now - 9000, now - 5000, now - 1000], "last_outcome": NOT_RECOVERED,
               "last_end": now - 800, "visit": True},
    })  # fmt: skip

    async def check(ids: frozenset[str]) -> object:
        return None

    power = PowerCycles(tmp_path / "state", lambda: m.cameras, lambda: m.settings, check)
    power.load()
    m.power = power
    return m


def test_status_and_json_show_each_cameras_power_cycles(monitor: Monitor) -> None:
    result = status_view.status(monitor)
    cams = {c["id"]: c for c in json.loads(json.dumps(result))["cameras"]}  # --json's shape
    assert cams[GATE]["power"] == {"cycles_today": 2, "last_outcome": "recovered",
                                   "running": False, "needs_visit": False}  # fmt: skip
    assert cams[BARN]["power"] == {"cycles_today": 3, "last_outcome": "not recovered",
                                   "running": False, "needs_visit": True}  # fmt: skip
    assert "power" not in cams[SHED]  # no record: nothing shown
    monitor.power = None  # a daemon without power cycling
    assert all("power" not in c for c in status_view.status(monitor)["cameras"])


def test_freshness_builds_again_after_power_events_and_ended_cycles(monitor: Monitor) -> None:
    power = monitor.power
    assert power is not None
    fresh = metrics.Freshness(monitor)
    first = fresh.key()
    assert fresh.key() == first  # nothing happened
    for listener in power.listeners:  # what a cycle tells its listeners
        listener(event(POWER_CYCLED))
    second = fresh.key()
    assert second != first
    power.counts[GATE, NOT_RECOVERED] = 1  # a cycle ended without an event
    assert fresh.key() != second
    assert len(power.listeners) == 1  # listened to once


# -- the status page ------------------------------------------------------------------------------


def test_status_page_shows_cycles_today_and_the_last_outcome(monitor: Monitor) -> None:
    result = status_view.status(monitor)
    page = render_page(result, {}, time.time())
    gate, barn, shed = (page.split(f'data-camera="{cid}"')[1].split("</section>")[0]
                        for cid in (GATE, BARN, SHED))  # fmt: skip
    assert "2 power cycles today, last recovered" in gate and "needs a visit" not in gate
    assert "3 power cycles today, last not recovered" in barn
    assert '<div class="visit">⚠ needs a visit' in barn
    assert "power cycle" not in shed
    # a hostile view (from a hostile daemon's reply) is text, never markup
    result["cameras"][0]["power"] = {"cycles_today": "<b>", "last_outcome": EVIL_REASON}
    result["cameras"][0]["hostname"] = EVIL_NAME
    page = render_page(result, {}, time.time())
    assert "<script" not in page and "X-Injected" in page
    assert "0 power cycles today, last plug said" in page
    assert not any(c in page for c in TERMINAL_CONTROLS) and "\u202e" not in page


# -- pumaguard-hb status, 80 columns --------------------------------------------------------------


def shown(result: dict[str, Any], width: int | None, colour: bool = False) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width or 80, force_terminal=colour, no_color=not colour,
                      highlight=False, emoji=False)  # fmt: skip
    for part in render.status_view(result, width=width).renderables:
        console.print(part, crop=False)
    return out.getvalue()


def test_status_at_80_columns_shows_power_cycles(monitor: Monitor) -> None:
    result = json.loads(json.dumps(status_view.status(monitor)))  # as the CLI gets it
    narrow = shown(result, 80)
    lines = narrow.splitlines()
    assert max(cell_len(line) for line in lines) <= 80, narrow
    visit = next(i for i, line in enumerate(lines) if line.startswith("power "))
    assert "1 camera needs a visit (power cycles did not bring it back): Barn-Cam" in " ".join(
        lines[visit : visit + 2]
    )  # a name wraps, never cut: the line is there whatever columns fit
    table = lines.index(next(line for line in lines if line.startswith("NAME")))
    assert len(lines[table:]) <= 2 + 3 + 1  # header, rule, one line per camera, the hint
    wide = shown(result, None)  # a pipe, or --wide: every column
    gate = next(line for line in wide.splitlines() if line.startswith("Gate-Cam"))
    assert "power: 2 today, last recovered" in gate
    barn = next(line for line in wide.splitlines() if "192.0.2.8" in line)
    assert "power: needs a visit (3 today)" in barn
    shed = next(line for line in wide.splitlines() if line.startswith("Shed-Cam"))
    assert "power:" not in shed


def test_hostile_names_and_outcomes_reach_no_terminal(monitor: Monitor) -> None:
    result = json.loads(json.dumps(status_view.status(monitor)))
    cams = {c["id"]: c for c in result["cameras"]}
    cams[BARN]["hostname"] = EVIL_NAME  # a hostile daemon's reply: not even cleaned
    cams[GATE]["power"]["last_outcome"] = EVIL_REASON
    for colour in (False, True):
        for width in (80, None):
            out = shown(result, width, colour)
            assert not any(c in out for c in TERMINAL_CONTROLS), repr(out)
            assert "\u202e" not in out
            if colour:  # the only escapes are rich's own styles
                assert set(re.findall(r"\x1b\[[0-9;]*m", out)) and not re.search(
                    r"\x1b(?!\[[0-9;]*m)", out
                )
    wide = shown(result, None)
    assert "last plug said \ufffd[31mred\ufffd[0m\ufffd\ufffdX-Injected" in wide
