"""What a check is asked (Target) and what it found (ProbeResult): the words the
probes, the sweep and the station share; pure."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554}


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one check: reachable or not, how, and why."""

    reachable: bool
    method: str
    rtt_ms: float | None
    reason: str


STREAM_METHODS = ("tcp", "http", "https", "rtsp")


@dataclass(frozen=True)
class Target:
    """What to check for one camera in this sweep."""

    id: str
    ip: str
    method: str  # icmp, tcp, both, http, https or rtsp
    port: int  # for tcp (and both's fallback), http, https, rtsp
    timeout: float  # for the TCP-based methods
    icmp_timeout: float
    icmp_count: int = 1
    path: str = "/"  # for http and https
    interval: float = 60  # seconds between scheduled checks of this camera
