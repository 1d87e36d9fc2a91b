"""The package on the other supported Debian release (12 <-> 13) than the host's.

A chroot of that release (mmdebstrap, cached) builds the package with its own
debhelper and dh-python, runs its lintian, installs the result and checks
the unit with its own systemd-analyze (offline: no systemd is booted, since a
newer systemd may not boot on this host's cgroup layout).
"""

from __future__ import annotations

import re
import time

import nspawn
import pytest

pytestmark = pytest.mark.systemd

UNIT = "pumaguard-heartbeat.service"


def test_build_lint_install_and_analyze_on_the_other_release(systemd_host: None) -> None:
    suite = nspawn.other_suite()
    if suite is None:
        pytest.skip(f"no other release known for host suite {nspawn.host_suite()}")
    start = time.monotonic()
    tree = nspawn.cached_rootfs("build", suite, nspawn.BUILD_PACKAGES)
    print(f"\n{suite} build chroot ready in {time.monotonic() - start:.1f}s")
    with nspawn.Overlay(tree) as ov:
        nspawn.copy_repo(nspawn.REPO, ov.root / "build/src")
        start = time.monotonic()
        build = ov.chroot("cd /build/src && dpkg-buildpackage -us -uc -b", check=False)
        assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
        print(f"{suite}: dpkg-buildpackage took {time.monotonic() - start:.1f}s")

        lintian = ov.chroot("lintian --pedantic -I /build/*.changes", check=False)
        print(lintian.stdout)
        bad = [ln for ln in lintian.stdout.splitlines() if ln.startswith(("E:", "W:"))]
        assert bad == [], lintian.stdout

        ov.chroot("dpkg -i /build/pumaguard-heartbeat_*_all.deb")
        ov.chroot("getent passwd pumaguard-hb && pumaguard-heartbeat --version")
        unit = ov.chroot(
            f"ls /usr/lib/systemd/system/{UNIT} /lib/systemd/system/{UNIT}", check=False
        ).stdout.split()[0]
        verify = ov.chroot(f"systemd-analyze verify {unit}", check=False)
        assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
        security = ov.chroot(f"systemd-analyze security --offline=yes {unit}", check=False)
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\S+)", security.stdout)
        assert match, security.stdout[-2000:]
        print(f"{suite}: systemd-analyze security: exposure {match.group(1)} {match.group(2)}")
        assert float(match.group(1)) <= 2.5
