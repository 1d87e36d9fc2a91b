"""ONVIF WS-Discovery: find the IP cameras on the camera network (docs/discovery.md).

One WS-Discovery ``Probe`` for ``dn:NetworkVideoTransmitter`` goes to the multicast group
239.255.255.250:3702; devices answer with a unicast ``ProbeMatches``. Nothing else is ever
sent, and nothing that arrives is answered. Every reply is hostile until proven otherwise:
bounded in size and number, refused when it holds a DOCTYPE or an ENTITY (no entity
expansion, no external DTD), matched to our MessageID, and only ``ProbeMatch`` elements
whose Types name the ONVIF ``NetworkVideoTransmitter`` (any prefix) are kept.

Used by ``pumaguard-hb discover`` (the CLI runs the probe itself) and by the daemon's
optional periodic discovery (:class:`Discoveries`). The standard library only.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import logging
import re
import socket
import struct
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from pumaguard_hb.model.camera import Camera, normalize_ip
from pumaguard_hb.model.errors import HeartbeatError, InvalidValue
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.model.station import Station

log = logging.getLogger(__name__)

GROUP = "239.255.255.250"
PORT = 3702
DEFAULT_TIMEOUT = 3.0  # seconds to collect replies (WS-Discovery: devices wait up to 0.5 s)
MAX_DATAGRAM = 32 * 1024  # bytes; a real ProbeMatches is 1-4 KiB: larger ones are dropped
MAX_TOTAL = 4 * 1024 * 1024  # bytes parsed per probe; beyond that, replies are dropped unread
RECEIVE_BUFFER = 1024 * 1024  # bytes of socket buffer asked for
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux (asm-generic, mips, ppc): 33
MAX_DATAGRAMS = 1024  # datagrams read per probe (the rest waits in the kernel, then dies)
MAX_DEVICES = 64  # devices kept per probe
MAX_XADDRS = 4  # service URLs kept per device
MAX_URL = 256  # characters of one URL or endpoint address
WAIT_SLICE = 0.25  # seconds between looks at the cancel event while waiting for replies
MAX_SCOPE = 64  # characters of a name, hardware or location (after decoding)

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSA_2005 = "http://www.w3.org/2005/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
DN = "http://www.onvif.org/ver10/network/wsdl"
ONVIF_TYPE = (DN, "NetworkVideoTransmitter")
PROBE_ACTION = WSD + "/Probe"
MATCHES_ACTION = WSD + "/ProbeMatches"
DISCOVERY_TO = "urn:schemas-xmlsoap-org:ws:2005:04:discovery"
SCOPE_PREFIX = "onvif://www.onvif.org/"

_FORBIDDEN = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


class DiscoveryError(HeartbeatError):
    """The probe could not be sent (no such interface, no route for multicast, ...)."""


@dataclass
class Device:
    """One ONVIF device that answered our Probe."""

    ip_address: str
    endpoint: str = ""
    xaddrs: list[str] = field(default_factory=list)
    name: str = ""
    hardware: str = ""
    location: str = ""
    mac_address: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The device as JSON (``discover --json`` and ``status``)."""
        return asdict(self)


def new_message_id() -> str:
    """A fresh ``urn:uuid:`` MessageID."""
    return f"urn:uuid:{uuid.uuid4()}"


def build_probe(message_id: str) -> bytes:
    """The one message we ever send: a SOAP 1.2 WS-Discovery Probe for ONVIF video devices."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{SOAP}" xmlns:a="{WSA}" xmlns:d="{WSD}" xmlns:dn="{DN}">'
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">{PROBE_ACTION}</a:Action>'
        f"<a:MessageID>{message_id}</a:MessageID>"
        f'<a:To s:mustUnderstand="1">{DISCOVERY_TO}</a:To>'
        "</s:Header>"
        "<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>"
        "</s:Envelope>"
    ).encode()


# -- parsing a reply -----------------------------------------------------------------------


def _clean(text: str, limit: int) -> str:
    """Printable characters only (control characters dropped), stripped, at most ``limit``."""
    return "".join(ch for ch in text if ch.isprintable()).strip()[:limit]


class _Scope:
    """The namespace prefixes in scope at an element: those it declares, then its parent's.

    An element that declares nothing shares its parent's scope, one that declares some
    links to it: never a copy of the prefixes in scope, so parsing stays linear in the size
    of a reply (a copy per element was quadratic: 1,000 nested elements each declaring a
    prefix copied half a million entries). A lookup walks up the declaring elements.
    """

    __slots__ = ("declared", "parent")

    def __init__(self, declared: dict[str, str], parent: _Scope | None = None) -> None:
        self.declared = declared
        self.parent = parent

    def get(self, prefix: str) -> str | None:
        """The namespace URI of ``prefix`` here, or None when it is not declared."""
        scope: _Scope | None = self
        while scope is not None:
            uri = scope.declared.get(prefix)
            if uri is not None:
                return uri
            scope = scope.parent
        return None


NO_SCOPE = _Scope({})


def _parse_xml(data: bytes) -> tuple[ET.Element, dict[int, _Scope]] | None:
    """The element tree and, for each element, the namespace prefixes in scope there.

    None for anything that is not plain UTF-8 XML without a DOCTYPE or ENTITY: such a
    reply is refused before the parser sees it, so no entity is ever expanded.
    """
    if len(data) > MAX_DATAGRAM or b"\0" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _FORBIDDEN.search(text):
        return None
    scopes: dict[int, _Scope] = {}
    stack: list[_Scope] = [NO_SCOPE]
    pending: dict[str, str] = {}
    root: ET.Element | None = None
    try:
        for event, item in ET.iterparse(io.BytesIO(data), events=("start", "end", "start-ns")):
            if event == "start-ns":
                prefix, uri = item
                pending[str(prefix)] = str(uri)
            elif event == "start":
                here = _Scope(pending, stack[-1]) if pending else stack[-1]
                pending = {}
                stack.append(here)
                scopes[id(item)] = here
                if root is None:
                    root = item
            else:
                stack.pop()
    except (ET.ParseError, ValueError, RecursionError):
        return None
    return (root, scopes) if root is not None else None


def _qnames(text: str, ns: _Scope) -> set[tuple[str, str]]:
    """The (namespace, local name) pairs of a whitespace-separated list of QNames."""
    out: set[tuple[str, str]] = set()
    for token in text.split()[:32]:
        prefix, _, local = token.rpartition(":")
        uri = ns.get(prefix)
        if uri is not None:
            out.add((uri, local))
    return out


def _find(elem: ET.Element, *names: tuple[tuple[str, ...], str]) -> ET.Element | None:
    """The first descendant path of (namespaces, local name) steps under ``elem``."""
    here: ET.Element | None = elem
    for uris, local in names:
        if here is None:
            return None
        here = next((c for c in here if c.tag in {f"{{{u}}}{local}" for u in uris}), None)
    return here


def _urls(text: str) -> list[str]:
    out: list[str] = []
    for token in text.split()[:32]:
        if len(token) > MAX_URL or not token.isprintable():
            continue
        try:
            parts = urlsplit(token)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            continue
        if parts.scheme in ("http", "https") and parts.hostname and token not in out:
            out.append(token)
        if len(out) >= MAX_XADDRS:
            break
    return out


def _scopes(text: str) -> dict[str, str]:
    """name, hardware and location from ``onvif://www.onvif.org/<kind>/<value>`` scopes."""
    found: dict[str, str] = {}
    for token in text.split()[:64]:
        if not token.startswith(SCOPE_PREFIX):
            continue
        # cut before decoding: a long value is shortened, never decoded whole
        kind, _, value = token[len(SCOPE_PREFIX) : len(SCOPE_PREFIX) + 4 * MAX_SCOPE].partition("/")
        if kind in ("name", "hardware", "location") and value and kind not in found:
            cleaned = _clean(unquote(value, errors="replace").replace("/", " / "), MAX_SCOPE)
            if cleaned:
                found[kind] = cleaned
    return found


def parse_reply(data: bytes, message_id: str, source_ip: str) -> list[Device]:
    """The ONVIF video devices in one reply datagram to our Probe ``message_id``; [] for
    anything else (garbage, another probe's reply, another kind of device, a hostile reply)."""
    parsed = _parse_xml(data)
    if parsed is None:
        return []
    root, ns_at = parsed
    if root.tag != f"{{{SOAP}}}Envelope":
        return []
    wsa = (WSA, WSA_2005)
    relates = _find(root, ((SOAP,), "Header"), (wsa, "RelatesTo"))
    if relates is None or (relates.text or "").strip() != message_id:
        return []
    matches = _find(root, ((SOAP,), "Body"), ((WSD,), "ProbeMatches"))
    if matches is None:
        return []
    devices: list[Device] = []
    for match in matches:
        if match.tag != f"{{{WSD}}}ProbeMatch" or len(devices) >= MAX_DEVICES:
            continue
        types = _find(match, ((WSD,), "Types"))
        if types is None or ONVIF_TYPE not in _qnames(
            types.text or "", ns_at.get(id(types), NO_SCOPE)
        ):
            continue
        address = _find(match, (wsa, "EndpointReference"), (wsa, "Address"))
        xaddrs = _find(match, ((WSD,), "XAddrs"))
        scopes = _find(match, ((WSD,), "Scopes"))
        info = _scopes(scopes.text or "") if scopes is not None else {}
        devices.append(
            Device(
                ip_address=source_ip,
                endpoint=_clean(address.text or "", MAX_URL) if address is not None else "",
                xaddrs=_urls(xaddrs.text or "") if xaddrs is not None else [],
                name=info.get("name", ""),
                hardware=info.get("hardware", ""),
                location=info.get("location", ""),
            )
        )
    return devices


# -- the kernel's neighbour table ----------------------------------------------------------


def neighbour_macs(path: Path = Path("/proc/self/net/arp")) -> dict[str, str]:
    """IPv4 address → MAC of the complete entries of the kernel's ARP table (this process's
    network namespace; /proc/self/net, not /proc/net, is what the unit's ProcSubset=pid
    leaves visible)."""
    macs: dict[str, str] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()[1:]
    except OSError:
        return macs
    for line in lines:
        cols = line.split()
        if len(cols) < 4:
            continue
        ip, flags, mac = cols[0], cols[2], cols[3].lower()
        try:
            complete = int(flags, 16) & 0x2
        except ValueError:
            continue
        if (
            complete
            and mac != "00:00:00:00:00:00"
            and re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac)
        ):
            macs[ip] = mac
    return macs


# -- sending the probe and collecting replies ----------------------------------------------


def _socket(interface: str | None) -> socket.socket:
    """A UDP socket for the probe: TTL 1, no loopback of our own probe, on ``interface``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        # room for a burst of replies: past net.core.rmem_max where allowed (CAP_NET_ADMIN)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        bind = "0.0.0.0"
        if interface:
            try:
                addr = ipaddress.IPv4Address(interface)
            except ValueError:
                addr = None
            if addr is not None:
                bind = str(addr)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, addr.packed)
            else:
                if not _IFNAME.match(interface):
                    raise DiscoveryError(f"{interface!r} is not an interface name")
                try:
                    index = socket.if_nametoindex(interface)
                except OSError:
                    raise DiscoveryError(f"no network interface {interface!r}") from None
                mreqn = struct.pack("4s4si", bytes(4), bytes(4), index)  # struct ip_mreqn
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
                # unicast replies only from that interface (Linux >= 5.7 unprivileged)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind((bind, 0))
    except OSError as err:
        sock.close()
        raise DiscoveryError(f"cannot open the discovery socket: {err.strerror or err}") from None
    except DiscoveryError:
        sock.close()
        raise
    return sock


def probe(
    timeout: float = DEFAULT_TIMEOUT,
    interface: str | None = None,
    group: tuple[str, int] = (GROUP, PORT),
    cancel: threading.Event | None = None,
) -> list[Device]:
    """Send one Probe and return the ONVIF video devices that answered within ``timeout``,
    with the MAC from the kernel's neighbour table where it knows it. Blocking (the daemon
    runs it in a thread and sets ``cancel`` to end it early, within WAIT_SLICE seconds);
    DiscoveryError when the probe cannot be sent."""
    message_id = new_message_id()
    sock = _socket(interface)
    devices: dict[str, Device] = {}
    seen = dropped = total = 0
    try:
        try:
            sock.sendto(build_probe(message_id), group)
        except OSError as err:
            raise DiscoveryError(
                f"cannot send the probe to {group[0]}:{group[1]}: {err.strerror or err}"
                " (no route for multicast? name the camera network with --interface)"
            ) from None
        deadline = time.monotonic() + timeout
        while seen < MAX_DATAGRAMS and not (cancel and cancel.is_set()):
            left = deadline - time.monotonic()
            # a timeout, not select(): the daemon's descriptors may be past FD_SETSIZE; past
            # the deadline only what is queued already (a busy machine may read it late)
            sock.settimeout(max(0.0, min(left, WAIT_SLICE)))
            try:
                data, _anc, flags, source = sock.recvmsg(MAX_DATAGRAM + 1)
            except (TimeoutError, BlockingIOError):
                if left <= 0:
                    break
                continue
            except OSError:  # e.g. an ICMP error queued on the socket: counted, so bounded
                seen += 1
                continue
            seen += 1
            if len(data) > MAX_DATAGRAM or flags & socket.MSG_TRUNC or total >= MAX_TOTAL:
                dropped += 1
                continue
            try:  # a spoofed 0.0.0.0 or broadcast source is no camera (and no text to show)
                source_ip = normalize_ip(str(source[0]))
            except InvalidValue:
                dropped += 1
                continue
            total += len(data)
            found = parse_reply(data, message_id, source_ip)
            if not found:
                dropped += 1
            for dev in found:
                key = dev.endpoint or dev.ip_address
                if key not in devices and len(devices) < MAX_DEVICES:
                    devices[key] = dev
    finally:
        sock.close()
    if dropped:
        log.debug("discovery: %d of %d replies ignored", dropped, seen)
    macs = neighbour_macs()
    for dev in devices.values():
        dev.mac_address = macs.get(dev.ip_address, "")
    return sorted(devices.values(), key=lambda d: (_ip_key(d.ip_address), d.endpoint))


def _ip_key(ip: str) -> tuple[int, int]:
    try:
        return (0, int(ipaddress.ip_address(ip)))
    except ValueError:
        return (1, 0)


# -- the daemon's view: what periodic discovery found --------------------------------------


def hostname_for(dev: Device) -> str:
    """A camera hostname for a discovered device: its ONVIF name, sanitised, else onvif-IP."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", dev.name)
    name = re.sub(r"[-.]{2,}", "-", name).strip("-.")[:63]
    return name or f"onvif-{dev.ip_address}"


def is_known(dev: Device, cameras: Iterable[dict[str, Any]]) -> bool:
    """True when a camera of the station has the device's IP or MAC address."""
    for cam in cameras:
        if dev.ip_address and cam.get("ip_address") == dev.ip_address:
            return True
        if dev.mac_address and str(cam.get("mac_address") or "").lower() == dev.mac_address:
            return True
    return False


@dataclass
class Discoveries:
    """What the daemon's periodic discovery found: devices that are not known cameras."""

    last_run: float | None = None
    problem: str = ""
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # by IP
    runs: int = 0

    def info(self, interval: float, add: bool) -> dict[str, Any]:
        """The ``discovered`` part of ``status``."""
        return {
            "interval_s": interval,
            "add": add,
            "runs": self.runs,
            "last_run": self.last_run,
            "problem": self.problem or None,
            "devices": list(self.devices.values()),
        }


IDLE_CHECK = 5.0  # seconds between looks at the settings while discovery is off


class Learner(Protocol):
    """What periodic discovery needs of the monitor: what it found so far, the station, the
    settings, and adding a camera (:class:`pumaguard_hb.monitor.Monitor` is one)."""

    @property
    def discoveries(self) -> Discoveries: ...
    @property
    def station(self) -> Station: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def cameras(self) -> dict[str, Camera]: ...
    async def add_camera(self, hostname: str, ip: str, mac: str | None) -> Camera: ...


async def run_periodic(monitor: Learner) -> None:
    """The daemon's periodic discovery: every ``camera_heartbeat_discovery_interval`` seconds
    (0: off), one probe in a thread; a device that is not a known camera is logged once and
    listed in ``status``, and added as a camera when ``camera_heartbeat_discovery_add`` is on."""
    import asyncio

    found = monitor.discoveries
    while True:
        s = monitor.settings
        if not s.discovery_interval:
            found.devices.clear()
            await asyncio.sleep(IDLE_CHECK)
            continue
        if found.last_run is not None and time.time() - found.last_run < s.discovery_interval:
            await asyncio.sleep(min(IDLE_CHECK, s.discovery_interval))
            continue
        found.last_run = time.time()
        found.runs += 1
        cancel = threading.Event()
        try:
            devices = await asyncio.to_thread(
                probe, DEFAULT_TIMEOUT, s.discovery_interface or None, (GROUP, PORT), cancel
            )
        except DiscoveryError as err:
            if found.problem != str(err):
                log.error("discovery: %s", err)
            found.problem = str(err)
            continue
        finally:
            cancel.set()  # a stop (cancellation) ends the thread at once, not after the timeout
        if found.problem:
            log.info("discovery works again")
        found.problem = ""
        cameras = [c.to_dict() for c in monitor.cameras.values()]
        current: dict[str, dict[str, Any]] = {}
        for dev in devices:
            if is_known(dev, cameras):
                continue
            if s.discovery_add and await _add(monitor, dev, dev.ip_address not in found.devices):
                continue
            if dev.ip_address not in found.devices and not s.discovery_add:
                log.warning(
                    "discovery: new ONVIF device %s (%s) at %s, not a known camera; "
                    "pumaguard-hb discover --add adds it",
                    dev.name or "without a name",
                    dev.mac_address or "MAC unknown",
                    dev.ip_address,
                )
            current[dev.ip_address] = dev.to_dict()
        found.devices = current


async def _add(monitor: Learner, dev: Device, first: bool) -> bool:
    """Add ``dev`` as a camera; False (said once per device) when the daemon refuses it."""
    from pumaguard_hb.model.station import MAX_LEARNED

    if len(monitor.station) >= MAX_LEARNED:  # a hostile network must not grow the list forever
        if first:
            log.warning(
                "discovery: not adding %s at %s: the station has %d cameras already",
                dev.name,
                dev.ip_address,
                MAX_LEARNED,
            )
        return False
    try:
        cam = await monitor.add_camera(hostname_for(dev), dev.ip_address, dev.mac_address or None)
    except HeartbeatError as err:
        if first:
            log.warning("discovery: cannot add %s at %s: %s", dev.name, dev.ip_address, err)
        return False
    log.info(
        "discovery: added ONVIF device %s at %s as camera %s", dev.name, dev.ip_address, cam.id
    )
    return True
