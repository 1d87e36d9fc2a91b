"""Prometheus metrics: the text exposition format, and an optional small HTTP listener.

:func:`render` is a pure function of the ``status`` result (plus the per-camera
counts of state changes and the history's uptime figures), so ``pumaguard-hb
metrics`` (the ``metrics`` command) and ``GET /metrics`` give the same text.

The listener (``camera_heartbeat_metrics_listen: "127.0.0.1:9469"``, off by
default) is a bounded asyncio server: a request head of at most
:data:`MAX_REQUEST` bytes within :data:`REQUEST_TIMEOUT` seconds, at most
:data:`MAX_CLIENTS` connections at once, one response per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .camera import iso_seconds
from .page import CONTENT_TYPE as PAGE_CONTENT_TYPE
from .page import HEADERS as PAGE_HEADERS

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "pumaguard_heartbeat_"
MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0
MAX_CLIENTS = 16


def escape_label(value: Any) -> str:
    """A label value as the exposition format wants it: \\\\, \\" and \\n escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: backslash and newline escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number(value: float) -> str:
    """A sample value: integers without a fraction, NaN/Inf spelled as Prometheus does."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def station_label(configured: Any) -> str:
    """The ``station`` label of every series: the setting, else the host name made
    label-safe (letters, digits, ``.``, ``-``, ``_``; at most 63 characters)."""
    if isinstance(configured, str) and configured:
        return configured[:63]
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:63].strip("-")
    return name or "unknown"


class _Family:
    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name, self.kind, self.help = PREFIX + name, kind, help_text
        self.samples: list[tuple[dict[str, Any], float]] = []

    def add(self, value: float | int | bool, **labels: Any) -> None:
        self.samples.append((labels, float(value)))

    def lines(self, common: dict[str, Any] | None = None) -> Iterable[str]:
        yield f"# HELP {self.name} {escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        for own, value in self.samples:
            labels = {**own, **(common or {})}
            if labels:
                inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
                yield f"{self.name}{{{inner}}} {number(value)}"
            else:
                yield f"{self.name} {number(value)}"


def render(status: dict[str, Any], changes: dict[str, int] | None = None) -> str:
    """The exposition text for one ``status`` result.

    ``changes`` counts state changes per camera id since the daemon started.
    Cameras may carry ``uptime_24h``/``uptime_7d`` and ``observed_24h``/``observed_7d``
    (percent) from the history.
    """
    changes = changes or {}
    d = status.get("daemon") or {}
    fam: dict[str, _Family] = {}

    def family(name: str, kind: str, help_text: str) -> _Family:
        return fam.setdefault(name, _Family(name, kind, help_text))

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
    common = {"station": station_label((d.get("settings") or {}).get("camera_heartbeat_station"))}
    out: list[str] = []
    for f in fam.values():
        if f.samples:
            out.extend(f.lines(common))
    return "\n".join(out) + "\n"


# -- HTTP listener ---------------------------------------------------------------------------


def split_listen(value: str) -> tuple[str | None, int]:
    """``127.0.0.1:9469`` / ``[::1]:9469`` / ``:9469`` (every address) → (host, port)."""
    host, _, port = value.rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host or None), int(port)


class MetricsServer:
    """Serves ``GET /metrics`` with the text from ``source`` (called on the event loop), and
    ``GET /`` with the status page awaited from ``page`` (pumaguard_hb/page.py) when given."""

    def __init__(
        self, source: Callable[[], str], page: Callable[[], Awaitable[str]] | None = None
    ) -> None:
        self.source = source
        self.page = page
        self.listen = ""
        self.server: asyncio.Server | None = None
        self.problem: str | None = None
        self._clients = 0

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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= MAX_CLIENTS:
            writer.close()
            return
        self._clients += 1
        try:
            await asyncio.wait_for(self._answer(reader, writer), REQUEST_TIMEOUT)
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
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")  # bounded by limit=MAX_REQUEST
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._reply(writer, 400, "Bad Request", "bad request\n")
            return
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            await self._reply(writer, 405, "Method Not Allowed", "only GET\n", {"Allow": "GET"})
        elif target == "/metrics":
            await self._reply(
                writer,
                200,
                "OK",
                self.source(),
                head_only=method == "HEAD",
                content_type=CONTENT_TYPE,
            )
        elif target in ("/", "/index.html") and self.page is not None:
            await self._reply(
                writer,
                200,
                "OK",
                await self.page(),
                PAGE_HEADERS,
                head_only=method == "HEAD",
                content_type=PAGE_CONTENT_TYPE,
            )
        elif target == "/":
            await self._reply(writer, 200, "OK", "pumaguard-heartbeat: see /metrics\n")
        else:
            await self._reply(writer, 404, "Not Found", "not found; try /metrics\n")

    async def _reply(
        self,
        writer: asyncio.StreamWriter,
        code: int,
        reason: str,
        body: str,
        headers: dict[str, str] | None = None,
        head_only: bool = False,
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        data = body.encode()
        lines = [
            f"HTTP/1.1 {code} {reason}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(data)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else data))
        await writer.drain()
