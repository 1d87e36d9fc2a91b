"""Prometheus metrics: the text exposition format, and an optional small HTTP listener.

:func:`render` is a pure function of the ``status`` result (plus the per-camera
counts of state changes and the history's uptime figures), so ``pumaguard-hb
metrics`` (the ``metrics`` command) and ``GET /metrics`` give the same text.

The listener (``camera_heartbeat_metrics_listen: "127.0.0.1:9469"``, off by
default) is a bounded asyncio server: a request head of at most
:data:`MAX_REQUEST` bytes within :data:`HEAD_TIMEOUT` seconds, at most
:data:`MAX_CLIENTS` connections at once (the longest idle one is cut for a
newcomer), one response per connection; each body is built once per sweep or
change (:class:`Freshness`) and served from memory in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pumaguard_hb.model.camera import iso_seconds
from pumaguard_hb.model.events import Listener, PowerEvent, PowerListener, StateChange
from pumaguard_hb.model.power import INTERRUPTED, NOT_RECOVERED, PLUG_FAILED, RECOVERED
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.model.station import Station
from pumaguard_hb.outputs.exposition import (  # escape_label, station_label: importable here
    Family,
    escape_label,
    station_label,
)
from pumaguard_hb.outputs.page import CONTENT_TYPE as PAGE_CONTENT_TYPE
from pumaguard_hb.outputs.page import HEADERS as PAGE_HEADERS
from pumaguard_hb.probes.icmp import IcmpAccess
from pumaguard_hb.stores.history import History

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST = 8192  # bytes of a request head
HEAD_TIMEOUT = 5.0  # seconds for the whole request head to arrive (a slow drip is cut)
ANSWER_TIMEOUT = 30.0  # seconds for the answer to be built (once per sweep) and to leave
MAX_CLIENTS = 16  # connections at once; when full the longest idle one is cut
MAX_AGE = 60.0  # seconds a body is served without any sweep or change (monitoring off)
OUTCOMES = (RECOVERED, NOT_RECOVERED, INTERRUPTED, PLUG_FAILED)  # of a power cycle
__all__ = [  # escape_label and station_label live in exposition.py
    "CONTENT_TYPE", "Freshness", "Measured", "MetricsServer", "Powered", "escape_label",
    "render", "split_listen", "station_label",
]  # fmt: skip


class Powered(Protocol):
    """What the figures read of power cycling (devices/power_cycle.py's ``PowerCycles``)."""

    @property
    def counts(self) -> dict[tuple[str, str], int]: ...  # (camera id, outcome): since start
    @property
    def listeners(self) -> list[PowerListener]: ...
    def view(self, cid: str) -> dict[str, Any] | None: ...


def render(
    status: dict[str, Any], changes: dict[str, int] | None = None, power: Powered | None = None
) -> str:
    """The exposition text for one ``status`` result.

    ``changes`` counts state changes per camera id since the daemon started.
    Cameras may carry ``uptime_24h``/``uptime_7d`` and ``observed_24h``/``observed_7d``
    (percent) from the history, and ``power`` (the camera's power cycles, status.py).
    ``power`` is the daemon's power cycling (None: it runs without).
    """
    changes = changes or {}
    d = status.get("daemon") or {}
    fam: dict[str, Family] = {}

    def family(name: str, kind: str, help_text: str) -> Family:
        return fam.setdefault(name, Family(name, kind, help_text))

    family("build_info", "gauge", "Version of pumaguard-heartbeat (always 1).").add(
        1, version=d.get("version", "")
    )
    if isinstance(d.get("started_at"), int | float):
        family("start_time_seconds", "gauge", "When the daemon started (Unix time).").add(
            d["started_at"]
        )
    family("monitoring_enabled", "gauge", "1 when camera_heartbeat_enabled is true.").add(
        bool(d.get("enabled", True))
    )
    family("interval_seconds", "gauge", "Seconds between scheduled sweeps.").add(
        float(d.get("interval_s") or 0)
    )
    family(
        "settings_error", "gauge", "1 while the settings file does not parse or is invalid."
    ).add(bool(d.get("settings_error")))
    family("settings_write_error", "gauge", "1 while the settings file cannot be written.").add(
        bool(d.get("write_error"))
    )
    family("settings_writes_total", "counter", "Writes of the settings file since start.").add(
        int(d.get("writes") or 0)
    )
    family("sweeps_total", "counter", "Sweeps (checks of the cameras) since start.").add(
        int(d.get("sweeps") or 0)
    )
    last = d.get("last_sweep") or {}
    if last:
        family("sweep_duration_seconds", "gauge", "How long the last sweep took.").add(
            float(last.get("duration_s") or 0)
        )
        family("last_sweep_timestamp_seconds", "gauge", "When the last sweep started.").add(
            float(last.get("started_at") or 0)
        )
    if isinstance(d.get("icmp_mode"), str):
        family("icmp_available", "gauge", "1 when ICMP echo may be sent, 0 when not.").add(
            d["icmp_mode"] != "unavailable"
        )
    if isinstance(d.get("method"), str):
        family("method_info", "gauge", "The configured and the effective method (always 1).").add(
            1, method=d["method"], effective_method=d.get("effective_method") or ""
        )
    history = d.get("history")
    if isinstance(history, dict):
        family("history_available", "gauge", "1 when state changes are being recorded.").add(
            bool(history.get("available"))
        )
    cams = [c for c in status.get("cameras") or [] if isinstance(c, dict)]
    connected = sum(c.get("status") == "connected" for c in cams)
    cameras = family("cameras", "gauge", "Cameras known, by status.")
    cameras.add(connected, status="connected")
    cameras.add(len(cams) - connected, status="disconnected")
    up = family("camera_up", "gauge", "1 when the camera is connected, 0 when disconnected.")
    seen = family(
        "camera_last_seen_timestamp_seconds", "gauge", "Last successful contact (Unix time)."
    )
    rtt = family("camera_rtt_seconds", "gauge", "Round-trip time of the last successful probe.")
    first = family(
        "camera_stream_first_packet_seconds",
        "gauge",
        "Stream method: connect to the first RTP packet in the last check (none: absent).",
    )
    total = family(
        "camera_state_changes_total", "counter", "Changes of the camera's status since start."
    )
    since = family(
        "camera_state_since_timestamp_seconds", "gauge", "When the current status began."
    )
    ratio = family(
        "camera_uptime_ratio",
        "gauge",
        "Share of the observed time connected (0-1) over a window, from the history.",
    )
    observed = family(
        "camera_observed_ratio",
        "gauge",
        "Share of the window observed at all (0-1); the rest is unknown, from the history.",
    )
    for c in cams:
        labels = {
            "camera": c.get("id", ""),
            "hostname": c.get("hostname") or "",
            "ip": c.get("ip_address") or "",
        }
        up.add(c.get("status") == "connected", **labels)
        when = iso_seconds(c.get("last_seen"))
        if when is not None:
            seen.add(when, **labels)
        if isinstance(c.get("rtt_ms"), int | float):
            rtt.add(c["rtt_ms"] / 1000.0, **labels)
        if isinstance(c.get("first_packet_ms"), int | float):
            first.add(c["first_packet_ms"] / 1000.0, **labels)
        total.add(changes.get(str(c.get("id")), 0), **labels)
        if isinstance(c.get("since"), int | float):
            since.add(c["since"], **labels)
        for window in ("24h", "7d"):
            value = c.get(f"uptime_{window}")
            if isinstance(value, int | float):
                ratio.add(value / 100.0, window=window, **labels)
            seen_pct = c.get(f"observed_{window}")
            if isinstance(seen_pct, int | float) and not isinstance(seen_pct, bool):
                observed.add(seen_pct / 100.0, window=window, **labels)
    _power(fam, cams, power)
    common = {"station": station_label((d.get("settings") or {}).get("camera_heartbeat_station"))}
    out: list[str] = []
    for f in fam.values():
        if f.samples or f.keep:
            out.extend(f.lines(common))
    return "\n".join(out) + "\n"


def _power(fam: dict[str, Family], cams: list[dict[str, Any]], power: Powered | None) -> None:
    """Power cycles (docs/power-cycle.md): each outcome's count since start, for every camera
    that has a record (0 included) or a count; the cycles of the last 24 h from status."""
    total = fam["power_cycles_total"] = Family(
        "power_cycles_total", "counter", "Power cycles of the camera since start, by outcome.", True
    )
    today = fam["power_cycles_today"] = Family(
        "power_cycles_today", "gauge", "Power cycles of the camera in the last 24 h.", True
    )
    views = {str(c.get("id")): c["power"] for c in cams if isinstance(c.get("power"), dict)}
    for cid, view in views.items():
        if isinstance(view.get("cycles_today"), int):
            today.add(view["cycles_today"], camera=cid)
    if power is None:
        return
    counts = dict(power.counts)
    outcomes = [*OUTCOMES, *sorted({o for _, o in counts} - set(OUTCOMES))]
    for cid in sorted({*views, *(c for c, _ in counts)}):
        for outcome in outcomes:
            total.add(counts.get((cid, outcome), 0), camera=cid, outcome=outcome)


# -- HTTP listener ---------------------------------------------------------------------------


def split_listen(value: str) -> tuple[str | None, int]:
    """``127.0.0.1:9469`` / ``[::1]:9469`` / ``:9469`` (every address) → (host, port)."""
    host, _, port = value.rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host or None), int(port)


class _Sweeps(Protocol):
    @property
    def sweeps(self) -> int: ...


class _Writes(Protocol):
    @property
    def writes(self) -> int: ...


class Measured(Protocol):
    """What the figures read of the monitor (:class:`pumaguard_hb.monitor.Monitor`)."""

    @property
    def listeners(self) -> list[Listener]: ...
    @property
    def history(self) -> History | None: ...
    @property
    def schedule(self) -> _Sweeps: ...
    @property
    def shared(self) -> _Writes: ...
    @property
    def station(self) -> Station: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def problems(self) -> dict[str, str]: ...
    @property
    def icmp(self) -> IcmpAccess: ...
    @property
    def power(self) -> Powered | None: ...


class Freshness:
    """What the served figures depend on, read cheaply (no walk over the cameras).

    :meth:`key` changes when a sweep ends, a camera changes state (a listener counts the
    changes), the camera list, the settings or a problem changes, or the settings file is
    written; the listener builds ``/metrics`` and ``/`` again only then (or after
    :data:`MAX_AGE` seconds), so any number of requests between two sweeps cost one build.
    """

    def __init__(self, monitor: Measured) -> None:
        self.monitor = monitor
        self.changes = 0  # state changes and power events heard
        self._heard: Powered | None = None  # the power cycling listened to
        monitor.listeners.append(self._changed)

    def _changed(self, change: StateChange | PowerEvent) -> None:
        self.changes += 1

    def _power(self) -> int | None:
        """Cycles ended (a cycle that ends without an event changes the figures too); power
        events are counted with the changes. The daemon hands power cycling to the monitor
        after this is made: it is listened to when first seen."""
        power = self.monitor.power
        if power is None:
            return None
        if power is not self._heard:
            power.listeners.append(self._changed)
            self._heard = power
        return sum(power.counts.values())

    def key(self) -> tuple[object, ...]:
        """The figures' version. Objects are compared by identity (see :class:`_Built`)."""
        m = self.monitor
        hist = m.history
        return (
            m.schedule.sweeps,
            self.changes,
            m.shared.writes,
            len(m.station),
            m.station.cameras,
            m.settings,
            tuple(m.problems.items()),
            m.icmp.mode,
            None if hist is None else hist.available,
            self._power(),
        )

    def station(self) -> str:
        """The station label (as :func:`render` gives it)."""
        return station_label(self.monitor.settings.station)


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Keys equal, objects (dicts, settings) by identity: never a walk over the cameras."""
    return len(a) == len(b) and all(
        x is y or (not isinstance(x, dict | Settings) and x == y) for x, y in zip(a, b, strict=True)
    )


@dataclass
class _Built:
    """One body as served: what it was built from, when, and its ETag."""

    key: tuple[object, ...]
    at: float  # monotonic
    body: bytes
    etag: str


class MetricsServer:
    """Serves ``GET /metrics`` with the text from ``source`` (called on the event loop), and
    ``GET /`` with the status page awaited from ``page`` (pumaguard_hb/page.py) when given.

    Each body is built once per version of the figures (:class:`Freshness`; without one,
    once per request) and served from memory until it changes; its ``ETag`` names the
    build, so a client sees that two answers are one build. Connections: at most
    :data:`MAX_CLIENTS`; when full, the one idle the longest (no complete request head
    yet) is cut for the newcomer; a head must arrive whole within :data:`HEAD_TIMEOUT`
    (a client dripping a byte a second is cut), the answer must be built and leave within
    :data:`ANSWER_TIMEOUT`.
    """

    def __init__(
        self,
        source: Callable[[], str],
        page: Callable[[], Awaitable[str]] | None = None,
        freshness: Freshness | None = None,
    ) -> None:
        self.source = source
        self.page = page
        self.freshness = freshness
        self.listen = ""
        self.server: asyncio.Server | None = None
        self.problem: str | None = None
        self.builds = {"metrics": 0, "page": 0}
        self.cut = {"idle": 0, "timeout": 0, "busy": 0}
        self._built: dict[str, _Built] = {}
        self._pending: dict[str, asyncio.Future[_Built]] = {}
        self._clients = 0
        self._idle: dict[asyncio.StreamWriter, None] = {}  # no request head yet, oldest first
        self._nonce = f"{time.time_ns() & 0xFFFFFFFF:x}"

    @property
    def port(self) -> int | None:
        """The port really bound (useful with port 0), or None."""
        if self.server is None or not self.server.sockets:
            return None
        return int(self.server.sockets[0].getsockname()[1])

    async def apply(self, listen: str) -> None:
        """Listen on ``listen`` ("" = off); restarts the listener when it changes."""
        if listen == self.listen and (self.server is not None or not listen or self.problem):
            return
        await self.close()
        self.listen = listen
        self.problem = None
        if not listen:
            return
        try:
            host, port = split_listen(listen)
            self.server = await asyncio.start_server(
                self._serve, host, port, limit=MAX_REQUEST, reuse_address=True
            )
        except (OSError, ValueError) as err:
            self.problem = f"metrics listener on {listen} failed: {err}"
            log.error("%s", self.problem)
            return
        log.info("serving Prometheus metrics on http://%s/metrics", listen)

    async def close(self) -> None:
        """Stop listening (connections in progress end by their own timeout)."""
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)
            self.server = None
        self._built.clear()
        for task in self._pending.values():
            task.cancel()

    # -- the bodies, built once per version --------------------------------------------

    async def body(self, what: str) -> _Built:
        """The body of ``what`` (``metrics`` or ``page``): the cached build while the
        figures are the same, else a new one. Requests meanwhile share the build in
        flight, and a build outlives a client that gave up: the next one gets it."""
        key = self.freshness.key() if self.freshness is not None else (time.monotonic(),)
        built = self._built.get(what)
        if built is not None and _same(built.key, key) and time.monotonic() - built.at < MAX_AGE:
            return built
        task = self._pending.get(what)
        if task is None:
            task = asyncio.ensure_future(self._build(what, key))
            self._pending[what] = task
            task.add_done_callback(lambda t: self._built_done(what, t))
        return await asyncio.shield(task)

    async def _build(self, what: str, key: tuple[object, ...]) -> _Built:
        if what == "page":
            assert self.page is not None
            text = await self.page()  # takes the status before its first await
        else:
            text = self.source() + self._own_figures()
        self.builds[what] += 1
        etag = f'"{what[0]}{self._nonce}-{self.builds[what]}"'
        built = self._built[what] = _Built(key, time.monotonic(), text.encode(), etag)
        return built

    def _built_done(self, what: str, task: asyncio.Future[_Built]) -> None:
        if self._pending.get(what) is task:
            del self._pending[what]
        if not task.cancelled() and task.exception() is not None:
            log.error("building %s failed: %r", what, task.exception())

    def _own_figures(self) -> str:
        """The listener's own counters, after the figures of ``source``."""
        common = {"station": self.freshness.station()} if self.freshness is not None else None
        builds = Family(
            "listener_builds_total",
            "counter",
            "Bodies the listener built (one per sweep or change; requests between share it).",
        )
        builds.add(self.builds["metrics"] + 1, what="metrics")  # this one included
        builds.add(self.builds["page"], what="page")
        cut = Family(
            "listener_connections_cut_total",
            "counter",
            "Connections the listener closed unanswered: idle (cut for a newcomer when "
            "full), timeout (no whole request in time), busy (full of requests in progress).",
        )
        for why, n in self.cut.items():
            cut.add(n, reason=why)
        return "\n".join([*builds.lines(common), *cut.lines(common)]) + "\n"

    # -- connections --------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients += 1
        try:
            if self._clients > MAX_CLIENTS and not self._evict_idle():
                self.cut["busy"] += 1
                return
            self._idle[writer] = None
            try:
                async with asyncio.timeout(HEAD_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")  # bounded by MAX_REQUEST
            except TimeoutError:
                self.cut["timeout"] += 1
                return
            finally:
                self._idle.pop(writer, None)
            async with asyncio.timeout(ANSWER_TIMEOUT):
                await self._answer(head, writer)
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            pass
        except Exception:
            log.exception("metrics request failed")
        finally:
            self._clients -= 1
            self._idle.pop(writer, None)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except Exception:
                writer.transport.abort()  # a client that does not read: drop what is unsent

    def _evict_idle(self) -> bool:
        """Make room by cutting the connection idle the longest (never one being answered)."""
        victim = next(iter(self._idle), None)
        if victim is None:
            return False
        del self._idle[victim]
        self.cut["idle"] += 1
        victim.transport.abort()
        return True

    async def _answer(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._reply(writer, 400, "Bad Request", b"bad request\n")
            return
        method, target = parts[0], parts[1].split("?", 1)[0]
        head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            await self._reply(writer, 405, "Method Not Allowed", b"only GET\n", {"Allow": "GET"})
        elif target == "/metrics":
            built = await self.body("metrics")
            headers = {"ETag": built.etag}
            await self._reply(writer, 200, "OK", built.body, headers, head_only, CONTENT_TYPE)
        elif target in ("/", "/index.html") and self.page is not None:
            built = await self.body("page")
            headers = {**PAGE_HEADERS, "ETag": built.etag}
            await self._reply(writer, 200, "OK", built.body, headers, head_only, PAGE_CONTENT_TYPE)
        elif target == "/":
            await self._reply(writer, 200, "OK", b"pumaguard-heartbeat: see /metrics\n")
        else:
            await self._reply(writer, 404, "Not Found", b"not found; try /metrics\n")

    async def _reply(
        self,
        writer: asyncio.StreamWriter,
        code: int,
        reason: str,
        data: bytes,
        headers: dict[str, str] | None = None,
        head_only: bool = False,
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        lines = [
            f"HTTP/1.1 {code} {reason}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(data)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if not head_only:
            writer.write(data)
        await writer.drain()  # within ANSWER_TIMEOUT
