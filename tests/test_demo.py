"""demo/demo.py (``./dev demo``): it shows a running daemon and cleans up however it ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "demo.py"


def children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def demo(duration: float = 120, *extra: str) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'cli'}"}
    env.pop("PUMAGUARD_HB_SOCKET", None)
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), "--duration", str(duration), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    daemons: list[int] = []
    proc.daemons = daemons  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for pid in daemons:  # in a session of its own: not in the demo's process group
            if alive(pid) and "pumaguard_hb" in cmdline(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def first_frame(proc: subprocess.Popen[str], timeout: float = 30) -> list[str]:
    """Lines up to the end of the first frame (its daemon log header)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("daemon log") or time.monotonic() > deadline:
            break
    return lines


def the_daemon(proc: subprocess.Popen[str]) -> int:
    for pid in children(proc.pid):
        if "pumaguard_hb" in cmdline(pid):
            proc.daemons.append(pid)  # type: ignore[attr-defined]
            return pid
    raise AssertionError(f"no daemon among the demo's children {children(proc.pid)}")


def test_first_frame_shows_the_running_daemon_in_80_columns() -> None:
    with demo() as proc:
        lines = first_frame(proc)
        the_daemon(proc)
        text = "\n".join(lines)
        assert "not running" not in text, text
        assert any(ln.startswith("daemon   pumaguard-heartbeat") for ln in lines), text
        assert "cameras  " in text, text
        assert max(len(ln) for ln in lines) <= 80, text


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_demo_cleans_up_on_a_signal(signum: int) -> None:
    """A closed terminal (SIGHUP), a kill (SIGTERM) and Ctrl-C (SIGINT) alike."""
    with demo() as proc:
        first_frame(proc)
        daemon = the_daemon(proc)
        args = cmdline(daemon)
        folder = Path(args[args.index("--settings") + 1]).parent
        assert folder.is_dir()
        os.kill(proc.pid, signum)
        assert proc.stdout is not None
        rest = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, rest
        assert "everything it started has been stopped and removed" in rest
        deadline = time.monotonic() + 10
        while alive(daemon) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(daemon), f"the demo's daemon {daemon} is still running"
        assert not folder.exists(), f"{folder} was left behind"


def test_a_30_second_run_shows_a_camera_going_silent() -> None:
    """The scripted changes come early: a short run (30 s) shows a timed-out camera."""
    with demo(duration=30) as proc:
        out = proc.communicate(timeout=90)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "=silent" in out
    assert "timed out after" in out, out[-3000:]
    assert max(len(ln) for ln in out.splitlines()) <= 80


def test_the_web_ui_demo_shows_the_web_uis_own_view_of_our_results() -> None:
    """``./dev demo --webui``: the real PumaGuard web UI beside the daemon in web UI mode;
    its own API shows the camera that went silent as disconnected."""
    if not (REPO / ".cache" / "webui-venv" / "bin" / "python").exists():
        if os.environ.get("CI"):
            pytest.fail("the web UI is not installed (tests/webui/install.sh)")
        pytest.skip("the web UI is not installed (sudo ./dev setup)")
    with demo(24, "--webui") as proc:
        out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out[-3000:]
    frames = out.split("pumaguard-heartbeat demo:")
    last = frames[-1]
    assert "the PumaGuard web UI (http://127.0.0.1:" in last, last
    theirs = last.split("/api/dhcp/cameras) says:")[1].split("simulation:")[0]
    ridge = [ln for ln in theirs.splitlines() if ln.startswith("Microseven-Ridge")]
    # Ridge went silent at 4 s and came back at 22 s: somewhere in between the web UI
    # itself showed it disconnected
    assert any(
        "Microseven-Ridge" in ln and "disconnected" in ln
        for frame in frames
        for ln in frame.split("says:")[-1].splitlines()
    ), out[-3000:]
    assert ridge, theirs
    assert max(len(ln) for ln in out.splitlines()) <= 80
    assert "everything it started has been stopped and removed" in out
