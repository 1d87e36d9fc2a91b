"""Fixtures for the tests that boot a real systemd (marked ``systemd``).

They need root, systemd-container, mmdebstrap and the package's build
dependencies on the host (``tests/systemd/host-deps.sh`` installs them).
Without those the tests fail with a message saying what to install; set
PUMAGUARD_HB_SKIP_SYSTEMD=1 to skip them instead, and
PUMAGUARD_HB_TEST_DEB=PATH to test a .deb built elsewhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import nspawn
import pytest

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


@pytest.fixture
def container(base_rootfs: Path) -> Iterator[nspawn.Container]:
    """A freshly booted container with its own (empty) network namespace."""
    with nspawn.Container(base_rootfs) as c:
        yield c


@pytest.fixture
def installed(container: nspawn.Container, deb: Path) -> nspawn.Container:
    """A booted container with the package installed (and so started)."""
    nspawn.install_deb(container, deb)
    return container
