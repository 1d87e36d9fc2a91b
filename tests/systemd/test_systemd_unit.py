"""The unit and the Debian package under a real systemd (booted in a container)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nspawn
import pytest

pytestmark = pytest.mark.systemd

UNIT = "pumaguard-heartbeat.service"
#: The contract asks for "OK" or better (systemd rates <= 4.9 as OK); what
#: the unit achieves is lower, and this guards it against regressions.
MAX_EXPOSURE = 2.5


def test_unit_verifies_and_is_hardened(installed: nspawn.Container) -> None:
    c = installed
    verify = c.run(["systemd-analyze", "verify", f"/lib/systemd/system/{UNIT}"], check=False)
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == "", verify.stderr

    security = c.run(["systemd-analyze", "security", "--no-pager", UNIT], check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\S+)", security.stdout)
    assert match, security.stdout[-2000:]
    exposure, rating = float(match.group(1)), match.group(2)
    print(f"\nsystemd-analyze security {UNIT}: exposure {exposure} {rating}")
    assert exposure <= MAX_EXPOSURE
    assert rating in ("SAFE", "OK")


def test_package_install_start_stop_purge(installed: nspawn.Container) -> None:
    c = installed
    # dh_installsystemd enabled and started it on installation; READY=1 was
    # reached when systemctl start returned.
    assert c.run(["systemctl", "is-enabled", UNIT]).stdout.strip() == "enabled"
    active = c.wait_for(["systemctl", "is-active", UNIT], timeout=15)
    assert active.stdout.strip() == "active", c.journal(UNIT)
    c.run(["systemctl", "restart", UNIT], timeout=60)  # blocks until READY=1
    assert c.show(UNIT, "ActiveState") == "active"
    assert c.show(UNIT, "SubState") == "running"

    pid = c.show(UNIT, "MainPID")
    assert pid != "0"
    # (stat of /proc/PID: the container has no procps, as a minimal system)
    owner = c.run(["stat", "-c", "%U %G", f"/proc/{pid}"]).stdout.split()
    assert owner == ["pumaguard-hb", "pumaguard-hb"]
    status = c.run(["grep", "-E", "^(CapEff|CapAmb|NoNewPrivs)", f"/proc/{pid}/status"]).stdout
    assert "CapEff:\t0000000000002000" in status  # CAP_NET_RAW only
    assert "NoNewPrivs:\t1" in status

    assert c.show(UNIT, "StatusText") != "", "STATUS= never reached systemd"

    # The socket: group pumaguard-hb may reach and use it, nobody else.
    listing = c.run(["stat", "-c", "%a %U %G", "/run/pumaguard", "/run/pumaguard/heartbeat.sock"])
    run_dir, sock = listing.stdout.splitlines()
    assert run_dir in ("750 pumaguard-hb pumaguard-hb", "755 pumaguard-hb pumaguard-hb")
    assert sock == "660 pumaguard-hb pumaguard-hb"
    # The state folder holds secrets: the service user's alone (docs/security.md).
    state = c.run(["stat", "-c", "%a %U %G", "/var/lib/pumaguard-heartbeat"]).stdout.strip()
    assert state == "700 pumaguard-hb pumaguard-hb"
    assert c.show(UNIT, "UMask") == "0077"
    assert c.show(UNIT, "MemoryMax") == str(384 * 1024 * 1024)  # bounded (docs/security.md)

    # The journal has the daemon's lines and no traceback.
    journal = c.journal(UNIT)
    assert "Traceback" not in journal

    c.run(["systemctl", "stop", UNIT], timeout=30)
    assert c.show(UNIT, "ActiveState") == "inactive"
    assert c.show(UNIT, "Result") == "success", c.journal(UNIT)
    assert c.show(UNIT, "ExecMainStatus") == "0"

    c.run(["systemctl", "start", UNIT], timeout=60)
    uid = c.run(["id", "-u", "pumaguard-hb"]).stdout.strip()
    c.run(
        ["apt-get", "purge", "-y", "pumaguard-heartbeat"],
        timeout=120,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )
    left_procs = f'for p in /proc/[0-9]*; do [ "$(stat -c %u "$p")" = {uid} ] && echo "$p"; done; :'
    procs = c.run(
        ["sh", "-c", left_procs],
        check=False,
    )
    assert procs.stdout == "", procs.stdout
    assert c.show(UNIT, "LoadState") == "not-found"
    left = c.run(
        [
            "ls",
            "-d",
            "/var/lib/pumaguard-heartbeat",
            "/run/pumaguard",
            "/etc/systemd/system/multi-user.target.wants/" + UNIT,
        ],
        check=False,
    )
    assert left.stdout == "", left.stdout


def test_lintian_reports_no_errors_or_warnings(deb: Path) -> None:
    changes = sorted(deb.parent.glob("pumaguard-heartbeat_*.changes"))
    target = changes[0] if changes else deb
    if shutil.which("lintian", path=nspawn.SYSTEM_PATH) is None:
        pytest.fail(
            "lintian is not installed (tests/systemd/host-deps.sh installs it)", pytrace=False
        )
    proc = nspawn.run_host(
        ["lintian", "--pedantic", "-I", "--tag-display-limit", "0", target],
        timeout=300,
        check=False,
    )
    print("\n" + proc.stdout)
    bad = [ln for ln in proc.stdout.splitlines() if ln.startswith(("E:", "W:"))]
    assert bad == [], proc.stdout


def test_autopkgtest_smoke_script(installed: nspawn.Container) -> None:
    """debian/tests/smoke (the autopkgtest) passes in the booted container."""
    script = Path(__file__).resolve().parents[2] / "debian/tests/smoke"
    inside = installed.copy_in(script, "/root/smoke")
    proc = installed.run(["sh", inside], check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smoke: ok" in proc.stdout
