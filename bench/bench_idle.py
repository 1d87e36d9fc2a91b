"""The daemon's CPU per hour between and around sweeps: this tree against a baseline tree,
side by side (issue 21: 50 cameras, 60 s interval, goal <= 1.0 CPU-s per hour).

    git worktree add --detach /tmp/idle-base <commit>        # the baseline
    .venv/bin/python bench/bench_idle.py --baseline /tmp/idle-base [--minutes 10] [--windows 3]
    .venv/bin/python bench/bench_idle.py --baseline /tmp/idle-base --tree /tmp/other-checkout
    .venv-debian/bin/python bench/bench_idle.py --baseline /tmp/idle-base   # Debian's packages

Four real daemons (``python -m pumaguard_hb``, this interpreter) run at the same time on the
same machine: the baseline tree's and this tree's, each once as systemd runs it (a
``NOTIFY_SOCKET`` the benchmark reads, and ``WATCHDOG_USEC`` of the unit's
``WatchdogSec=30``) and once without a service manager. Each has its own settings file in
the web UI's form (tests/fixtures) listing 50 cameras: TCP listeners on 127.0.73.2-51
(loopback only), shared by all four, interval 60 s, method tcp; its own state folder (the
history on) on the local disk, its log on tmpfs.

After each daemon's first sweep, its counters are read (from /proc: the daemon is not
woken by it) 5 s and 55 s after each of its sweeps, so each window of ``--minutes`` holds
exactly as many sweeps as minutes whatever the daemons' phases, and the 50 s between two
sweeps are measured apart ("between sweeps"). Per window and daemon:

- CPU: the sum of /proc/PID/task/*/schedstat (ns), checked against utime+stime of
  /proc/PID/stat (10 ms ticks); CPU-s per hour = CPU / window x 3600 (sweeps included:
  the hour of a station at 60 s); between sweeps: the same over the 50 s spans only;
- wake-ups: the threads' voluntary context switches (each time a thread slept and woke);
- notify: datagrams the daemon sent to NOTIFY_SOCKET (WATCHDOG=1, STATUS=, ...);
- sweeps and writes: from ``status`` before the first and after the last reading.

Prints a table per window and the medians with the ratios this tree / baseline; nothing is
asserted. Everything it starts is stopped at the end, also on Ctrl-C (status 130).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from pumaguard_hb.control.client import Client, ClientError  # noqa: E402

FIXTURE = REPO / "tests/fixtures/pumaguard-webui-settings.yaml"  # the web UI's settings file
CAMERAS = 50
INTERVAL = 60.0
AFTER, BEFORE = 5.0, 55.0  # seconds after a sweep: readings (between them, no sweep)
WATCHDOG_USEC = "30000000"  # systemd/pumaguard-heartbeat.service: WatchdogSec=30


class Cameras:
    """``n`` listeners on 127.0.73.x, one port, in one thread: each connection counts."""

    def __init__(self, n: int) -> None:
        self.sel = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.count = 0
        self.port = 0
        for i in range(n):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((f"127.0.73.{i + 2}", self.port))
            self.port = s.getsockname()[1]
            s.listen(128)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
            self.socks.append(s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def ips(self) -> list[str]:
        return [str(s.getsockname()[0]) for s in self.socks]

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.sel.select(0.5):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                with contextlib.suppress(OSError):
                    conn, _ = sock.accept()
                    self.count += 1
                    conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self.socks:
            s.close()
        self.sel.close()


class NotifySink:
    """A NOTIFY_SOCKET: counts the datagrams a daemon sends and keeps the last STATUS=."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.5)
        self.path = path
        self.count = 0
        self.status = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            self.count += 1
            for line in data.decode(errors="replace").split("\n"):
                if line.startswith("STATUS="):
                    self.status = line[7:]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def write_settings(path: Path, ips: list[str], port: int) -> None:
    doc: dict[str, Any] = yaml.safe_load(FIXTURE.read_text()) if FIXTURE.exists() else {}
    doc.update(
        {
            "camera-heartbeat-enabled": True,
            "camera-heartbeat-method": "tcp",
            "camera-heartbeat-interval": INTERVAL,
            "camera-heartbeat-tcp-port": port,
            "camera-heartbeat-tcp-timeout": 1,
            "cameras": [
                {
                    "hostname": f"Microseven-idle-{i:02d}",
                    "ip_address": ip,
                    "last_seen": "2024-01-15T14:32:15Z",
                    "mac_address": f"02:42:00:73:00:{i:02x}",
                    "status": "disconnected",
                }
                for i, ip in enumerate(ips)
            ],
        }
    )
    path.write_text(yaml.safe_dump(doc, default_flow_style=False))


def counters(pid: int) -> tuple[int, int, float]:
    """(CPU ns from schedstat, voluntary context switches, CPU s from ticks), all threads."""
    ns = switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            ns += int((task / "schedstat").read_text().split()[0])
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    switches += int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return ns, switches, ticks


@dataclass
class Daemon:
    name: str  # "baseline" or "this tree"
    tree: Path
    systemd: bool
    ips: list[str]
    port: int
    tmp: Path = field(init=False)
    logdir: Path = field(init=False)
    sink: NotifySink | None = None
    proc: subprocess.Popen[bytes] | None = None
    first: float = 0.0  # monotonic time of its first reading
    readings: list[tuple[float, int, int, float, int]] = field(default_factory=list)
    counts: list[tuple[int, int]] = field(default_factory=list)  # (sweeps, writes)

    def __post_init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="phb-idle-", dir="/var/tmp"))
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.logdir = Path(tempfile.mkdtemp(prefix="phb-idle-log-", dir=shm))
        self.settings = self.tmp / "pumaguard-settings.yaml"
        self.socket = self.tmp / "hb.sock"
        write_settings(self.settings, self.ips, self.port)

    @property
    def label(self) -> str:
        return f"{self.name}, {'systemd (watchdog 30 s)' if self.systemd else 'no systemd'}"

    def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")
        }
        env["PYTHONPATH"] = str(self.tree)
        if self.systemd:
            self.sink = NotifySink(self.logdir / "notify.sock")
            env["NOTIFY_SOCKET"] = str(self.sink.path)
            env["WATCHDOG_USEC"] = WATCHDOG_USEC
        where = subprocess.run(
            [sys.executable, "-c", "import pumaguard_hb; print(pumaguard_hb.__file__)"],
            env=env, cwd=self.tree, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not where.startswith(str(self.tree.resolve())):
            raise SystemExit(f"bench: {self.tree} runs pumaguard_hb from {where}")
        with open(self.logdir / "daemon.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pumaguard_hb", "--settings", str(self.settings),
                 "--socket", str(self.socket), "--state-dir", str(self.tmp / "state")],
                env=env, cwd=self.tree, stdout=log, stderr=log,
            )  # fmt: skip

    def call(self, cmd: str) -> Any:
        with Client(self.socket, timeout=30) as client:
            return client.call(cmd)

    def first_sweep(self, timeout: float = 60.0) -> float:
        """Wait for its first sweep; the wall time it started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: {self.label}: exited {self.proc.returncode}")
            with contextlib.suppress(ClientError, OSError):
                last = self.call("status")["daemon"].get("last_sweep")
                if last:
                    return float(last["started_at"])
            time.sleep(0.2)
        raise SystemExit(f"bench: {self.label}: no sweep within {timeout:.0f}s")

    def read(self) -> None:
        """One reading of the counters (not a request: the daemon is not woken)."""
        assert self.proc is not None
        ns, switches, ticks = counters(self.proc.pid)
        notify = self.sink.count if self.sink else 0
        self.readings.append((time.monotonic(), ns, switches, ticks, notify))

    def windows(self, minutes: int) -> list[dict[str, float]]:
        """Per window: readings 2k (AFTER a sweep) and 2k+1 (BEFORE the next one)."""
        r = self.readings
        out = []
        for j in range((len(r) - 1) // (2 * minutes)):
            a, b = r[2 * j * minutes], r[2 * (j + 1) * minutes]
            quiet = [(r[i], r[i + 1]) for i in range(2 * j * minutes, 2 * (j + 1) * minutes, 2)]
            q_secs = sum(y[0] - x[0] for x, y in quiet)
            q_ns = sum(y[1] - x[1] for x, y in quiet)
            q_sw = sum(y[2] - x[2] for x, y in quiet)
            secs = b[0] - a[0]
            out.append(
                {
                    "cpu_s_h": (b[1] - a[1]) / 1e9 / secs * 3600,
                    "ticks_s_h": (b[3] - a[3]) / secs * 3600,
                    "quiet_s_h": q_ns / 1e9 / q_secs * 3600,
                    "per_sweep_ms": ((b[1] - a[1]) - q_ns) / 1e6 / minutes,
                    "wakeups_min": (b[2] - a[2]) / secs * 60,
                    "quiet_wakeups_min": q_sw / q_secs * 60,
                    "notify_min": (b[4] - a[4]) / secs * 60,
                }
            )
        return out

    def stop(self) -> str:
        log = ""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(OSError):
            log = (self.logdir / "daemon.log").read_text(errors="replace")
        if self.sink is not None:
            self.sink.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.logdir, ignore_errors=True)
        return log


def tree_name(tree: Path) -> str:
    head = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(tree), "status", "--porcelain", "--", "pumaguard_hb"],
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    return f"{head or '?'}{' + changes' if dirty else ''}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, type=Path, help="the baseline's checkout")
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout measured against it")
    parser.add_argument("--minutes", type=int, default=10, help="minutes (sweeps) per window")
    parser.add_argument("--windows", type=int, default=3, help="windows measured")
    args = parser.parse_args()
    trees = (("baseline", args.baseline.resolve()), ("this tree", args.tree.resolve()))
    print(f"# idle CPU: python {sys.version.split()[0]} ({sys.executable}), {os.cpu_count()} "
          f"CPUs, load {os.getloadavg()[0]:.2f}; baseline {tree_name(trees[0][1])}, this tree "
          f"{tree_name(trees[1][1])}; {CAMERAS} cameras, {INTERVAL:.0f} s, "
          f"{args.windows} windows of {args.minutes} min", flush=True)  # fmt: skip
    cams = Cameras(CAMERAS)
    made: list[Daemon] = []
    old = {s: signal.signal(s, signal.default_int_handler) for s in (signal.SIGTERM,)}
    try:
        for systemd in (True, False):
            for name, tree in trees:
                made.append(Daemon(name, tree, systemd, cams.ips(), cams.port))
        for d in made:
            d.start()
        now_wall, now = time.time(), time.monotonic()
        for d in made:
            started = d.first_sweep()
            at = started + AFTER  # the first reading: AFTER s past one of its sweeps, >= 10 s away
            while at < time.time() + 10:
                at += INTERVAL
            d.first = now + (at - now_wall)
        for d in made:
            st = d.call("status")["daemon"]
            d.counts.append((st["sweeps"], st["writes"]))
        sweeps = args.windows * args.minutes
        plan = sorted((d.first + k * INTERVAL + off, i) for i, d in enumerate(made)
                      for k in range(sweeps + 1) for off in (0.0, BEFORE - AFTER)
                      if k < sweeps or off == 0.0)  # fmt: skip
        print(f"measuring for {(plan[-1][0] - time.monotonic()) / 60:.1f} min ...", flush=True)
        for when, i in plan:
            time.sleep(max(0.0, when - time.monotonic()))
            made[i].read()
        for d in made:
            st = d.call("status")["daemon"]
            d.counts.append((st["sweeps"], st["writes"]))
    finally:
        logs = {d.label: d.stop() for d in made}
        cams.close()
        for s, handler in old.items():
            signal.signal(s, handler)
    for label, log in logs.items():
        bad = [x for x in log.splitlines() if " ERROR " in x or "Traceback" in x]
        if bad:
            print(f"{label}: {len(bad)} error lines, first: {bad[0]}")
    print("\n| daemon | window | CPU-s/h | (ticks) | between sweeps CPU-s/h | per sweep | "
          "wake-ups/min | between sweeps | notify/min |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for d in made:
        for k, w in enumerate(d.windows(args.minutes)):
            print(f"| {d.label} | {k + 1} | {w['cpu_s_h']:.3f} | {w['ticks_s_h']:.2f} | "
                  f"{w['quiet_s_h']:.3f} | {w['per_sweep_ms']:.1f} ms | "
                  f"{w['wakeups_min']:.1f} | {w['quiet_wakeups_min']:.1f} | "
                  f"{w['notify_min']:.1f} |")  # fmt: skip
    for d in made:
        (s0, w0), (s1, w1) = d.counts
        print(f"{d.label}: {s1 - s0} sweeps, {w1 - w0} writes over the run")
    print("\nMedians over the windows, and this tree / baseline:\n")
    keys = ("cpu_s_h", "quiet_s_h", "per_sweep_ms", "wakeups_min", "quiet_wakeups_min")
    names = ("CPU-s/h", "between sweeps CPU-s/h", "per sweep ms", "wake-ups/min",
             "between sweeps wake-ups/min")  # fmt: skip
    print("| set-up | figure | baseline | this tree | ratio |")
    print("|---|---|--:|--:|--:|")
    for systemd in (True, False):
        base, new = (next(d for d in made if d.systemd == systemd and d.name == n)
                     for n in ("baseline", "this tree"))  # fmt: skip
        for key, name in zip(keys, names, strict=True):
            b = statistics.median(w[key] for w in base.windows(args.minutes))
            n = statistics.median(w[key] for w in new.windows(args.minutes))
            ratio = f"{n / b:.2f}" if b else "-"
            setup = "systemd, watchdog 30 s" if systemd else "no systemd"
            print(f"| {setup} | {name} | {b:.3f} | {n:.3f} | {ratio} |")
    print(f"\nload at the end {os.getloadavg()[0]:.2f}; probes received {cams.count}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nbench: interrupted; daemons and files removed", file=sys.stderr)
        sys.exit(130)
