"""Fixtures for the tests that boot a real systemd (marked ``systemd``).

They need root, systemd-container, mmdebstrap and the package's build
dependencies on the host (``tests/systemd/host-deps.sh`` installs them).
Without those the tests fail with a message saying what to install; set
PUMAGUARD_HB_SKIP_SYSTEMD=1 to skip them instead, and
PUMAGUARD_HB_TEST_DEB=PATH to test a .deb built elsewhere.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nspawn
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the harness
import harness

REPO = nspawn.REPO


@pytest.fixture(scope="session")
def systemd_host() -> None:
    """The host can run the systemd tests (or the test fails/skips saying why)."""
    why = nspawn.missing_requirements()
    if why is None:
        return
    if os.environ.get("PUMAGUARD_HB_SKIP_SYSTEMD"):
        pytest.skip(why)
    pytest.fail(why + " (or set PUMAGUARD_HB_SKIP_SYSTEMD=1 to skip these tests)", pytrace=False)


@pytest.fixture(scope="session")
def base_rootfs(systemd_host: None) -> Path:
    """The cached Debian root file system the containers boot from."""
    stale = nspawn.cleanup_stale()
    if stale:
        print(f"\nremoved leftovers of killed test runs: {stale}")
    start = time.monotonic()
    root = nspawn.base_rootfs()
    print(f"\nbase rootfs {root} ready in {time.monotonic() - start:.1f}s")
    return root


@pytest.fixture(scope="session")
def deb(systemd_host: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb, built by dpkg-buildpackage from a copy of this repository.

    PUMAGUARD_HB_TEST_DEB=/path/to/x.deb tests a package built elsewhere.
    """
    given = os.environ.get("PUMAGUARD_HB_TEST_DEB")
    if given:
        return Path(given).resolve()
    start = time.monotonic()
    path = nspawn.build_deb(REPO, tmp_path_factory.mktemp("deb"))
    print(f"\nbuilt {path.name} in {time.monotonic() - start:.1f}s")
    return path


UNIT = "pumaguard-heartbeat.service"


@pytest.fixture
def container(base_rootfs: Path, request: pytest.FixtureRequest) -> Iterator[nspawn.Container]:
    """A freshly booted container with its own (empty) network namespace; at the end, the
    daemon's journal is checked as the harness checks a daemon's log (docs/testing.md)."""
    with nspawn.Container(base_rootfs) as c:
        yield c
        journal_checked(c, harness.Expect.of(request.node))


def journal_checked(c: nspawn.Container, expect: harness.Expect) -> None:
    """When the package is installed: stop the daemon; it ends with a declared status (0),
    and its journal has no error line (priority err or worse) and no traceback, except
    what the test declares (``@pytest.mark.daemon_log``)."""
    if c.show(UNIT, "LoadState") != "loaded":
        return  # not installed (or purged by the test)
    c.run(["systemctl", "stop", UNIT], check=False, timeout=60)
    found = []
    status = c.show(UNIT, "ExecMainStatus")
    if status.lstrip("-").isdigit() and int(status) not in expect.exit:
        found.append(f"its last run ended with status {status}, expected {expect.exit}")
    errors = c.journal(UNIT, "-p", "err").splitlines()
    found += [ln for ln in errors if not any(re.search(a, ln) for a in expect.allow)]
    full = c.journal(UNIT)
    if "Traceback (most recent" in full and not any(
        re.search(a, full[full.index("Traceback") :]) for a in expect.allow
    ):
        found.append(full[full.index("Traceback") :][:3000])
    if found:
        pytest.fail(
            f"{UNIT} did not end clean (exit 0, no error line, no traceback in its journal);"
            " declare what the test provokes with @pytest.mark.daemon_log (docs/testing.md):\n"
            + "\n".join(found),
            pytrace=False,
        )


@pytest.fixture
def installed(container: nspawn.Container, deb: Path) -> nspawn.Container:
    """A booted container with the package installed (and so started)."""
    nspawn.install_deb(container, deb)
    return container
