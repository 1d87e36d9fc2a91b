"""The real ``pumaguard-hb`` against a real daemon process on temp files (loopback cameras)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_cli import (
    REPO,
    Station,
    as_user,
    clean_env,
    give_to_nobody,
    hook_folder,
    read_settings,
    run_cli,
    run_on_tty_bytes,
    station,
    temp_accounts,
    unprivileged_python,
    write_settings,
)

ESC = "\x1b["


@pytest.fixture(scope="module")
def shared() -> Iterator[Station]:
    """One station for the tests that change nothing."""
    with station() as s:
        s.daemon.wait_swept()
        yield s


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Station]:
    """A station of its own, for tests that change cameras or settings."""
    with station(tmp_path) as s:
        s.daemon.wait_swept()
        yield s


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single ``pumaguard-hb: …`` line a failure prints; never a traceback."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("pumaguard-hb: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


# -- status ---------------------------------------------------------------------------------


def test_status_human_is_plain_text_in_a_pipe(shared: Station) -> None:
    done = shared.cli("status")
    assert done.returncode == 1, done.stderr  # one camera is disconnected
    out = done.stdout
    assert ESC not in out
    assert "pumaguard-heartbeat 0.1.0, up " in out
    assert "tcp, every 3600s" in out
    assert "next check in " in out
    assert f"settings   {shared.settings}" in out
    assert "2/3 connected" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("Microseven")}
    gate, creek = rows["Microseven-Gate"], rows["Microseven-Creek"]
    assert "127.0.0.2" in gate and "00:11:22:33:44:01" in gate
    assert " connected " in gate and " ms " in gate and "s ago (" in gate
    assert " disconnected " in creek and "refused" in creek
    # last_seen is kept from the file for the camera that is down: relative and absolute
    assert "ago (2024-01-15 " in creek
    assert done.stderr == ""


def test_status_json_before_and_after_the_command(shared: Station) -> None:
    after = shared.cli("status", "--json")
    before = shared.cli("--json", "status")
    assert after.returncode == before.returncode == 1
    for done in (after, before):
        result = json.loads(done.stdout)
        assert set(result) == {"daemon", "summary", "cameras", "alerts", "discovered"}
        assert result["summary"] == {"total": 3, "connected": 2, "disconnected": 1}
        d = result["daemon"]
        assert d["version"] == "0.1.0" and d["method"] == "tcp" and d["interval_s"] == 3600
        assert d["settings_path"] == str(shared.settings) and d["settings_error"] is None
        cams = {c["hostname"]: c for c in result["cameras"]}
        assert cams["Microseven-Gate"]["status"] == "connected"
        assert isinstance(cams["Microseven-Gate"]["rtt_ms"], float)
        assert cams["Microseven-Creek"]["status"] == "disconnected"


def test_socket_option_before_after_and_from_the_environment(shared: Station) -> None:
    env = clean_env()
    sock = str(shared.daemon.socket)
    for args in (("--socket", sock, "status", "--json"), ("status", "--socket", sock, "--json")):
        done = run_cli(*args, env=env)
        assert done.returncode == 1 and json.loads(done.stdout)["summary"]["total"] == 3
    # the option wins over the environment
    env = clean_env(PUMAGUARD_HB_SOCKET="/nonexistent/hb.sock")
    assert run_cli("status", "--json", "--socket", sock, env=env).returncode == 1
    assert run_cli("status", "--json", env=env).returncode == 3


def test_status_exit_0_when_every_camera_is_connected(tmp_path: Path) -> None:
    with station(tmp_path, with_down=False) as s:
        s.daemon.wait_swept()
        done = s.cli("status")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "2/2 connected" in done.stdout


@pytest.mark.daemon_log(allow=[r"ERROR .*does not parse as YAML.*keeping the last good settings"])
def test_status_shows_settings_errors(fresh: Station) -> None:
    fresh.settings.write_text("cameras: [unclosed\n")
    assert fresh.cli("reload").returncode == 6
    done = fresh.cli("status")
    assert "settings error: " in done.stdout and "does not parse" in done.stdout
    assert json.loads(fresh.cli("status", "--json").stdout)["daemon"]["settings_error"]


# -- check-now ------------------------------------------------------------------------------


def test_check_now_human_and_json(shared: Station) -> None:
    done = shared.cli("check-now")
    assert done.returncode == 1, done.stderr
    assert ESC not in done.stdout
    assert "2/3 reachable" in done.stdout
    assert "Microseven-Creek" in done.stdout and "refused" in done.stdout
    done = shared.cli("check-now", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["status"] == "success" and report["message"] == "Heartbeat check completed"
    gate = report["cameras"]["00:11:22:33:44:01"]
    assert gate["reachable"] is True and gate["status"] == "connected"
    assert set(gate) >= {"hostname", "ip_address", "reachable", "status", "last_seen", "rtt_ms"}
    assert report["cameras"]["00:11:22:33:44:03"]["reachable"] is False


def test_check_now_named_cameras(shared: Station) -> None:
    done = shared.cli("--json", "check-now", "Microseven-Gate", "127.0.0.3")
    assert done.returncode == 0, done.stderr  # both named cameras answer
    assert set(json.loads(done.stdout)["cameras"]) == {"00:11:22:33:44:01", "00:11:22:33:44:02"}
    done = shared.cli("check-now", "00:11:22:33:44:03")
    assert done.returncode == 1
    assert "0/1 reachable" in done.stdout


def test_check_now_unknown_camera_exits_5(shared: Station) -> None:
    done = shared.cli("check-now", "no-such-camera")
    assert done.returncode == 5
    assert "no camera matches 'no-such-camera'" in one_line_error(done)
    assert done.stdout == ""


def test_check_now_when_monitoring_is_disabled_exits_6(fresh: Station) -> None:
    assert fresh.cli("config", "set", "camera_heartbeat_enabled", "false").returncode == 0
    done = fresh.cli("check-now")
    assert done.returncode == 6
    assert "monitoring is disabled" in one_line_error(done)
    status = fresh.cli("status")
    assert "disabled (camera_heartbeat_enabled: false)" in status.stdout


# -- camera add / remove --------------------------------------------------------------------


def test_camera_add_and_remove(fresh: Station) -> None:
    done = fresh.cli("camera", "add", "Yard", "127.0.0.2", "--mac", "AA-BB-CC-00-00-07")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "added camera Yard (127.0.0.2) aa:bb:cc:00:00:07; checking it now\n"
    cams = {c["mac_address"]: c for c in read_settings(fresh.settings)["cameras"]}
    assert cams["aa:bb:cc:00:00:07"]["hostname"] == "Yard"
    assert read_settings(fresh.settings)["plugs"] == [
        {"hostname": "plug-1", "ip_address": "127.0.0.9"}
    ]

    done = fresh.cli("camera", "add", "Pond", "127.0.0.5", "--json")
    assert done.returncode == 0, done.stderr
    added = json.loads(done.stdout)
    assert added["id"] == "ip:127.0.0.5" and added["hostname"] == "Pond"

    dup = fresh.cli("camera", "add", "Again", "127.0.0.5")
    assert dup.returncode == 6
    assert "already has that IP" in one_line_error(dup)

    bad = fresh.cli("camera", "add", "Bad", "999.1.1.1")
    assert bad.returncode == 6
    assert "ip_address: invalid value '999.1.1.1'" in one_line_error(bad)

    gone = fresh.cli("camera", "remove", "Yard")
    assert gone.returncode == 0 and gone.stdout.startswith("removed camera Yard (127.0.0.2)")
    gone = fresh.cli("--json", "camera", "remove", "127.0.0.5")
    assert gone.returncode == 0 and json.loads(gone.stdout)["id"] == "ip:127.0.0.5"
    macs = {c.get("mac_address") for c in read_settings(fresh.settings)["cameras"]}
    assert "aa:bb:cc:00:00:07" not in macs
    status = json.loads(fresh.cli("status", "--json").stdout)
    assert status["summary"]["total"] == 3

    missing = fresh.cli("camera", "remove", "Yard")
    assert missing.returncode == 5
    assert "no camera matches 'Yard'" in one_line_error(missing)


# -- config ---------------------------------------------------------------------------------


def test_config_get(shared: Station) -> None:
    done = shared.cli("config", "get")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert any(
        line.startswith("camera_heartbeat_interval:")
        and " 3600 " in line
        and "# seconds between sweeps" in line
        for line in lines
    )
    assert any('["Microseven*", "Reolink*"]' in line for line in lines)
    one = shared.cli("config", "get", "camera-heartbeat-tcp-timeout")
    assert (one.returncode, one.stdout) == (0, "2\n")
    as_json = json.loads(shared.cli("config", "get", "--json").stdout)
    assert as_json["settings"]["camera_heartbeat_method"] == "tcp"
    assert "camera_heartbeat_method" in as_json["help"]
    assert json.loads(shared.cli("--json", "config", "get", "camera_heartbeat_method").stdout) == {
        "key": "camera_heartbeat_method",
        "value": "tcp",
    }
    unknown = shared.cli("config", "get", "nope")
    assert unknown.returncode == 6
    assert "known keys: camera_heartbeat_enabled" in one_line_error(unknown)


def test_config_set_parses_yaml_values_and_persists(fresh: Station) -> None:
    done = fresh.cli("config", "set", "camera_heartbeat_interval", "30")
    assert (done.returncode, done.stdout) == (0, "camera_heartbeat_interval: 30 (saved)\n")
    doc = read_settings(fresh.settings)
    assert doc["camera-heartbeat-interval"] == 30  # the file's own (hyphenated) spelling
    done = fresh.cli(
        "config", "set", "camera_heartbeat_hostname_patterns", "[Microseven*, M7*]", "--json"
    )
    assert json.loads(done.stdout) == {
        "key": "camera_heartbeat_hostname_patterns",
        "value": ["Microseven*", "M7*"],
    }
    assert fresh.cli("config", "set", "camera_heartbeat_enabled", "true").returncode == 0
    assert read_settings(fresh.settings)["camera-heartbeat-enabled"] is True
    assert fresh.cli("config", "set", "camera_heartbeat_tcp_timeout", "0.5").returncode == 0
    assert fresh.cli("config", "get", "camera_heartbeat_tcp_timeout").stdout == "0.5\n"


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("camera_heartbeat_interval", "-3", "greater than 0"),
        ("camera_heartbeat_interval", "soon", "greater than 0"),
        ("camera_heartbeat_method", "carrier-pigeon", "icmp, tcp, both"),
        ("camera_heartbeat_tcp_port", "70000", "1 to 65535"),
        ("camera_heartbeat_enabled", "2024-01-01", "true or false"),
        ("no_such_key", "1", "known keys"),
    ],
)
def test_config_set_bad_values_exit_6(shared: Station, key: str, value: str, says: str) -> None:
    done = shared.cli("config", "set", key, value)
    assert done.returncode == 6
    assert says in one_line_error(done)


def test_config_set_value_that_is_not_yaml_exits_2(shared: Station) -> None:
    done = shared.cli("config", "set", "camera_heartbeat_hostname_patterns", "[unclosed")
    assert done.returncode == 2
    assert "is not a value" in one_line_error(done)


# -- reload, dhcp-event ---------------------------------------------------------------------


@pytest.mark.daemon_log(allow=[r"ERROR .*invalid value 'pigeon'.*keeping the last good settings"])
def test_reload(fresh: Station) -> None:
    doc = read_settings(fresh.settings)
    doc["camera-heartbeat-interval"] = 45
    write_settings(fresh.settings, doc)
    done = fresh.cli("reload")
    assert (done.returncode, done.stdout) == (0, "settings reloaded\n")
    assert fresh.cli("config", "get", "camera_heartbeat_interval").stdout == "45\n"
    doc["camera-heartbeat-method"] = "pigeon"
    write_settings(fresh.settings, doc)
    bad = fresh.cli("reload", "--json")
    assert bad.returncode == 6 and bad.stdout == ""
    assert "keeping the last good settings" in one_line_error(bad)


def test_dhcp_event_through_the_daemon(fresh: Station) -> None:
    done = fresh.cli("dhcp-event", "add", "00:11:22:33:44:99", "127.0.0.6", "Microseven-New")
    assert done.returncode == 0, done.stderr
    assert "new camera Microseven-New" in done.stdout
    status = json.loads(fresh.cli("status", "--json").stdout)
    new = [c for c in status["cameras"] if c["hostname"] == "Microseven-New"]
    assert new and new[0]["status"] == "connected" and new[0]["ip_address"] == "127.0.0.6"
    as_json = json.loads(
        fresh.cli("dhcp-event", "--json", "add", "00:11:22:33:44:98", "127.0.0.7", "laptop").stdout
    )
    assert as_json["applied_by"] == "daemon" and as_json["message"].endswith("ignored")
    bad = fresh.cli("dhcp-event", "add", "not-a-mac", "127.0.0.6")
    assert bad.returncode == 6
    assert "mac_address: invalid value 'not-a-mac'" in one_line_error(bad)
    usage = fresh.cli("dhcp-event", "renew", "00:11:22:33:44:99", "127.0.0.6")
    assert usage.returncode == 2
    one_line_error(usage)


def test_dhcp_event_without_daemon_writes_the_file() -> None:
    with hook_folder() as folder:  # run as root, the hook acts as the folder's owner
        dhcp_event_without_daemon(folder)


def dhcp_event_without_daemon(tmp_path: Path) -> None:
    settings = write_settings(tmp_path / "s.yaml", {"cameras": []})
    give_to_nobody(tmp_path)
    env = clean_env(PUMAGUARD_HB_SOCKET=str(tmp_path / "none.sock"))
    done = run_cli(
        "dhcp-event",
        "add",
        "00:11:22:33:44:55",
        "127.0.0.8",
        "Microseven-X",
        "--settings",
        str(settings),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert f"(daemon not running; written to {settings})" in done.stdout
    cam = read_settings(settings)["cameras"][0]
    assert (cam["hostname"], cam["ip_address"], cam["status"]) == (
        "Microseven-X",
        "127.0.0.8",
        "connected",
    )
    env["PUMAGUARD_SETTINGS"] = str(settings)
    out = json.loads(
        run_cli("--json", "dhcp-event", "del", "00:11:22:33:44:55", "127.0.0.8", env=env).stdout
    )
    assert out["applied_by"] == "file" and out["settings_path"] == str(settings)
    assert read_settings(settings)["cameras"][0]["status"] == "disconnected"


# -- failures -------------------------------------------------------------------------------

EVERY_COMMAND = [
    ["status"],
    ["check-now"],
    ["camera", "add", "x", "127.0.0.2"],
    ["camera", "remove", "x"],
    ["config", "get"],
    ["config", "set", "camera_heartbeat_interval", "5"],
    ["reload"],
]


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=lambda a: " ".join(a))
def test_no_daemon_exits_3(tmp_path: Path, args: list[str]) -> None:
    env = clean_env(PUMAGUARD_HB_SOCKET=str(tmp_path / "hb.sock"))
    for extra in ([], ["--json"]):
        done = run_cli(*args, *extra, env=env)
        assert done.returncode == 3
        line = one_line_error(done)
        assert "pumaguard-heartbeat is not running (no socket at" in line
        assert "sudo systemctl start pumaguard-heartbeat" in line
        assert done.stdout == ""


def test_stale_socket_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "hb.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the path stays, nobody listens
    done = run_cli("status", "--socket", str(path))
    assert done.returncode == 3
    assert "nobody listens on" in one_line_error(done)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["frobnicate"], "No such command"),
        (["status", "--bogus"], "No such option"),
        (["camera", "add", "only-a-name"], "Missing argument"),
        (["config", "set", "camera_heartbeat_interval"], "Missing argument"),
        (["dhcp-event", "add"], "Missing argument"),
    ],
)
def test_bad_usage_exits_2(args: list[str], says: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 2
    line = one_line_error(done)
    assert says in line and "--help" in line


def test_no_command_shows_help_and_exits_2() -> None:
    for args in ([], ["camera"], ["config"]):
        done = run_cli(*args)
        assert done.returncode == 2
        assert "Usage: pumaguard-hb" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["status"],
        ["check-now"],
        ["camera"],
        ["camera", "add"],
        ["camera", "remove"],
        ["config"],
        ["config", "get"],
        ["config", "set"],
        ["dhcp-event"],
        ["reload"],
    ],
    ids=lambda a: " ".join(a) or "pumaguard-hb",
)
def test_help_of_every_command_has_an_example(args: list[str]) -> None:
    done = run_cli(*args, "--help")
    assert done.returncode == 0
    assert "Example" in done.stdout and "pumaguard-hb " in done.stdout
    assert "--json" in done.stdout


def test_version() -> None:
    done = run_cli("--version")
    assert (done.returncode, done.stdout) == (0, "pumaguard-hb, version 0.1.0\n")


class GarbageDaemon:
    """A socket that accepts and answers every line with garbage (a broken daemon)."""

    def __init__(self, path: Path, answer: bytes | None) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen()
        self.answer = answer
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.answer is not None:
                conn.recv(65536)
                conn.sendall(self.answer)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


def test_garbage_reply_exits_7(tmp_path: Path) -> None:
    fake = GarbageDaemon(tmp_path / "hb.sock", b"this is not json\n")
    try:
        done = run_cli("status", "--socket", str(tmp_path / "hb.sock"))
    finally:
        fake.close()
    assert done.returncode == 7
    assert "reply that is not JSON" in one_line_error(done)


def test_ctrl_c_exits_130_quietly(tmp_path: Path) -> None:
    fake = GarbageDaemon(tmp_path / "hb.sock", None)  # never answers
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pumaguard_hb_cli.main",
            "check-now",
            "--socket",
            str(tmp_path / "hb.sock"),
        ],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        fake.close()
    assert proc.returncode == 130
    assert "Traceback" not in err and out == ""


# -- colour ---------------------------------------------------------------------------------


def run_on_tty(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; returns (status, output)."""
    status, out = run_on_tty_bytes(args, env)
    return status, out.decode(errors="replace")


def test_colour_only_on_a_terminal_without_no_color(shared: Station) -> None:
    env = shared.env(TERM="xterm-256color", COLUMNS="160")
    status, out = run_on_tty(["status"], env)
    assert status == 1
    assert ESC in out and "Microseven-Gate" in out
    status, out = run_on_tty(["status"], {**env, "NO_COLOR": "1"})
    assert status == 1
    assert ESC not in out and "Microseven-Gate" in out
    status, out = run_on_tty(["check-now", "Microseven-Gate"], {**env, "NO_COLOR": "1"})
    assert status == 0 and ESC not in out and "1/1 reachable" in out
    piped = shared.cli("status", env=shared.env(TERM="xterm-256color", FORCE_COLOR="1"))
    assert ESC not in piped.stdout and "Microseven-Gate" in piped.stdout


# -- speed ----------------------------------------------------------------------------------


def test_json_path_does_not_import_rich(shared: Station) -> None:
    code = (
        "import sys\n"
        "from pumaguard_hb_cli.main import run\n"
        f"status = run(['status', '--json', '--socket', {str(shared.daemon.socket)!r}])\n"
        "assert 'rich' not in sys.modules, 'rich imported'\n"
        "assert 'yaml' not in sys.modules, 'yaml imported'\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1, done.stderr


def test_status_json_is_quick(shared: Station) -> None:
    best = min(_timed(shared) for _ in range(5))
    assert best < 1.0  # ~0.1 s on a laptop; generous for loaded CI machines


def _timed(shared: Station) -> float:
    started = time.perf_counter()
    assert shared.cli("status", "--json").returncode == 1
    return time.perf_counter() - started


# -- who may talk to the daemon -------------------------------------------------------------


def test_permission_denied_outside_the_group_and_allowed_inside() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create users and run the CLI as them")
    if shutil.which("setpriv") is None or shutil.which("useradd") is None:
        pytest.skip("needs setpriv and useradd")
    folder = Path(tempfile.mkdtemp(prefix="phb-cli-perm-"))
    folder.chmod(0o755)
    with temp_accounts() as accounts:
        group = accounts.group("g")
        outsider = accounts.user("o")
        member = accounts.user("m", groups=[group.gr_name])
        s = Station(folder)
        try:
            # the daemon runs with the service group as its own, so the socket is root:GROUP 0660
            s.daemon.start(prefix=["setpriv", f"--regid={group.gr_gid}", "--clear-groups"])
            s.daemon.wait_swept()
            sock = str(s.daemon.socket)
            assert os.stat(sock).st_gid == group.gr_gid
            python = unprivileged_python(as_user(outsider))
            if python is None:
                pytest.skip(
                    "no python3 with click and rich that an unprivileged user can run "
                    "(apt install python3-click python3-rich)"
                )
            env = clean_env(PUMAGUARD_HB_SOCKET=sock)

            denied = run_cli("status", env=env, prefix=as_user(outsider), python=python)
            assert denied.returncode == 4, denied.stderr
            line = one_line_error(denied)
            assert f"permission denied on {sock}: add yourself to group {group.gr_name}" in line
            denied = run_cli(
                "check-now", "--json", env=env, prefix=as_user(outsider), python=python
            )
            assert denied.returncode == 4 and denied.stdout == ""

            member_prefix = as_user(member, init_groups=True)
            ok = run_cli("status", env=env, prefix=member_prefix, python=python)
            assert ok.returncode == 1, ok.stderr
            assert "Microseven-Gate" in ok.stdout
            ok = run_cli(
                "check-now", "Microseven-Gate", env=env, prefix=member_prefix, python=python
            )
            assert ok.returncode == 0, ok.stderr
            # a member may tune the heartbeat, but not what runs a program or sends data
            # off the machine: that would be running code as the service user
            ok = run_cli(
                "config",
                "set",
                "camera_heartbeat_tcp_timeout",
                "2",
                env=env,
                prefix=member_prefix,
                python=python,
            )
            assert ok.returncode == 0, ok.stderr
            for key, value in (
                ("camera_heartbeat_on_change_command", "/bin/sh -c id"),
                ("camera_heartbeat_webhooks", "[http://127.0.0.1:9/x]"),
                ("camera_heartbeat_metrics_listen", "127.0.0.1:9469"),
                ("camera_heartbeat_webui_url", "http://127.0.0.1:9"),
            ):
                denied = run_cli(
                    "config", "set", key, value, env=env, prefix=member_prefix, python=python
                )
                assert denied.returncode == 4, denied.stderr
                line = one_line_error(denied)
                assert f"{key} runs a program or sends data off the machine" in line
                assert f"only root may change it over the socket (or edit {s.settings})" in line
            for key, value in (  # nor switch the power of cameras (docs/power-cycle.md)
                ("camera_heartbeat_power_cycle", "true"),
                ("camera_heartbeat_power_cycle_max_per_day", "24"),
            ):
                denied = run_cli(
                    "config", "set", key, value, env=env, prefix=member_prefix, python=python
                )
                assert denied.returncode == 4, denied.stderr
                assert f"{key} switches the power of cameras" in one_line_error(denied)
            assert "on_change_command" not in s.settings.read_text()
            assert "power_cycle" not in s.settings.read_text()
            ok = run_cli(
                "config", "set", "camera_heartbeat_on_change_command", "/bin/true", env=env
            )
            assert ok.returncode == 0, ok.stderr  # root may

            # a socket opened to everyone: reading works, changing anything is refused
            os.chmod(sock, 0o666)
            ok = run_cli("status", "--json", env=env, prefix=as_user(outsider), python=python)
            assert ok.returncode == 1, ok.stderr
            denied = run_cli(
                "config",
                "set",
                "camera_heartbeat_interval",
                "5",
                env=env,
                prefix=as_user(outsider),
                python=python,
            )
            assert denied.returncode == 4
            assert f"add yourself to group {group.gr_name}" in one_line_error(denied)
        finally:
            s.close()
            shutil.rmtree(folder, ignore_errors=True)


def test_cli_module_runs_from_a_checkout_without_install() -> None:
    env = clean_env(PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'cli'}")
    done = subprocess.run(
        [sys.executable, "-m", "pumaguard_hb_cli", "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert done.returncode == 0 and "0.1.0" in done.stdout
