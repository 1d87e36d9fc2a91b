"""``pumaguard-hb``: ask pumaguard-heartbeat which cameras are reachable, and tell it what to do.

Talks to the daemon only through :mod:`pumaguard_hb.control.client`. Every failure is
one line on stderr and a documented exit status (see :mod:`.exits`); rich is
imported only for human output, so ``--json`` starts fast. The commands are in one
module per group: ``commands_status`` (status, check-now, metrics), ``commands_history``
(history, uptime), ``commands_station`` (camera, config, reload) and ``commands_ways``
(dhcp-event, discover, alert test); what they share is in ``common``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from pumaguard_hb.control.client import DaemonNotRunning, NoAnswer, NotPermitted
from pumaguard_hb.control.protocol import ProtocolError
from pumaguard_hb.model.errors import HeartbeatError

from . import commands_history, commands_station, commands_status, commands_ways, exits
from .common import PROG, CliError, common_options, help_without_command

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(
    context_settings=CONTEXT,
    invoke_without_command=True,
    epilog="""\b
Exit status:
  0  success; status/check-now: every camera is connected
  1  status/check-now: at least one camera is disconnected
  2  bad command, option or argument
  3  the daemon is not running
  4  permission denied (join the daemon's group)
  5  camera not found
  6  the daemon rejected the request (invalid value, conflict, disabled)
  7  no answer, protocol or internal error
""",
)
@common_options
@click.version_option(package_name="pumaguard-heartbeat", prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Query and control pumaguard-heartbeat, the PumaGuard camera monitor.

    \b
    Examples:
      pumaguard-hb status
      pumaguard-hb check-now
      pumaguard-hb status --json | jq '.cameras[] | {hostname, status}'
    """
    help_without_command(ctx)


for command in (
    commands_status.status,
    commands_status.check_now,
    commands_status.metrics,
    commands_history.history,
    commands_history.uptime,
    commands_station.camera,
    commands_station.config,
    commands_station.reload,
    commands_station.power_cycle,
    commands_ways.dhcp_event,
    commands_ways.discover,
    commands_ways.alert,
):
    cli.add_command(command)


# -- entry point ----------------------------------------------------------------------------


def _fail(message: str, status: int) -> int:
    from pumaguard_hb.model.text import printable  # an error may quote text from outside

    click.echo(f"{PROG}: {printable(message)}", err=True)
    return status


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status; never raises (but SystemExit)."""
    from pumaguard_hb.model.errors import InvalidValue, SettingsError

    try:
        rv = cli.main(args=argv, prog_name=PROG, standalone_mode=False)
        return rv if isinstance(rv, int) else exits.OK
    except click.UsageError as err:
        where = err.ctx.command_path if err.ctx else PROG
        return _fail(f"{err.format_message()} (see '{where} --help')", exits.USAGE)
    except click.ClickException as err:
        return _fail(err.format_message(), err.exit_code)
    except click.Abort:
        return exits.INTERRUPTED
    except KeyboardInterrupt:
        return exits.INTERRUPTED
    except CliError as err:
        return _fail(str(err), err.status)
    except DaemonNotRunning as err:
        return _fail(str(err), exits.NOT_RUNNING)
    except NotPermitted as err:
        return _fail(str(err), exits.PERMISSION)
    except NoAnswer as err:
        return _fail(str(err), exits.FAILURE)
    except ProtocolError as err:
        return _fail(err.message, exits.for_error_code(err.code))
    except (InvalidValue, SettingsError) as err:
        return _fail(str(err), exits.REJECTED)
    except HeartbeatError as err:
        return _fail(str(err), exits.FAILURE)
    except BrokenPipeError:
        # the reader went away (pumaguard-hb status | head): no traceback, no more output
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return exits.FAILURE
    except Exception as err:
        return _fail(f"internal error: {type(err).__name__}: {err}", exits.FAILURE)


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
