"""Simulated ONVIF cameras (and hostile WS-Discovery responders) in network namespaces.

Used by tests/test_discovery.py. :class:`OnvifLab` builds a "station" namespace holding a
bridge and one namespace per responder, each joined to the bridge by a veth pair with a
fixed MAC, multicast on and a 224.0.0.0/4 route, so the group 239.255.255.250 reaches every
responder and never leaves the test's namespaces. A responder is this file run as a script
(``python onvif_sim.py MODE ...``) inside its namespace: it joins the group on port 3702,
logs every datagram it receives (JSON lines) and answers a Probe as MODE says:

- ``camera``: a ProbeMatches as ONVIF devices send it (WS-Discovery 2005/04, SOAP 1.2,
  ``tdn:NetworkVideoTransmitter tds:Device``, ``onvif://www.onvif.org/...`` scopes);
- ``wrong-relates``: the same with another RelatesTo; ``garbage``: random bytes;
- ``flood``: once every other responder has answered (their logs say so), 17 datagrams of
  65507 bytes (1.1 MB), then a valid-looking but oversize reply; ONVIF Probes only;
- ``bomb``: a billion-laughs ProbeMatches; ``huge-scope``: a 60 KB scope and 1000 XAddrs;
- ``replay FILE``: the bytes of FILE (a real wsdd reply) with our MessageID as RelatesTo.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GROUP = "239.255.255.250"
PORT = 3702
HERE = Path(__file__).resolve().parent
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
STATION_MAC = "02:0e:00:5a:7a:01"  # the station's bridge (responders get 02:0e:NN:...)
AFTER_OTHERS = 30.0  # seconds the flood waits at most for the others' answers


def message_id(data: bytes) -> str | None:
    """The MessageID of a Probe (a regex: the simulator must not need a safe parser)."""
    m = re.search(rb"<[\w]*:?MessageID>\s*([^<\s]+)\s*</", data)
    return m.group(1).decode(errors="replace") if m else None


def probe_matches(
    relates_to: str,
    ip: str,
    name: str,
    hardware: str = "M7B77-WPS",
    types: str = "tdn:NetworkVideoTransmitter tds:Device",
    scopes_extra: str = "",
    xaddrs: str | None = None,
) -> bytes:
    """A ProbeMatches shaped as ONVIF cameras send it (ONVIF Core spec 7.3, WS-Discovery)."""
    endpoint = f"urn:uuid:{abs(hash((ip, name))) % 10**12:012d}-0000-4000-8000-00000000cafe"
    xaddrs = f"http://{ip}/onvif/device_service" if xaddrs is None else xaddrs
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" '
        f'xmlns:wsa="{WSA}" xmlns:d="{WSD}" '
        'xmlns:tdn="http://www.onvif.org/ver10/network/wsdl" '
        'xmlns:tds="http://www.onvif.org/ver10/device/wsdl">'
        "<SOAP-ENV:Header>"
        f"<wsa:MessageID>urn:uuid:{os.urandom(16).hex()}</wsa:MessageID>"
        f"<wsa:RelatesTo>{relates_to}</wsa:RelatesTo>"
        f'<wsa:To SOAP-ENV:mustUnderstand="true">{WSA}/role/anonymous</wsa:To>'
        f'<wsa:Action SOAP-ENV:mustUnderstand="true">{WSD}/ProbeMatches</wsa:Action>'
        '<d:AppSequence InstanceId="1" MessageNumber="2"/>'
        "</SOAP-ENV:Header>"
        "<SOAP-ENV:Body><d:ProbeMatches><d:ProbeMatch>"
        f"<wsa:EndpointReference><wsa:Address>{endpoint}</wsa:Address></wsa:EndpointReference>"
        f"<d:Types>{types}</d:Types>"
        "<d:Scopes>onvif://www.onvif.org/type/video_encoder "
        "onvif://www.onvif.org/Profile/Streaming "
        f"onvif://www.onvif.org/name/{name} "
        f"onvif://www.onvif.org/hardware/{hardware} "
        f"onvif://www.onvif.org/location/country/usa {scopes_extra}</d:Scopes>"
        f"<d:XAddrs>{xaddrs}</d:XAddrs>"
        "<d:MetadataVersion>1</d:MetadataVersion>"
        "</d:ProbeMatch></d:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ).encode()


BOMB = (
    '<?xml version="1.0"?>\n<!DOCTYPE SOAP-ENV:Envelope [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n"
)


def replies(mode: str, relates: str, ip: str, name: str, replay: bytes) -> list[bytes]:
    """What a responder in ``mode`` sends back to one Probe."""
    if mode == "camera":
        return [probe_matches(relates, ip, name)]
    if mode == "wrong-relates":
        return [probe_matches("urn:uuid:00000000-0000-4000-8000-000000000000", ip, name)]
    if mode == "garbage":
        return [os.urandom(1500), b"<not xml", b"\xff\xfe<\0?\0x\0m\0l\0", b""]
    if mode == "flood":
        big = [os.urandom(65507) for _ in range(17)]
        return [*big, probe_matches(relates, ip, name, scopes_extra="x" * 60000)]
    if mode == "bomb":
        body = probe_matches(relates, ip, name).decode()
        body = body.split("\n", 1)[1].replace(f"name/{name}", "name/&lol9;")
        return [(BOMB + body).encode()]
    if mode == "huge-scope":
        many = " ".join(f"http://{ip}/{i}" for i in range(1000))
        return [
            probe_matches(relates, ip, name, scopes_extra="onvif://www.onvif.org/x/" + "y" * 9000),
            probe_matches(relates, ip, "Z" * 20000, xaddrs=many)[:65000],
        ]
    if mode == "replay":
        return [
            re.sub(rb"(<[\w]*:?RelatesTo>)[^<]*(<)", rb"\1" + relates.encode() + rb"\2", replay)
        ]
    raise SystemExit(f"unknown mode {mode}")


def _wait_for_others(own: Path, mid: str) -> None:
    """Until every other responder of the lab (its log next to ``own``) has answered ``mid``,
    bounded by AFTER_OTHERS seconds; then a little longer for their replies to arrive."""
    deadline = time.monotonic() + AFTER_OTHERS
    while time.monotonic() < deadline:
        waiting = [
            other
            for other in own.parent.glob("responder-*.jsonl")
            if other != own and f'"re": "{mid}"' not in other.read_text()
        ]
        if not waiting:
            break
        time.sleep(0.05)
    time.sleep(0.3)


def respond(args: argparse.Namespace) -> None:
    """The responder: join the group, log what arrives, answer Probes as the mode says."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", PORT))
    mreq = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton(args.ip))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    replay = Path(args.replay).read_bytes() if args.replay else b""
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    out.bind((args.ip, 0))
    log = open(args.log, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    log.write(json.dumps({"ready": True}) + "\n")
    while True:
        data, src = sock.recvfrom(65535)
        mid = message_id(data)
        got = {"from": list(src), "len": len(data), "data": data.hex(), "t": time.time()}
        log.write(json.dumps(got) + "\n")
        if mid is None or b"Probe>" not in data or b"ProbeMatches" in data:
            continue
        if args.mode == "flood":
            if b"NetworkVideoTransmitter" not in data:
                continue  # the test's probes of wsdd would keep it flooding into the next probe
            # after the others have answered: a flood that fills the prober's socket buffer
            # first would deny their replies (a network-level denial that no parser can undo;
            # docs/discovery.md); what is tested is that the flood itself is ignored
            _wait_for_others(Path(args.log), mid)
        for _ in range(2 if args.mode == "camera" else 1):  # SOAP-over-UDP: unicast sent twice
            for reply in replies(args.mode, mid, args.ip, args.name, replay):
                try:
                    out.sendto(reply, src)
                    sent: dict[str, Any] = {"sent": len(reply), "to": src}
                except OSError as err:  # logged: a test's failure says what was not sent
                    sent = {"send_error": str(err)}
                log.write(json.dumps({**sent, "re": mid, "t": time.time()}) + "\n")
                if args.mode == "flood":
                    time.sleep(0.02)  # paced: 1.1 MB in about 0.4 s
            time.sleep(0.1)


# -- the lab ---------------------------------------------------------------------------------


def _ip(*args: str, ns: str | None = None, check: bool = True) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    subprocess.run(cmd, check=check, capture_output=True, timeout=20)


class OnvifLab:
    """A station namespace with a bridge 10.231.X.1/24 and responder namespaces on it."""

    def __init__(self, tmp: Path) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100, 999)}"
        self.tmp = tmp
        self.station = f"onvst{tag}"
        self.prefix = f"onv{tag}"
        self.subnet = f"10.231.{random.randrange(1, 250)}"
        self.station_ip = f"{self.subnet}.1"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.count = 0

    def __enter__(self) -> OnvifLab:
        try:
            _ip("netns", "add", self.station)
            self.namespaces.append(self.station)
            _ip("link", "set", "lo", "up", ns=self.station)
            # a fixed MAC: a bridge without one takes the lowest MAC of its ports and changes
            # it when a port with a lower one joins; responders that learnt the old one (the
            # test's own probe of wsdd) then send their replies to an address the station
            # drops unseen (PACKET_OTHERHOST), and the station forgets its neighbours
            _ip(
                "link",
                "add",
                "br0",
                "address",
                STATION_MAC,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
                ns=self.station,
            )
            _ip("addr", "add", f"{self.station_ip}/24", "dev", "br0", ns=self.station)
            _ip("link", "set", "br0", "up", "multicast", "on", ns=self.station)
            _ip("route", "add", "224.0.0.0/4", "dev", "br0", ns=self.station)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_host(self, mac: str | None = None) -> tuple[str, str, str]:
        """A namespace on the bridge: (namespace, IP, MAC)."""
        self.count += 1
        n = self.count
        ns = f"{self.prefix}c{n}"
        ip = f"{self.subnet}.{10 + n}"
        mac = mac or f"02:0e:{n:02x}:a1:b2:c3"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("link", "set", "lo", "up", ns=ns)
        _ip(
            "link",
            "add",
            f"vc{n}",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
            ns=self.station,
        )
        _ip("link", "set", f"vc{n}", "master", "br0", "up", ns=self.station)
        _ip("link", "set", "eth0", "address", mac, "multicast", "on", "up", ns=ns)
        _ip("addr", "add", f"{ip}/24", "dev", "eth0", ns=ns)
        _ip("route", "add", "224.0.0.0/4", "dev", "eth0", ns=ns)
        return ns, ip, mac

    def responder(self, mode: str, name: str = "Gate-Cam", replay: Path | None = None) -> Responder:
        """A simulated device in its own namespace, ready when this returns."""
        ns, ip, mac = self.add_host()
        log = self.tmp / f"responder-{ns}.jsonl"
        cmd = [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            str(HERE / "onvif_sim.py"),
            mode,
            "--ip",
            ip,
            "--name",
            name,
            "--log",
            str(log),
        ]
        if replay is not None:
            cmd += ["--replay", str(replay)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(proc)
        deadline = time.monotonic() + 20
        while not (log.exists() and "ready" in log.read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                raise RuntimeError(f"responder {mode} in {ns} did not start: {err}")
            time.sleep(0.05)
        return Responder(ns, ip, mac, log)

    def popen(self, ns: str, cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        """A process in ``ns`` that the lab stops at the end."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        """Stop every process and delete every namespace (also after a failure)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if proc.stderr:
                proc.stderr.close()
        for ns in reversed(self.namespaces):
            pids = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", ns, check=False)
        self.namespaces.clear()


class Responder:
    """A running simulated device: where it lives and what it received."""

    def __init__(self, ns: str, ip: str, mac: str, log: Path) -> None:
        self.ns, self.ip, self.mac, self.log = ns, ip, mac, log

    def lines(self) -> list[dict[str, Any]]:
        """Everything it logged: ready, each datagram received, each reply sent (or not)."""
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.strip()]

    def received(self) -> list[dict[str, Any]]:
        """The datagrams that reached it on 239.255.255.250:3702."""
        return [x for x in self.lines() if "data" in x]

    def story(self, since: float = 0.0) -> str:
        """What it received and sent since ``since`` (time.time()), for a failing test."""
        events = [x for x in self.lines() if x.get("t", 0.0) >= since]
        got = sum(1 for x in events if "data" in x)
        sent = [x["sent"] for x in events if "sent" in x]
        errors = [x["send_error"] for x in events if "send_error" in x]
        first = min((x["t"] for x in events if "data" in x), default=None)
        last = max((x["t"] for x in events if "sent" in x), default=None)
        mids = [message_id(bytes.fromhex(x["data"])) for x in events if "data" in x]
        answered = sorted({(x.get("re"), tuple(x.get("to", ()))) for x in events if "sent" in x})
        when = (
            f", received at +{first - since:.2f}s, last sent at +{last - since:.2f}s"
            if first is not None and last is not None and since
            else ""
        )
        return (
            f"{self.ns} {self.ip}: received {got} {mids}, sent {len(sent)} ({sum(sent)} B)"
            f" {answered}{when}"
        ) + (f", send errors {errors[:3]}" if errors else "")


@contextlib.contextmanager
def onvif_lab(tmp: Path) -> Iterator[OnvifLab]:
    """:class:`OnvifLab` as a context manager."""
    with OnvifLab(tmp) as lab:
        yield lab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "mode",
        choices=["camera", "wrong-relates", "garbage", "flood", "bomb", "huge-scope", "replay"],
    )
    parser.add_argument("--ip", required=True)
    parser.add_argument("--name", default="Gate-Cam")
    parser.add_argument("--log", required=True)
    parser.add_argument("--replay")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    respond(parser.parse_args())


if __name__ == "__main__":
    main()
