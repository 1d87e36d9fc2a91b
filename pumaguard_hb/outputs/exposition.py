"""The Prometheus text exposition format (version 0.0.4): escaping, numbers, the
``station`` label and a metric family's lines. Pure; :mod:`.metrics` says what is measured."""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Iterable
from typing import Any

PREFIX = "pumaguard_heartbeat_"


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


class Family:
    """One metric: its HELP and TYPE lines and its samples. ``keep``: the HELP and TYPE
    lines are written even without a sample (a series that may appear later)."""

    def __init__(self, name: str, kind: str, help_text: str, keep: bool = False) -> None:
        self.name, self.kind, self.help = PREFIX + name, kind, help_text
        self.samples: list[tuple[dict[str, Any], float]] = []
        self.keep = keep

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
