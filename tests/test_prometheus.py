"""The shipped Prometheus files (prometheus/): promtool checks and unit-tests the rules and
checks the configs; and the whole multi-station chain runs on loopback with the real
servers from Debian's packages:

    daemon (cameras on 127.0.0.2/.3) → station Prometheus (agent mode, remote write)
    → central Prometheus (remote-write receiver, the shipped rules) → Alertmanager
    → a webhook receiver in this test.

The binaries are found on $PATH or in .cache/tools (where ./dev puts Debian's); every
server runs in a temp dir on a free loopback port, in its own process group, and is
killed at the end. Only loopback is used."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import REPO, Daemon, Listeners, camera, free_port, wait_for, write_settings
from helpers_cli import clean_env, run_cli
from receiver import Receiver

SHIPPED = REPO / "prometheus"
RULES = SHIPPED / "pumaguard-heartbeat.rules.yml"
TOOLS = REPO / ".cache" / "tools"
WAIT = 90.0  # each step of the chain; it takes a few seconds on an idle machine
STATION = "north-gate"
GATE_MAC, CREEK_MAC = "00:11:22:33:44:01", "00:11:22:33:44:03"


def tool(name: str) -> str:
    path = shutil.which(name, path=f"{os.environ.get('PATH', '')}:{TOOLS}")
    if path is None:
        print(f"{name} not installed: apt-get install prometheus prometheus-alertmanager")
        pytest.skip(f"{name} not installed (Debian packages prometheus, prometheus-alertmanager)")
    return path


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


# ------------------------------------------------------------------ the shipped files


def test_shipped_rules_pass_promtool_check() -> None:
    done = run(tool("promtool"), "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 11 rules found" in done.stdout, done.stdout


def test_shipped_rules_pass_their_unit_tests() -> None:
    done = run(tool("promtool"), "test", "rules", "rules.test.yml", cwd=SHIPPED)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "FAILED" not in done.stdout, done.stdout


def test_rule_unit_tests_catch_a_wrong_rule(tmp_path: Path) -> None:
    """The unit tests are not vacuous: CameraDown without its `for:` fails them."""
    for f in SHIPPED.glob("*.yml"):
        shutil.copy(f, tmp_path / f.name)
    doc = yaml.safe_load(RULES.read_text())
    for rule in _alerts(doc):
        if rule["alert"] == "CameraDown":
            rule["for"] = "0s"
    (tmp_path / RULES.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    done = run(tool("promtool"), "test", "rules", "rules.test.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert "alertname: CameraDown" in done.stdout + done.stderr, done.stdout + done.stderr


def test_shipped_configs_pass_promtool_check(tmp_path: Path) -> None:
    promtool = tool("promtool")
    done = run(promtool, "check", "config", "--agent", str(SHIPPED / "station-agent.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    central = yaml.safe_load((SHIPPED / "central.yml").read_text())
    assert central["rule_files"] == [f"/usr/share/pumaguard-heartbeat/prometheus/{RULES.name}"]
    central["rule_files"] = [str(RULES)]  # where it is before the package installs it
    (tmp_path / "central.yml").write_text(yaml.safe_dump(central))
    done = run(promtool, "check", "config", str(tmp_path / "central.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout, done.stdout


def _alerts(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                yield rule


# ------------------------------------------------------------------ the chain on loopback


def prometheus_mode_flags(prometheus: str) -> tuple[list[str], list[str]]:
    """(agent flags, remote-write receiver flags) for this Prometheus: 3.x has ``--agent``,
    2.x (Debian 12's 2.42, Debian 13's 2.53) the ``agent`` feature flag; the receiver is
    ``--web.enable-remote-write-receiver`` since 2.33 (a feature flag before)."""
    done = run(prometheus, "--help")
    text = done.stdout + done.stderr
    assert "--config.file" in text, text
    agent = ["--agent"] if re.search(r"^\s*--agent\s", text, re.M) else ["--enable-feature=agent"]
    if "--web.enable-remote-write-receiver" in text:
        receiver = ["--web.enable-remote-write-receiver"]
    else:
        receiver = ["--enable-feature=remote-write-receiver"]
    return agent, receiver


class Server:
    """One real server process in its own process group, its output in a log file."""

    def __init__(self, name: str, cmd: list[str], folder: Path) -> None:
        self.name = name
        self.log_path = folder / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
        return True

    def log(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        with contextlib.suppress(ProcessLookupError):  # whatever is left of its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


class Webhook(Receiver):
    """Alertmanager's webhook receiver: keeps every notification it gets."""

    def alerts(self) -> list[dict[str, Any]]:
        return [a for n in self.bodies() for a in n.get("alerts", [])]

    def find(self, status: str, camera: str) -> dict[str, Any] | None:
        for a in self.alerts():
            labels = a.get("labels", {})
            if (
                a.get("status") == status
                and labels.get("alertname") == "CameraDown"
                and labels.get("camera") == camera
            ):
                return a
        return None


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        result: list[dict[str, Any]] = get_json(url)["data"]["result"]
        return result
    except OSError:
        return []


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


DEBIAN_TEMPLATE = Path("/usr/share/prometheus/alertmanager/default.tmpl")


def alertmanager_command(alertmanager: str, folder: Path) -> list[str]:
    """Debian's Alertmanager reads its default templates from a fixed path,
    :data:`DEBIAN_TEMPLATE`, which only its package installs (./dev takes the binary alone,
    not to start a system service). Without the package, the test runs it in a private
    mount namespace whose /usr/share has stand-in files there (read-only overlay; the
    host is not touched): a webhook receiver uses no template."""
    if DEBIAN_TEMPLATE.exists():
        return [alertmanager]
    add = folder / "usr-share" / "prometheus" / "alertmanager"
    add.mkdir(parents=True, exist_ok=True)
    for name in ("default.tmpl", "email.tmpl"):  # what 0.25 parses at start
        stand_in(add / name)
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed to run Debian's alertmanager binary alone"
    share = folder / "usr-share"
    # an overlay keeps the rest of /usr/share; where overlayfs is not allowed, /usr/share is
    # only the stand-ins (Alertmanager with a webhook receiver reads nothing else there)
    mount = (
        f"{{ mount -t overlay overlay -o ro,lowerdir={share}:/usr/share /usr/share"
        f" || mount --bind {share} /usr/share; }}"
    )
    return [unshare, "--mount", "sh", "-c", mount + ' && exec "$@"', "sh", alertmanager]


def stand_in(path: Path) -> None:
    path.write_text(f'{{{{ define "__stand_in_{path.stem}" }}}}{path.name}{{{{ end }}}}\n')


MISSING_TEMPLATE = re.compile(r"open /usr/share/prometheus/alertmanager/([\w.-]+\.tmpl): no such")


def start_alertmanager(alertmanager: str, folder: Path, port: int, args: list[str]) -> Server:
    """Alertmanager, ready on ``port``; a template another release of Debian's package
    wants besides those of :func:`alertmanager_command` gets a stand-in too (bounded)."""
    for _ in range(5):
        server = Server(
            "alertmanager", [*alertmanager_command(alertmanager, folder), *args], folder
        )
        wait_for(lambda s=server: s.proc.poll() is not None or ready(port), timeout=WAIT, step=0.5)
        missing = MISSING_TEMPLATE.search(server.log()) if server.proc.poll() is not None else None
        if missing is None or DEBIAN_TEMPLATE.exists():
            break
        stand_in(folder / "usr-share" / "prometheus" / "alertmanager" / missing.group(1))
    return server


def test_chain_station_agent_central_alertmanager_webhook(
    tmp_path: Path, listeners: Listeners, daemon_factory: Any
) -> None:
    prometheus, alertmanager = tool("prometheus"), tool("alertmanager")
    agent_flags, receiver_flags = prometheus_mode_flags(prometheus)

    # the station: a real daemon with two cameras, /metrics on loopback
    gate = listeners.open("127.0.0.2")
    port = gate[1]
    creek = listeners.open("127.0.0.3", port)
    metrics_port = free_port()
    d: Daemon = daemon_factory()
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 1,
            "camera-heartbeat-tcp-port": port,
            "camera-heartbeat-tcp-timeout": 1,
            "camera-heartbeat-metrics-listen": f"127.0.0.1:{metrics_port}",
            "cameras": [
                camera("Microseven-Gate", gate[0], GATE_MAC, status="connected"),
                camera("Microseven-Creek", creek[0], CREEK_MAC, status="connected"),
            ],
        },
    )
    d.start()
    # the admin names the station once, with the real CLI; a label-unsafe name is refused
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    bad = run_cli("config", "set", "camera_heartbeat_station", 'x",evil="1', env=env)
    assert bad.returncode != 0 and "camera_heartbeat_station" in bad.stdout + bad.stderr
    done = run_cli("config", "set", "camera_heartbeat_station", STATION, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: f'station="{STATION}"' in run_cli("metrics", env=env).stdout, timeout=WAIT)

    # the files the servers run on: the shipped ones, with this test's ports and paths,
    # and times shortened so that the chain answers in seconds (documented in
    # docs/prometheus.md): scrape and evaluate every second, `for:` 3 s, group_wait 1 s
    am_port, central_port, agent_port = free_port(), free_port(), free_port()
    hook = Webhook()
    rules = yaml.safe_load(RULES.read_text())
    for rule in _alerts(rules):
        rule["for"] = "3s"
        if rule["alert"] == "StationNotReporting":  # silent for 5 s instead of 5 min
            assert rule["expr"].count("[5m]") == 1, rule["expr"]
            rule["expr"] = rule["expr"].replace("[5m]", "[5s]")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    central = yaml.safe_load((SHIPPED / "central.yml").read_text())
    central["global"]["evaluation_interval"] = "1s"
    central["rule_files"] = [str(tmp_path / "rules.yml")]
    central["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{am_port}"]}
    ]
    (tmp_path / "central.yml").write_text(yaml.safe_dump(central, sort_keys=False))
    agent = yaml.safe_load((SHIPPED / "station-agent.yml").read_text())
    agent["global"].update(scrape_interval="1s", scrape_timeout="1s")
    agent["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    agent["remote_write"][0]["url"] = f"http://127.0.0.1:{central_port}/api/v1/write"
    agent["remote_write"][0]["queue_config"]["batch_send_deadline"] = "1s"
    (tmp_path / "station-agent.yml").write_text(yaml.safe_dump(agent, sort_keys=False))
    am = yaml.safe_load((SHIPPED / "alertmanager.yml").read_text())
    am["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    am["receivers"][0]["webhook_configs"][0]["url"] = f"http://127.0.0.1:{hook.port}/alerts"
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am, sort_keys=False))
    for name in ("am", "central", "agent"):
        (tmp_path / name).mkdir()

    servers: list[Server] = []
    try:
        servers.append(
            start_alertmanager(
                alertmanager,
                tmp_path,
                am_port,
                [
                    f"--config.file={tmp_path / 'alertmanager.yml'}",
                    f"--storage.path={tmp_path / 'am'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",  # no gossip port
                ],
            )
        )
        servers.append(
            Server(
                "central",
                [
                    prometheus,
                    *receiver_flags,
                    f"--config.file={tmp_path / 'central.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'central'}",
                    f"--web.listen-address=127.0.0.1:{central_port}",
                ],
                tmp_path,
            )
        )
        servers.append(
            Server(
                "agent",
                [
                    prometheus,
                    *agent_flags,
                    f"--config.file={tmp_path / 'station-agent.yml'}",
                    f"--storage.agent.path={tmp_path / 'agent'}",
                    f"--web.listen-address=127.0.0.1:{agent_port}",
                ],
                tmp_path,
            )
        )
        for s, p in zip(servers, (am_port, central_port, agent_port), strict=True):
            wait_for(lambda s=s, p=p: s.alive() and ready(p), timeout=WAIT, step=0.5)

        # both cameras arrive at the central Prometheus, labelled with the station
        def both_up() -> bool:
            for s in servers:
                s.alive()
            series = query(central_port, f'pumaguard_heartbeat_camera_up{{station="{STATION}"}}')
            return {r["metric"]["camera"]: r["value"][1] for r in series} == {
                GATE_MAC: "1",
                CREEK_MAC: "1",
            }

        wait_for(both_up, timeout=WAIT, step=0.5)
        assert query(central_port, f'pumaguard_heartbeat_build_info{{station="{STATION}"}}')
        assert hook.find("firing", GATE_MAC) is None  # no false alarm so far

        # the gate camera goes away: its port refuses → CameraDown fires with its labels
        listeners.close(gate)
        taken_down = time.monotonic()
        firing = wait_for(
            lambda: all(s.alive() for s in servers) and hook.find("firing", GATE_MAC),
            timeout=WAIT,
            step=0.5,
        )
        print(f"CameraDown reached the webhook {time.monotonic() - taken_down:.1f} s after")
        labels = firing["labels"]
        assert labels["station"] == STATION
        assert labels["camera"] == GATE_MAC
        assert labels["hostname"] == "Microseven-Gate"
        assert labels["ip"] == "127.0.0.2"
        assert labels["severity"] == "warning"
        assert "Microseven-Gate" in firing["annotations"]["summary"]
        assert STATION in firing["annotations"]["summary"]

        # it comes back → the alert is resolved; the creek camera never alerted
        listeners.open("127.0.0.2", port)
        back = time.monotonic()
        resolved = wait_for(
            lambda: all(s.alive() for s in servers) and hook.find("resolved", GATE_MAC),
            timeout=WAIT,
            step=0.5,
        )
        print(f"resolved reached the webhook {time.monotonic() - back:.1f} s after")
        assert resolved["labels"]["station"] == STATION
        assert resolved["startsAt"] == firing["startsAt"]
        assert hook.find("firing", CREEK_MAC) is None
        assert not [
            a
            for a in hook.alerts()
            if a["labels"].get("alertname") != "CameraDown" or a["labels"]["camera"] != GATE_MAC
        ], hook.alerts()

        # the station goes quiet (its agent stops, as when the link or its power is gone):
        # no `up == 0` reaches the central Prometheus, the series stop -> StationNotReporting
        agent_server = servers[-1]
        agent_server.stop()
        quiet = time.monotonic()

        def station_silent() -> dict[str, Any] | None:
            for s in servers[:-1]:
                s.alive()
            for a in hook.alerts():
                if a["labels"].get("alertname") == "StationNotReporting":
                    return a
            return None

        silent = wait_for(station_silent, timeout=WAIT, step=0.5)
        print(f"StationNotReporting reached the webhook {time.monotonic() - quiet:.1f} s after")
        assert silent["status"] == "firing"
        assert silent["labels"]["station"] == STATION
        assert silent["labels"]["severity"] == "critical"
        assert STATION in silent["annotations"]["summary"]
    except BaseException:
        for s in servers:
            print(f"----- {s.name} (exit {s.proc.poll()})\n{s.log()}")
        print(f"----- daemon\n{d.log()[-4000:]}")
        print(f"----- webhook got\n{json.dumps(hook.bodies(), indent=1)[-4000:]}")
        raise
    finally:
        for s in reversed(servers):
            s.stop()
        hook.close()
    assert all(s.proc.returncode is not None for s in servers)
    for p in (am_port, central_port, agent_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", p), timeout=1).close()


# ------------------------------------------------------------------ the station label


def test_station_setting_is_label_safe() -> None:
    from pumaguard_hb.model.errors import SettingsError
    from pumaguard_hb.model.settings import parse_settings

    for good in ("north-gate", "Station_2.example.org", "a" * 63, "7"):
        assert parse_settings({"camera-heartbeat-station": good}).station == good
    assert parse_settings({}).station == ""
    assert parse_settings({"camera_heartbeat_station": None}).station == ""
    for bad in ('x",evil="1', "a\nb", "-lead", "a b", "a" * 64, "é", 7, ["x"], True):
        with pytest.raises(SettingsError, match="camera-heartbeat-station"):
            parse_settings({"camera-heartbeat-station": bad})


def test_station_label_defaults_to_a_label_safe_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pumaguard_hb.outputs import metrics

    status: dict[str, Any] = {"daemon": {"settings": {"camera_heartbeat_station": ""}}}
    monkeypatch.setattr(socket, "gethostname", lambda: "pi-north")
    assert 'pumaguard_heartbeat_build_info{version="",station="pi-north"} 1' in metrics.render(
        status
    )
    monkeypatch.setattr(socket, "gethostname", lambda: 'bad host"\n{x}' + "y" * 100)
    label = metrics.station_label("")
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,63}", label) and label.startswith("bad-host-")
    monkeypatch.setattr(socket, "gethostname", lambda: "")
    assert metrics.station_label(None) == "unknown"
    status["daemon"]["settings"]["camera_heartbeat_station"] = "north-gate"
    text = metrics.render(status)
    assert all(
        line.endswith(("} 0", "} 1")) and 'station="north-gate"}' in line
        for line in text.splitlines()
        if not line.startswith("#")
    ), text
