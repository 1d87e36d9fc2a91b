"""``status`` (and ``--watch``), ``check-now`` and ``metrics``: what the daemon sees now."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from pumaguard_hb.control.client import DaemonNotRunning, NoAnswer

from . import exits
from .common import CliError, as_json, ask, common_options, console, emit_json

CHECK_TIMEOUT = 120.0  # seconds a check-now may take (a sweep lasts about one probe timeout)


@click.command()
@click.option("--watch", "-w", is_flag=True, help="Refresh the view in place until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2, max=3600),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between refreshes with --watch.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --watch: stop after N snapshots (for scripts).",
)
@click.option(
    "--wide",
    is_flag=True,
    help="Show every column of the table, even wider than the terminal.",
)
@common_options
def status(watch: bool, interval: float, count: int | None, wide: bool) -> int:
    """Show the daemon and every camera's status.

    Exit status 1 when at least one camera is disconnected. With --watch the
    view refreshes in place on a terminal, with a strip of each camera's recent
    up/down history; in a pipe it prints one snapshot per interval (--json: one
    JSON object per line). Ctrl-C ends it with status 0.

    On a terminal the table fits its width: the less important columns are left
    out (and named under it); --wide shows them all.

    \b
    Example:
      pumaguard-hb status
      pumaguard-hb status --json
      pumaguard-hb status --watch --interval 5
    """
    if watch:
        return watch_status(interval, count)
    if count is not None:
        raise click.UsageError("--count needs --watch")
    result = ask("status")
    if as_json():
        emit_json(result)
    else:
        from .render import print_status

        print_status(result, console(), wide)
    return _status_exit(result)


def _status_exit(result: Any) -> int:
    cameras = result.get("cameras") or [] if isinstance(result, dict) else []
    down = any(c.get("status") != "connected" for c in cameras)
    return exits.DISCONNECTED if down else exits.OK


def watch_status(interval: float, count: int | None) -> int:
    """``status --watch``: rich Live on a terminal, else one snapshot per interval."""
    import time

    from .render import status_view

    con = console()
    live_view = con.is_terminal and not as_json()
    shown = 0
    result: Any = None

    def fetch() -> Any:
        try:
            return ask("status")
        except (DaemonNotRunning, NoAnswer) as err:
            if shown == 0:
                raise
            raise CliError(f"the daemon went away: {err}", exits.NOT_RUNNING) from None

    try:
        if live_view:
            from rich.live import Live

            result = fetch()
            view = status_view(result, watch=True, width=con.width)
            with Live(view, console=con, auto_refresh=False) as live:
                shown = 1
                while count is None or shown < count:
                    time.sleep(interval)
                    result = fetch()
                    live.update(status_view(result, watch=True, width=con.width), refresh=True)
                    shown += 1
        else:
            while count is None or shown < count:
                if shown:
                    time.sleep(interval)
                result = fetch()
                if as_json():
                    click.echo(json.dumps(result, ensure_ascii=False, separators=(",", ":")))
                else:
                    from .render import local_time

                    con.print(f"--- {local_time(time.time())} ---")
                    con.print(status_view(result, watch=True, width=con.width))
                    con.print()
                sys.stdout.flush()
                shown += 1
    except KeyboardInterrupt:
        return exits.OK
    return _status_exit(result)


@click.command()
@common_options
def metrics() -> int:
    """Print Prometheus metrics (text exposition format), as the optional listener serves them.

    \b
    Example:
      pumaguard-hb metrics
      pumaguard-hb metrics | promtool check metrics
    """
    result = ask("metrics")
    if as_json():
        emit_json(result)
    else:
        click.echo(str(result.get("text", "")), nl=False)
    return exits.OK


@click.command("check-now")
@click.argument("cameras", nargs=-1, metavar="[CAMERA]...")
@click.option(
    "--wide",
    is_flag=True,
    help="Show every column of the table, even wider than the terminal.",
)
@common_options
def check_now(cameras: tuple[str, ...], wide: bool) -> int:
    """Probe now (every camera, or the ones named) and show the result.

    A CAMERA is named by its MAC address, IP address or hostname. Exit status 1
    when at least one of the checked cameras is disconnected.

    \b
    Example:
      pumaguard-hb check-now
      pumaguard-hb check-now Microseven-Gate 192.168.52.101
    """
    args = {"cameras": list(cameras)} if cameras else {}
    if as_json():
        result = ask("check_now", args, CHECK_TIMEOUT)
        emit_json(result)
    else:
        from .render import make_console, print_check

        spinner = make_console(stderr=True)
        if spinner.is_terminal:
            with spinner.status("checking cameras…"):
                result = ask("check_now", args, CHECK_TIMEOUT)
        else:
            result = ask("check_now", args, CHECK_TIMEOUT)
        print_check(result, console(), wide)
    checked = result.get("cameras") if isinstance(result, dict) else None
    down = isinstance(checked, dict) and any(
        c.get("status") != "connected" for c in checked.values()
    )
    return exits.DISCONNECTED if down else exits.OK
