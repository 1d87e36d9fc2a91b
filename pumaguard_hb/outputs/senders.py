"""The blocking ways out of the alerts besides mail (:mod:`.mail`): Apprise (push, SMS,
chat; optional, imported on first use), and the daemon threads every blocking sender runs
in (docs/alerts.md). :mod:`.alerts` calls these; nothing here touches the event loop's
state but through ``call_soon_threadsafe``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from pumaguard_hb.model.checks import redact_secret
from pumaguard_hb.outputs import mail

APPRISE_TIMEOUT = 60.0  # seconds for one Apprise URL
APPRISE_MISSING = "Apprise is not installed: apt install apprise (or pip install apprise)"

T = TypeVar("T")


# -- blocking work in daemon threads -------------------------------------------------------


async def in_thread(fn: Callable[[], T], timeout: float) -> T:
    """Run ``fn`` in a daemon thread; TimeoutError after ``timeout`` (the thread is left to
    finish alone). Unlike asyncio.to_thread, a hung sender cannot hold up the interpreter's
    exit: the default executor's threads are joined at shutdown, daemon threads are not."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            (future.set_result if ok else future.set_exception)(value)

    def run() -> None:
        try:
            result = fn()
        except BaseException as err:  # handed to the awaiting task
            outcome: tuple[bool, Any] = (False, err)
        else:
            outcome = (True, result)
        with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon stopped
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name="alert-sender", daemon=True).start()
    async with asyncio.timeout(timeout):  # not wait_for: 3.11's can lose the stop's cancel
        return await future


class AlertError(mail.MailError):
    """A channel could not deliver a message."""


_apprise: ModuleType | None = None
_apprise_lock = threading.Lock()


def load_apprise() -> ModuleType | None:
    """The apprise module, imported on first use (it is big and optional); None if absent.
    Its own log is silenced: its lines can carry the URLs' tokens."""
    global _apprise
    with _apprise_lock:
        if _apprise is None:
            try:
                import apprise
            except ImportError:
                return None
            logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)
            _apprise = apprise
        return _apprise


def apprise_loaded() -> bool:
    """True once Apprise has been imported."""
    return _apprise is not None


def apprise_send(urls: tuple[str, ...], subject: str, body: str) -> None:
    """Notify each Apprise URL (blocking); AlertError naming the URLs (redacted) that failed."""
    apprise = load_apprise()
    if apprise is None:
        raise AlertError(APPRISE_MISSING, retry=False)
    failed: list[str] = []
    for url in urls:
        ap = apprise.Apprise()
        if not ap.add(url):
            failed.append(f"{redact_secret(url)} (not a URL Apprise knows)")
            continue
        if not ap.notify(body=body, title=subject):
            failed.append(redact_secret(url))
    if failed:
        raise AlertError("not delivered to " + ", ".join(failed), retry=len(failed) == len(urls))
