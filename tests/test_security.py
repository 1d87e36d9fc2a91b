"""Nobody gets more than they were given (issue 11, items 1 and 2).

- The dnsmasq hook runs as root: symlinks planted by the service's user at every path
  it touches never let it change a root-owned file.
- The on-change command gets no capabilities and a minimal environment, even from a
  daemon that runs with an ambient CAP_NET_RAW (as the shipped unit does).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers_cli import HOOK_SCRIPT, camera_entry, clean_env, write_settings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: dnsmasq runs the hook so")

NOBODY = 65534
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
    os.chown(folder, NOBODY, NOBODY)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def as_nobody_symlink(target: Path, link: Path) -> None:
    link.symlink_to(target)
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)  # planted by the service user


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
            f'chown -h {NOBODY}:{NOBODY} "{folder}/.{NAME}.tmp-$$" && '
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
    os.chown(path, NOBODY, NOBODY)
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
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)


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
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), name


def test_a_root_folder_is_not_written_as_root() -> None:
    folder = Path(tempfile.mkdtemp(prefix="phb-rootdir-"))
    try:
        os.chmod(folder, 0o755)
        err = run_hook_as_root(folder, *EVENT)
        assert "Permission denied" in err  # nobody may not write root's folder
        assert not (folder / NAME).exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
