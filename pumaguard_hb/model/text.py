"""Text from strangers made safe for one log line or a terminal; pure."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with every character that is not printable (newlines, ESC and other control
    characters, bidi and other format characters, unpaired surrogates) written as its
    backslash escape (``\n``, ``\x1b``, ``\u202e``): one line, safe for the journal and a
    terminal, and still telling what was sent."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )
