"""Actions on a camera's change of state: webhook POSTs and a command (docs/actions.md).

The monitor calls :meth:`Actions.notify` on the event loop for every change, power cycling
:meth:`Actions.power` for every power event. Each only appends the event's body
(:mod:`.bodies`) to bounded in-memory queues, so probes and the loop never wait for a
receiver. Each webhook URL has its own queue and worker (events reach one URL in order;
a dead URL delays nobody else); the command has one queue and runs up to
:data:`COMMAND_CONCURRENCY` processes at once.

Webhooks are POSTed by :mod:`.webhook`, a minimal HTTP client on asyncio streams.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

from pumaguard_hb.model.events import PowerEvent, StateChange
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.model.text import printable
from pumaguard_hb.outputs.bodies import (
    BODY_VERSION,
    command_env,
    event_body,
    event_env,
    event_name,
    iso_utc,
    power_body,
)
from pumaguard_hb.outputs.webhook import HTTP_TIMEOUT, HttpError, describe, post_json, redact

# the bodies and the environment live in bodies.py; these names stay importable from here
__all__ = [
    "BODY_VERSION",
    "Actions",
    "command_env",
    "drop_capabilities",
    "event_body",
    "event_env",
    "event_name",
    "iso_utc",
]

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000  # events waiting per webhook URL, and for the command
RETRY_DELAYS = (1.0, 2.0)  # pauses between attempts: 3 attempts in all
COMMAND_TIMEOUT = 30.0  # seconds before a command is killed
COMMAND_CONCURRENCY = 4
OUTPUT_KEPT = 4096  # bytes of a command's output kept for the log
SHUTDOWN_GRACE = 0.3  # seconds given to pending actions when the daemon stops


# -- no capabilities for the command ---------------------------------------------------------

_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()  # loaded in the daemon: the forked child only calls into it


def drop_capabilities() -> None:
    """In the command's child, before exec: clear the ambient and inheritable capability
    sets, so that a daemon run with ``AmbientCapabilities=CAP_NET_RAW`` (the shipped unit;
    ``NoNewPrivileges`` does not clear ambient capabilities) passes none on. A non-root
    program then starts with empty permitted and effective sets. Raises OSError when the
    kernel refuses (the command is then not run)."""
    libc = _LIBC
    if libc is None:
        raise OSError("libc not found: cannot clear capabilities")
    if libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        if err != 22:  # EINVAL: a kernel before 4.3 has no ambient set to clear
            raise OSError(err, "prctl(PR_CAP_AMBIENT_CLEAR_ALL) failed")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    if data[0].inheritable or data[1].inheritable:
        data[0].inheritable = data[1].inheritable = 0
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")


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
        if self._wanted():
            self._queue(event_body(change, self.station))

    def power(self, event: PowerEvent) -> None:
        """Power-cycle listener (events.PowerListener): queue the power event for every
        action, as :meth:`notify` does a change; never blocks."""
        if self._wanted():
            self._queue(power_body(event, self.station))

    def _wanted(self) -> bool:
        s = self.settings()
        return not self.closed and bool(s.webhooks or s.on_change_command or self.webhooks)

    def _queue(self, body: dict[str, Any]) -> None:
        s = self.settings()
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
        what = _what(body)
        attempts = len(self.retry_delays) + 1
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                status = await post_json(url, data, self.http_timeout)
            except (OSError, TimeoutError, ValueError, HttpError, asyncio.IncompleteReadError) as e:
                retry = not isinstance(e, ValueError) and (not isinstance(e, HttpError) or e.retry)
                if retry and attempt < attempts:
                    log.debug("%s: %s, attempt %d failed: %s", label, what, attempt, describe(e))
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
                    describe(e),
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
        what = _what(body)
        try:
            argv = shlex.split(item["command"])
        except ValueError as err:
            log.error("on-change command %r cannot be split: %s", item["command"], err)
            return
        if not argv:
            return
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=command_env(body),  # minimal: nothing of the daemon's secrets
                preexec_fn=drop_capabilities,  # no CAP_NET_RAW (or any other) for the command
                start_new_session=True,  # its own process group: a timeout kills its children too
            )
        except (OSError, subprocess.SubprocessError) as err:
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


def _what(body: dict[str, Any]) -> str:
    """``camera_down of Microseven-gate``, for the log (one printable line)."""
    return printable(f"{body['event']} of {body['camera']['hostname'] or body['camera']['id']}")


def _first_line(output: bytes | bytearray) -> str:
    lines = bytes(output).decode("utf-8", "replace").strip().splitlines()
    return lines[0][:300] if lines else "(no output)"
