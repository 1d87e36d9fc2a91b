"""sd_notify for Type=notify: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

sdnotify 0.3 encodes as Latin-1 and silently drops what it cannot send, and
systemd ignores STATUS= text that is not UTF-8: so every state is made ASCII.
"""

from __future__ import annotations

import os
import unicodedata

import sdnotify


def ascii_text(text: str) -> str:
    """``Café — 2/3`` → ``Cafe - 2/3``: what survives sdnotify and systemd intact."""
    text = text.replace("—", "-").replace("–", "-").replace("…", "...")
    decomposed = unicodedata.normalize("NFKD", text)
    out = "".join(
        ch if 32 <= ord(ch) < 127 else "?" for ch in decomposed if not unicodedata.combining(ch)
    )
    return out[:200]


class Notifier:
    """Talks to the service manager when there is one (NOTIFY_SOCKET set)."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        self._status = ""

    def send(self, *lines: str) -> None:
        """Send raw ``KEY=value`` lines in one datagram."""
        if self._notifier is not None:
            self._notifier.notify("\n".join(ascii_text(line) for line in lines))

    def ready(self, status: str) -> None:
        """The daemon is up: settings loaded, socket listening."""
        self._status = status
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        """Update STATUS= (only sent when it changed)."""
        if status != self._status:
            self._status = status
            self.send(f"STATUS={status}")

    def watchdog(self, status: str | None = None) -> None:
        """Tell the watchdog the event loop is alive; with ``status``, STATUS= in the same
        datagram when it changed (the ping refreshes it at no wake-up of its own)."""
        if status is None or status == self._status:
            self.send("WATCHDOG=1")
            return
        self._status = status
        self.send("WATCHDOG=1", f"STATUS={status}")

    def reloading(self) -> None:
        """Start of a reload (SIGHUP)."""
        self.send("RELOADING=1", "STATUS=reloading settings")

    def reloaded(self, status: str) -> None:
        """End of a reload."""
        self._status = status
        self.send("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        """SIGTERM received."""
        self.send("STOPPING=1", "STATUS=stopping")


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half the watchdog timeout), or None when off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.05, int(usec) / 2_000_000)
    except ValueError:
        return None
