"""The container harness itself: cleaning up what a killed run left behind."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import nspawn
import pytest

pytestmark = pytest.mark.systemd


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not Path(f"/proc/{proc.pid}").exists()
    return proc.pid


def _clean(errors: list[BaseException]) -> None:
    try:
        nspawn.cleanup_stale()
    except BaseException as exc:
        errors.append(exc)


def test_workers_clean_the_same_leftovers_at_once(systemd_host: None) -> None:
    """Each xdist worker cleans up at its start; the trees vanish under the others.

    A cgroup left by a killed run (its PID gone), three folders deep, is removed
    by four cleanups racing; none of them may fail (CI once failed with
    FileNotFoundError in the middle of such a walk).
    """
    roots = nspawn._cgroup_roots()
    assert roots, "no cgroup hierarchy to test in"
    for attempt in range(5):
        name = f"pghb-test-{_dead_pid()}-harness{attempt}"
        made = []
        for root in roots:
            top = root / nspawn.CGROUP_PARENT / name
            for sub in ("a/b/c", "a/d", "e"):
                (top / sub).mkdir(parents=True, exist_ok=True)
            made.append(top)
        errors: list[BaseException] = []

        threads = [threading.Thread(target=_clean, args=(errors,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert [top for top in made if top.exists()] == []
