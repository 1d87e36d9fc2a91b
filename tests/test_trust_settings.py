"""Who may change what: settings (issue 20 items 1, 2 and 7, and the camera cap).

As an attacker who is a member of the group, or who can write the shared settings file:

- a settings file (or its folder) that others may write gives no privileged key: the
  on-change command never runs, a probe override never steers a probe; one log line names
  the file and the key, and ``--check-config`` says so;
- a secret (webhook token, Apprise URL, password, credentials in a URL) never shows in
  check-config, the log, ``status``, ``--json`` or root's ``config get`` (root reads it back
  with ``--show-secrets``; others are refused);
- an interval under a second, global or per camera, is refused; so are 4097 cameras;
- files the daemon creates are 0600.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import REPO, Daemon, Listeners, camera, free_port, wait_for, write_settings
from helpers_cli import NOBODY, clean_env, run_cli

from pumaguard_hb.model.camera import spec_from_entry
from pumaguard_hb.model.checks import MAX_CAMERAS, MIN_INTERVAL
from pumaguard_hb.model.settings import layered_settings, parse_settings
from pumaguard_hb.model.station import Station, target_for
from pumaguard_hb.stores.settings_file import untrusted_reason

COMMAND_KEY = "camera_heartbeat_on_change_command"
TOKEN = "SECRET-TOKEN-4711"  # in a webhook URL: it is the webhook's password
PASSWORD = "PASSWORD-hunter2"


def daemon_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``pumaguard-heartbeat ARGS`` to the end (check-config, or a start that fails)."""
    full = clean_env(PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "pumaguard_hb", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def check_config(settings: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return daemon_run("--settings", str(settings), "--check-config", *more)


def cams(d: Daemon) -> dict[str, dict[str, Any]]:
    return {c["hostname"]: c for c in d.call("status")["cameras"]}


def status_of(d: Daemon, name: str) -> str | None:
    return cams(d).get(name, {}).get("status")


# -- the rule itself: file stat + folder stat + our uid -> trusted or why not -------------------


def fake_stat(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("file", "folder", "trusted"),
    [
        (fake_stat(0o100600), fake_stat(0o40700), True),
        (fake_stat(0o100644, uid=1234), fake_stat(0o40755), True),  # 1234: the service user
        (fake_stat(0o100640, gid=99), fake_stat(0o40750, uid=1234, gid=99), True),  # read only
        (None, fake_stat(0o40755), True),  # no file: nothing in it to trust
        (fake_stat(0o100660), fake_stat(0o40700), False),  # group-writable file
        (fake_stat(0o100602), fake_stat(0o40700), False),  # world-writable file
        (fake_stat(0o100600), fake_stat(0o40770), False),  # group-writable folder
        (fake_stat(0o100600), fake_stat(0o41777), False),  # /tmp: anybody may replace it
        (fake_stat(0o100600, uid=1000), fake_stat(0o40755), False),  # somebody else's file
        (fake_stat(0o100600), fake_stat(0o40755, uid=1000), False),  # somebody else's folder
        (None, fake_stat(0o40775), False),  # anybody in the group may create it
    ],
)
def test_who_may_write_decides_trust(
    file: os.stat_result | None, folder: os.stat_result, trusted: bool
) -> None:
    why = untrusted_reason(file, folder, 1234)
    assert (why == "") is trusted, why


def test_untrusted_file_gives_no_privileged_key_and_everything_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    doc = {
        COMMAND_KEY: "/bin/touch /tmp/pwned",
        "camera-heartbeat-webhooks": [f"https://evil.example/{TOKEN}"],
        "camera_heartbeat_metrics_listen": "0.0.0.0:9469",
        "camera_heartbeat_interval": 30,
        "camera_heartbeat_cameras": {
            "aa:bb:cc:00:00:01": {"heartbeat_path": "/admin", "heartbeat_interval": 120}
        },
    }
    s = layered_settings(doc, "/srv/shared.yaml", shared_untrusted="group-writable")
    assert s.on_change_command == "" and s.webhooks == () and s.metrics_listen == ""
    assert s.interval == 30  # everything else is used
    assert s.overrides_for("aa:bb:cc:00:00:01") == {"interval": 120}  # no path override
    for _ in range(3):  # every reload: the line is said once
        layered_settings(doc, "/srv/shared.yaml", shared_untrusted="group-writable")
    lines = [r.getMessage() for r in caplog.records if COMMAND_KEY in r.getMessage()]
    assert len(lines) == 1 and "/srv/shared.yaml" in lines[0], lines
    assert TOKEN not in caplog.text
    trusted = layered_settings(doc, "/srv/shared.yaml")
    assert trusted.on_change_command == "/bin/touch /tmp/pwned"  # the same file, trusted


# -- as the attacker: a group-writable settings file --------------------------------------------


def test_group_writable_file_never_runs_the_command(tmp_path: Path, listeners: Listeners) -> None:
    """A member writes the on-change command into the daemon's group-writable file: it never
    runs. The same file made 0600 runs it (the test would see it)."""
    marker = tmp_path / "ran"
    ip = "127.0.0.181"
    listeners.open(ip)  # something on the loopback address; the probed port is closed
    closed = free_port(ip)
    d = Daemon(tmp_path)
    doc = {
        "camera-heartbeat-interval": MIN_INTERVAL,
        "camera-heartbeat-tcp-timeout": 0.5,
        "camera-heartbeat-tcp-port": closed,
        COMMAND_KEY: f"/bin/sh -c 'echo \"$PUMAGUARD_HB_HOSTNAME\" >> {marker}'",
        "cameras": [camera("Microseven-planted", ip, "aa:bb:cc:20:00:01", status="connected")],
    }
    write_settings(d.settings, doc)
    os.chmod(d.settings, 0o660)  # group-writable: a member of the group wrote the key
    d.start()
    wait_for(lambda: status_of(d, "Microseven-planted") == "disconnected", 30)  # a change
    for _ in range(3):
        d.call("reload")
    # control: the same file, made the service user's alone, is honoured
    os.chmod(d.settings, 0o600)
    doc["cameras"].append(camera("Microseven-later", ip, "aa:bb:cc:20:00:02", status="connected"))
    write_settings(d.settings, doc)  # in place: keeps 0600
    d.call("reload")
    wait_for(lambda: marker.exists() and "Microseven-later" in marker.read_text(), 30)
    time.sleep(1)  # a command of the first change, were it queued, would be written by now
    assert marker.read_text().split() == ["Microseven-later"], marker.read_text()
    said = [line for line in d.log().splitlines() if COMMAND_KEY in line and "ignored" in line]
    assert len(said) == 1, d.log()  # one line, not one per reload
    assert str(d.settings) in said[0] and "group" in said[0]
    assert d.stop() == 0


def test_probe_override_from_an_untrusted_file_is_ignored(
    tmp_path: Path, listeners: Listeners
) -> None:
    """A camera record of a file others may write cannot steer its probe (here: its port)."""
    ip, port = listeners.open("127.0.0.182")
    d = Daemon(tmp_path)
    doc = {
        "camera-heartbeat-interval": MIN_INTERVAL,
        "camera-heartbeat-tcp-timeout": 0.5,
        "camera-heartbeat-tcp-port": port,
        "cameras": [
            camera("Microseven-steered", ip, "aa:bb:cc:20:00:03", heartbeat_port=free_port(ip))
        ],
    }
    write_settings(d.settings, doc)
    tmp_path.chmod(0o770)  # the folder is group-writable: a member may replace the file
    try:
        d.start()
        wait_for(lambda: status_of(d, "Microseven-steered") == "connected", 30)
        assert cams(d)["Microseven-steered"]["overrides"] == {}
        assert "cameras: heartbeat_port ignored" in d.log()
        tmp_path.chmod(0o700)  # control: trusted, the override is honoured
        d.call("reload")
        wait_for(lambda: status_of(d, "Microseven-steered") == "disconnected", 30)
    finally:
        tmp_path.chmod(0o700)
    assert d.stop() == 0


def test_check_config_says_what_is_ignored(tmp_path: Path) -> None:
    settings = write_settings(
        tmp_path / "shared.yaml",
        {COMMAND_KEY: "/usr/bin/id", "camera_heartbeat_interval": 30, "cameras": []},
    )
    settings.chmod(0o664)
    done = check_config(settings)
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert f"{settings}: {COMMAND_KEY} ignored" in out, out
    settings.chmod(0o644)
    quiet = check_config(settings)
    assert quiet.returncode == 0 and "ignored" not in quiet.stdout + quiet.stderr


def test_root_may_not_save_a_privileged_key_where_it_would_be_ignored(tmp_path: Path) -> None:
    d = Daemon(tmp_path)
    write_settings(d.settings, {"camera_heartbeat_interval": 3600, "cameras": []})
    d.settings.chmod(0o660)
    d.start()
    before = d.settings.read_bytes()
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    done = run_cli("config", "set", COMMAND_KEY, "/usr/bin/id", env=env)
    assert done.returncode == 6, (done.stdout, done.stderr)
    assert "would be ignored" in done.stderr and "group" in done.stderr, done.stderr
    assert d.settings.read_bytes() == before
    ok = run_cli("config", "set", "camera_heartbeat_interval", "60", env=env)
    assert ok.returncode == 0, ok.stderr  # everything else may still be set there
    assert d.stop() == 0


# -- secrets are never shown -------------------------------------------------------------------


@pytest.mark.daemon_log(allow=[r"camera_heartbeat_webhooks: invalid value \['ftp://\*\*\*'\]"])
def test_webhook_token_that_fails_validation_is_never_shown(tmp_path: Path) -> None:
    """check-config, the log, status and --json show a refused webhook as its scheme."""
    bad = {
        "camera_heartbeat_webhooks": [f"ftp://hooks.example/api/{TOKEN}"],
        "camera_heartbeat_interval": 3600,
    }
    settings = write_settings(tmp_path / "shared.yaml", bad)
    done = check_config(settings)
    assert done.returncode == 78
    out = done.stdout + done.stderr
    assert TOKEN not in out and "ftp://***" in out and "camera_heartbeat_webhooks" in out, out
    assert "Traceback" not in out

    d = Daemon(tmp_path)
    write_settings(d.settings, {"camera_heartbeat_interval": 3600, "cameras": []})
    d.start()
    write_settings(d.settings, bad)
    with pytest.raises(Exception, match="camera_heartbeat_webhooks") as refused:
        d.call("reload")
    assert TOKEN not in str(refused.value)
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    for args in (("status",), ("--json", "status"), ("config", "get"), ("--json", "config", "get")):
        shown = run_cli(*args, env=env)
        assert TOKEN not in shown.stdout + shown.stderr, args
    assert "camera_heartbeat_webhooks" in run_cli("status", env=env).stdout  # the error is shown
    # ... and the same value sent over the socket
    with pytest.raises(Exception, match="invalid value") as set_refused:
        d.call("config_set", {"key": "camera_heartbeat_webhooks", "value": f"ftp://h/{TOKEN}"})
    assert TOKEN not in str(set_refused.value)
    assert d.stop() == 0
    assert TOKEN not in d.log() and "ftp://***" in d.log()


def test_root_sees_secrets_redacted_unless_asked_and_others_may_not_ask(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="phb-trust-"))
    try:
        folder.chmod(0o755)  # the other user reaches the socket in it
        d = Daemon(folder)
        hook = f"https://hooks.example/api/webhook/{TOKEN}"
        write_settings(
            d.settings,
            {
                "camera_heartbeat_interval": 3600,
                "camera_heartbeat_webhooks": [hook],
                "camera_heartbeat_smtp_password": PASSWORD,
                "cameras": [],
            },
        )
        d.start()
        env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
        shown = json.loads(run_cli("--json", "config", "get", env=env).stdout)["settings"]
        assert shown["camera_heartbeat_webhooks"] == ["https://***"]
        assert shown["camera_heartbeat_smtp_password"] == "***"
        one = run_cli("config", "get", "camera_heartbeat_webhooks", env=env)
        assert TOKEN not in one.stdout and "https://***" in one.stdout
        asked = run_cli("--json", "config", "get", "--show-secrets", env=env)
        assert asked.returncode == 0, asked.stderr
        values = json.loads(asked.stdout)["settings"]
        assert values["camera_heartbeat_webhooks"] == [hook]
        assert values["camera_heartbeat_smtp_password"] == PASSWORD
        if os.geteuid() == 0 and shutil.which("setpriv"):
            # somebody else on the socket (root's group lets it connect): refused
            ask = (
                "import json, socket, sys\n"
                "s = socket.socket(socket.AF_UNIX)\n"
                "s.connect(sys.argv[1])\n"
                "req = {'cmd': 'config_get', 'args': {'show_secrets': True}}\n"
                "s.sendall(json.dumps(req).encode() + b'\\n')\n"
                "print(s.makefile().readline())\n"
            )
            other = subprocess.run(
                ["setpriv", f"--reuid={NOBODY}", "--regid=0", "--clear-groups",
                 "/usr/bin/python3", "-c", ask, str(d.socket)],
                capture_output=True, text=True, timeout=30, cwd="/",
            )  # fmt: skip
            assert other.returncode == 0, other.stderr
            reply = json.loads(other.stdout)
            assert reply["error"]["code"] == "permission_denied", reply
            assert TOKEN not in other.stdout and PASSWORD not in other.stdout
        assert d.stop() == 0
        assert TOKEN not in d.log() and PASSWORD not in d.log()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("where", ["--webui", "PUMAGUARD_WEBUI_URL", "--config"])
def test_webui_url_with_a_password_is_a_clear_error(tmp_path: Path, where: str) -> None:
    """Not a traceback and a restart loop that prints the password: exit 78, no password."""
    url = f"http://admin:{PASSWORD}@127.0.0.1:1"
    settings = write_settings(tmp_path / "shared.yaml", {"cameras": []})
    args = ["--settings", str(settings), "--socket", str(tmp_path / "hb.sock")]
    args += ["--state-dir", str(tmp_path / "state")]
    env: dict[str, str] = {}
    if where == "--webui":
        args += ["--webui", url]
    elif where == "--config":
        own = write_settings(tmp_path / "own.yaml", {"camera_heartbeat_webui_url": url})
        args += ["--config", str(own)]
    else:
        env["PUMAGUARD_WEBUI_URL"] = url
    done = daemon_run(*args, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 78, out
    assert PASSWORD not in out and "Traceback" not in out
    assert "user name or password" in out and "http://***@127.0.0.1:1" in out, out


def test_secret_values_in_errors_of_the_settings_module() -> None:
    for doc in (
        {"camera_heartbeat_webhooks": f"http://h/{TOKEN} x"},
        {"camera_heartbeat_apprise_urls": [f"tgram://{TOKEN}/1 2"]},
        {"camera_heartbeat_smtp_password": f"{PASSWORD}\n"},
        {"camera_heartbeat_webui_url": f"http://u:{PASSWORD}@h?x=1"},
    ):
        with pytest.raises(Exception) as err:
            parse_settings(doc, "/f.yaml")
        assert TOKEN not in str(err.value) and PASSWORD not in str(err.value), err.value
        assert err.value.__cause__ is None  # no chained exception that quotes it


# -- bounds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        {"camera_heartbeat_interval": 0.01},
        {"camera-heartbeat-interval": 0},
        {"camera_heartbeat_cameras": {"aa:bb:cc:00:00:01": {"heartbeat_interval": 0.01}}},
    ],
)
def test_an_interval_under_a_second_is_refused(tmp_path: Path, doc: dict[str, Any]) -> None:
    settings = write_settings(tmp_path / "shared.yaml", doc)
    done = check_config(settings)
    assert done.returncode == 78, done.stdout + done.stderr
    assert "interval" in done.stderr and "Traceback" not in done.stderr


def test_a_camera_interval_under_a_second_is_not_used() -> None:
    entry = camera("Microseven-fast", "127.0.0.183", "aa:bb:cc:20:00:04", heartbeat_interval=0.01)
    spec = spec_from_entry(entry)
    assert spec is not None and "interval" not in spec.overrides
    assert spec.notice and f"at least {MIN_INTERVAL} second" in spec.notice
    station = Station()
    station.listing([entry], 0)
    (cam,) = station.cameras.values()
    target = target_for(cam, parse_settings({"camera_heartbeat_interval": 30}))
    assert target is not None and target.interval == 30
    assert parse_settings({"camera_heartbeat_interval": MIN_INTERVAL}).interval == MIN_INTERVAL


def test_an_interval_under_a_second_is_refused_over_the_socket(tmp_path: Path) -> None:
    d = Daemon(tmp_path)
    write_settings(d.settings, {"camera_heartbeat_interval": 3600, "cameras": []})
    d.start()
    with pytest.raises(Exception, match="at least 1 second"):
        d.call("config_set", {"key": "camera_heartbeat_interval", "value": 0.01})
    assert d.call("config_get", {"key": "camera_heartbeat_interval"})["value"] == 3600
    assert d.stop() == 0


def many_cameras(n: int) -> list[dict[str, Any]]:
    return [
        camera(f"cam-{i}", f"127.1.{i // 250}.{i % 250 + 1}", f"aa:bb:{i >> 16 & 255:02x}:"
               f"{i >> 8 & 255:02x}:{i & 255:02x}:01")
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture
def too_many(tmp_path: Path) -> Iterator[bytes]:
    yield yaml.safe_dump(
        {"camera_heartbeat_interval": 3600, "cameras": many_cameras(MAX_CAMERAS + 1)}
    ).encode()


def test_more_than_4096_cameras_at_start_is_one_clear_error(
    tmp_path: Path, too_many: bytes
) -> None:
    settings = tmp_path / "shared.yaml"
    settings.write_bytes(too_many)
    done = check_config(settings)
    assert done.returncode == 78
    lines = done.stderr.strip().splitlines()
    assert lines == [f"pumaguard-heartbeat: {settings}: cameras: 4097 cameras listed: at most "
                     "4096 are monitored (docs/security.md); remove some"], done.stderr  # fmt: skip
    ok = yaml.safe_dump({"cameras": many_cameras(MAX_CAMERAS)}).encode()
    settings.write_bytes(ok)
    assert check_config(settings).returncode == 0  # 4096 is fine


@pytest.mark.daemon_log(allow=[r"cameras: 4097 cameras listed: at most 4096"])
def test_more_than_4096_cameras_at_reload_keeps_the_last_good_list(
    tmp_path: Path, too_many: bytes
) -> None:
    d = Daemon(tmp_path)
    write_settings(d.settings, {"camera_heartbeat_interval": 3600, "cameras": many_cameras(3)})
    d.start()
    d.settings.write_bytes(too_many)
    with pytest.raises(Exception, match="at most 4096"):
        d.call("reload")
    status = d.call("status")
    assert status["summary"]["total"] == 3  # the last good list
    assert "at most 4096" in status["daemon"]["settings_error"]
    wait_for(lambda: d.log().count("4097 cameras listed") >= 1, 10)
    with pytest.raises(Exception, match="at most 4096"):
        d.call("reload")  # again: the same error is not logged again
    assert d.log().count("4097 cameras listed") == 1, d.log()[-2000:]
    assert d.call("status")["summary"]["total"] == 3
    assert d.stop() == 0


# -- files the daemon creates ------------------------------------------------------------------


def test_files_the_daemon_creates_are_0600_and_an_old_file_keeps_its_mode(
    tmp_path: Path,
) -> None:
    old_umask = os.umask(0)  # even so
    try:
        d = Daemon(tmp_path)
        d.start()
        d.call("camera_add", {"hostname": "Microseven-new", "ip_address": "127.0.0.184"})
        wait_for(d.settings.exists, 10)
        assert stat.S_IMODE(d.settings.stat().st_mode) == 0o600
        lock = d.settings.with_name(d.settings.name + ".lock")
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        os.chmod(d.settings, 0o640)  # an existing file: somebody's decision
        d.call("camera_add", {"hostname": "Microseven-two", "ip_address": "127.0.0.185"})
        wait_for(lambda: "Microseven-two" in d.settings.read_text(), 10)
        assert stat.S_IMODE(d.settings.stat().st_mode) == 0o640
        assert d.stop() == 0
    finally:
        os.umask(old_umask)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_a_member_may_not_point_a_camera_probe_over_the_socket() -> None:
    """``camera_heartbeat_cameras`` is not a privileged key, but its method, port, path, URL
    and stream credentials point a probe somewhere (and would send the station's stream
    password to a host of the member's choosing): from a non-root member they are refused
    like a privileged key; an interval alone is that member's to set."""
    folder = Path(tempfile.mkdtemp(prefix="phb-trust-"))
    try:
        folder.chmod(0o755)  # the member reaches the socket in it
        _member_points_a_probe(Daemon(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _member_points_a_probe(d: Daemon) -> None:
    write_settings(d.settings, {"cameras": []})
    d.start()
    mac = "aa:bb:cc:00:00:01"
    ask = (
        "import json, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.connect(sys.argv[1])\n"
        "f = s.makefile()\n"
        "for value in json.loads(sys.argv[2]):\n"
        "    req = {'cmd': 'config_set', 'args': {'key': 'camera_heartbeat_cameras',\n"
        "                                        'value': value}}\n"
        "    s.sendall(json.dumps(req).encode() + b'\\n')\n"
        "    print(f.readline().strip())\n"
    )
    values = [
        {mac: {"heartbeat_port": 8080}},
        {mac: {"heartbeat-url": "rtsp://127.0.0.1:9/x"}},
        {mac: {"heartbeat_interval": 30}},
    ]
    member = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", "--regid=0", "--clear-groups",
         "/usr/bin/python3", "-c", ask, str(d.socket), json.dumps(values)],
        capture_output=True, text=True, timeout=30, cwd="/",
    )  # fmt: skip
    assert member.returncode == 0, member.stderr
    port, url, interval = (json.loads(line) for line in member.stdout.splitlines())
    for refused, field in ((port, "heartbeat_port"), (url, "heartbeat_url")):
        assert refused["error"]["code"] == "permission_denied", refused
        assert f"{mac}: {field}" in refused["error"]["message"]
    assert "error" not in interval, interval
    saved = yaml.safe_load(d.settings.read_text())
    overrides = saved.get("camera_heartbeat_cameras") or saved.get("camera-heartbeat-cameras")
    assert overrides == {mac: {"heartbeat_interval": 30}}
    # root may (the daemon's file is root's alone here)
    done = run_cli("config", "set", "camera_heartbeat_cameras",
                   json.dumps({mac: {"heartbeat_port": 8080}}),
                   env=clean_env(PUMAGUARD_HB_SOCKET=str(d.socket)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert d.stop() == 0
