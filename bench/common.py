"""Shared helpers of the benchmarks: interpreters, the machine, the lab's cameras, tables.

The benchmarks run as root in the driver process (network namespaces need it). The
driver builds one :class:`netlab.Lab` (tests/netlab.py) holding every camera of every
benchmark, so all methods, interpreters and fping see the very same targets, and runs
the measured code in the lab's prober namespace under each interpreter:

- ``pypi``:   ``.venv/bin/python``         (PyPI's newest releases, icmplib 3.x)
- ``debian``: ``.venv-debian/bin/python``  (Debian's python3-* packages, icmplib 2.1.1)

Traffic goes only to addresses inside the lab's own namespaces and to Unix sockets.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from netlab import Lab, netns_unavailable_reason  # noqa: E402

from pumaguard_hb.control.client import Client, ClientError  # noqa: E402

PYTHONPATH = f"{REPO}:{REPO / 'cli'}"
PORT = 80  # the cameras' TCP port, as PumaGuard's default
POOL_ANSWERING = 1000  # answering camera addresses, each with a TCP listener on PORT
POOL_SILENT = 250  # silent camera addresses (routed into the lab, dropped without a trace)
FIXTURE = REPO / "tests/fixtures/pumaguard-webui-settings.yaml"  # the web UI's settings file
TIMEOUT = 1.0  # the benchmark daemons' probe timeouts


@dataclass(frozen=True)
class Interp:
    """One Python interpreter with one set of the runtime dependencies."""

    name: str  # pypi or debian
    python: str
    icmplib: str
    version: str  # Python version

    @property
    def label(self) -> str:
        return f"{self.name} (icmplib {self.icmplib})"


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of every measured process: the source tree first on the path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC", "PYTHONSTARTUP")
    }
    env["PYTHONPATH"] = PYTHONPATH
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def find_interpreters(wanted: Sequence[str] = ("pypi", "debian")) -> list[Interp]:
    """The interpreters that exist here (``./dev setup`` makes both), in ``wanted`` order."""
    paths = {"pypi": REPO / ".venv/bin/python", "debian": REPO / ".venv-debian/bin/python"}
    found: list[Interp] = []
    for name in wanted:
        python = paths.get(name)
        if python is None or not python.exists():
            print(f"[skip] interpreter {name}: {python} missing (run: sudo ./dev setup)")
            continue
        code = (
            "import importlib.metadata as m, platform; "
            "print(m.version('icmplib'), platform.python_version())"
        )
        out = subprocess.run(
            [str(python), "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            env=bench_env(),
            check=True,
        ).stdout.split()
        found.append(Interp(name, str(python), out[0], out[1]))
    return found


def _first_line(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine_info(interps: Sequence[Interp]) -> dict[str, str]:
    """What the figures were measured on."""
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    distro = "?"
    with contextlib.suppress(OSError), open("/etc/os-release") as fh:
        for line in fh:
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip().strip('"')
    with contextlib.suppress(OSError), open("/etc/debian_version") as fh:
        distro += f" ({fh.read().strip()})"
    fping = _first_line(["fping", "--version"])
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "os": distro,
        "fping": re.sub(r"^fping: Version ", "", fping),
        "load average at start": loadavg(),
        "source tree": source_tree(),
    }
    for it in interps:
        info[f"python ({it.name})"] = f"{it.version} at {it.python}, icmplib {it.icmplib}"
    return info


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown pipe table (readable as is, pasted as is into docs/performance.md)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n### {title}\n")
    for n, row in enumerate(cells):
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("| " + " | ".join(padded) + " |")
        if n == 0:
            print(
                "|"
                + "|".join(
                    "-" * (w + 1) + ":" if i else "-" * (w + 2) for i, w in enumerate(widths)
                )
                + "|"
            )
    sys.stdout.flush()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def fmt_s(seconds: float | None) -> str:
    """Seconds with a sensible number of digits."""
    if seconds is None or seconds != seconds:
        return "-"
    if seconds < 0.1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(x: float | None) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.0f}x" if x >= 100 else f"{x:.1f}x"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


@dataclass
class Pool:
    """The lab's camera addresses: answering ones (with TCP listeners) and silent ones."""

    answering: list[str]
    silent: list[str]

    def pick(self, n: int, silent_share: float) -> tuple[list[str], list[str]]:
        """``n`` cameras, ``round(n * share)`` of them silent (always the same ones)."""
        s = int(n * silent_share)
        return self.answering[: n - s], self.silent[:s]


def build_pool(lab: Lab) -> Pool:
    """Put every camera the benchmarks use into the lab (about two seconds)."""
    answering = lab.add_camera_ips(POOL_ANSWERING, "answering")
    silent = lab.add_camera_ips(POOL_SILENT, "silent")
    lab.tcp_listeners(answering, PORT)
    return Pool(answering, silent)


def run_worker(lab: Lab, interp: Interp, job: dict[str, Any], timeout: float) -> Any:
    """Run bench/sweep_worker.py in the prober namespace under ``interp``; return its JSON."""
    proc = lab.run(
        [interp.python, str(BENCH / "sweep_worker.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=bench_env(),
        cwd=str(REPO),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker ({interp.name}) failed {proc.returncode}:\n{proc.stderr}")
    return json.loads(proc.stdout)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so every ``with`` block cleans up."""
    old = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def source_tree() -> str:
    """The commit measured, and whether the product's files differ from it."""
    head = _first_line(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"])
    dirty = _first_line(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "pumaguard_hb", "cli"]
    )
    return head[:70] + (" (+ uncommitted changes in pumaguard_hb/ or cli/)" if dirty != "?" else "")


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (other work on the machine skews wall times)."""
    with contextlib.suppress(OSError), open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])
    return "?"


def entry(main: Callable[[], int]) -> None:
    """Run a benchmark's main(); Ctrl-C/SIGTERM end it (after cleanup) with status 130."""
    try:
        code = main()
    except KeyboardInterrupt:
        print("\nbench: interrupted; namespaces, daemons and files removed", file=sys.stderr)
        code = 130
    sys.exit(code)


def require_root() -> None:
    """Exit with a clear line when namespaces cannot be made here."""
    reason = netns_unavailable_reason()
    if reason is not None:
        sys.exit(f"bench: {reason} (run: sudo bench/run_all.sh)")


def open_lab() -> Lab:
    return Lab(prefix="phbb-")


# -- a real daemon to measure (bench_daemon.py, bench_cli.py) ---------------------------------


def write_settings(path: Path, ips: list[str], method: str, interval: float) -> None:
    """The web UI's file (hyphenated keys, plugs, history, ...) with these cameras."""
    doc: dict[str, Any] = yaml.safe_load(FIXTURE.read_text()) if FIXTURE.exists() else {}
    doc.update(
        {
            "camera-heartbeat-enabled": True,
            "camera-heartbeat-method": method,
            "camera-heartbeat-interval": interval,
            "camera-heartbeat-tcp-port": PORT,
            "camera-heartbeat-tcp-timeout": TIMEOUT,
            "camera-heartbeat-icmp-timeout": TIMEOUT,
            "cameras": [
                {
                    "hostname": f"Microseven-bench-{i:04d}",
                    "ip_address": ip,
                    "last_seen": "2024-01-15T14:32:15Z",
                    "mac_address": "02:42:00:00:{:02x}:{:02x}".format(*divmod(i, 256)),
                    "status": "disconnected",
                }
                for i, ip in enumerate(ips)
            ],
        }
    )
    path.write_text(yaml.safe_dump(doc, default_flow_style=False))


def _log_dir() -> str | None:
    """Logs go to tmpfs when there is one, so they do not count as the daemon's disk writes."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


@dataclass
class BenchDaemon:
    """A real daemon in the prober namespace, on its own files; stop() always cleans up."""

    lab: Lab
    interp: Interp
    ips: list[str]
    method: str
    interval: float
    prelude: str | None = None  # Python run with ``-c`` instead of ``-m pumaguard_hb``
    tmp: Path = field(init=False)
    logtmp: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="phb-bench-", dir="/var/tmp"))
        self.logtmp = Path(tempfile.mkdtemp(prefix="phb-bench-log-", dir=_log_dir()))
        self.settings = self.tmp / "pumaguard-settings.yaml"
        self.socket = self.tmp / "hb.sock"
        write_settings(self.settings, self.ips, self.method, self.interval)

    def start(self) -> BenchDaemon:
        log = open(self.logtmp / "daemon.log", "wb")  # noqa: SIM115 - closed below
        try:
            self.proc = self.lab.popen(
                [self.interp.python, *self._entry(), "--settings", str(self.settings),
                 "--socket", str(self.socket), "--state-dir", str(self.tmp / "state")],
                env=bench_env(), stdout=log, stderr=log, cwd=str(REPO),
            )  # fmt: skip
        finally:
            log.close()
        return self

    def _entry(self) -> list[str]:
        return ["-c", self.prelude] if self.prelude else ["-m", "pumaguard_hb"]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(ClientError, OSError):
                if self.call("ping") == "pong":
                    return
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready after {timeout}s:\n{self.log()}")

    def call(self, cmd: str, timeout: float = 30.0) -> Any:
        with Client(self.socket, timeout=timeout) as client:
            return client.call(cmd)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("status")
        return result

    def wait_sweeps(self, count: int, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st["daemon"]["sweeps"] >= count or time.monotonic() > deadline:
                return st
            time.sleep(0.1)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.logtmp / "daemon.log").read_text(errors="replace")[-4000:]
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.logtmp, ignore_errors=True)


@contextlib.contextmanager
def daemons(
    lab: Lab,
    interp: Interp,
    specs: list[tuple[list[str], str, float, str | None]],
) -> Iterator[list[BenchDaemon]]:
    """Start one daemon per (ips, method, interval, prelude), side by side; stop them all."""
    made: list[BenchDaemon] = []
    try:
        for ips, method, interval, prelude in specs:
            made.append(BenchDaemon(lab, interp, ips, method, interval, prelude).start())
        for d in made:
            d.wait_ready()
        yield made
    finally:
        for d in made:
            d.stop()
