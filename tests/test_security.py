"""Nobody gets more than they were given (issue 11, items 1 and 2).

- The dnsmasq hook runs as root: symlinks planted by the service's user at every path
  it touches never let it change a root-owned file.
- The on-change command gets no capabilities and a minimal environment, even from a
  daemon that runs with an ambient CAP_NET_RAW (as the shipped unit does).
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

import pytest
import yaml
from helpers_cli import (
    HOOK_SCRIPT,
    NOBODY,
    NOGROUP,
    camera_entry,
    clean_env,
    give_to_nobody,
    hook_folder,
    write_settings,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: dnsmasq runs the hook so")

SECRET = b"root:$6$secret-hash:19000:0:99999:7:::\n"
NAME = "pumaguard-settings.yaml"


@pytest.fixture
def victim() -> Iterator[Path]:
    """A root-owned 0600 file (think /etc/shadow) in a folder only root may write."""
    folder = Path(tempfile.mkdtemp(prefix="phb-victim-"))
    os.chmod(folder, 0o755)
    path = folder / "shadow"
    path.write_bytes(SECRET)
    os.chmod(path, 0o600)
    yield path
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def service_folder() -> Iterator[Path]:
    """The service's state folder, owned by its user (here nobody, as no pumaguard-hb exists)."""
    folder = Path(tempfile.mkdtemp(prefix="phb-svc-"))
    os.chmod(folder, 0o750)
    os.chown(folder, NOBODY, NOGROUP)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def as_nobody_symlink(target: Path, link: Path) -> None:
    link.symlink_to(target)
    os.chown(link, NOBODY, NOGROUP, follow_symlinks=False)  # planted by the service user


def run_hook_as_root(folder: Path, *args: str, plant_temp: Path | None = None) -> str:
    """The hook as dnsmasq runs it (root), the daemon down. With ``plant_temp`` the temp
    file name of this very process (``.<name>.tmp-<pid>``) is a symlink to it first: the
    shell plants it and then execs the hook, which keeps the pid."""
    env = clean_env(
        PUMAGUARD_HB_SOCKET=str(folder / "hb.sock"),
        PUMAGUARD_SETTINGS=str(folder / NAME),
        PUMAGUARD_HB_PYTHON=sys.executable,
    )
    plant = ""
    if plant_temp is not None:
        plant = (
            f'ln -s "{plant_temp}" "{folder}/.{NAME}.tmp-$$" && '
            f'chown -h {NOBODY}:{NOGROUP} "{folder}/.{NAME}.tmp-$$" && '
        )
    done = subprocess.run(
        ["sh", "-c", plant + 'exec "$0" "$@"', str(HOOK_SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr


def assert_untouched(victim: Path, before: os.stat_result) -> None:
    st = os.stat(victim)
    assert (st.st_uid, st.st_gid) == (0, 0), "the victim was handed over"
    assert stat.S_IMODE(st.st_mode) == 0o600, "the victim's mode changed"
    assert st.st_ino == before.st_ino, "the victim was replaced"
    assert victim.read_bytes() == SECRET, "the victim was written"


def good_settings(folder: Path) -> Path:
    path = write_settings(
        folder / NAME,
        {
            "web-ui-key": "keep",
            "cameras": [camera_entry("Microseven-A", "127.0.0.2", "00:11:22:33:44:01")],
        },
    )
    os.chown(path, NOBODY, NOGROUP)
    return path


EVENT = ("add", "00:11:22:33:44:55", "127.0.0.70", "Microseven-New")


def test_symlinked_lock_file(service_folder: Path, victim: Path) -> None:
    before = os.stat(victim)
    good_settings(service_folder)
    as_nobody_symlink(victim, service_folder / f"{NAME}.lock")
    err = run_hook_as_root(service_folder, *EVENT)
    assert "lock" in err  # refused and logged; dnsmasq still sees 0
    assert_untouched(victim, before)


def test_symlinked_temp_file(service_folder: Path, victim: Path) -> None:
    before = os.stat(victim)
    settings = good_settings(service_folder)
    run_hook_as_root(service_folder, *EVENT, plant_temp=victim)
    assert_untouched(victim, before)
    doc = yaml.safe_load(settings.read_text())  # the event itself still got in, as nobody
    assert "00:11:22:33:44:55" in {c["mac_address"] for c in doc["cameras"]}
    assert doc["web-ui-key"] == "keep"
    st = os.stat(settings)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP)


def test_symlinked_settings_file(service_folder: Path, victim: Path) -> None:
    """Root would read the victim as YAML and rename its own version over it."""
    victim.write_bytes(b"secret: x\n")  # YAML: root would merge the camera into it
    secret = victim.read_bytes()
    before = os.stat(victim)
    as_nobody_symlink(victim, service_folder / NAME)
    err = run_hook_as_root(service_folder, *EVENT)
    assert "Permission denied" in err
    st = os.stat(victim)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600)
    assert st.st_ino == before.st_ino and victim.read_bytes() == secret


def test_every_path_symlinked_at_once(service_folder: Path, victim: Path) -> None:
    before = os.stat(victim)
    as_nobody_symlink(victim, service_folder / NAME)
    as_nobody_symlink(victim, service_folder / f"{NAME}.lock")
    for action in ("add", "old", "del"):
        run_hook_as_root(service_folder, action, *EVENT[1:], plant_temp=victim)
    assert_untouched(victim, before)
    assert sorted(os.listdir(victim.parent)) == ["shadow"]


def test_files_the_hook_creates_belong_to_the_folder_owner(service_folder: Path) -> None:
    """Run as the folder's owner, what the hook creates is theirs without any chown."""
    run_hook_as_root(service_folder, *EVENT)
    for name in (NAME, f"{NAME}.lock"):
        st = os.stat(service_folder / name)
        assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP), name


def test_a_root_folder_is_not_written_as_root() -> None:
    folder = Path(tempfile.mkdtemp(prefix="phb-rootdir-"))
    try:
        os.chmod(folder, 0o755)
        err = run_hook_as_root(folder, *EVENT)
        assert "Permission denied" in err  # nobody may not write root's folder
        assert not (folder / NAME).exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- the on-change command gets no capabilities and a minimal environment (item 2) ------------

DUMP = """\
import json, sys
status = open("/proc/self/status").read().splitlines()
caps = dict(line.split(":\\t") for line in status if line.startswith("Cap"))
env = dict(
    item.split("=", 1) for item in open("/proc/self/environ").read().split("\\0") if item
)
with open(sys.argv[1] + env.get("PUMAGUARD_HB_EVENT_ID", "x") + ".json", "w") as out:
    json.dump({"caps": caps, "env": env}, out)
"""


def _caps(pid: int) -> dict[str, int]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: int(v, 16) for k, v in (ln.split(":\t") for ln in lines if ln.startswith("Cap"))}


def test_on_change_command_gets_no_capabilities_and_a_minimal_env() -> None:
    """A daemon run as the shipped unit runs it (non-root, ambient CAP_NET_RAW) passes
    neither the capability nor its environment on to the command."""
    from harness import REPO, RUNNING, Daemon, Listeners, camera, wait_for

    from pumaguard_hb.model.events import StateChange
    from pumaguard_hb.outputs.actions import event_body, event_env

    listeners = Listeners()
    with hook_folder() as folder:
        try:
            ip, port = listeners.open("127.0.0.95")
            (folder / "dump.py").write_text(DUMP)
            d = Daemon(folder)
            write_settings(
                d.settings,
                {
                    "camera-heartbeat-interval": 1,  # the minimum
                    "camera-heartbeat-tcp-timeout": 0.3,
                    "camera-heartbeat-tcp-port": port,
                    "camera_heartbeat_on_change_command": f"/usr/bin/python3 {folder}/dump.py "
                    f"{folder}/event-",
                    "cameras": [
                        camera("Microseven-cap", ip, "aa:bb:cc:dd:ee:95", status="connected")
                    ],
                },
            )
            give_to_nobody(folder)
            env = {
                "PATH": "/usr/bin:/bin",
                "LANG": "C.UTF-8",
                "PYTHONPATH": str(REPO),
                "HOME": "/nonexistent",
                "SECRET_TOKEN": "hunter2",  # must not reach the command
                "CREDENTIALS_DIRECTORY": "/run/credentials/pumaguard-heartbeat.service",
            }
            cmd = [
                "setpriv", f"--reuid={NOBODY}", f"--regid={NOGROUP}", "--clear-groups",
                "--inh-caps=+net_raw", "--ambient-caps=+net_raw",
                "/usr/bin/python3", "-m", "pumaguard_hb", "--settings", str(d.settings),
                "--socket", str(d.socket), "--state-dir", str(folder / "state"),
            ]  # fmt: skip
            d._log = open(d.log_path, "ab")  # noqa: SIM115 - closed by Daemon.stop
            d.proc = subprocess.Popen(cmd, env=env, stdout=d._log, stderr=d._log, cwd="/")
            RUNNING.add(d)
            try:
                d.wait_ready()
                daemon_caps = _caps(d.proc.pid)
                assert daemon_caps["CapAmb"] & (1 << 13), daemon_caps  # CAP_NET_RAW, ambient
                assert daemon_caps["CapEff"] & (1 << 13), daemon_caps
                listeners.close((ip, port))  # the camera goes down: the command runs
                found = wait_for(lambda: sorted(folder.glob("event-*.json")), timeout=20)
                wait_for(lambda: found[0].stat().st_size > 0, timeout=5)
                time.sleep(0.1)
                got = json.loads(found[0].read_text())
            finally:
                d.stop()
        finally:
            listeners.close_all()
    caps = {k: int(v, 16) for k, v in got["caps"].items()}
    assert caps["CapInh"] == caps["CapPrm"] == caps["CapEff"] == caps["CapAmb"] == 0, caps
    documented = set(
        event_env(event_body(StateChange("id", "h", "ip", "mac", None, "x", 0.0, "r", "tcp")))
    )
    assert set(got["env"]) == {"PATH", "LANG"} | documented, sorted(got["env"])
    assert got["env"]["PATH"] == "/usr/bin:/bin" and got["env"]["LANG"] == "C.UTF-8"
    assert got["env"]["PUMAGUARD_HB_EVENT"] == "camera_down"
    assert "hunter2" not in json.dumps(got)
