"""What every ``pumaguard-hb`` command uses: the options given before or after it, the one
request to the daemon, and output for scripts or people.

rich is imported only for human output (:func:`console`), so ``--json`` starts fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pumaguard_hb.control.client import REPLY_TIMEOUT, Client

from . import exits

PROG = "pumaguard-hb"
_META = "pumaguard_hb_cli."

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A failure of this command: one line for stderr and an exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value:  # given at this level: overrides what an outer level got
        ctx.find_root().meta[_META + str(param.name)] = value
    return value


def common_options(f: F) -> F:
    """``--json`` and ``--socket``, accepted by the program and by every command."""
    f = click.option(
        "--socket",
        "socket",
        metavar="PATH",
        expose_value=False,
        callback=_remember,
        help="The daemon's socket (default: $PUMAGUARD_HB_SOCKET, else "
        "/run/pumaguard/heartbeat.sock).",
    )(f)
    f = click.option(
        "--json",
        "json",
        is_flag=True,
        expose_value=False,
        callback=_remember,
        help="Print the result as JSON (for scripts).",
    )(f)
    return f


def as_json() -> bool:
    """True when ``--json`` was given anywhere on the command line."""
    return bool(click.get_current_context().find_root().meta.get(_META + "json"))


def socket_path() -> str | None:
    """The ``--socket`` given anywhere on the command line, if any."""
    value = click.get_current_context().find_root().meta.get(_META + "socket")
    return str(value) if value else None


def ask(cmd: str, args: dict[str, Any] | None = None, timeout: float = REPLY_TIMEOUT) -> Any:
    """Send one request to the daemon and return its result."""
    with Client(socket_path(), timeout) as client:
        return client.call(cmd, args)


def emit_json(value: Any) -> None:
    """Print a result for scripts: indented, stable key order, UTF-8."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def console() -> Any:
    """The rich console for human output (rich is imported here, not at start-up)."""
    from .render import make_console

    return make_console()


def help_without_command(ctx: click.Context) -> None:
    """A group run without a command: print its help, exit status 2."""
    if ctx.invoked_subcommand is None and not ctx.resilient_parsing:
        click.echo(ctx.get_help())
        ctx.exit(exits.USAGE)
