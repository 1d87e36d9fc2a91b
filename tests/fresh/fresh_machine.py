"""The README's two commands on a fresh Debian machine, as a new user runs them.

For each Debian release asked for: a minimal root file system (mmdebstrap --variant=apt
plus git, ca-certificates, sudo, systemd, dbus, iproute2; built once and cached in
CACHE_DIR like the systemd tests' base), a throw-away overlay on it, the host's apt
sources, pip configuration and CA certificates (what any machine on this network has),
a ``git clone`` of the commit under test into /root, and then, inside a systemd-nspawn
container with every capability (the tests make network namespaces and boot containers
of their own), exactly::

    sudo ./dev demo --duration N
    sudo ./dev test --run pypi --run debian FRESH_TESTS

By default on both Debian releases (12 and 13): setup, the demo, and the tests that depend
on what a fresh machine has installed (FRESH_TESTS: the package under a real systemd, the
web UI's install, chromium, dnsmasq, aiosmtpd and Apprise, Prometheus, wsdd or its replay,
other users reaching a clone in /root, ...), in both runs (PyPI's and Debian's packages;
not the linters). The rest of the suite runs on the CI machine's own ``./dev test``; see
docs/packaging.md ("The fresh-machine check") for what is where. ``--full SUITE`` runs the
whole ``./dev test`` there instead (by hand, before a release). Everything it starts is
removed at the end, also on failure or SIGTERM. Exit status 0 only if every step passed.

Usage: /usr/bin/python3 tests/fresh/fresh_machine.py [--full SUITE] [--quick SUITE]
       [--subset PYTEST ARGS...] [--dry-run]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "systemd"))

import nspawn  # noqa: E402

#: What a minimal fresh machine has (besides mmdebstrap's --variant=apt).
FRESH_PACKAGES = ("git", "ca-certificates", "sudo", "systemd", "dbus", "iproute2")
HOSTNAME = "fresh"
HOOKS = (
    f'echo {HOSTNAME} > "$1/etc/hostname"',
    ': > "$1/etc/machine-id"',
    # as Debian's installer writes it (sudo looks the host name up)
    f'printf "127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost\n"'
    ' > "$1/etc/hosts"',
)
CLONE = "/root/pumaguard-heartbeat"
#: The tests a fresh machine can break (--quick): each needs something ./dev setup installs
#: or something a fresh machine does differently (a clone in /root, no locale, TERM=dumb).
FRESH_TESTS = (
    "tests/systemd",  # the .deb built and installed, booted under systemd (systemd-container,
    # mmdebstrap, debhelper); the real web UI beside it
    "tests/test_daemon.py",  # the CLI and the daemon end to end, raw ICMP
    "tests/test_hook.py",  # the dnsmasq hook
    "tests/test_dnsmasq.py",  # a real dnsmasq and udhcpc in network namespaces
    "tests/test_demo.py",  # the demo, with the web UI from tests/webui/install.sh
    "tests/test_webui_client.py",  # the real PumaGuard web UI (its venv, its API)
    "tests/test_status_page.py",  # chromium and its font render the status page
    "tests/test_alerts.py",  # aiosmtpd, Apprise, openssl
    "tests/test_prometheus.py",  # the Prometheus and Alertmanager binaries
    "tests/test_metrics.py",  # promtool
    "tests/test_discovery.py",  # wsdd where packaged (Debian 12), its replay where not
    "tests/test_methods.py",  # GStreamer's RTSP server (python3-gi)
    "tests/test_stream.py",  # GStreamer's RTSP server streaming (gstreamer1.0-plugins-good)
    "tests/test_watch.py",  # tmux
    "tests/test_cli.py",  # other users (useradd, setpriv) reaching the clone in /root
)
#: Before FRESH_TESTS: --run pypi --run debian (both runs, no linters).
FRESH_RUNS = ("pypi", "debian")
QUICK_TESTS = FRESH_TESTS  # the name older notes use
DEMO_SECONDS = 20
#: Debian's default limits for a login (a fresh machine's), not this host's.
NOFILE = "1024:524288"
CODENAMES = ("bookworm", "trixie")
#: systemd-nspawn 252 says this on exit when the host's /run is not a tmpfs; harmless.
NSPAWN_NOISE = b'Attempted to remove disk file system under "/run/systemd/nspawn/propagate/'


def log(msg: str) -> None:
    print(f"[fresh] {msg}", flush=True)


# --------------------------------------------------------------------------
# What the container gets from the host


def host_codename() -> str:
    return nspawn.host_suite()


def apt_sources(suite: str) -> dict[str, str]:
    """The host's enabled apt sources, for ``suite`` instead of the host's release."""
    host = host_codename()
    out: dict[str, str] = {}
    files = [Path("/etc/apt/sources.list")] if Path("/etc/apt/sources.list").exists() else []
    files += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    files += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for f in files:
        text = f.read_text()
        if host not in text:
            continue  # not Debian's (or not for a release): a fresh machine lacks it
        text = re.sub(rf"\b{host}(?=[-\s]|$)", suite, text, flags=re.M)
        rel = str(f.relative_to("/"))
        out[rel] = text
    return out


def local_apt_conf() -> list[Path]:
    """apt.conf.d files of this machine (not from a package), but the image's docker-*."""
    found = []
    for f in sorted(Path("/etc/apt/apt.conf.d").iterdir()):
        if f.name.startswith("docker-") or not f.is_file():
            continue
        owned = subprocess.run(["dpkg", "-S", str(f)], capture_output=True).returncode == 0
        if not owned:
            found.append(f)
    return found


def pip_config() -> tuple[dict[str, Path], dict[str, str]]:
    """pip's configuration files (container path -> host file) and PIP_* variables."""
    files: dict[str, Path] = {}
    if Path("/etc/pip.conf").is_file():
        files["/etc/pip.conf"] = Path("/etc/pip.conf")
    xdg = Path("/etc/xdg/pip")
    if xdg.is_dir():
        for f in xdg.iterdir():
            if f.is_file():
                files[f"/etc/xdg/pip/{f.name}"] = f
    home = Path(os.environ.get("HOME", "/root"))
    user = Path(os.environ.get("XDG_CONFIG_HOME", home / ".config")) / "pip"
    if user.is_dir():
        for f in user.iterdir():
            if f.is_file():
                files[f"/root/.config/pip/{f.name}"] = f
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    return files, env


def referenced_dirs(texts: list[str]) -> list[Path]:
    """Local folders that pip's configuration points at (find-links, file:// indexes)."""
    dirs: set[Path] = set()
    for text in texts:
        for m in re.finditer(
            r"(?:file://)?(/(?:opt|srv|var|usr/local|home|mnt)/[^\s,;\"']+)", text
        ):
            p = Path(m.group(1).rstrip("/"))
            if p.name == "simple":  # an index: its files are beside it
                p = p.parent
            if p.is_dir():
                dirs.add(p)
            elif p.parent.is_dir() and p.parent != Path("/"):
                dirs.add(p.parent)
    # keep only the outermost
    return sorted(d for d in dirs if not any(o != d and o in d.parents for o in dirs))


def host_ca_certs() -> list[str]:
    """Every certificate of the host's bundle (this network intercepts TLS)."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.exists():
        return []
    return re.findall(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", bundle.read_text(), re.S
    )


# --------------------------------------------------------------------------
# One fresh machine


class FreshMachine:
    """An overlay on the cached minimal rootfs, configured like a machine of this network."""

    def __init__(self, suite: str, commit: str) -> None:
        self.suite = suite
        self.commit = commit
        self.name = f"pghb-fresh-{os.getpid()}-{suite}"
        self.state = nspawn.CACHE_DIR / f"fresh-state-{suite}"
        self.binds: list[str] = []
        self.setenv: list[str] = []
        self.ov: nspawn.Overlay | None = None
        self.cgroups: list[Path] = []

    def __enter__(self) -> FreshMachine:
        start = time.monotonic()
        base = nspawn.cached_rootfs("fresh", self.suite, FRESH_PACKAGES, HOOKS)
        log(f"{self.suite}: minimal rootfs {base.name} ready in {time.monotonic() - start:.0f}s")
        self.ov = nspawn.Overlay(base, prefix="pghb-fresh").__enter__()
        try:
            self._configure()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for cg in self.cgroups:
            nspawn._remove_cgroup_tree(cg)
            with contextlib.suppress(OSError):
                cg.parent.rmdir()
        self.cgroups = []
        if self.ov is not None:
            self.ov.__exit__()
            self.ov = None
        shutil.rmtree(self.state / "var-tmp", ignore_errors=True)

    def _configure(self) -> None:
        assert self.ov is not None
        root = self.ov.root
        # apt: the host's sources (for this release) and its local settings
        for f in (root / "etc/apt/sources.list.d").glob("*"):
            f.unlink()
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        sources = apt_sources(self.suite)
        if not sources:
            raise nspawn.HarnessError("no Debian apt sources found on the host")
        for rel, text in sources.items():
            (root / rel).write_text(text)
        for f in local_apt_conf():
            shutil.copy2(f, root / "etc/apt/apt.conf.d" / f.name)
        # pip: configuration files, PIP_* variables, and the local folders they name
        files, env = pip_config()
        for inside, host in files.items():
            target = root / inside.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(host, target)
        texts = [f.read_text(errors="replace") for f in files.values()] + list(env.values())
        for d in referenced_dirs(texts):
            (root / str(d).lstrip("/")).mkdir(parents=True, exist_ok=True)
            self.binds.append(f"--bind-ro={d}")
        self.setenv += [f"--setenv={k}={v}" for k, v in env.items()]
        # CA certificates: the host's, as local ones (kept when ca-certificates updates)
        local = root / "usr/local/share/ca-certificates"
        local.mkdir(parents=True, exist_ok=True)
        for i, pem in enumerate(host_ca_certs()):
            (local / f"host-{i:03d}.crt").write_text(pem + "\n")
        # Caches kept between runs: downloaded .debs and the systemd tests' own rootfs.
        # /var/tmp on a real file system: the tests put overlays there.
        for sub, inside in (
            ("apt-archives", "/var/cache/apt/archives"),
            ("tests-cache", "/var/cache/pumaguard-hb-tests"),
            ("var-tmp", "/var/tmp"),
        ):
            host_dir = self.state / sub
            host_dir.mkdir(parents=True, exist_ok=True)
            (root / inside.lstrip("/")).mkdir(parents=True, exist_ok=True)
            self.binds.append(f"--bind={host_dir}:{inside}")
        # The repository under test, read-only, to clone from
        (root / "mnt/source").mkdir(parents=True, exist_ok=True)
        self.binds.append(f"--bind-ro={nspawn.REPO}:/mnt/source")
        self.ov.chroot("update-ca-certificates >/dev/null 2>&1")
        # An installed machine has a machine ID (systemd makes one at its first boot; this
        # container is not booted). systemd-nspawn, which the tests run, needs it.
        (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")

    def run(self, script: str, timeout: float) -> int:
        """Run a bash script in the container as root (in a login shell); stream its output."""
        assert self.ov is not None
        cgroups = []
        for croot in nspawn._cgroup_roots():
            cg = croot / nspawn.CGROUP_PARENT / self.name
            cg.mkdir(parents=True, exist_ok=True)
            cgroups.append(cg)
            if cg not in self.cgroups:
                self.cgroups.append(cg)

        def enter_cgroup() -> None:
            for cg in cgroups:
                (cg / "cgroup.procs").write_text(str(os.getpid()))

        cmd = [
            "systemd-nspawn",
            "--quiet",
            "--register=no",
            "--keep-unit",
            "--as-pid2",
            "--console=pipe",  # no terminal, as in CI (no pager, no prompts)
            f"--machine={self.name}",
            f"--hostname={HOSTNAME}",
            f"--directory={self.ov.root}",
            # The suite creates network namespaces, mounts overlays and boots containers
            # of its own: all capabilities, no user namespace, the host's network (the
            # package registries; the tests only use loopback and their own namespaces).
            "--capability=all",
            # its own /etc/localtime (tzdata's postinst replaces it) and the host's DNS
            "--timezone=off",
            "--resolv-conf=copy-host",
            "--private-users=no",
            f"--rlimit=NOFILE={NOFILE}",
            "--setenv=CI=true",
            "--setenv=HOME=/root",
            "--setenv=LANG=C.UTF-8",
            "--setenv=TERM=dumb",
            *self.setenv,
            *self.binds,
            "--chdir=/root",
            "/bin/bash",
            "-lc",
            script,
        ]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # /proc/sys and /sys writable, as on a machine: the tests set sysctls (e.g.
            # ip_forward) inside the network namespaces they make.
            env=dict(os.environ, PATH=nspawn.SYSTEM_PATH, SYSTEMD_NSPAWN_API_VFS_WRITABLE="1"),
            start_new_session=True,
            preexec_fn=enter_cgroup,
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        try:
            for line in iter(proc.stdout.readline, b""):
                if line.startswith(NSPAWN_NOISE):
                    continue
                sys.stdout.write(f"[{self.suite}] " + line.decode(errors="replace"))
                sys.stdout.flush()
                if time.monotonic() > deadline:
                    log(f"{self.suite}: timed out after {timeout:.0f}s")
                    break
            try:
                return proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return 124
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            for cg in cgroups:
                nspawn._remove_cgroup_tree(cg)


def dev_test_command(full: bool, subset: Sequence[str]) -> str:
    """The README's test command as this check runs it."""
    if full:
        return "sudo ./dev test"
    runs = " ".join(f"--run {r}" for r in FRESH_RUNS)
    return f"sudo ./dev test {runs} " + " ".join(subset)


def check(
    suite: str, full: bool, commit: str, subset: Sequence[str] = FRESH_TESTS
) -> list[tuple[str, int, float]]:
    """Clone, demo, test on a fresh ``suite``; returns (step, exit status, seconds)."""
    results: list[tuple[str, int, float]] = []
    test_cmd = dev_test_command(full, subset)
    steps = [
        (
            f"git clone into {CLONE}",
            f"git clone -q /mnt/source {CLONE} && cd {CLONE} && git checkout -q --detach "
            f"{commit} && git --no-pager log --oneline -1",
            300,
        ),
        (
            f"sudo ./dev demo --duration {DEMO_SECONDS}",
            f"cd {CLONE} && sudo ./dev demo --duration {DEMO_SECONDS}",
            900,
        ),
        (test_cmd, f"cd {CLONE} && {test_cmd}", 3000 if full else 1800),
    ]
    with FreshMachine(suite, commit) as m:
        for name, script, timeout in steps:
            log(f"{suite}: {name}")
            start = time.monotonic()
            rc = m.run(script, timeout)
            took = time.monotonic() - start
            results.append((name, rc, took))
            log(f"{suite}: {name}: exit {rc} after {took:.0f}s")
            if rc != 0 and name.startswith("git clone"):
                break
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="append", default=[], choices=CODENAMES)
    parser.add_argument("--quick", action="append", default=[], choices=CODENAMES)
    parser.add_argument("--commit", default="HEAD", help="commit to clone (default HEAD)")
    parser.add_argument(
        "--subset", nargs="+", default=list(FRESH_TESTS), help="pytest arguments of --quick"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would run on which release, run nothing"
    )
    args = parser.parse_args()
    if not args.full and not args.quick:
        # both releases, the fresh-machine subset (CI's own ./dev test ran everything)
        args.quick = list(CODENAMES)
    if args.dry_run:
        for suite, full in [(s, True) for s in args.full] + [(s, False) for s in args.quick]:
            print(f"{suite}: git clone; sudo ./dev demo --duration {DEMO_SECONDS}; "
                  f"{dev_test_command(full, args.subset)}")  # fmt: skip
        return 0
    if os.geteuid() != 0:
        print("fresh_machine.py needs root (mmdebstrap, systemd-nspawn)", file=sys.stderr)
        return 2
    why = nspawn.missing_requirements()
    if why:
        print(why, file=sys.stderr)
        return 2
    commit = nspawn.run_host(
        ["git", "-C", nspawn.REPO, "rev-parse", args.commit], timeout=30
    ).stdout.strip()

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    summary: list[tuple[str, str, int, float]] = []
    start = time.monotonic()
    for suite, full in [(s, True) for s in args.full] + [(s, False) for s in args.quick]:
        t0 = time.monotonic()
        try:
            for name, rc, took in check(suite, full, commit, args.subset):
                summary.append((suite, name, rc, took))
        except nspawn.HarnessError as exc:
            log(f"{suite}: could not set up the fresh machine: {exc}")
            summary.append((suite, "set up the fresh machine", 1, time.monotonic() - t0))
        log(f"{suite}: {time.monotonic() - t0:.0f}s in all")

    print("\n==> fresh machines (commit " + commit[:10] + ")", flush=True)
    for suite, name, rc, took in summary:
        word = "passed" if rc == 0 else f"FAILED (exit {rc})"
        print(f"    {suite:9} {word:16} {took:6.0f}s  {name}")
    failed = [s for s in summary if s[2] != 0]
    print(f"    total {time.monotonic() - start:.0f}s")
    print(f"fresh-machine: {len(summary) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
