"""pytest fixtures shared by every test; the code lives in tests/harness.py.

Before anything else, three things a fresh machine (or a CI runner) does not give the tests;
the third, a SIGINT that is heard, is explained at :func:`_hear_ctrl_c`:

- Open files: Debian's default soft limit is 1024; a sweep of a thousand cameras (and the
  daemons and listeners the tests start, which inherit the limit) needs more. The soft
  limit is raised here, up to the hard limit, for the tests and everything they start.
- A clone in a private home (``/root`` is mode 0700): tests run code as other users
  (``setpriv --reuid``), who cannot reach the repository or its virtualenv there. Then the
  run starts over from a bind mount of the same tree at a path everybody can reach
  (``/var/tmp/pumaguard-hb-tests/repo-PID``: not under /run or /tmp, which the tests'
  booted containers cover with their own tmpfs), removed when the run ends (and by the
  next run, if this one was killed).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

WANT_NOFILE = 65536  # the unit's LimitNOFILE=


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = WANT_NOFILE if hard == resource.RLIM_INFINITY else min(WANT_NOFILE, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


_raise_nofile()


def _hear_ctrl_c() -> None:
    """A run started in the background by a shell without job control (``.ci/run &``, a
    CI runner) inherits SIGINT *ignored*, and so does every program a test starts: Python
    keeps an ignored SIGINT ignored, so a test's Ctrl-C (SIGINT to the CLI) was never heard
    and the CLI waited until the test's timeout. The tests' processes hear it again (an
    ignored disposition is inherited over exec; a handler is reset to the default there)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_hear_ctrl_c()

_REPO = Path(__file__).resolve().parent.parent
_MOUNTS = Path("/var/tmp/pumaguard-hb-tests")
_MOUNTED_ENV = "PUMAGUARD_HB_TESTS_REPO_MOUNT"


def _reachable_by_others(path: Path) -> bool:
    """Every folder from / down to ``path`` lets other users through (o+x)."""
    return all(d.stat().st_mode & 0o001 for d in (path, *path.parents))


def _remove_stale_mounts() -> None:
    """Bind mounts of runs whose process is gone (killed before they could clean up)."""
    if not _MOUNTS.is_dir():
        return
    for d in _MOUNTS.glob("repo-*"):
        pid = d.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _unmount(d)


def _unmount(d: Path) -> None:
    subprocess.run(["umount", "--lazy", str(d)], capture_output=True, check=False)
    with contextlib.suppress(OSError):
        d.rmdir()


def _restart_from_a_reachable_path() -> None:
    """Run again from a bind mount of the repository every user can reach (see above)."""
    if os.geteuid() != 0 or os.environ.get(_MOUNTED_ENV) or _reachable_by_others(_REPO):
        return
    _remove_stale_mounts()
    _MOUNTS.mkdir(mode=0o755, exist_ok=True)
    os.chmod(_MOUNTS, 0o755)
    mount = _MOUNTS / f"repo-{os.getpid()}"
    mount.mkdir(mode=0o755, exist_ok=True)
    done = subprocess.run(["mount", "--bind", str(_REPO), str(mount)], capture_output=True)
    if done.returncode != 0:
        mount.rmdir()
        print(
            f"warning: {_REPO} is not reachable by other users and bind-mounting it failed "
            f"({done.stderr.decode(errors='replace').strip()}); tests that run code as "
            "another user will fail",
            file=sys.stderr,
        )
        return

    def mapped(text: str) -> str:
        return text.replace(str(_REPO), str(mount))

    env = {k: mapped(v) for k, v in os.environ.items()}
    env[_MOUNTED_ENV] = str(mount)
    cwd = Path.cwd()
    if cwd == _REPO or _REPO in cwd.parents:
        os.chdir(mapped(str(cwd)))
    argv = [mapped(a) for a in sys.orig_argv]
    executable = mapped(sys.executable)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(executable, [executable, *argv[1:]], env)


def pytest_configure(config: pytest.Config) -> None:
    # Here, not at import: pytest captures the output while it imports conftest files,
    # and a restart then would write into its capture files.
    _restart_from_a_reachable_path()
    config.addinivalue_line(
        "markers",
        "daemon_log(exit=0, allow=[]): how the test's daemons may end — exit statuses and "
        "regexes of the ERROR lines/tracebacks it provokes (docs/testing.md)",
    )


if os.environ.get(_MOUNTED_ENV) and not os.environ.get("PYTEST_XDIST_WORKER"):
    # only the process that mounted it: an xdist worker that ends first must not pull the
    # tree away from the others (and from the controller's working directory)
    import atexit

    atexit.register(_unmount, Path(os.environ[_MOUNTED_ENV]))

from harness import (  # noqa: E402
    daemon_factory,
    listeners,
    module_daemons_checked,
    no_daemon_left_behind,
)

__all__ = ["daemon_factory", "listeners", "module_daemons_checked", "no_daemon_left_behind"]
pytest_plugins = ["parallel"]  # tests/parallel.py: xdist groups, skips CI must not have, report
