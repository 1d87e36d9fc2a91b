"""systemd/dnsmasq-dhcp-script itself: exit 0 for dnsmasq even when Python cannot run the hook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers_cli import HOOK_SCRIPT, clean_env

EVENT = ["add", "aa:bb:cc:dd:ee:01", "127.0.0.5", "Microseven-Gate"]


def run_script(python: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        PUMAGUARD_HB_PYTHON=python,
        PUMAGUARD_HB_SOCKET=str(tmp_path / "hb.sock"),
        PUMAGUARD_SETTINGS=str(tmp_path / "s.yaml"),
    )
    return subprocess.run(
        [str(HOOK_SCRIPT), *EVENT], env=env, capture_output=True, text=True, timeout=30, cwd="/"
    )


def test_module_that_cannot_be_imported_exits_0_and_says_why(tmp_path: Path) -> None:
    # An interpreter without the package (a broken upgrade, a removed package): a real
    # Python failing the import, as `python3 -I -m pumaguard_hb.hook` would.
    python = tmp_path / "python3"
    python.write_text('#!/bin/sh\nexec /usr/bin/python3 -I -c "import pumaguard_hb_not_here"\n')
    python.chmod(0o755)
    done = run_script(str(python), tmp_path)
    assert done.returncode == 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("pumaguard-heartbeat dhcp-script: cannot run ")
    assert "No module named 'pumaguard_hb_not_here'" in lines[0]
    assert " ".join(EVENT) in lines[0]  # which event was lost
    assert not (tmp_path / "s.yaml").exists()


@pytest.mark.parametrize("python", ["/nonexistent/python3", "/dev/null"])
def test_missing_or_broken_interpreter_exits_0_and_says_why(tmp_path: Path, python: str) -> None:
    done = run_script(python, tmp_path)
    assert done.returncode == 0
    assert done.stderr.startswith(f"pumaguard-heartbeat dhcp-script: cannot run {python} ")
    assert done.stderr.count("\n") == 1


def test_the_hooks_own_messages_still_reach_stderr(tmp_path: Path) -> None:
    env = clean_env(
        PUMAGUARD_HB_PYTHON=sys.executable,
        PUMAGUARD_HB_SOCKET=str(tmp_path / "hb.sock"),
        PUMAGUARD_SETTINGS=str(tmp_path / "s.yaml"),
    )
    done = subprocess.run(
        [str(HOOK_SCRIPT), "add", "not-a-mac", "127.0.0.5", "Microseven-A"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert done.returncode == 0
    assert "mac_address: invalid value" in done.stderr
    assert "cannot run" not in done.stderr
