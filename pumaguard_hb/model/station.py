"""The station: every camera the daemon watches, in one model, changed only by transitions.

The model is the one place that holds the truth about a camera. Each camera is a
:class:`~.camera.Spec` (what the station says it is) and an :class:`~.camera.Observed`
(what the daemon saw). The transitions below are pure (no I/O, the time is an
argument) and each one says which side wins for each field:

==================  ======================================  =======================================
transition          spec (hostname, IP, MAC, overrides)     observed (status, last_seen, counters)
==================  ======================================  =======================================
``observe``         unchanged; a result for an old address  the daemon's: the thresholds decide the
                    method or port is dropped               status, every contact sets last_seen
``dhcp``            IP and hostname from the lease (an      add/old: connected, last_seen now;
                    empty or ``unknown`` name never         del: disconnected, last_seen kept
                    replaces a known one)
``listing``         the outside list wins: its cameras,     the daemon's, for a camera it observed
                    its fields; cameras it lacks are gone   in this run; else the report is adopted
``add``/``remove``  as given by hand                        a new camera: disconnected, never seen
==================  ======================================  =======================================

Where the list comes from and where observations go is a store's business
(:mod:`.store`); the monitor (:mod:`.monitor`) wires the two.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pumaguard_hb.model.camera import (
    CONNECTED,
    DISCONNECTED,
    Camera,
    Observed,
    Spec,
    clean_hostname,
    normalize_ip,
    normalize_mac,
    reported,
    spec_from_entry,
)
from pumaguard_hb.model.checks import MAX_CAMERAS
from pumaguard_hb.model.dhcp import ACTIONS, IGNORED_ACTIONS, is_camera_name
from pumaguard_hb.model.errors import CameraNotFound, Conflict, InvalidValue
from pumaguard_hb.model.probing import DEFAULT_PORTS, ProbeResult, Target
from pumaguard_hb.model.settings import Settings

#: DHCP learns no new camera once the station has this many (a client cycling MAC
#: addresses with a camera-like name would otherwise add cameras without end).
MAX_LEARNED = 256


@dataclass(frozen=True)
class Change:
    """A camera's status changed: what it was, and why it is what it is now."""

    camera: Camera
    old: str | None
    reason: str
    method: str


@dataclass
class ListingOutcome:
    """What a camera list read from outside changed in the model."""

    added: list[Camera] = field(default_factory=list)
    removed: list[Camera] = field(default_factory=list)
    respecced: list[Camera] = field(default_factory=list)  # hostname, IP, MAC or overrides
    duplicates: list[str] = field(default_factory=list)  # ids listed twice (the first counts)


@dataclass(frozen=True)
class DhcpEvent:
    """One lease event from dnsmasq, checked."""

    action: str
    mac: str
    ip: str
    hostname: str  # '' when the client sent none (or ``unknown``)


@dataclass
class DhcpOutcome:
    """What one DHCP event did to the model."""

    event: DhcpEvent | None  # None for the actions dnsmasq sends that are no lease event
    message: str
    camera: Camera | None = None  # the camera it concerns, if it is one
    learned: bool = False  # a camera the model did not have
    spec_changed: bool = False
    change: Change | None = None
    refused: bool = False  # a camera-like device not learned: MAX_LEARNED reached


def check_event(action: str, mac: str, ip: str, hostname: str | None) -> DhcpEvent | None:
    """A dnsmasq event checked (InvalidValue for garbage); None for actions to ignore."""
    if action in IGNORED_ACTIONS:
        return None
    if action not in ACTIONS:
        raise InvalidValue("action", action, "must be add, old or del")
    name = clean_hostname(hostname)
    if name.lower() == "unknown" or name == "*":
        name = ""
    return DhcpEvent(action, normalize_mac(mac), normalize_ip(ip), name)


def target_for(cam: Camera, settings: Settings) -> Target | None:
    """The camera's check: the global settings unless its entry overrides them (or the
    daemon's ``camera_heartbeat_cameras`` does, by MAC: that wins; docs/intervals.md)."""
    ip = cam.probe_ip
    if ip is None:
        return None
    s, o = settings, cam.overrides
    if s.camera_overrides and cam.mac_address:
        o = {**o, **s.overrides_for(cam.mac_address)}
    method = o.get("method", s.method)
    port = o.get("port") or DEFAULT_PORTS.get(method, s.tcp_port)
    timeout = o.get("timeout")
    if method == "stream":  # docs/stream.md: the camera's URL, else rtsp://IP:PORT/PATH
        host = f"[{ip}]" if ":" in ip else ip
        url = o.get("url") or f"rtsp://{host}:{port}{o.get('path', s.stream_path)}"
        # the camera's own user name and password, each, else the station's; credentials
        # in the camera's URL win over the station's
        user = o.get("username", s.stream_username)
        password = o.get("password", s.stream_password)
        own = "username" in o or "password" in o
        if not own and "@" in url.partition("://")[2].split("/", 1)[0]:
            user, password = "", ""
        return Target(
            cam.id,
            ip,
            method,
            port,
            timeout or s.stream_timeout,
            s.icmp_timeout,
            interval=o.get("interval", s.interval),
            url=url,
            username=user,
            password=password,
        )
    return Target(
        cam.id,
        ip,
        method,
        port,
        timeout or s.tcp_timeout,
        timeout or s.icmp_timeout,
        s.icmp_count,
        o.get("path", s.http_path),
        o.get("interval", s.interval),
    )


class Station:
    """Every camera of the station, by id, in the order the station lists them."""

    def __init__(self) -> None:
        self.cameras: dict[str, Camera] = {}

    def __len__(self) -> int:
        return len(self.cameras)

    def connected(self) -> int:
        """How many cameras are connected."""
        return sum(c.status == CONNECTED for c in self.cameras.values())

    # -- a camera list read from outside (the settings file, the web UI) ------------------

    def listing(self, entries: Iterable[Any], now: float) -> ListingOutcome:
        """Take the station's camera list from outside; the daemon keeps what it observed."""
        outcome = ListingOutcome()
        entries = list(itertools.islice(entries, MAX_CAMERAS + 1))
        if len(entries) > MAX_CAMERAS:  # the settings' error says so (docs/security.md)
            return outcome  # nothing changes: the last good list stays
        cameras: dict[str, Camera] = {}
        for entry in entries:
            spec = spec_from_entry(entry)
            if spec is None:
                continue
            if spec.id in cameras:
                outcome.duplicates.append(spec.id)
                continue
            cam = self.cameras.get(spec.id)
            if cam is None:
                cam = Camera(spec, reported(entry))
                outcome.added.append(cam)
            else:
                if cam.spec != spec:
                    cam.spec = spec
                    outcome.respecced.append(cam)
                if not cam.seen.known:  # nothing observed yet: the report is all there is
                    report = reported(entry)
                    if report.status != cam.seen.status:
                        cam.seen.since = None
                    cam.seen.status, cam.seen.last_seen = report.status, report.last_seen
            cameras[spec.id] = cam
        outcome.removed = [c for cid, c in self.cameras.items() if cid not in cameras]
        self.cameras = cameras
        return outcome

    # -- probe results ----------------------------------------------------------------------

    def observe(
        self, target: Target, result: ProbeResult, settings: Settings, now: float, now_iso: str
    ) -> Change | None:
        """Apply one probe result; None when nothing changed state (or it was dropped).

        A result is dropped when the camera is gone or its check is no longer the one
        probed (a DHCP event moved it to a new address mid-sweep, the method or port
        changed): it says nothing about the camera as it is now.
        """
        cam = self.cameras.get(target.id)
        if cam is None:
            return None
        current = target_for(cam, settings)
        if current is None or (current.ip, current.method, current.port, current.url) != (
            target.ip,
            target.method,
            target.port,
            target.url,
        ):
            return None
        seen = cam.seen
        seen.known = True
        seen.checked_at = now
        seen.reason = result.reason
        seen.method = result.method
        seen.step, seen.first_packet_ms = result.step, result.first_packet_ms
        if result.reachable:
            seen.successes, seen.fails = seen.successes + 1, 0
            seen.rtt_ms = result.rtt_ms
            seen.last_seen = now_iso  # a contact is a contact, even before recovery counts
            up = seen.status == CONNECTED or seen.successes >= settings.recovery_threshold
            new = CONNECTED if up else DISCONNECTED
        else:
            seen.fails, seen.successes = seen.fails + 1, 0
            down = seen.status == DISCONNECTED or seen.fails >= settings.failure_threshold
            new = DISCONNECTED if down else CONNECTED
        return self._set_status(cam, new, now, result.reason, result.method)

    def _set_status(
        self, cam: Camera, new: str, now: float, reason: str, method: str
    ) -> Change | None:
        seen = cam.seen
        if new == seen.status:
            if seen.since is None:
                seen.since = now
            return None
        old = seen.status
        seen.status, seen.since = new, now
        return Change(cam, old, reason, method)

    # -- DHCP events ------------------------------------------------------------------------

    def dhcp(
        self,
        event: DhcpEvent,
        patterns: Iterable[str],
        now: float,
        now_iso: str,
        max_learned: int = MAX_LEARNED,
    ) -> DhcpOutcome:
        """Apply one lease event: learn a camera, or update a known one."""
        e = event
        cam = self.cameras.get(e.mac)
        if cam is None:
            if e.action == "del" or not is_camera_name(e.hostname, patterns):
                msg = f"dhcp {e.action} {e.mac} {e.ip} {e.hostname or '-'}: not a camera, ignored"
                return DhcpOutcome(e, msg)
            if len(self.cameras) >= max_learned:
                msg = (
                    f"dhcp {e.action}: {e.hostname} ({e.ip}) {e.mac} not learned: the station "
                    f"already has {len(self.cameras)} cameras (at most {max_learned} by DHCP)"
                )
                return DhcpOutcome(e, msg, refused=True)
            cam = Camera(
                Spec(e.mac, e.hostname, e.ip, e.mac),
                Observed(CONNECTED, now_iso, known=True, since=now, reason="dhcp", method="dhcp"),
            )
            self.cameras[cam.id] = cam
            msg = f"dhcp {e.action}: new camera {e.hostname} ({e.ip}) {e.mac}"
            return DhcpOutcome(e, msg, cam, learned=True, spec_changed=True)
        cam.seen.known = True
        if e.action == "del":
            msg = f"dhcp del: {cam.hostname or e.mac} ({e.ip}) released its lease"
            change = self._set_status(cam, DISCONNECTED, now, "released its DHCP lease", "dhcp")
            return DhcpOutcome(e, msg, cam, change=change)
        spec = cam.spec
        hostname = e.hostname or spec.hostname
        changed = (spec.ip_address, spec.hostname) != (e.ip, hostname)
        if changed:
            cam.spec = Spec(spec.id, hostname, e.ip, spec.mac_address, spec.overrides)
        cam.seen.last_seen = now_iso
        cam.seen.fails = 0
        msg = f"dhcp {e.action}: {hostname or e.mac} ({e.ip}) {e.mac}"
        change = self._set_status(cam, CONNECTED, now, f"DHCP {e.action} from {e.ip}", "dhcp")
        return DhcpOutcome(e, msg, cam, spec_changed=changed, change=change)

    # -- by hand ------------------------------------------------------------------------------

    def add(self, spec: Spec) -> Camera:
        """Add a camera by hand; Conflict if its id (or, without a MAC, its IP) is taken,
        or when the station has MAX_CAMERAS cameras."""
        if len(self.cameras) >= MAX_CAMERAS:
            raise Conflict(f"the station has {len(self.cameras)} cameras: at most {MAX_CAMERAS}")
        for other in self.cameras.values():
            if other.id == spec.id or (
                other.ip_address == spec.ip_address and not spec.mac_address
            ):
                what = spec.id.split(":")[0] if ":" in spec.id[:5] else "MAC"
                raise Conflict(f"camera {other.hostname or other.id} already has that {what}")
        cam = Camera(spec, Observed())
        self.cameras[cam.id] = cam
        return cam

    def remove(self, cid: str) -> Camera:
        """Take camera ``cid`` out of the model."""
        try:
            return self.cameras.pop(cid)
        except KeyError:
            raise CameraNotFound(cid) from None

    def find(self, ref: str) -> Camera:
        """The camera named by id, MAC, IP or hostname; CameraNotFound otherwise."""
        if ref in self.cameras:
            return self.cameras[ref]
        for normalize, attr in ((normalize_mac, "mac_address"), (normalize_ip, "ip_address")):
            try:
                wanted = normalize(ref)
            except InvalidValue:
                continue
            for cam in self.cameras.values():
                if getattr(cam, attr) == wanted:
                    return cam
        named = [c for c in self.cameras.values() if c.hostname.lower() == ref.lower()]
        if len(named) == 1:
            return named[0]
        if named:
            raise Conflict(f"{len(named)} cameras are called {ref!r}; name one by MAC or IP")
        raise CameraNotFound(ref)

    def targets(self, settings: Settings, ids: frozenset[str] | None = None) -> list[Target]:
        """What to probe for the given cameras (all when None)."""
        out = []
        for cam in self.cameras.values():
            if ids is None or cam.id in ids:
                target = target_for(cam, settings)
                if target is not None:
                    out.append(target)
        return out
