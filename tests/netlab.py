"""Network-namespace lab for pumaguard-heartbeat tests.

A :class:`Lab` builds two throw-away network namespaces joined by one veth pair::

    prober ns  [to-cams 10.203.0.1/30, fd42:4242::1/64]
        |   routes 10.203.0.0/16 and fd42:4242::/48 via the cameras side
        |   (one neighbour entry, no ARP/ND storm however many cameras)
    cameras ns [to-prober 10.203.0.2/30, fd42:4242::2/64]
        answering cameras: /32 and /128 addresses on ``lo``
        silent cameras:    routed here but not owned; forwarding is off and the
                           lab ranges are blackholed, so packets vanish without
                           any ICMP error (a connect() times out, a ping gets nothing)

The daemon under test runs in the prober namespace (:meth:`Lab.popen`, :meth:`Lab.run`).
Camera addresses come from 10.203.1.1 upwards and fd42:4242:0:1::1 upwards. TCP
"cameras" are listening sockets opened inside the cameras namespace by this process and
served by one acceptor thread, so thousands of them cost no extra processes.

Only loopback and addresses inside the lab's own namespaces are ever used; the prober
namespace has no default route, so nothing can leak to a real network. Everything the
lab creates (namespaces, veth, sockets, processes) is removed by :meth:`Lab.close`,
which runs on ``with`` exit, from the pytest fixture, and from an ``atexit`` safety net.

Usage from a test::

    from netlab import Lab, requires_root_netns   # tests/ is on sys.path under pytest

    pytestmark = [pytest.mark.netns, requires_root_netns]

    def test_something() -> None:
        with Lab() as lab:
            up = lab.add_camera_ip("answering")
            lab.tcp_listener(up, 80)
            down = lab.add_camera_ip("silent")
            proc = lab.popen(["pumaguard-heartbeat", "--settings", path])

or put ``lab = lab_fixture()`` in a conftest.py and take ``lab`` as a fixture argument.
``lab.command([])`` is the bare ``ip netns exec <prober>`` prefix, e.g. for
``Daemon.start(prefix=lab.command([]))`` in conftest.py.

Notes for test authors: the prober namespace has its own abstract Unix socket space, so
pass path-based sockets (``NOTIFY_SOCKET=/tmp/...``, control socket paths) to a daemon
started with :meth:`Lab.popen`. Stdlib only, plus the ``ip`` (iproute2), ``tc`` and
``setpriv`` (util-linux) commands.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ipaddress
import os
import pwd
import resource
import secrets
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

try:
    import pytest
except ModuleNotFoundError:  # pragma: no cover - netlab also works from plain scripts (bench/)
    pytest = None  # type: ignore[assignment]

__all__ = [
    "CAMERAS_LINK4",
    "CAMERAS_LINK6",
    "NET4",
    "NET6",
    "PROBER_LINK4",
    "PROBER_LINK6",
    "EchoResult",
    "Family",
    "Kind",
    "Lab",
    "NetlabError",
    "TcpListener",
    "lab_fixture",
    "netns_unavailable_reason",
    "requires_root_netns",
    "run_in_netns",
]

Kind = Literal["answering", "silent"]
Family = Literal[4, 6]
T = TypeVar("T")

NET4 = ipaddress.IPv4Network("10.203.0.0/16")
NET6 = ipaddress.IPv6Network("fd42:4242::/48")
LINK4 = ipaddress.IPv4Network("10.203.0.0/30")
LINK6 = ipaddress.IPv6Network("fd42:4242::/64")
PROBER_LINK4 = "10.203.0.1"
CAMERAS_LINK4 = "10.203.0.2"
PROBER_LINK6 = "fd42:4242::1"
CAMERAS_LINK6 = "fd42:4242::2"
CAMERA_POOL6 = ipaddress.IPv6Network("fd42:4242:0:1::/64")
PROBER_VETH = "to-cams"
CAMERAS_VETH = "to-prober"

_CLONE_NEWNET = 0x40000000
_CMD_TIMEOUT = 30.0  # seconds for any single `ip`/`tc` invocation
_THREAD_TIMEOUT = 30.0  # seconds for work done inside a namespace thread
_ACCEPT_BURST = 256  # connections accepted per listener per wake-up
_MAX_POOL4 = 254 * 255  # 10.203.1.1 .. 10.203.255.254, skipping .0 and .255

_LIVE: set[Lab] = set()
_LIVE_LOCK = threading.Lock()


class NetlabError(RuntimeError):
    """A lab operation failed (an ``ip`` command, a namespace switch, cleanup)."""


# --------------------------------------------------------------------------- helpers


def netns_unavailable_reason() -> str | None:
    """Return why network namespaces cannot be used here, or None when they can.

    Cheap checks only (Linux, root, ``ip`` with netns support); creating a namespace
    can still fail in a restricted container, which then errors instead of skipping.
    """
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "iproute2 `ip` command not found"
    try:
        subprocess.run(
            ["ip", "netns", "list"], check=True, capture_output=True, timeout=_CMD_TIMEOUT
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns` is not usable: {exc}"
    return None


def _ip(args: Sequence[str], *, ns: str | None = None, batch: str | None = None) -> str:
    """Run ``ip [-n ns] args`` (or ``ip [-n ns] -batch -`` fed *batch*); return stdout."""
    cmd = ["ip"]
    if ns is not None:
        cmd += ["-n", ns]
    cmd += ["-batch", "-"] if batch is not None else list(args)
    try:
        proc = subprocess.run(
            cmd, input=batch, capture_output=True, text=True, timeout=_CMD_TIMEOUT
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise NetlabError(f"{' '.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        raise NetlabError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _wait_local_routes(ns: str, ips: Sequence[str], timeout: float = 10.0) -> None:
    """Wait until IPv6 addresses just added in *ns* are in its local routing table.

    Even with ``nodad`` the kernel installs an IPv6 address's local route from a
    workqueue, a moment after ``ip addr add`` returns; a packet arriving before then
    hits the blackhole route and vanishes (seen as ~1% lost first pings under load).
    """
    missing = {str(ipaddress.ip_address(ip)) for ip in ips}
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.005) + 1):
        if not missing:
            return
        table = _ip(["-6", "route", "show", "table", "local", "type", "local"], ns=ns)
        for line in table.splitlines():
            words = line.split()
            if words:
                word = words[1] if words[0] == "local" and len(words) > 1 else words[0]
                missing.discard(str(ipaddress.ip_address(word.split("/")[0])))
        if missing and time.monotonic() < deadline:
            time.sleep(0.005)
        elif missing:
            break
    if missing:
        raise NetlabError(f"{ns}: no local route for {sorted(missing)[:5]} after {timeout}s")


def run_in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Call *fn* in a fresh thread that has entered network namespace *ns*; return its result.

    Sockets created by *fn* stay in *ns* for their whole life and may be used from any
    thread afterwards; ``/proc/sys/net`` opened by *fn* is that of *ns*. The thread ends
    after *fn*, so the namespace switch never leaks into the rest of the process.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise NetlabError(f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join(_THREAD_TIMEOUT)
    if thread.is_alive():
        raise NetlabError(f"work inside namespace {ns} did not finish in {_THREAD_TIMEOUT}s")
    if error:
        raise error[0]
    return result[0]


def _write_sysctls(values: dict[str, str]) -> None:
    for key, value in values.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as fh:
            fh.write(value + "\n")


def _read_sysctl(key: str) -> str:
    with open("/proc/sys/" + key.replace(".", "/")) as fh:
        return fh.read().strip()


def _family_of(ip: str) -> Family:
    return 6 if ipaddress.ip_address(ip).version == 6 else 4


def _check_camera_ip(ip: str) -> str:
    """Return *ip* normalised; reject anything outside the lab's camera ranges."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv4Address):
        ok = addr in NET4 and addr not in LINK4
    else:
        ok = addr in NET6 and addr not in LINK6
    if not ok:
        raise ValueError(f"{ip} is not a lab camera address (in {NET4} or {NET6}, off the link)")
    return str(addr)


def _prefix(ip: str) -> str:
    return f"{ip}/128" if _family_of(ip) == 6 else f"{ip}/32"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


# --------------------------------------------------------------------------- TCP listeners


class _Acceptor:
    """One thread that accepts (and at once closes) connections on many listening sockets."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._listeners: dict[socket.socket, TcpListener] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="netlab-acceptor", daemon=True)
        self._thread.start()

    def add(self, sock: socket.socket, listener: TcpListener) -> None:
        with self._lock:
            self._listeners[sock] = listener
            self._selector.register(sock, selectors.EVENT_READ)

    def remove(self, sock: socket.socket) -> None:
        with self._lock:
            if self._listeners.pop(sock, None) is not None:
                self._selector.unregister(sock)
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        with self._lock:
            for sock in list(self._listeners):
                self._selector.unregister(sock)
                sock.close()
            self._listeners.clear()
        self._selector.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._selector.select(timeout=0.1)
            except (OSError, ValueError):  # selector closed under us during shutdown
                return
            with self._lock:
                for key, _mask in events:
                    sock = key.fileobj
                    listener = self._listeners.get(sock)  # type: ignore[call-overload]
                    if listener is None:  # removed while we were waiting for the lock
                        continue
                    for _ in range(_ACCEPT_BURST):
                        try:
                            conn, _addr = sock.accept()  # type: ignore[union-attr]
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        listener._accepted += 1
                        conn.close()


class TcpListener:
    """A TCP port on a camera address in the cameras namespace; create with Lab.tcp_listener.

    While running, connects from the prober succeed (the connection is accepted and closed
    at once). After :meth:`stop` the port refuses (RST) if the address answers, or stays
    silent if the address is silent. :meth:`start` opens it again.
    """

    def __init__(self, lab: Lab, ip: str, port: int) -> None:
        self.ip = ip
        self.port = port
        self._lab = lab
        self._sock: socket.socket | None = None
        self._accepted = 0

    @property
    def running(self) -> bool:
        """True while the port is listening."""
        return self._sock is not None

    @property
    def accepted(self) -> int:
        """Number of connections accepted so far (all runs together)."""
        return self._accepted

    def start(self) -> None:
        """Listen again (no-op when already listening)."""
        if self._sock is None:
            self._lab._start_listeners([self])

    def stop(self) -> None:
        """Close the listening socket so the port refuses (no-op when stopped)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            self._lab._acceptor().remove(sock)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<TcpListener {self.ip} port {self.port} {state} accepted={self.accepted}>"


def _ensure_fd_room(extra: int) -> None:
    """Raise the soft RLIMIT_NOFILE (up to the hard limit) so *extra* more fds fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64
    want = in_use + extra + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def _listen_socket(ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if _family_of(ip) == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# --------------------------------------------------------------------------- ICMP echo


@dataclass(frozen=True)
class EchoResult:
    """Outcome of :meth:`Lab.ping`: the RTT of a reply, and any ICMP errors seen instead."""

    rtt: float | None
    """Seconds until the echo reply, or None if no reply came within the timeout."""
    icmp_errors: tuple[str, ...] = ()
    """ICMP error messages (e.g. 'type 3 code 1 from 10.203.0.2') about our request."""

    @property
    def replied(self) -> bool:
        """True when an echo reply arrived in time."""
        return self.rtt is not None


def _quoted_icmp_header(inner: bytes, v6: bool) -> bytes:
    """First 8 bytes of the packet quoted in an ICMP error (after its IP header)."""
    if v6:
        return inner[40:48]
    return inner[(inner[0] & 0x0F) * 4 :][:8] if inner else b""


def _echo(sock: socket.socket, ip: str, timeout: float) -> EchoResult:
    v6 = sock.family == socket.AF_INET6
    ident = secrets.randbelow(0xFFFF) + 1
    payload = b"netlab-echo-" + secrets.token_bytes(4)
    req_type, reply_type = (128, 129) if v6 else (8, 0)
    header = struct.pack("!BBHHH", req_type, 0, 0, ident, 1)
    if not v6:  # the kernel fills in the ICMPv6 checksum itself
        header = struct.pack("!BBHHH", req_type, 0, _checksum(header + payload), ident, 1)
    start = time.monotonic()
    deadline = start + timeout
    sock.sendto(header + payload, (ip, 0))
    errors: list[str] = []
    for _ in range(10_000):  # bounded; each round waits for at most the remaining time
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data, addr = sock.recvfrom(4096)
        except TimeoutError:
            break
        now = time.monotonic()
        if not v6:  # raw IPv4 sockets deliver the IP header too
            data = data[(data[0] & 0x0F) * 4 :]
        if len(data) < 8:
            continue
        icmp_type, code, _csum, rid, seq = struct.unpack("!BBHHH", data[:8])
        if icmp_type == reply_type and addr[0] == ip and rid == ident and seq == 1:
            return EchoResult(rtt=now - start, icmp_errors=tuple(errors))
        if icmp_type in ((1, 2, 3, 4) if v6 else (3, 4, 5, 11, 12)):
            quoted = _quoted_icmp_header(data[8:], v6)
            if len(quoted) == 8 and struct.unpack("!H", quoted[4:6])[0] == ident:
                errors.append(f"type {icmp_type} code {code} from {addr[0]}")
    return EchoResult(rtt=None, icmp_errors=tuple(errors))


# --------------------------------------------------------------------------- the lab


class Lab:
    """Two network namespaces (prober, cameras) with camera addresses, listeners, processes.

    Use as a context manager (``with Lab() as lab:``) or call :meth:`close` yourself.
    *stop_timeout* is the grace period between SIGTERM and SIGKILL for processes.
    Namespace names are ``<prefix><random>-prober`` and ``<prefix><random>-cams``,
    unique per lab so parallel test runs never collide.
    """

    def __init__(self, prefix: str = "phb-", *, stop_timeout: float = 3.0) -> None:
        self.stop_timeout = stop_timeout
        """Seconds a process gets between SIGTERM and SIGKILL on close()."""
        token = secrets.token_hex(4)
        self.prober: str = f"{prefix}{token}-prober"
        """Name of the namespace where the daemon under test runs."""
        self.cameras: str = f"{prefix}{token}-cams"
        """Name of the namespace that owns the camera addresses."""
        self._created: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._listeners: list[TcpListener] = []
        self._acceptor_obj: _Acceptor | None = None
        self._next4 = 0
        self._next6 = 0
        self._answering: set[str] = set()
        self._closed = False
        self._lock = threading.Lock()
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    # ---- lifecycle

    def _setup(self) -> None:
        for ns in (self.prober, self.cameras):
            _ip(["netns", "add", ns])
            self._created.append(ns)
        _ip(
            ["link", "add", PROBER_VETH, "type", "veth", "peer", "name", CAMERAS_VETH,
             "netns", self.cameras],
            ns=self.prober,
        )  # fmt: skip
        run_in_netns(
            self.cameras,
            lambda: _write_sysctls(
                {
                    "net.ipv4.ip_forward": "0",
                    "net.ipv6.conf.all.forwarding": "0",
                    # lets a listener exist on a silent address (it answers once unsilenced)
                    "net.ipv4.ip_nonlocal_bind": "1",
                    "net.ipv6.ip_nonlocal_bind": "1",
                }
            ),
        )
        _ip(
            [],
            ns=self.cameras,
            batch=(
                "link set lo up\n"
                f"link set {CAMERAS_VETH} up\n"
                f"addr add {CAMERAS_LINK4}/30 dev {CAMERAS_VETH}\n"
                f"addr add {CAMERAS_LINK6}/64 dev {CAMERAS_VETH} nodad\n"
                # silent addresses end here without any ICMP error, whatever forwarding says
                f"route add blackhole {NET4}\n"
                f"route add blackhole {NET6}\n"
            ),
        )
        _ip(
            [],
            ns=self.prober,
            batch=(
                "link set lo up\n"
                f"link set {PROBER_VETH} up\n"
                f"addr add {PROBER_LINK4}/30 dev {PROBER_VETH}\n"
                f"addr add {PROBER_LINK6}/64 dev {PROBER_VETH} nodad\n"
                f"route add {NET4} via {CAMERAS_LINK4} dev {PROBER_VETH}\n"
                f"route add {NET6} via {CAMERAS_LINK6} dev {PROBER_VETH}\n"
            ),
        )
        _wait_local_routes(self.cameras, [CAMERAS_LINK6])
        _wait_local_routes(self.prober, [PROBER_LINK6])

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.close()
        except NetlabError as err:
            if exc_type is None:
                raise
            warnings.warn(f"netlab cleanup: {err}", stacklevel=2)

    def close(self) -> None:
        """Stop processes and listeners, delete both namespaces (and so the veth pair).

        Safe to call more than once. Every step is attempted; failures are raised together
        at the end as one NetlabError.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        problems: list[str] = []
        for proc in self._procs:
            try:
                _stop_process(proc, self.stop_timeout)
            except Exception as exc:
                problems.append(f"process {proc.pid}: {exc}")
        if self._acceptor_obj is not None:
            try:
                self._acceptor_obj.close()
            except Exception as exc:
                problems.append(f"listeners: {exc}")
        for listener in self._listeners:
            listener._sock = None
        for ns in reversed(self._created):
            try:
                _kill_netns_pids(ns)
                _ip(["netns", "del", ns])
            except Exception as exc:
                problems.append(f"namespace {ns}: {exc}")
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if problems:
            raise NetlabError("; ".join(problems))

    # ---- camera addresses

    def add_camera_ip(self, kind: Kind = "answering", family: Family = 4) -> str:
        """Return one fresh camera address that answers (ICMP, TCP RST/accept) or is silent."""
        return self.add_camera_ips(1, kind, family)[0]

    def add_camera_ips(self, count: int, kind: Kind = "answering", family: Family = 4) -> list[str]:
        """Return *count* fresh camera addresses of one kind; thousands take one ``ip`` call.

        Answering addresses are put on ``lo`` of the cameras namespace; silent ones are only
        routed there, which drops them without a trace.
        """
        if kind not in ("answering", "silent") or family not in (4, 6):
            raise ValueError(f"bad kind/family: {kind!r}/{family!r}")
        ips = [self._allocate(family) for _ in range(count)]
        if kind == "answering":
            self.make_answering(*ips)
        return ips

    def _allocate(self, family: Family) -> str:
        if family == 4:
            if self._next4 >= _MAX_POOL4:
                raise NetlabError("IPv4 camera pool exhausted")
            third, fourth = divmod(self._next4, 254)
            self._next4 += 1
            ip = f"10.203.{third + 1}.{fourth + 1}"
        else:
            self._next6 += 1
            ip = str(CAMERA_POOL6[self._next6])
        return ip

    def make_silent(self, *ips: str) -> None:
        """Make answering addresses silent (their listeners stay, but nothing reaches them)."""
        todo = [ip for ip in map(_check_camera_ip, ips) if ip in self._answering]
        if todo:
            _ip([], ns=self.cameras, batch="".join(f"addr del {_prefix(i)} dev lo\n" for i in todo))
            self._answering.difference_update(todo)

    def make_answering(self, *ips: str) -> None:
        """Make addresses answer again (ICMP replies; TCP accepts or refuses by listener)."""
        todo = list(dict.fromkeys(ip for ip in map(_check_camera_ip, ips)))
        todo = [ip for ip in todo if ip not in self._answering]
        if todo:
            lines = "".join(
                f"addr add {_prefix(i)} dev lo{' nodad' if _family_of(i) == 6 else ''}\n"
                for i in todo
            )
            _ip([], ns=self.cameras, batch=lines)
            _wait_local_routes(self.cameras, [i for i in todo if _family_of(i) == 6])
            self._answering.update(todo)

    def is_answering(self, ip: str) -> bool:
        """True if *ip* is currently owned by the cameras namespace."""
        return _check_camera_ip(ip) in self._answering

    # ---- TCP

    def tcp_listener(self, ip: str, port: int) -> TcpListener:
        """Start listening on ip:port in the cameras namespace; return a stoppable handle."""
        return self.tcp_listeners([ip], port)[0]

    def tcp_listeners(self, ips: Iterable[str], port: int) -> list[TcpListener]:
        """Start one listener per address on the same port, all opened in one namespace trip."""
        listeners = [TcpListener(self, _check_camera_ip(ip), port) for ip in ips]
        self._start_listeners(listeners)
        self._listeners.extend(listeners)
        return listeners

    def _acceptor(self) -> _Acceptor:
        if self._closed:
            raise NetlabError("lab is closed")
        if self._acceptor_obj is None:
            self._acceptor_obj = _Acceptor()
        return self._acceptor_obj

    def _start_listeners(self, listeners: Sequence[TcpListener]) -> None:
        acceptor = self._acceptor()
        pending = [lst for lst in listeners if lst._sock is None]
        _ensure_fd_room(len(pending))

        def open_all() -> list[socket.socket]:
            opened: list[socket.socket] = []
            try:
                for lst in pending:
                    opened.append(_listen_socket(lst.ip, lst.port))
            except BaseException:
                for sock in opened:
                    sock.close()
                raise
            return opened

        for lst, sock in zip(pending, run_in_netns(self.cameras, open_all), strict=True):
            lst._sock = sock
            acceptor.add(sock, lst)

    def prober_socket(
        self, family: socket.AddressFamily, type: socket.SocketKind, proto: int = 0
    ) -> socket.socket:
        """Create a socket that lives in the prober namespace (for checks from the tests)."""
        return run_in_netns(self.prober, lambda: socket.socket(family, type, proto))

    def tcp_connect(self, ip: str, port: int, timeout: float = 1.0) -> float:
        """Connect from the prober namespace; return seconds taken, raise OSError on failure.

        A refused port raises ConnectionRefusedError at once; a silent host TimeoutError.
        """
        family = socket.AF_INET6 if _family_of(ip) == 6 else socket.AF_INET
        with self.prober_socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            start = time.monotonic()
            sock.connect((ip, port))
            return time.monotonic() - start

    # ---- ICMP

    def ping(self, ip: str, timeout: float = 1.0) -> EchoResult:
        """Send one ICMP(v6) echo request from the prober namespace (raw socket) and wait."""
        if _family_of(ip) == 6:
            sock = self.prober_socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        else:
            sock = self.prober_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        with sock:
            return _echo(sock, ip, timeout)

    # ---- sysctl and traffic shaping

    def sysctl(self, key: str, value: str | None = None, *, ns: str | None = None) -> str:
        """Read (and first write, if *value* is given) a sysctl in *ns* (default: prober)."""
        target = ns or self.prober

        def work() -> str:
            if value is not None:
                _write_sysctls({key: value})
            return _read_sysctl(key)

        return run_in_netns(target, work)

    def set_ping_group_range(self, low: int, high: int) -> None:
        """Allow groups low..high unprivileged ICMP echo sockets in the prober namespace.

        ``set_ping_group_range(0, 2147483647)`` lets everybody ping; ``(1, 0)`` (the
        kernel default) lets nobody.
        """
        self.sysctl("net.ipv4.ping_group_range", f"{low}\t{high}")

    def lossy(self, percent: int) -> None:
        """Drop *percent* % of everything the cameras send (replies), at random.

        An nftables ``numgen random`` rule in the cameras namespace (this machine's kernel
        has no netem qdisc). ``lossy(0)`` removes it. Raises NetlabError without ``nft``.
        """
        if shutil.which("nft") is None:
            raise NetlabError("packet loss needs the `nft` command (apt-get install nftables)")
        rules = "flush ruleset\n"
        if percent:
            rules += (
                "table inet lossy {\n chain out {\n  type filter hook output priority 0;\n"
                f"  {'' if percent >= 100 else f'numgen random mod 100 < {int(percent)} '}drop\n"
                " }\n}\n"
            )
        subprocess.run(
            ["ip", "netns", "exec", self.cameras, "nft", "-f", "-"],
            input=rules,
            text=True,
            capture_output=True,
            check=True,
            timeout=_CMD_TIMEOUT,
        )

    # ---- processes in the prober namespace

    def command(
        self,
        argv: Sequence[str],
        *,
        user: int | str | None = None,
        group: int | str | None = None,
        ambient_caps: Sequence[str] = (),
        ns: str | None = None,
    ) -> list[str]:
        """Return the argv that runs *argv* in *ns* (default prober), optionally as *user*.

        *user*/*group* (name or number; group defaults to the user's primary group) switch
        identity with ``setpriv --clear-groups``; *ambient_caps* (e.g. ``["net_raw"]``)
        keeps those capabilities for the non-root user, as systemd's AmbientCapabilities.
        """
        cmd = ["ip", "netns", "exec", ns or self.prober]
        if user is not None:
            uid, gid = _resolve_ids(user, group)
            cmd += ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
            if ambient_caps:
                caps = ",".join(f"+{c.lower().removeprefix('cap_')}" for c in ambient_caps)
                cmd += [f"--inh-caps={caps}", f"--ambient-caps={caps}"]
        elif ambient_caps or group is not None:
            raise ValueError("group/ambient_caps need user=")
        return [*cmd, *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        user: int | str | None = None,
        group: int | str | None = None,
        ambient_caps: Sequence[str] = (),
        ns: str | None = None,
        timeout: float = 60.0,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[Any]:
        """Run *argv* in the prober namespace to completion (subprocess.run kwargs accepted)."""
        cmd = self.command(argv, user=user, group=group, ambient_caps=ambient_caps, ns=ns)
        return subprocess.run(cmd, timeout=timeout, **kwargs)

    def popen(
        self,
        argv: Sequence[str],
        *,
        user: int | str | None = None,
        group: int | str | None = None,
        ambient_caps: Sequence[str] = (),
        ns: str | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[Any]:
        """Start *argv* in the prober namespace; it is killed (process group) on close().

        Runs in its own session unless ``start_new_session=False`` is passed. Stop it
        earlier yourself if the test needs its exit status.
        """
        if self._closed:
            raise NetlabError("lab is closed")
        kwargs.setdefault("start_new_session", True)
        cmd = self.command(argv, user=user, group=group, ambient_caps=ambient_caps, ns=ns)
        proc = subprocess.Popen(cmd, **kwargs)
        self._procs.append(proc)
        return proc


def _resolve_ids(user: int | str, group: int | str | None) -> tuple[int, int]:
    if isinstance(user, int):
        uid = user
        try:
            default_gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            default_gid = uid
    else:
        entry = pwd.getpwnam(user)
        uid, default_gid = entry.pw_uid, entry.pw_gid
    if group is None:
        return uid, default_gid
    if isinstance(group, int):
        return uid, group
    import grp

    return uid, grp.getgrnam(group).gr_gid


def _stop_process(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM the process (group, if it leads one), SIGKILL after *grace* s; reap it."""
    if proc.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            try:
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, sig)
                    return
            except ProcessLookupError:
                return
            proc.send_signal(sig)

    send(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(5.0)


def _kill_netns_pids(ns: str) -> None:
    """SIGKILL processes still inside a namespace this lab created (a daemon's children)."""
    try:
        out = _ip(["netns", "pids", ns])
    except NetlabError:
        return
    for pid in [int(p) for p in out.split() if p.isdigit()][:10_000]:
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@atexit.register
def _close_leftover_labs() -> None:
    """Safety net: close labs that a crashed or interrupted test never closed."""
    with _LIVE_LOCK:
        labs = list(_LIVE)
    for lab in labs:
        with contextlib.suppress(Exception):
            lab.close()


# --------------------------------------------------------------------------- pytest glue

if pytest is not None:
    _REASON = netns_unavailable_reason()
    requires_root_netns = pytest.mark.skipif(
        _REASON is not None, reason=_REASON or "network namespaces available"
    )
    """Skip marker for tests that need root and ``ip netns`` (CI runs them as root)."""

    def lab_fixture(
        *,
        scope: Literal["session", "package", "module", "class", "function"] = "function",
        name: str = "lab",
    ) -> Any:
        """Return a pytest fixture yielding a fresh :class:`Lab` (skipped without netns).

        In a conftest.py or test module: ``lab = lab_fixture()`` (or
        ``lab_module = lab_fixture(scope="module", name="lab_module")``).
        """

        @pytest.fixture(scope=scope, name=name)
        def _lab() -> Iterator[Lab]:
            reason = netns_unavailable_reason()
            if reason is not None:
                pytest.skip(reason)
            with Lab() as lab:
                yield lab

        return _lab
