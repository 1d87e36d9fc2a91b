"""Actions on a camera's change of state: webhook POSTs and a command (docs/actions.md).

The monitor calls :meth:`Actions.notify` on the event loop for every change. It only
appends the event to bounded in-memory queues, so probes and the loop never wait for a
receiver. Each webhook URL has its own queue and worker (events reach one URL in order;
a dead URL delays nobody else); the command has one queue and runs up to
:data:`COMMAND_CONCURRENCY` processes at once.

The HTTP client is a minimal HTTP/1.1 POST over asyncio streams (TLS through :mod:`ssl`):
no new dependency, and unlike a thread running :mod:`urllib`, a request in flight is
cancelled at once when the daemon stops.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from . import __version__
from .camera import CONNECTED
from .events import StateChange
from .settings import Settings

log = logging.getLogger(__name__)

BODY_VERSION = 1
QUEUE_SIZE = 1000  # events waiting per webhook URL, and for the command
HTTP_TIMEOUT = 5.0  # seconds for one request: connect, send, status and headers
RETRY_DELAYS = (1.0, 2.0)  # pauses between attempts: 3 attempts in all
COMMAND_TIMEOUT = 30.0  # seconds before a command is killed
COMMAND_CONCURRENCY = 4
OUTPUT_KEPT = 4096  # bytes of a command's output kept for the log
SHUTDOWN_GRACE = 0.3  # seconds given to pending actions when the daemon stops
USER_AGENT = f"pumaguard-heartbeat/{__version__}"


def iso_utc(ts: float) -> str:
    """Unix seconds as ISO 8601 UTC with a Z, whole seconds (as ``last_seen``)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_name(change: StateChange) -> str:
    return "camera_up" if change.new == CONNECTED else "camera_down"


def event_body(change: StateChange, host: str | None = None) -> dict[str, Any]:
    """The versioned JSON body of a webhook (and ``$PUMAGUARD_HB_JSON``)."""
    name = change.hostname or change.camera_id
    where = f" ({change.ip_address})" if change.ip_address else ""
    verb = "up" if change.new == CONNECTED else "down"
    return {
        "version": BODY_VERSION,
        "event": event_name(change),
        "event_id": uuid.uuid4().hex,
        "camera": {
            "id": change.camera_id,
            "hostname": change.hostname,
            "ip_address": change.ip_address,
            "mac_address": change.mac_address,
        },
        "status": change.new,
        "previous_status": change.old,
        "at": iso_utc(change.at),
        "reason": change.reason,
        "method": change.method,
        "rtt_ms": change.rtt_ms,
        "message": f"camera {name}{where} is {verb}: {change.reason}",
        "station": host if host is not None else socket.gethostname(),
        "daemon_version": __version__,
    }


def event_env(body: dict[str, Any]) -> dict[str, str]:
    """The event as environment variables for the command."""
    cam = body["camera"]
    rtt = body["rtt_ms"]
    return {
        "PUMAGUARD_HB_EVENT": body["event"],
        "PUMAGUARD_HB_EVENT_ID": body["event_id"],
        "PUMAGUARD_HB_CAMERA_ID": cam["id"],
        "PUMAGUARD_HB_HOSTNAME": cam["hostname"],
        "PUMAGUARD_HB_IP": cam["ip_address"],
        "PUMAGUARD_HB_MAC": cam["mac_address"],
        "PUMAGUARD_HB_STATUS": body["status"],
        "PUMAGUARD_HB_PREVIOUS_STATUS": body["previous_status"] or "",
        "PUMAGUARD_HB_AT": body["at"],
        "PUMAGUARD_HB_REASON": body["reason"],
        "PUMAGUARD_HB_METHOD": body["method"],
        "PUMAGUARD_HB_RTT_MS": "" if rtt is None else f"{rtt:g}",
        "PUMAGUARD_HB_MESSAGE": body["message"],
        "PUMAGUARD_HB_STATION": body["station"],
        "PUMAGUARD_HB_JSON": json.dumps(body, separators=(",", ":")),
    }


def redact(url: str) -> str:
    """A URL fit for the log: scheme, host and port only (paths and queries hold tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}/…"


# -- HTTP ---------------------------------------------------------------------------------


class HttpError(Exception):
    """The receiver answered with a status that is not 2xx."""

    def __init__(self, status: int, reason: str, snippet: str) -> None:
        super().__init__(f"HTTP {status} {reason}".rstrip() + (f": {snippet}" if snippet else ""))
        self.status = status

    @property
    def retry(self) -> bool:
        return self.status >= 500 or self.status in (408, 429)


_SSL: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()  # system CAs, hostname checked
    return _SSL


def _request(url: str, body: bytes) -> tuple[str, int, bool, bytes]:
    """(host, port, tls, request bytes) for a POST of ``body`` to ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {redact(url)}")
    tls = parts.scheme == "https"
    host = parts.hostname
    port = parts.port or (443 if tls else 80)
    host_header = f"[{host}]" if ":" in host else host
    if parts.port:
        host_header += f":{parts.port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [
        f"POST {target} HTTP/1.1",
        f"Host: {host_header}",
        f"User-Agent: {USER_AGENT}",
        "Content-Type: application/json",
        "Accept: */*",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if parts.username is not None:
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers.append("Authorization: Basic " + base64.b64encode(cred.encode()).decode())
    head = "\r\n".join(headers) + "\r\n\r\n"
    return host, port, tls, head.encode("latin-1") + body


async def post_json(url: str, body: bytes, timeout: float = HTTP_TIMEOUT) -> int:
    """POST ``body`` to ``url``; the 2xx status, else HttpError / OSError / TimeoutError."""
    host, port, tls, request = _request(url, body)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await _connect(host, port, tls)
            writer.write(request)
            await writer.drain()
            status, reason = _status_line(await reader.readline())
            length = None
            for _ in range(100):
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length" and value.strip().isdigit():
                    length = int(value)
            snippet = b""
            if length and not 200 <= status < 300:
                snippet = await reader.read(min(length, 200))
            elif length and length <= 65536:
                await reader.readexactly(length)  # read it all: no reset for the receiver
    except BaseException:
        if writer is not None:
            writer.transport.abort()
        raise
    writer.close()
    if not 200 <= status < 300:
        text = snippet.decode("utf-8", "replace").strip().splitlines()
        raise HttpError(status, reason, text[0][:200] if text else "")
    return status


async def _connect(
    host: str, port: int, tls: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to each address of ``host`` in turn (TLS: the name is checked)."""
    last: OSError = OSError(f"{host} has no address")
    for family, address in await _resolve(host, port):
        try:
            return await asyncio.open_connection(
                address,  # numeric: asyncio does no lookup of its own
                port,
                family=family,
                ssl=_ssl_context() if tls else None,
                server_hostname=host if tls else None,
            )
        except OSError as err:
            last = err
    raise last


_Addr = tuple[int, str]  # family, numeric address
_lookups = 0  # name lookups running in their threads
_lookups_lock = threading.Lock()
MAX_LOOKUPS = 8


def _addresses(host: str, port: int, flags: int) -> list[_Addr]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)
    return [(int(info[0]), str(info[4][0])) for info in infos]


async def _resolve(host: str, port: int) -> list[_Addr]:
    """The addresses of ``host``. A name is looked up in a daemon thread of its own, not in
    the loop's executor: asyncio.run() waits for that executor at exit, and a lookup can
    hang for many seconds when the station's uplink is down."""
    with contextlib.suppress(socket.gaierror):
        return _addresses(host, port, socket.AI_NUMERICHOST)
    global _lookups
    with _lookups_lock:
        if _lookups >= MAX_LOOKUPS:
            raise OSError(f"cannot look up {host}: {MAX_LOOKUPS} lookups already hang")
        _lookups += 1
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[_Addr]] = loop.create_future()

    def settle(result: list[_Addr] | None, err: OSError | None) -> None:
        if done.done():
            return
        if err is not None:
            done.set_exception(err)
        else:
            done.set_result(result or [])

    def lookup() -> None:
        global _lookups
        result: list[_Addr] | None = None
        error: OSError | None = None
        try:
            result = _addresses(host, port, 0)
        except OSError as err:
            error = err
        finally:
            with _lookups_lock:
                _lookups -= 1
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=lookup, name="webhook-dns", daemon=True).start()
    return await done


def _status_line(line: bytes) -> tuple[int, str]:
    parts = line.decode("latin-1").strip().split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP response: {line[:60]!r}" if line else "no response")
    return int(parts[1]), parts[2] if len(parts) > 2 else ""


def _describe(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, asyncio.IncompleteReadError):
        return "connection closed before the end of the response"
    return str(err) or type(err).__name__


# -- queues -------------------------------------------------------------------------------


class _Channel:
    """A bounded FIFO of events and the task that works through it."""

    def __init__(self, label: str, size: int) -> None:
        self.label = label
        self.size = size
        self.items: collections.deque[dict[str, Any]] = collections.deque()
        self.wake = asyncio.Event()
        self.busy = 0  # items taken off the queue and not finished
        self.dropped = 0  # in the current burst
        self.task: asyncio.Task[None] | None = None

    def put(self, item: dict[str, Any]) -> None:
        if len(self.items) >= self.size:
            self.items.popleft()
            if not self.dropped:
                log.warning(
                    "%s: %d events waiting, dropping the oldest (receiver too slow or down)",
                    self.label,
                    self.size,
                )
            self.dropped += 1
        self.items.append(item)
        self.wake.set()

    async def take(self) -> dict[str, Any]:
        while not self.items:
            if self.dropped:
                log.warning("%s: caught up; %d events were dropped", self.label, self.dropped)
                self.dropped = 0
            self.wake.clear()
            await self.wake.wait()
        self.busy += 1
        return self.items.popleft()

    @property
    def pending(self) -> int:
        return len(self.items) + self.busy


class Actions:
    """Webhooks and the on-change command, fed by the monitor's listener callback."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        queue_size: int = QUEUE_SIZE,
        http_timeout: float = HTTP_TIMEOUT,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.queue_size = queue_size
        self.http_timeout = http_timeout
        self.retry_delays = retry_delays
        self.command_timeout = command_timeout
        self.webhooks: dict[str, _Channel] = {}
        self.command: _Channel | None = None
        self.running: set[asyncio.Task[None]] = set()  # command runs
        self.slots = asyncio.Semaphore(COMMAND_CONCURRENCY)
        self.station = socket.gethostname()
        self.closed = False
        self.delivered = 0
        self.failed = 0

    # -- the listener ---------------------------------------------------------------------

    def notify(self, change: StateChange) -> None:
        """Monitor listener: queue the event for every action; never blocks."""
        if self.closed:
            return
        s = self.settings()
        if not s.webhooks and not s.on_change_command and not self.webhooks:
            return
        body = event_body(change, self.station)
        for url in s.webhooks:
            channel = self.webhooks.get(url)
            if channel is None:
                number = s.webhooks.index(url) + 1
                channel = _Channel(f"webhook #{number} {redact(url)}", self.queue_size)
                channel.task = asyncio.get_running_loop().create_task(
                    self._deliver_all(url, channel), name=f"webhook-{number}"
                )
                self.webhooks[url] = channel
            channel.put(body)
        for url, channel in list(self.webhooks.items()):  # URLs removed by a reload
            if url not in s.webhooks and not channel.pending and channel.task:
                channel.task.cancel()
                del self.webhooks[url]
        if s.on_change_command:
            if self.command is None:
                self.command = _Channel("on-change command", self.queue_size)
                self.command.task = asyncio.get_running_loop().create_task(
                    self._run_commands(self.command), name="on-change-command"
                )
            self.command.put({"body": body, "command": s.on_change_command})

    # -- webhooks -------------------------------------------------------------------------

    async def _deliver_all(self, url: str, channel: _Channel) -> None:
        while True:
            body = await channel.take()
            try:
                await self._deliver(url, channel.label, body)
            except Exception:  # a bug must not stop the deliveries to this URL
                log.exception("%s: delivery failed", channel.label)
            finally:
                channel.busy -= 1

    async def _deliver(self, url: str, label: str, body: dict[str, Any]) -> None:
        """One event to one URL: up to len(retry_delays) + 1 attempts; one warning if all fail."""
        data = json.dumps(body, separators=(",", ":")).encode()
        what = f"{body['event']} of {body['camera']['hostname'] or body['camera']['id']}"
        attempts = len(self.retry_delays) + 1
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                status = await post_json(url, data, self.http_timeout)
            except (OSError, TimeoutError, ValueError, HttpError, asyncio.IncompleteReadError) as e:
                retry = not isinstance(e, ValueError) and (not isinstance(e, HttpError) or e.retry)
                if retry and attempt < attempts:
                    log.debug("%s: %s, attempt %d failed: %s", label, what, attempt, _describe(e))
                    await asyncio.sleep(self.retry_delays[attempt - 1])
                    continue
                self.failed += 1
                log.warning(
                    "%s: %s not delivered after %d attempt%s in %.1fs: %s",
                    label,
                    what,
                    attempt,
                    "" if attempt == 1 else "s",
                    time.monotonic() - started,
                    _describe(e),
                )
                return
            self.delivered += 1
            log.debug("%s: %s delivered (HTTP %d, attempt %d)", label, what, status, attempt)
            return

    # -- the command ----------------------------------------------------------------------

    async def _run_commands(self, channel: _Channel) -> None:
        while True:
            item = await channel.take()
            await self.slots.acquire()
            task = asyncio.get_running_loop().create_task(self._command_quietly(item))
            self.running.add(task)

            def done(t: asyncio.Task[None]) -> None:
                self.running.discard(t)
                self.slots.release()
                channel.busy -= 1

            task.add_done_callback(done)

    async def _command_quietly(self, item: dict[str, Any]) -> None:
        try:
            await self._command(item)
        except Exception:  # a bug must not leave an unretrieved task exception
            log.exception("on-change command failed")

    async def _command(self, item: dict[str, Any]) -> None:
        body: dict[str, Any] = item["body"]
        what = f"{body['event']} of {body['camera']['hostname'] or body['camera']['id']}"
        try:
            argv = shlex.split(item["command"])
        except ValueError as err:
            log.error("on-change command %r cannot be split: %s", item["command"], err)
            return
        if not argv:
            return
        env = os.environ.copy()
        env.pop("NOTIFY_SOCKET", None)  # the command is not the service
        env.update(event_env(body))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: a timeout kills its children too
            )
        except OSError as err:
            log.warning("on-change command for %s cannot start: %s: %s", what, argv[0], err)
            return
        output = bytearray()
        try:
            async with asyncio.timeout(self.command_timeout):
                assert proc.stdout is not None
                while chunk := await proc.stdout.read(65536):
                    if len(output) < OUTPUT_KEPT:
                        output += chunk[: OUTPUT_KEPT - len(output)]
                code = await proc.wait()
        except TimeoutError:
            _kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            log.warning(
                "on-change command for %s killed after %gs: %s",
                what,
                self.command_timeout,
                _first_line(output),
            )
            return
        except asyncio.CancelledError:  # shutdown
            _kill_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 0.1)
            except TimeoutError:
                _kill_group(proc.pid, signal.SIGKILL)
                await proc.wait()
            raise
        if code == 0:
            log.debug("on-change command for %s done", what)
        else:
            status = f"signal {-code}" if code < 0 else f"status {code}"
            log.warning(
                "on-change command for %s exited with %s: %s", what, status, _first_line(output)
            )

    # -- shutdown -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Events queued or in delivery, over all actions."""
        channels = [*self.webhooks.values(), *([self.command] if self.command else [])]
        return sum(c.pending for c in channels)

    async def close(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Give pending actions ``grace`` seconds, then drop what is left (one log line)."""
        self.closed = True
        deadline = time.monotonic() + grace
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        left = self.pending
        tasks = [c.task for c in [*self.webhooks.values(), self.command] if c and c.task]
        tasks += list(self.running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if left:
            log.warning(
                "stopping: dropped %d pending action%s (webhook deliveries and commands)",
                left,
                "" if left == 1 else "s",
            )


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _first_line(output: bytes | bytearray) -> str:
    lines = bytes(output).decode("utf-8", "replace").strip().splitlines()
    return lines[0][:300] if lines else "(no output)"
