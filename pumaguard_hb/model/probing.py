"""What a check is asked (Target) and what it found (ProbeResult): the words the
probes, the sweep and the station share; pure."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "stream": 554}


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one check: reachable or not, how, and why."""

    reachable: bool
    method: str
    rtt_ms: float | None
    reason: str
    step: str | None = None  # stream: the last step that succeeded ("" none, "RTP" all)
    first_packet_ms: float | None = None  # stream: from connect to the first RTP packet


#: the methods checked over one TCP connection each (not the ``stream`` method: it has its
#: own limit, camera_heartbeat_stream_concurrency)
STREAM_METHODS = ("tcp", "http", "https", "rtsp")


@dataclass(frozen=True)
class Target:
    """What to check for one camera in this sweep."""

    id: str
    ip: str
    method: str  # icmp, tcp, both, http, https, rtsp or stream
    port: int  # for tcp (and both's fallback), http, https, rtsp, stream
    timeout: float  # for the TCP-based methods and stream
    icmp_timeout: float
    icmp_count: int = 1
    path: str = "/"  # for http and https
    interval: float = 60  # seconds between scheduled checks of this camera
    url: str = field(default="", repr=False)  # stream: rtsp://... (may hold credentials)
    username: str = ""  # stream
    password: str = field(default="", repr=False)  # stream
