"""The DHCP hook never loses an event it may apply (issue 20, item 12).

dnsmasq runs the hook as root. With the service's user present it becomes that user;
without one it may write as root only a file that only root can write (root's, not
group/world-writable, nor any folder on the way); a state folder it cannot read is not
a reason to drop the event.

The service's own paths (``/var/lib/pumaguard-heartbeat``) are fixed, so these tests run
the hook in a private mount namespace (``unshare -m``) where ``/var/lib`` is an empty
tmpfs and the test's folder is bind-mounted as ``/var/lib/pumaguard-heartbeat``: the
machine's own ``/var/lib`` is never touched, and what the hook writes stays in the
test's folder.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers_cli import HOOK_SCRIPT, NOBODY, NOGROUP, camera_entry, clean_env, write_settings

from pumaguard_hb.inputs import hook

SERVICE_DIR = "/var/lib/pumaguard-heartbeat"
NAME = "pumaguard-settings.yaml"
EVENT = ("add", "00:11:22:33:44:5a", "127.0.0.71", "Microseven-Trust")


def _has_service_user() -> bool:
    try:
        pwd.getpwnam(hook.SERVICE_USER)
    except KeyError:
        return False
    return True


def _namespaces_work() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o mode=0755 tmpfs /var/lib"],
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: dnsmasq runs the hook so"),
    pytest.mark.skipif(_has_service_user(), reason="these cases are about no pumaguard-hb user"),
]


@pytest.fixture(scope="module")
def namespaces() -> None:
    if not _namespaces_work():
        pytest.skip("cannot make a private mount namespace here (unshare -m)")


@pytest.fixture
def state() -> Iterator[Path]:
    """The folder that is /var/lib/pumaguard-heartbeat for the hook: root's, mode per test."""
    folder = Path(tempfile.mkdtemp(prefix="phb-trust-state-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_hook_in_ns(state: Path, *args: str, **env: str) -> str:
    """The hook as dnsmasq runs it (root, daemon down), with ``state`` as the service's
    state folder. Returns what it logged."""
    script = (
        "mount -t tmpfs -o mode=0755 tmpfs /var/lib && "
        f"mkdir {SERVICE_DIR} && "
        f'mount --bind "$PHB_STATE" {SERVICE_DIR} && '
        'exec "$0" "$@"'
    )
    full = clean_env(
        PUMAGUARD_HB_SOCKET=f"{SERVICE_DIR}/no-daemon.sock",
        PUMAGUARD_HB_PYTHON=sys.executable,
        PHB_STATE=str(state),
        **env,
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, str(HOOK_SCRIPT), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr


def root_settings(folder: Path, mode: int = 0o600) -> Path:
    path = write_settings(
        folder / NAME,
        {
            "web-ui-key": "keep",
            "cameras": [camera_entry("Microseven-A", "127.0.0.2", "00:11:22:33:44:01")],
        },
    )
    os.chmod(path, mode)
    return path


def macs(path: Path) -> set[str]:
    doc = yaml.safe_load(path.read_text())
    return {c["mac_address"] for c in doc["cameras"]}


def test_no_service_user_and_a_root_only_file_is_written_as_root(
    namespaces: None, state: Path
) -> None:
    """Before: the hook became nobody and could not write root's file: event lost."""
    os.chmod(state, 0o755)
    settings = root_settings(state)
    err = run_hook_in_ns(state, *EVENT)
    assert f"written to {SERVICE_DIR}/{NAME}" in err, err
    assert EVENT[1] in macs(settings)
    st = os.stat(settings)
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_IMODE(st.st_mode) == 0o600  # the file keeps its mode
    assert yaml.safe_load(settings.read_text())["web-ui-key"] == "keep"


def test_unreadable_state_folder_does_not_lose_the_event(namespaces: None, state: Path) -> None:
    """The settings file lives elsewhere (nobody's folder, so the hook becomes nobody) and
    the service's state folder is root's 0700: reading its heartbeat.yaml (for the web UI's
    URL) fails. Before: Path.exists() raised PermissionError and the event was lost."""
    os.chmod(state, 0o700)
    (state / "heartbeat.yaml").write_text("camera_heartbeat_interval: 60\n")
    other = Path(tempfile.mkdtemp(prefix="phb-trust-other-"))
    try:
        os.chmod(other, 0o755)
        settings = write_settings(other / NAME, {"cameras": []})
        os.chown(other, NOBODY, NOGROUP)
        os.chown(settings, NOBODY, NOGROUP)
        err = run_hook_in_ns(state, *EVENT, PUMAGUARD_SETTINGS=str(settings))
        assert f"written to {settings}" in err, err
        assert "cannot read" in err and "heartbeat.yaml" in err, err
        assert EVENT[1] in macs(settings)
        assert os.stat(settings).st_uid == NOBODY
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_unreadable_state_folder_with_the_service_file_in_it(namespaces: None, state: Path) -> None:
    """The service's own file in its 0700 root folder (no service user): written as root."""
    os.chmod(state, 0o700)
    settings = root_settings(state)
    err = run_hook_in_ns(state, *EVENT)
    assert f"written to {SERVICE_DIR}/{NAME}" in err, err
    assert EVENT[1] in macs(settings)


def test_group_writable_folder_without_service_user_is_refused(
    namespaces: None, state: Path
) -> None:
    """Root may not write into a folder others can write (they could swap the file). Before:
    the hook became nobody/nogroup and wrote it through the group bit."""
    settings = root_settings(state, 0o664)
    os.chown(settings, 0, NOGROUP)  # nogroup: what the hook became before, through the group
    os.chown(state, 0, NOGROUP)
    os.chmod(state, 0o775)
    before = os.stat(settings)
    content = settings.read_bytes()
    err = run_hook_in_ns(state, *EVENT)
    assert "Permission denied" in err and "writable by others (mode 0775)" in err, err
    assert "event not recorded" in err and hook.SERVICE_USER in err, err
    after = os.stat(settings)
    assert after.st_ino == before.st_ino and settings.read_bytes() == content
    assert sorted(os.listdir(state)) == [NAME]  # no lock or temp file either


# -- root_only_problem, in this process ------------------------------------------------------


@pytest.fixture
def root_dir() -> Iterator[Path]:
    """A root-only folder under a root-only chain (/var/lib is root's 0755 on Debian)."""
    base = Path("/var/lib")
    st = os.stat(base)
    if st.st_uid != 0 or st.st_mode & 0o022:
        pytest.skip("/var/lib is not root's alone here")
    folder = Path(tempfile.mkdtemp(prefix="phb-trust-", dir=base))
    try:
        os.chmod(folder, 0o755)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_root_only_problem_accepts_root_only_and_names_each_problem(root_dir: Path) -> None:
    path = root_dir / NAME
    assert hook.root_only_problem(path) is None  # absent: root creates it
    path.write_text("cameras: []\n")
    assert hook.root_only_problem(path) is None
    os.chmod(path, 0o664)
    assert hook.root_only_problem(path) == f"{path} is writable by others (mode 0664)"
    os.chmod(path, 0o644)
    os.chown(path, NOBODY, 0)
    assert hook.root_only_problem(path) == f"{path} belongs to uid {NOBODY}"
    os.chown(path, 0, 0)
    os.link(path, root_dir / "second")
    assert hook.root_only_problem(path) == f"{path} has 2 hard links"
    (root_dir / "second").unlink()
    link = root_dir / "link.yaml"
    link.symlink_to(path)
    assert hook.root_only_problem(link) == f"{link} is a symlink"
    # a folder on the way, reached through a symlink into a folder others can write
    shared = Path(tempfile.mkdtemp(prefix="phb-trust-shared-"))  # under /tmp (1777)
    try:
        (root_dir / "via").symlink_to(shared)
        problem = hook.root_only_problem(root_dir / "via" / NAME)
        assert problem is not None and "writable by others" in problem
    finally:
        shutil.rmtree(shared, ignore_errors=True)
