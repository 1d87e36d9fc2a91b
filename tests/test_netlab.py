"""Tests of the network-namespace lab (tests/netlab.py) itself.

They prove that what the daemon's tests rely on really holds: answering cameras accept or
refuse at once, silent cameras time out without any ICMP error, both for IPv4 and IPv6,
a thousand cameras are cheap, and nothing is left behind.
"""

from __future__ import annotations

import errno
import os
import secrets
import select
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable

import pytest
from netlab import (  # tests/ is on sys.path (conftest.py, pytest rootdir insertion)
    Lab,
    NetlabError,
    lab_fixture,
    requires_root_netns,
    run_in_netns,
)

pytestmark = [pytest.mark.netns, requires_root_netns]

lab = lab_fixture()
shared_lab = lab_fixture(scope="module", name="shared_lab")

NOBODY = 65534
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
FAMILIES = [pytest.param(4, id="ipv4"), pytest.param(6, id="ipv6")]


def _netns_names() -> set[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.01) + 1):
        if predicate() or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    return predicate()


@pytest.fixture(scope="module")
def nobody_python(shared_lab: Lab) -> str:
    """An interpreter that user nobody may execute (pyenv under /root usually is not)."""
    for candidate in ("/usr/bin/python3", shutil.which("python3") or ""):
        if not candidate:
            continue
        done = shared_lab.run([candidate, "-c", "pass"], user=NOBODY, capture_output=True)
        if done.returncode == 0:
            return candidate
    pytest.skip("no python3 that user nobody can execute")


# --------------------------------------------------------------------------- topology


def test_namespaces_routes_and_sysctls(shared_lab: Lab) -> None:
    assert {shared_lab.prober, shared_lab.cameras} <= _netns_names()
    assert shared_lab.prober.startswith("phb-") and shared_lab.cameras.startswith("phb-")
    routes = shared_lab.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert "10.203.0.0/16 via 10.203.0.2" in routes
    assert "default" not in routes  # nothing can leave the lab
    routes6 = shared_lab.run(
        ["ip", "-6", "route"], capture_output=True, text=True, check=True
    ).stdout
    assert "fd42:4242::/48 via fd42:4242::2" in routes6
    assert "default" not in routes6
    assert shared_lab.sysctl("net.ipv4.ip_forward", ns=shared_lab.cameras) == "0"
    assert shared_lab.sysctl("net.ipv6.conf.all.forwarding", ns=shared_lab.cameras) == "0"


def test_addresses_are_fresh_and_in_range(shared_lab: Lab) -> None:
    ips = [
        shared_lab.add_camera_ip(kind, fam) for kind in ("answering", "silent") for fam in (4, 6)
    ]
    assert len(set(ips)) == 4
    assert ips[0].startswith("10.203.") and ips[2].startswith("10.203.")
    assert ips[1].startswith("fd42:4242:0:1::") and ips[3].startswith("fd42:4242:0:1::")
    assert shared_lab.is_answering(ips[0]) and not shared_lab.is_answering(ips[2])


def test_refuses_addresses_outside_the_lab(shared_lab: Lab) -> None:
    for foreign in ("192.168.52.100", "10.203.0.1", "2001:db8::1", "fd42:4242::2"):
        with pytest.raises(ValueError):
            shared_lab.tcp_listener(foreign, 80)
        with pytest.raises(ValueError):
            shared_lab.make_answering(foreign)


# --------------------------------------------------------------------------- TCP


@pytest.mark.parametrize("family", FAMILIES)
def test_tcp_connect_to_listener_succeeds(shared_lab: Lab, family: int) -> None:
    ip = shared_lab.add_camera_ip("answering", family)  # type: ignore[arg-type]
    listener = shared_lab.tcp_listener(ip, 80)
    assert shared_lab.tcp_connect(ip, 80, timeout=2.0) < 1.0
    assert _wait_for(lambda: listener.accepted == 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_tcp_connect_without_listener_is_refused_at_once(shared_lab: Lab, family: int) -> None:
    ip = shared_lab.add_camera_ip("answering", family)  # type: ignore[arg-type]
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        shared_lab.tcp_connect(ip, 80, timeout=2.0)
    assert time.monotonic() - start < 1.0  # no waiting for a timeout


@pytest.mark.parametrize("family", FAMILIES)
def test_tcp_connect_to_silent_address_times_out(shared_lab: Lab, family: int) -> None:
    ip = shared_lab.add_camera_ip("silent", family)  # type: ignore[arg-type]
    shared_lab.tcp_listener(ip, 80)  # even a listener does not help a silent address
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        shared_lab.tcp_connect(ip, 80, timeout=1.0)
    assert time.monotonic() - start >= 0.9


def test_listener_stop_and_start(shared_lab: Lab) -> None:
    ip = shared_lab.add_camera_ip()
    listener = shared_lab.tcp_listener(ip, 554)
    shared_lab.tcp_connect(ip, 554)
    assert _wait_for(lambda: listener.accepted == 1)
    listener.stop()
    assert not listener.running
    with pytest.raises(ConnectionRefusedError):
        shared_lab.tcp_connect(ip, 554)
    listener.start()
    listener.start()  # idempotent
    shared_lab.tcp_connect(ip, 554)
    assert _wait_for(lambda: listener.accepted == 2)


# --------------------------------------------------------------------------- ICMP


@pytest.mark.parametrize("family", FAMILIES)
def test_ping_answering_replies_and_silent_gets_nothing(shared_lab: Lab, family: int) -> None:
    up = shared_lab.add_camera_ip("answering", family)  # type: ignore[arg-type]
    down = shared_lab.add_camera_ip("silent", family)  # type: ignore[arg-type]
    reply = shared_lab.ping(up, timeout=2.0)
    assert reply.replied and reply.rtt is not None and reply.rtt < 2.0
    start = time.monotonic()
    silent = shared_lab.ping(down, timeout=1.0)
    assert not silent.replied
    assert silent.icmp_errors == ()  # dropped, not rejected
    assert time.monotonic() - start >= 0.9


@pytest.mark.parametrize(
    ("family", "route", "target"),
    [
        pytest.param(4, "10.203.250.0/24", "10.203.250.1", id="ipv4"),
        pytest.param(6, "fd42:4242:0:1:ffff::/80", "fd42:4242:0:1:ffff::1", id="ipv6"),
    ],
)
def test_control_icmp_errors_would_be_seen(lab: Lab, family: int, route: str, target: str) -> None:
    """Negative control: a rejecting network is reported as such, so 'silent' means silent."""
    forwarding = "net.ipv4.ip_forward" if family == 4 else "net.ipv6.conf.all.forwarding"
    ratelimit = "net.ipv4.icmp_ratelimit" if family == 4 else "net.ipv6.icmp.ratelimit"
    lab.sysctl(forwarding, "1", ns=lab.cameras)
    lab.sysctl(ratelimit, "0", ns=lab.cameras)  # two errors in a row must both be sent
    lab.run(["ip", "route", "add", "unreachable", route], ns=lab.cameras, check=True)
    result = lab.ping(target, timeout=1.0)
    assert not result.replied
    assert result.icmp_errors, "an ICMP unreachable was expected from the cameras namespace"
    # TCP sees it as an error, not a timeout (IPv6 aborts on the retransmitted SYN's error)
    with pytest.raises(OSError) as caught:
        lab.tcp_connect(target, 80, timeout=2.0)
    assert caught.value.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)


@pytest.mark.parametrize("family", FAMILIES)
def test_camera_goes_silent_and_comes_back(shared_lab: Lab, family: int) -> None:
    ip = shared_lab.add_camera_ip("answering", family)  # type: ignore[arg-type]
    shared_lab.tcp_listener(ip, 80)
    shared_lab.tcp_connect(ip, 80)
    shared_lab.make_silent(ip)
    assert not shared_lab.is_answering(ip)
    with pytest.raises(TimeoutError):
        shared_lab.tcp_connect(ip, 80, timeout=0.5)
    assert not shared_lab.ping(ip, timeout=0.3).replied
    shared_lab.make_answering(ip)
    shared_lab.tcp_connect(ip, 80)
    assert shared_lab.ping(ip, timeout=1.0).replied


# --------------------------------------------------------------------------- scale


def _connect_sweep(lab: Lab, ips: list[str], port: int, timeout: float) -> dict[str, str]:
    """Non-blocking connects to every ip at once from the prober; ip -> outcome."""

    def open_all() -> list[socket.socket]:
        socks = []
        for ip in ips:
            sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
            sock.setblocking(False)
            socks.append(sock)
        return socks

    socks = run_in_netns(lab.prober, open_all)
    outcome: dict[str, str] = {}
    poller = select.epoll()
    try:
        by_fd = {}
        for ip, sock in zip(ips, socks, strict=True):
            sock.connect_ex((ip, port))
            by_fd[sock.fileno()] = (ip, sock)
            poller.register(sock.fileno(), select.EPOLLOUT)
        deadline = time.monotonic() + timeout
        for _ in range(len(ips) + 1):
            left = deadline - time.monotonic()
            if left <= 0 or len(outcome) == len(ips):
                break
            for fd, _ev in poller.poll(left):
                ip, sock = by_fd[fd]
                poller.unregister(fd)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                outcome[ip] = "connected" if err == 0 else errno.errorcode.get(err, str(err))
        for ip in ips:
            outcome.setdefault(ip, "timeout")
    finally:
        poller.close()
        for sock in socks:
            sock.close()
    return outcome


def _icmp_sweep(lab: Lab, ips: list[str], timeout: float) -> set[str]:
    """Echo every IPv4 address at once over one raw socket; return those that replied."""
    ident = secrets.randbelow(0xFFFF) + 1
    wanted = set(ips)
    replied: set[str] = set()
    sock = lab.prober_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with sock:
        # The default receive buffer holds only ~256 replies: a burst of 1000 overflows it.
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        for seq, ip in enumerate(ips):
            total = sum(struct.unpack("!4H", struct.pack("!BBHHH", 8, 0, 0, ident, seq)))
            total = (total & 0xFFFF) + (total >> 16)
            csum = ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF
            sock.sendto(struct.pack("!BBHHH", 8, 0, csum, ident, seq), (ip, 0))
        deadline = time.monotonic() + timeout
        for _ in range(10 * len(ips) + 10):
            left = deadline - time.monotonic()
            if left <= 0 or replied == wanted:
                break
            sock.settimeout(left)
            try:
                data, addr = sock.recvfrom(256)
            except TimeoutError:
                break
            icmp = data[(data[0] & 0x0F) * 4 :]
            if len(icmp) >= 8 and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                replied.add(addr[0])
    return replied


def test_thousand_cameras(lab: Lab) -> None:
    start = time.monotonic()
    answering = lab.add_camera_ips(1000, "answering", 4)
    silent = lab.add_camera_ips(250, "silent", 4)
    answering6 = lab.add_camera_ips(500, "answering", 6)
    add_time = time.monotonic() - start
    assert len(set(answering + silent)) == 1250
    assert add_time < 3.0, f"adding 1750 addresses took {add_time:.2f}s"

    start = time.monotonic()
    listeners = lab.tcp_listeners(answering[:900] + silent, 80)
    assert time.monotonic() - start < 3.0
    assert all(lst.running for lst in listeners)

    outcome = _connect_sweep(lab, answering + silent, 80, timeout=1.5)
    assert all(outcome[ip] == "connected" for ip in answering[:900])
    assert all(outcome[ip] == "ECONNREFUSED" for ip in answering[900:])
    assert all(outcome[ip] == "timeout" for ip in silent)

    replied = _icmp_sweep(lab, answering + silent, timeout=1.5)
    assert replied == set(answering)

    for ip in answering6[::100]:
        assert lab.ping(ip, timeout=1.0).replied


# --------------------------------------------------------------------------- processes


def test_run_as_user_and_ping_group_range(shared_lab: Lab, nobody_python: str) -> None:
    done = shared_lab.run(["id", "-u"], user=NOBODY, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(NOBODY)
    script = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)"
    shared_lab.set_ping_group_range(1, 0)
    denied = shared_lab.run([nobody_python, "-c", script], user=NOBODY, capture_output=True)
    assert denied.returncode != 0
    shared_lab.set_ping_group_range(0, 2147483647)
    allowed = shared_lab.run([nobody_python, "-c", script], user=NOBODY, capture_output=True)
    assert allowed.returncode == 0, allowed.stderr
    seen = shared_lab.run(
        ["cat", "/proc/sys/net/ipv4/ping_group_range"], capture_output=True, text=True
    ).stdout.split()
    assert seen == ["0", "2147483647"]
    shared_lab.set_ping_group_range(1, 0)


def test_ambient_net_raw_for_non_root(shared_lab: Lab, nobody_python: str) -> None:
    script = "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)"
    without = shared_lab.run([nobody_python, "-c", script], user=NOBODY, capture_output=True)
    assert without.returncode != 0
    with_cap = shared_lab.run(
        [nobody_python, "-c", script], user=NOBODY, ambient_caps=["net_raw"], capture_output=True
    )
    assert with_cap.returncode == 0, with_cap.stderr


def test_daemon_style_process_reaches_cameras(shared_lab: Lab, nobody_python: str) -> None:
    ip = shared_lab.add_camera_ip()
    shared_lab.tcp_listener(ip, 8080)
    script = f"import socket; socket.create_connection(({ip!r}, 8080), timeout=1).close()"
    proc = shared_lab.popen([nobody_python, "-c", script], user=NOBODY)
    assert proc.wait(10) == 0


def test_everything_is_removed_even_when_the_test_fails() -> None:
    with pytest.raises(RuntimeError, match="boom"), Lab(stop_timeout=0.5) as lab:
        names = {lab.prober, lab.cameras}
        assert names <= _netns_names()
        proc = lab.popen(["sleep", "60"])
        stubborn = lab.popen(["sh", "-c", "trap '' TERM; sleep 60"])
        orphan = lab.popen(["sh", "-c", "sleep 60 & echo $!"], stdout=subprocess.PIPE, text=True)
        assert orphan.stdout is not None
        orphan_pid = int(orphan.stdout.readline())
        orphan.stdout.close()
        listener = lab.tcp_listener(lab.add_camera_ip(), 80)
        raise RuntimeError("boom")
    assert proc.poll() is not None and stubborn.poll() is not None
    # SIGKILL was sent; the kernel takes a moment to make the orphan a zombie (or gone):
    # a bounded wait, not an instant check that a loaded machine loses now and then
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{orphan_pid}") and not _is_zombie(orphan_pid):
        assert time.monotonic() < deadline, f"orphan {orphan_pid} still alive"
        time.sleep(0.02)
    assert not listener.running
    assert not names & _netns_names()
    lab.close()  # idempotent
    with pytest.raises(NetlabError):
        lab.popen(["true"])


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# --------------------------------------------------------------------------- loss


def test_lossy_drops_about_the_share_asked(lab: Lab) -> None:
    ip = lab.add_camera_ip()
    lab.lossy(100)
    assert not lab.ping(ip, timeout=0.3).replied
    lab.lossy(50)
    replied = sum(lab.ping(ip, timeout=0.3).replied for _ in range(100))
    assert 20 <= replied <= 80, replied  # binomial(100, 0.5): outside this is ~1e-9
    lab.lossy(0)
    assert all(lab.ping(ip, timeout=1.0).replied for _ in range(5))
