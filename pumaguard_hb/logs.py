"""Logging to stderr: syslog priority prefixes under journald, timestamped lines elsewhere.

Every log line is printable text on one line (docs/security.md, "Text from strangers"):
hostnames, camera replies, web UI records and zone ids come from outside, and a newline in
one would forge a journal line (``\n<3>...``), an escape sequence would drive the terminal
of whoever reads the log. :class:`PrintableFilter` escapes them in every record's message
(``\n``, ``\x1b``, ``\u202e``, as Python's ``repr`` does) before any handler writes it.
"""

from __future__ import annotations

import logging
import os
import sys

from pumaguard_hb.model.text import printable

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    NOTICE: 5,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class PrintableFilter(logging.Filter):
    """Makes each record's message :func:`printable` (the text from outside in its
    arguments included); a traceback added by ``log.exception`` keeps its lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging's own error report handles it
            return True
        record.msg, record.args = printable(message), None  # formatted once, here
        return True


def priority(levelno: int) -> int:
    """The syslog priority for a logging level (journalctl -p uses these)."""
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


class JournalFormatter(logging.Formatter):
    """``<4>message``: journald reads the prefix as the line's priority."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines() or [""])


def under_journald() -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def setup(debug: bool = False) -> None:
    """Send the daemon's log to stderr in the form its reader expects."""
    handler = logging.StreamHandler(sys.stderr)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    handler.addFilter(PrintableFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
