"""``history`` and ``uptime``: what the daemon recorded (docs/history-metrics.md)."""

from __future__ import annotations

from typing import Any

import click

from . import exits
from .common import as_json, ask, common_options, console, emit_json


@click.command()
@click.argument("camera", required=False)
@click.option(
    "--since",
    metavar="WHEN",
    help="Only changes since WHEN: a duration back from now (30m, 24h, 7d) or a date/time "
    "(2026-11-27, 2026-11-27T03:00).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=100000),
    default=100,
    show_default=True,
    metavar="N",
    help="Show at most the N newest changes.",
)
@common_options
def history(camera: str | None, since: str | None, limit: int) -> int:
    """Show the recorded changes of state (every camera, or CAMERA), oldest first.

    CAMERA is a MAC address, IP address or hostname (also of a camera removed
    since). The daemon keeps camera_heartbeat_history_days days of history.

    \b
    Example:
      pumaguard-hb history
      pumaguard-hb history Microseven-Gate --since 24h
    """
    args: dict[str, Any] = {"limit": limit}
    if camera:
        args["camera"] = camera
    if since:
        args["since"] = parse_since(since)
    result = ask("history", args)
    if as_json():
        emit_json(result)
    else:
        from .render import print_history

        print_history(result, console())
    return exits.OK


def parse_since(value: str) -> float:
    """``30m``/``24h``/``7d``/``90s``/``2w`` back from now, or an ISO date/time (local unless
    it names a zone), as Unix seconds."""
    import re
    import time
    from datetime import datetime

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value.lower())
    if m:
        return time.time() - float(m.group(1)) * units[m.group(2)]
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a duration (30m, 24h, 7d) nor a date/time (2026-11-27T03:00)",
            param_hint="--since",
        ) from None


@click.command()
@click.argument("cameras", nargs=-1, metavar="[CAMERA]...")
@click.option(
    "--window",
    type=click.Choice(["24h", "7d"]),
    default="24h",
    show_default=True,
    help="How far back the timelines go.",
)
@common_options
def uptime(cameras: tuple[str, ...], window: str) -> int:
    """Show each camera's up/down timeline over the window, one line per camera.

    Each line: the name, a bar that fills the terminal (\u2588 up, \u2581 down,
    \u2584 up and down, \u00b7 unknown: the daemon did not observe it), the uptime
    of the observed time and how much of the window was observed ("seen").
    Not a terminal: 80 columns. --json prints the daemon's reply (80 slots).

    \b
    Example:
      pumaguard-hb uptime
      pumaguard-hb uptime Microseven-Gate --window 7d
    """
    args: dict[str, Any] = {"window": window, "cameras": list(cameras)}
    if as_json():
        emit_json(ask("timeline", args))
        return exits.OK
    from .timeline import MIN_SLOTS, clean, layout, make_console, print_timeline

    con = make_console()
    first = ask("timeline", {**args, "slots": MIN_SLOTS})  # the names set the bar's width
    names = [clean(c.get("hostname") or c.get("id")) for c in first["cameras"]]
    name_w, cells = layout(con.width, names)
    print_timeline(ask("timeline", {**args, "slots": cells}), name_w, con)
    return exits.OK
