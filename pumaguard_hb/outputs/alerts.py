"""Alerts that reach a person: mail (smtplib, :mod:`.mail`) and Apprise (docs/alerts.md).

The monitor calls :meth:`Alerts.notify` on the event loop for every change of state, power
cycling :meth:`Alerts.power` for every power event. The first of a quiet period starts a
window of ``camera_heartbeat_alert_delay`` seconds; every change and power event within it
joins the same message, so a switch losing power (ten cameras down at once) makes one
message, not ten. Each channel (mail, Apprise) has its own bounded queue and worker; the
blocking senders run in daemon threads with a time limit (:mod:`.senders`), so a dead mail
server or a slow push service never holds up probing or the daemon's stop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pumaguard_hb import __version__
from pumaguard_hb.model.camera import CONNECTED
from pumaguard_hb.model.checks import redact_secret
from pumaguard_hb.model.events import (
    NEEDS_VISIT,
    POWER_CYCLED,
    RECOVERED_AFTER_CYCLE,
    Listener,
    PowerEvent,
    StateChange,
)
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.outputs import mail
from pumaguard_hb.outputs.bodies import power_sentence
from pumaguard_hb.outputs.senders import (
    APPRISE_MISSING,
    APPRISE_TIMEOUT,
    apprise_loaded,
    apprise_send,
    in_thread,
    load_apprise,
)

log = logging.getLogger(__name__)

RETRY_DELAYS = (2.0, 8.0)  # pauses between attempts: 3 attempts in all
QUEUE_SIZE = 20  # messages waiting per channel (each one lists many changes)
MAX_LISTED = 100  # cameras listed in one message; the rest are counted
SHUTDOWN_GRACE = 1.0  # seconds a stopping daemon gives messages in flight


def clean(text: str, limit: int = 120) -> str:
    """Hostile text (hostnames, probe reasons) as one printable line: control characters
    and line breaks become spaces, so nothing can add a header or fake a line."""
    line = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def duration(seconds: float) -> str:
    """``3h 12m``, ``5m 3s``, ``2d 4h``."""
    s = int(max(0, seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {s}s"
    return f"{s}s"


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Entry:
    """One camera's change in a message, with how long it had been in its previous state."""

    change: StateChange
    previous_for: float | None


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


def compose(
    entries: list[Entry],
    station: str,
    host: str,
    counts: tuple[int, int] | None = None,
    power: Sequence[PowerEvent] = (),
) -> Message:
    """The one message for a window's changes and power events: subject ``[station] 3
    cameras down, 1 back``; a camera that needs a visit comes first in both."""
    latest: dict[str, Entry] = {}
    first_old: dict[str, str | None] = {}
    for e in entries:
        first_old.setdefault(e.change.camera_id, e.change.old)
        latest[e.change.camera_id] = e
    # back where it was when the window opened: it went down (or up) and back
    bounced = {c for c, e in latest.items() if first_old[c] == e.change.new}
    down = [e for c, e in latest.items() if e.change.new != CONNECTED and c not in bounced]
    back = [e for c, e in latest.items() if e.change.new == CONNECTED and c not in bounced]
    flapped = [e for c, e in latest.items() if c in bounced]
    where = clean(station, 60)
    parts = []
    if down:
        parts.append(f"{len(down)} camera{'' if len(down) == 1 else 's'} down")
    if back:
        parts.append(f"{len(back)} {'camera ' if not down else ''}back")
    if flapped:
        parts.append(f"{len(flapped)} down and back")
    visits = [p for p in power if p.kind == NEEDS_VISIT]
    steps = [p for p in power if p.kind != NEEDS_VISIT]
    if visits:
        parts.insert(0, f"{len(visits)} camera needs a visit" if len(visits) == 1 else
                     f"{len(visits)} cameras need a visit")  # fmt: skip
    for kind in (POWER_CYCLED, RECOVERED_AFTER_CYCLE):
        if n := sum(p.kind == kind for p in steps):
            parts.append(f"{n} {kind}")
    subject = f"[{where}] " + ", ".join(parts)
    names = {c: e.change.hostname or c for c, e in latest.items()}
    names.update({p.camera_id: p.hostname or p.camera_id for p in power})
    if len(names) == 1:
        subject += ": " + clean(next(iter(names.values())), 60)
    lines = [f"Station: {where}" + (f" (host {clean(host, 60)})" if host != station else ""), ""]
    lines += _power_group("Needs a visit", visits)
    listed = 0
    for title, group in (("Down", down), ("Back", back), ("Down and back", flapped)):
        if not group:
            continue
        lines.append(f"{title} ({len(group)}):")
        for e in group:
            if listed >= MAX_LISTED:
                break
            listed += 1
            lines += _describe(e)
        lines.append("")
    if listed < len(latest):
        lines += [f"… and {len(latest) - listed} more cameras (pumaguard-hb status)", ""]
    lines += _power_group("Power cycles", steps)
    if counts is not None:
        lines.append(f"Now {counts[0]} of {counts[1]} cameras are connected.")
    lines.append(f"-- pumaguard-heartbeat {__version__} on {clean(host, 60)}")
    return Message(subject, "\n".join(lines) + "\n")


def _describe(e: Entry) -> list[str]:
    c = e.change
    state = "up" if c.new == CONNECTED else "down"
    was = ""
    if e.previous_for is not None and c.old:
        was = f", after {duration(e.previous_for)} {c.old}"
    elif c.old is None:
        was = " (first check)"
    ident = [f"IP {clean(c.ip_address, 60)}" if c.ip_address else "no IP"]
    if c.mac_address:
        ident.append(f"MAC {clean(c.mac_address, 40)}")
    return [
        f"- {clean(c.hostname or c.camera_id, 80)}",
        f"    {'  '.join(ident)}",
        f"    {state} since {utc(c.at)}{was}",
        f"    why: {clean(c.reason, 200)} ({clean(c.method, 20)})",
    ]


def _power_group(title: str, events: Sequence[PowerEvent]) -> list[str]:
    """A section of power events, one line each (and when, and how many cycles today)."""
    if not events:
        return []
    lines = [f"{title} ({len(events)}):"]
    for p in events[:MAX_LISTED]:
        who = clean(p.hostname or p.camera_id, 80)
        who += f" ({clean(p.ip_address, 60)})" if p.ip_address else ""
        cycles = f"{p.cycles_today} power cycle{'' if p.cycles_today == 1 else 's'} in 24 h"
        lines += [f"- {power_sentence(p.kind, who, clean(p.reason, 200))}",
                  f"    at {utc(p.at)}; {cycles}"]  # fmt: skip
    if len(events) > MAX_LISTED:
        lines.append(f"… and {len(events) - MAX_LISTED} more")
    return [*lines, ""]


# -- channels ------------------------------------------------------------------------------


class Channel:
    """One way to reach a person (mail, Apprise): a bounded queue, a worker, and what status
    shows. A failure is logged once per outage; the next success says it works again."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.items: collections.deque[Message] = collections.deque(maxlen=size)
        self.wake = asyncio.Event()
        self.busy = False
        self.task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.problem: str | None = None
        self.last_sent: float | None = None

    @property
    def pending(self) -> int:
        return len(self.items) + self.busy

    def info(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "queued": self.pending,
            "last_sent_at": self.last_sent,
            "problem": self.problem,
        }


class Alerts:
    """Groups changes into messages and delivers them by mail and Apprise."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        counts: Callable[[], tuple[int, int]] | None = None,
        since: dict[str, float] | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.settings = settings
        self.counts = counts
        self.since: dict[str, float] = dict(since or {})  # camera id -> its state began
        self.retry_delays = retry_delays
        self.host = socket.gethostname()
        self.batch: list[Entry] = []
        self.powered: list[PowerEvent] = []  # power events waiting with the batch
        self.timer: asyncio.TimerHandle | None = None
        self.channels = {
            "mail": Channel("mail", QUEUE_SIZE),
            "apprise": Channel("apprise", QUEUE_SIZE),
        }
        self.apprise_problem: str | None = None
        self.closed = False
        self.messages = 0
        self._checking: asyncio.Task[None] | None = None

    @property
    def station(self) -> str:
        s = self.settings()
        return s.station or self.host  # the one station name: the metrics' label too

    def enabled(self, s: Settings) -> list[str]:
        """The configured channels."""
        return [n for n, on in (("mail", mail.config(s)), ("apprise", s.apprise_urls)) if on]

    # -- the listener ----------------------------------------------------------------------

    def notify(self, change: StateChange) -> None:
        """Monitor listener: remember the change for the next message; never blocks."""
        previous = self.since.get(change.camera_id)
        self.since[change.camera_id] = change.at
        if self.closed or (change.old is None and change.new == CONNECTED):
            return  # a camera's first judgement as up is no news
        s = self.settings()
        if not self.enabled(s):
            return
        self.check_apprise()
        prev_for = None if previous is None else max(0.0, change.at - previous)
        self.batch.append(Entry(change, prev_for))
        self._open_window(s)

    def power(self, event: PowerEvent) -> None:
        """Power-cycle listener (events.PowerListener): the event joins the window's message
        as a change does; never left out (a "needs a visit" is always sent); never blocks."""
        s = self.settings()
        if self.closed or not self.enabled(s):
            return
        self.check_apprise()
        self.powered.append(event)
        self._open_window(s)

    def _open_window(self, s: Settings) -> None:
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(float(s.alert_delay), self.flush)

    def forget(self, camera_id: str) -> None:
        """Monitor forgetter: the camera is gone; its "since" goes with it (events.Forget)."""
        self.since.pop(camera_id, None)

    def flush(self) -> None:
        """Close the window: compose one message and queue it on every channel."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        entries, self.batch = self.batch, []
        powered, self.powered = self.powered, []
        if not entries and not powered:
            return
        counts = self.counts() if self.counts else None
        self.queue(compose(entries, self.station, self.host, counts, powered))

    def queue(self, message: Message) -> None:
        s = self.settings()
        self.messages += 1
        for name in self.enabled(s):
            channel = self.channels[name]
            if len(channel.items) == channel.items.maxlen:
                channel.dropped += 1
                if channel.dropped == 1:
                    log.warning(
                        "alerts by %s: %d messages waiting, dropping the oldest",
                        name,
                        channel.items.maxlen,
                    )
            channel.items.append(message)
            channel.wake.set()
            if channel.task is None:
                channel.task = asyncio.get_running_loop().create_task(
                    self._work(channel), name=f"alerts-{name}"
                )

    def check_apprise(self) -> None:
        """With Apprise URLs set, find out (once, in a thread) whether Apprise is there."""
        if self.settings().apprise_urls and not apprise_loaded() and self._checking is None:
            self._checking = asyncio.get_running_loop().create_task(self._check_apprise())

    async def _check_apprise(self) -> None:
        try:
            found = await in_thread(load_apprise, 60.0)
        except TimeoutError:
            found = None
        if found is None:
            self.apprise_problem = APPRISE_MISSING
            log.warning("camera_heartbeat_apprise_urls is set but %s", APPRISE_MISSING)
        else:
            self.apprise_problem = None
            self._checking = None

    # -- delivery ----------------------------------------------------------------------------

    async def _work(self, channel: Channel) -> None:
        while True:
            while not channel.items:
                channel.wake.clear()
                await channel.wake.wait()
            message = channel.items.popleft()
            channel.busy = True
            try:
                await self._deliver(channel, message)
            except Exception:  # a bug must not stop this channel's deliveries
                log.exception("alerts by %s: delivery failed", channel.name)
            finally:
                channel.busy = False

    async def _deliver(self, channel: Channel, message: Message) -> None:
        """Up to len(retry_delays) + 1 attempts; one warning per outage of the channel."""
        attempts = len(self.retry_delays) + 1
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                where = await self.send(channel.name, message)
            except (mail.MailError, TimeoutError) as err:
                why = "timed out" if isinstance(err, TimeoutError) else str(err)
                retry = getattr(err, "retry", True)
                if retry and attempt < attempts:
                    log.debug("alerts by %s: attempt %d failed: %s", channel.name, attempt, why)
                    await asyncio.sleep(self.retry_delays[attempt - 1])
                    continue
                channel.failed += 1
                problem = (
                    f"not delivered after {attempt} attempt{'' if attempt == 1 else 's'} "
                    f"in {time.monotonic() - started:.1f}s: {why}"
                )
                if channel.problem is None and why != self.apprise_problem:  # said already
                    log.warning(
                        "alerts by %s: %r %s (logged once until it works again)",
                        channel.name,
                        message.subject,
                        problem,
                    )
                else:
                    log.debug("alerts by %s: %r %s", channel.name, message.subject, problem)
                channel.problem = problem
                return
            channel.sent += 1
            channel.last_sent = time.time()
            if channel.name == "apprise":
                self.apprise_problem = None  # installed since the daemon looked
            if channel.problem is not None:
                log.info("alerts by %s work again (%s)", channel.name, where)
                channel.problem = None
            log.info("alert sent by %s (%s): %s", channel.name, where, message.subject)
            return

    async def send(self, name: str, message: Message) -> str:
        """One attempt on one channel with the current settings; returns where it went."""
        s = self.settings()
        if name == "mail":
            cfg = mail.config(s)
            if cfg is None:
                raise mail.MailError("mail is not configured", retry=False)
            msg = mail.build(cfg, message.subject, message.body)
            await in_thread(lambda: mail.send(cfg, msg), cfg.timeout * 4 + 5)
            return f"{cfg.where} to {len(cfg.to)} recipient{'' if len(cfg.to) == 1 else 's'}"
        urls = s.apprise_urls
        if not urls:
            raise mail.MailError("no Apprise URLs are set", retry=False)
        await in_thread(
            lambda: apprise_send(urls, message.subject, message.body),
            APPRISE_TIMEOUT * len(urls) + 5,
        )
        return f"{len(urls)} Apprise URL{'' if len(urls) == 1 else 's'}"

    async def test(self) -> list[dict[str, Any]]:
        """Send a test message through every configured channel, once; each one's result."""
        s = self.settings()
        counts = self.counts() if self.counts else None
        station = clean(self.station, 60)
        body = (
            f"This is a test message from pumaguard-heartbeat on {station}.\n"
            "Alerts about cameras going down or coming back will arrive like this.\n"
            + (f"\nNow {counts[0]} of {counts[1]} cameras are connected.\n" if counts else "")
        )
        message = Message(f"[{station}] test alert", body)
        results = []
        for name in self.enabled(s):
            try:
                where = await self.send(name, message)
            except (mail.MailError, TimeoutError) as err:
                why = "timed out" if isinstance(err, TimeoutError) else str(err)
                results.append({"channel": name, "ok": False, "detail": why})
            else:
                results.append({"channel": name, "ok": True, "detail": where})
        return results

    # -- status and shutdown -------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The ``alerts`` section of status (no secrets)."""
        s = self.settings()
        cfg = mail.config(s)
        apprise = self.channels["apprise"].info()
        apprise["urls"] = [redact_secret(u) for u in s.apprise_urls]
        if s.apprise_urls and self.apprise_problem:
            apprise["problem"] = self.apprise_problem
        return {
            "channels": self.enabled(s),
            "delay_s": s.alert_delay,
            "waiting_changes": len(self.batch) + len(self.powered),
            "messages": self.messages,
            "mail": {"server": cfg.where if cfg else None, "to": list(cfg.to) if cfg else []}
            | self.channels["mail"].info(),
            "apprise": apprise,
        }

    @property
    def pending(self) -> int:
        return sum(c.pending for c in self.channels.values())

    async def close(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Send what waits for its window now, give deliveries ``grace`` seconds, then drop
        what is left (one log line)."""
        if self.batch or self.powered:
            self.flush()
        self.closed = True
        deadline = time.monotonic() + grace
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        left = self.pending
        tasks = [c.task for c in self.channels.values() if c.task]
        if self._checking is not None:
            tasks.append(self._checking)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if left:
            log.warning(
                "stopping: %d alert message%s not delivered", left, "" if left == 1 else "s"
            )


class Listened(Protocol):
    """What :func:`find` reads of the monitor: its state-change listeners."""

    @property
    def listeners(self) -> list[Listener]: ...


def find(monitor: Listened) -> Alerts | None:
    """The daemon's Alerts, found among the monitor's listeners (status, alert_test)."""
    for listener in monitor.listeners:
        owner = getattr(listener, "__self__", None)
        if isinstance(owner, Alerts):
            return owner
    return None
