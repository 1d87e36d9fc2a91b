"""Boot a real systemd in a container, for end-to-end tests of the service.

The host (root, Debian, PID 1 need not be systemd) builds one Debian root
file system with mmdebstrap, once, and caches it. Each test gets an overlay
on top of it, its own network namespace, and a ``systemd-nspawn --boot``
whose PID 1 is a real systemd. Commands run inside through ``nsenter``.
Everything a test creates (container, cgroups, overlay, namespaces, helper
processes) is torn down on exit, also when the test fails.

Every wait in here is bounded by a timeout.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

#: Bump to force a rebuild of cached root file systems.
ROOTFS_FORMAT = 2

#: Packages of the container: systemd as PID 1, the product's runtime
#: dependencies (so installing the .deb needs no network), dnsmasq and a DHCP
#: client for the DHCP tests, man-db so that `systemd-analyze verify` checks
#: the man pages named in the unit's Documentation=. Nothing the package could
#: silently rely on without declaring it: no procps (the unit once ran /bin/kill).
BASE_PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "passwd",
    "iproute2",
    "man-db",
    "dnsmasq",
    "udhcpc",
    "python3",
    "python3-click",
    "python3-icmplib",
    "python3-rich",
    "python3-sdnotify",
    "python3-yaml",
)

#: Host commands the harness needs, and the Debian package that has each.
HOST_TOOLS: dict[str, str] = {
    "systemd-nspawn": "systemd-container",
    "mmdebstrap": "mmdebstrap",
    "nsenter": "util-linux",
    "ip": "iproute2",
    "dpkg-buildpackage": "dpkg-dev",
}

#: The repository under test.
REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("PUMAGUARD_HB_TEST_CACHE", "/var/cache/pumaguard-hb-tests"))
#: Host PATH for tools: never a pyenv/venv python in front of Debian's.
SYSTEM_PATH = "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
CONTAINER_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP_PARENT = "pumaguard-hb-tests"


class HarnessError(RuntimeError):
    """The test machinery itself failed (not the product under test)."""


def _run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    check: bool = True,
    **kwargs: object,
) -> subprocess.CompletedProcess[str]:
    """Run a host command with a sane PATH and a timeout, capturing output."""
    env = dict(os.environ, PATH=SYSTEM_PATH)
    proc = subprocess.run(
        [str(c) for c in cmd],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )
    if check and proc.returncode != 0:
        raise HarnessError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


#: For tests: a host command with the harness's PATH and a timeout.
run_host = _run


def missing_requirements() -> str | None:
    """Why this host cannot run the systemd tests, or None when it can."""
    if os.geteuid() != 0:
        return "the systemd end-to-end tests need root"
    env_path = SYSTEM_PATH
    missing = sorted(
        {pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool, path=env_path) is None}
    )
    if missing:
        return (
            "missing host tools; install them with: apt-get install -y "
            "--no-install-recommends " + " ".join(missing)
        )
    if not Path("/sys/fs/cgroup").is_dir():
        return "no /sys/fs/cgroup on this host"
    return None


def host_suite() -> str:
    """The Debian suite of the host (bookworm, trixie, ...)."""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise HarnessError("no VERSION_CODENAME in /etc/os-release")


# --------------------------------------------------------------------------
# The base root file system (built once, cached)


def base_rootfs(suite: str | None = None, timeout: float = 900) -> Path:
    """A cached Debian root file system for containers; built on first use."""
    hooks = [
        'echo pgtest > "$1/etc/hostname"',
        ': > "$1/etc/machine-id"',
        'mkdir -p "$1/var/log/journal"',
        # dnsmasq must only run when a test configures it.
        'chroot "$1" systemctl disable dnsmasq.service',
        # Nothing in the container needs these; they only slow the boot.
        'chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer '
        "e2scrub_all.timer fstrim.timer",
    ]
    return cached_rootfs("rootfs", suite or host_suite(), BASE_PACKAGES, hooks, timeout)


#: A chroot that builds and checks the package (for the other Debian release).
BUILD_PACKAGES: tuple[str, ...] = (
    "build-essential",
    "fakeroot",
    "debhelper",
    "dh-python",
    "pybuild-plugin-pyproject",
    "python3-all",
    "python3-setuptools",
    "lintian",
    "systemd",
    "man-db",
    "python3-click",
    "python3-icmplib",
    "python3-rich",
    "python3-sdnotify",
    "python3-yaml",
)


def other_suite() -> str | None:
    """The other supported Debian release than the host's (12 <-> 13)."""
    return {"bookworm": "trixie", "trixie": "bookworm"}.get(host_suite())


def cached_rootfs(
    label: str,
    suite: str,
    packages: Sequence[str],
    hooks: Sequence[str] = (),
    timeout: float = 900,
) -> Path:
    """A Debian tree made by mmdebstrap once and kept in CACHE_DIR.

    The folder name carries a hash of everything that went into it, so a
    changed package list builds a new tree (and replaces the old one of the
    same label and suite).
    """
    key = hashlib.sha256(
        "\n".join([str(ROOTFS_FORMAT), suite, *sorted(packages), *hooks]).encode()
    ).hexdigest()[:12]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    root = CACHE_DIR / f"{label}-{suite}-{key}"
    with open(CACHE_DIR / "lock", "w") as lock:
        # Another test run may be building a tree: wait for it.
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HarnessError(f"timed out waiting for the lock on {CACHE_DIR}") from None
                time.sleep(1)
        if (root / ".complete").exists():
            return root
        for old in CACHE_DIR.glob(f"{label}-{suite}-*"):
            shutil.rmtree(old, ignore_errors=True)
        building = CACHE_DIR / f".building-{label}-{key}-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        cmd = [
            "mmdebstrap",
            "--variant=apt",
            "--include=" + ",".join(packages),
            *(f"--customize-hook={h}" for h in hooks),
            suite,
            str(building),
        ]
        try:
            _run(cmd, timeout=timeout)
            (building / ".complete").write_text(" ".join(packages) + "\n")
            building.rename(root)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return root


class Overlay:
    """A throw-away writable overlay on a cached tree (a context manager)."""

    def __init__(self, lower: Path, prefix: str = "pghb-ov") -> None:
        self.lower = lower
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{_owned_name(prefix)}-", dir="/var/tmp"))
        self.root = self.tmp / "root"
        self.mounted = False

    def __enter__(self) -> Overlay:
        upper, work = self.tmp / "upper", self.tmp / "work"
        for d in (self.root, upper, work):
            d.mkdir()
        options = f"lowerdir={self.lower},upperdir={upper},workdir={work}"
        try:
            _run(["mount", "-t", "overlay", "overlay", "-o", options, self.root], timeout=30)
            self.mounted = True
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            if _run(["umount", self.root], timeout=30, check=False).returncode != 0:
                _run(["umount", "--lazy", self.root], timeout=30, check=False)
            self.mounted = False
        shutil.rmtree(self.tmp, ignore_errors=True)

    def chroot(
        self, script: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell script chrooted into the overlay (no systemd, no /proc)."""
        return _run(
            [
                "chroot",
                self.root,
                "env",
                "-i",
                f"PATH={CONTAINER_PATH}",
                "LANG=C.UTF-8",
                "sh",
                "-euc",
                script,
            ],
            timeout=timeout,
            check=check,
        )


def copy_repo(repo: Path, dest: Path) -> None:
    """Copy the repository's files (as git sees them) to ``dest``."""
    dest.mkdir(parents=True)
    for rel in repo_files(repo):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if (repo / rel).is_symlink():
            target.symlink_to(os.readlink(repo / rel))
        else:
            shutil.copy2(repo / rel, target)


# --------------------------------------------------------------------------
# Names that tell which test process made a thing, to clean up after a crash


def _owned_name(prefix: str) -> str:
    """``PREFIX-PID-RANDOM``: PID is this test process, so leftovers can be found."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _owner_alive(name: str) -> bool:
    parts = name.split("-")
    if len(parts) < 3 or not parts[-2].isdigit():
        return True  # not one of ours: leave it alone
    return Path(f"/proc/{parts[-2]}").exists()


def cleanup_stale() -> list[str]:
    """Remove what killed test runs left behind (their process is gone).

    Only names this harness makes (``pghb-PID-…``) are looked at.
    """
    removed: list[str] = []
    for cg_root in _cgroup_roots():
        parent = cg_root / CGROUP_PARENT
        try:  # another worker may remove the parent folder meanwhile
            found = list(parent.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            found = []
        if found:
            for cg in found:
                if cg.is_dir() and cg.name.startswith("pghb-") and not _owner_alive(cg.name):
                    _remove_cgroup_tree(cg)
                    removed.append(str(cg))
            with contextlib.suppress(OSError):
                parent.rmdir()
    for d in sorted(Path("/var/tmp").glob("pghb-*")):
        name = d.name.rsplit("-", 1)[0]  # mkdtemp adds a suffix
        if _owner_alive(name):
            continue
        root = d / "root"
        if os.path.ismount(root):
            _run(["umount", "--lazy", root], timeout=30, check=False)
        shutil.rmtree(d, ignore_errors=True)
        removed.append(str(d))
    proc = _run(["ip", "netns", "list"], timeout=10, check=False)
    for line in proc.stdout.splitlines():
        ns = line.split()[0] if line.split() else ""
        if ns.startswith("pghb-") and not _owner_alive(ns):
            for pid in _run(["ip", "netns", "pids", ns], timeout=10, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            _run(["ip", "netns", "del", ns], timeout=10, check=False)
            removed.append(ns)
    return removed


# --------------------------------------------------------------------------
# Network namespaces


class NetNS:
    """A network namespace made by a test, deleted with everything in it."""

    def __init__(self, prefix: str = "pghb") -> None:
        self.name = _owned_name(prefix)
        _run(["ip", "netns", "add", self.name], timeout=10)
        self.exec("ip", "link", "set", "lo", "up")

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def exec(
        self, *cmd: str, timeout: float = 30, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a host command inside this namespace."""
        return _run(["ip", "netns", "exec", self.name, *cmd], timeout=timeout, check=check)

    def popen(self, *cmd: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        """Start a long-running host process inside this namespace."""
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, PATH=SYSTEM_PATH),
            start_new_session=True,
        )

    def pids(self) -> list[int]:
        proc = _run(["ip", "netns", "pids", self.name], timeout=10, check=False)
        return [int(p) for p in proc.stdout.split()]

    def delete(self) -> None:
        """Kill what is left inside, then delete the namespace."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _run(["ip", "netns", "del", self.name], timeout=10, check=False)


def veth_link(a: NetNS, a_addr: str, b: NetNS, b_addrs: Sequence[str]) -> tuple[str, str]:
    """Join two namespaces with a veth pair; addresses are CIDR strings.

    Returns the interface names (in a, in b).
    """
    tag = uuid.uuid4().hex[:6]
    if_a, if_b = f"pga{tag}", f"pgb{tag}"
    _run(
        [
            "ip",
            "link",
            "add",
            if_a,
            "netns",
            a.name,
            "type",
            "veth",
            "peer",
            "name",
            if_b,
            "netns",
            b.name,
        ],
        timeout=10,
    )
    a.exec("ip", "addr", "add", a_addr, "dev", if_a)
    a.exec("ip", "link", "set", if_a, "up")
    for addr in b_addrs:
        b.exec("ip", "addr", "add", addr, "dev", if_b)
    b.exec("ip", "link", "set", if_b, "up")
    return if_a, if_b


# --------------------------------------------------------------------------
# cgroups


def _cgroup_roots() -> list[Path]:
    """The cgroup hierarchies in which the nspawn process gets its own folder."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.procs").exists() and (base / "cgroup.controllers").exists():
        return [base]  # pure cgroup v2
    return [p for p in (base / "systemd", base / "unified") if (p / "cgroup.procs").exists()]


def _remove_cgroup_tree(top: Path, timeout: float = 10) -> None:
    """Remove a cgroup folder and its children, deepest first."""
    deadline = time.monotonic() + timeout
    while top.exists():
        dirs = _cgroup_dirs(top)
        for d in sorted(dirs, key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        if not top.exists() or time.monotonic() > deadline:
            break
        # Processes may still be leaving; kill stragglers and retry.
        for d in _cgroup_dirs(top):
            with contextlib.suppress(OSError):
                for pid in (d / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.2)


def _cgroup_dirs(top: Path) -> list[Path]:
    """TOP and the folders below it; any may vanish meanwhile.

    Another test process (each xdist worker cleans up at start) may be removing
    the same tree, so a folder gone between listing and reading is not an error.
    """
    found: list[Path] = []
    for root, _dirs, _files in os.walk(top, onerror=lambda _e: None):
        found.append(Path(root))
    return found


# --------------------------------------------------------------------------
# The container


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class Container:
    """A booted systemd container on an overlay of the base root file system.

    Use as a context manager: ``with Container(base) as c: c.run(...)``.
    The container gets its own network namespace unless ``netns`` is given.
    """

    def __init__(self, base: Path, netns: NetNS | None = None, boot_timeout: float = 90) -> None:
        self.base = base
        self.name = _owned_name("pghb")
        self._own_netns = netns is None
        self.netns = netns
        self.boot_timeout = boot_timeout
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir="/var/tmp"))
        self.root = self.tmp / "root"
        self.log = self.tmp / "nspawn.log"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self._mounted = False
        self._cgroups: list[Path] = []

    # -- lifecycle --------------------------------------------------------

    def __enter__(self) -> Container:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Mount the overlay, boot systemd and wait until the boot is done."""
        upper, work = self.tmp / "upper", self.tmp / "work"
        for d in (self.root, upper, work):
            d.mkdir()
        _run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={self.base},upperdir={upper},workdir={work}",
                self.root,
            ],
            timeout=30,
        )
        self._mounted = True
        (self.root / "etc/hostname").write_text(f"{self.name}\n")
        if self.netns is None:
            self.netns = NetNS("pghb-ct")

        for root in _cgroup_roots():
            cg = root / CGROUP_PARENT / self.name
            cg.mkdir(parents=True, exist_ok=True)
            self._cgroups.append(cg)
        cgroups = list(self._cgroups)

        def _enter_cgroup() -> None:  # runs in the child before exec
            for cg in cgroups:
                (cg / "cgroup.procs").write_text(str(os.getpid()))

        cmd = [
            "systemd-nspawn",
            "--quiet",
            "--register=no",
            "--keep-unit",
            "--boot",
            "--console=read-only",
            f"--machine={self.name}",
            f"--directory={self.root}",
            f"--network-namespace-path={self.netns.path}",
            # The namespace is the test's own, so the container may manage it
            # (dnsmasq needs CAP_NET_ADMIN; nspawn grants it only to
            # --private-network containers by itself).
            "--capability=CAP_NET_ADMIN",
        ]
        with open(self.log, "wb") as log:
            self.nspawn = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(os.environ, PATH=SYSTEM_PATH),
                start_new_session=True,
                preexec_fn=_enter_cgroup,
            )
        self.leader = self._wait_for_leader()
        self._wait_for_boot()

    def _wait_for_leader(self) -> int:
        assert self.nspawn is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise HarnessError(
                    f"systemd-nspawn exited {self.nspawn.returncode}:\n{self.nspawn_log()}"
                )
            for kid in _children(self.nspawn.pid):
                if _comm(kid) == "systemd":
                    return kid
            time.sleep(0.05)
        raise HarnessError(f"no systemd in the container after 30s:\n{self.nspawn_log()}")

    def _wait_for_boot(self) -> None:
        deadline = time.monotonic() + self.boot_timeout
        state = ""
        while time.monotonic() < deadline:
            # D-Bus may not answer in the first instants: poll, bounded.
            proc = self.run(
                ["systemctl", "is-system-running", "--wait"],
                check=False,
                timeout=max(1.0, deadline - time.monotonic()),
            )
            state = proc.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.2)
        raise HarnessError(
            f"container did not finish booting (state {state!r}):\n{self.nspawn_log()}"
        )

    def stop(self) -> None:
        """Power off and remove everything this container created."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.nspawn.pid, signal.SIGKILL)
                if self.leader:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.leader, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.nspawn.wait(timeout=10)
        for cg in self._cgroups:
            _remove_cgroup_tree(cg)
            with contextlib.suppress(OSError):
                cg.parent.rmdir()  # CGROUP_PARENT, when no other test uses it
        self._cgroups = []
        if self._mounted:
            if _run(["umount", self.root], timeout=30, check=False).returncode != 0:
                _run(["umount", "--lazy", self.root], timeout=30, check=False)
            self._mounted = False
        if self._own_netns and self.netns is not None:
            self.netns.delete()
            self.netns = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def nspawn_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # -- commands ---------------------------------------------------------

    def run(
        self,
        cmd: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60,
        user: str | None = None,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (as root, or as ``user``)."""
        environ = {
            "PATH": CONTAINER_PATH,
            "SYSTEMD_PAGER": "",
            "LANG": "C.UTF-8",
            "SYSTEMD_COLORS": "0",
            **(env or {}),
        }
        inner = list(cmd)
        if user is not None:
            inner = ["runuser", "-u", user, "--", *inner]
        full = [
            "nsenter",
            f"--target={self.leader}",
            "--all",
            "--wd",
            "--",
            "env",
            "-i",
            *(f"{k}={v}" for k, v in environ.items()),
            *inner,
        ]
        try:
            proc = _run(full, timeout=timeout, check=False, input=input)
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(
                f"timed out after {timeout}s in the container: {' '.join(cmd)}"
            ) from exc
        if check and proc.returncode != 0:
            raise HarnessError(
                f"in the container, {' '.join(cmd)} exited {proc.returncode}:\n"
                f"stdout: {proc.stdout[-4000:]}\nstderr: {proc.stderr[-4000:]}"
            )
        return proc

    def copy_in(self, src: Path, dest: str) -> str:
        """Copy a host file into the container; returns its path inside."""
        target = self.root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        return dest

    def write(self, dest: str, text: str, mode: int = 0o644) -> None:
        """Write a file inside the container (as root)."""
        target = self.root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def journal(self, unit: str, *extra: str) -> str:
        return self.run(
            ["journalctl", "--no-pager", "-u", unit, "-o", "cat", *extra], check=False
        ).stdout

    def show(self, unit: str, prop: str) -> str:
        return self.run(["systemctl", "show", "-p", prop, "--value", unit]).stdout.strip()

    def wait_for(
        self,
        cmd: Sequence[str],
        *,
        timeout: float = 30,
        interval: float = 0.2,
        user: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` until it exits 0; the last result once time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self.run(cmd, check=False, user=user, timeout=max(5.0, timeout))
            if proc.returncode == 0 or time.monotonic() > deadline:
                return proc
            time.sleep(interval)


# --------------------------------------------------------------------------
# The Debian package


def repo_files(repo: Path) -> list[str]:
    """The repository's files as git sees them (tracked + untracked, not ignored)."""
    proc = _run(
        ["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        timeout=30,
    )
    return [
        f for f in proc.stdout.split("\0") if f and ((repo / f).is_symlink() or (repo / f).exists())
    ]


def build_deb(repo: Path, out: Path, timeout: float = 600) -> Path:
    """Build the .deb from a copy of the repository (nothing lands in ``repo``).

    dpkg-buildpackage writes its results to the parent of the source tree,
    so the copy lives in ``out/src`` and the .deb ends up in ``out``.
    """
    src = out / "src"
    if src.exists():
        shutil.rmtree(src)
    copy_repo(repo, src)
    deps = _run(["dpkg-checkbuilddeps"], timeout=60, check=False, cwd=src)
    if deps.returncode != 0:
        raise HarnessError(
            "build dependencies missing on the host (apt-get build-dep can install them):\n"
            + deps.stderr
        )
    proc = _run(["dpkg-buildpackage", "-us", "-uc", "-b"], timeout=timeout, check=False, cwd=src)
    (out / "build.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise HarnessError(
            f"dpkg-buildpackage failed; see {out / 'build.log'}:\n{proc.stderr[-3000:]}"
        )
    debs = sorted(out.glob("pumaguard-heartbeat_*_all.deb"))
    if len(debs) != 1:
        raise HarnessError(f"expected one .deb in {out}, found {debs}")
    return debs[0]


@contextlib.contextmanager
def background(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Make sure a helper process started by a test ends with the test."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def install_deb(c: Container, deb: Path) -> None:
    """Install the package the way a user does: apt-get install ./x.deb."""
    inside = c.copy_in(deb, f"/root/{deb.name}")
    c.run(
        ["apt-get", "install", "-y", "--no-install-recommends", inside],
        timeout=180,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )
