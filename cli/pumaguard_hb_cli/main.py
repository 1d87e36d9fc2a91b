"""``pumaguard-hb``: ask pumaguard-heartbeat which cameras are reachable, and tell it what to do.

Talks to the daemon only through :mod:`pumaguard_hb.control.client`. Every failure is
one line on stderr and a documented exit status (see :mod:`.exits`); rich is
imported only for human output, so ``--json`` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pumaguard_hb.control.client import (
    REPLY_TIMEOUT,
    Client,
    DaemonNotRunning,
    NoAnswer,
    NotPermitted,
)
from pumaguard_hb.control.protocol import ProtocolError
from pumaguard_hb.model.errors import HeartbeatError

from . import exits

PROG = "pumaguard-hb"
CHECK_TIMEOUT = 120.0  # seconds a check-now may take (a sweep lasts about one probe timeout)
DHCP_ACTIONS = ("add", "old", "del", "init", "tftp", "arp-add", "arp-del", "relay-snoop")
CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_META = "pumaguard_hb_cli."

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A failure of this command: one line for stderr and an exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# -- options accepted before and after the command -------------------------------------------


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


def _help_without_command(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None and not ctx.resilient_parsing:
        click.echo(ctx.get_help())
        ctx.exit(exits.USAGE)


# -- commands -------------------------------------------------------------------------------


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
    _help_without_command(ctx)


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command("check-now")
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


@cli.group(invoke_without_command=True)
@common_options
@click.pass_context
def camera(ctx: click.Context) -> None:
    """Add or remove a camera by hand.

    \b
    Example:
      pumaguard-hb camera add Microseven-Gate 192.168.52.101 --mac 00:11:22:33:44:55
      pumaguard-hb camera remove Microseven-Gate
    """
    _help_without_command(ctx)


@camera.command("add")
@click.argument("hostname")
@click.argument("ip")
@click.option("--mac", metavar="MAC", help="The camera's MAC address (its stable id).")
@common_options
def camera_add(hostname: str, ip: str, mac: str | None) -> int:
    """Add a camera; it is checked right away.

    Without --mac the camera is identified by its IP address.

    \b
    Example:
      pumaguard-hb camera add Microseven-Gate 192.168.52.101 --mac 00:11:22:33:44:55
    """
    args = {"hostname": hostname, "ip_address": ip}
    if mac:
        args["mac_address"] = mac
    result = ask("camera_add", args)
    if as_json():
        emit_json(result)
    else:
        click.echo(f"added camera {_camera_label(result)}; checking it now")
    return exits.OK


@camera.command("remove")
@click.argument("camera")
@common_options
def camera_remove(camera: str) -> int:
    """Remove a camera, named by its MAC address, IP address or hostname.

    \b
    Example:
      pumaguard-hb camera remove 00:11:22:33:44:55
    """
    result = ask("camera_remove", {"camera": camera})
    if as_json():
        emit_json(result)
    else:
        click.echo(f"removed camera {_camera_label(result)}")
    return exits.OK


def _camera_label(cam: Any) -> str:
    if not isinstance(cam, dict):
        return str(cam)
    name = cam.get("hostname") or cam.get("id")
    ip = f" ({cam['ip_address']})" if cam.get("ip_address") else ""
    mac = f" {cam['mac_address']}" if cam.get("mac_address") else ""
    return f"{name}{ip}{mac}"


@cli.group(invoke_without_command=True)
@common_options
@click.pass_context
def config(ctx: click.Context) -> None:
    """Show or change the heartbeat settings (validated and saved by the daemon).

    \b
    Example:
      pumaguard-hb config get
      pumaguard-hb config set camera_heartbeat_interval 30
    """
    _help_without_command(ctx)


def format_value(value: Any) -> str:
    """A setting's value as it would be written in the YAML settings file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@config.command("get")
@click.argument("key", required=False)
@click.option(
    "--show-secrets",
    is_flag=True,
    help="Show passwords and token-bearing URLs as they are (root only; else scheme and ***).",
)
@common_options
def config_get(key: str | None, show_secrets: bool) -> int:
    """Show the heartbeat settings, or the value of one KEY.

    Keys may be spelled with underscores or, like the PumaGuard web UI, hyphens.
    Secrets show as their scheme and *** unless root asks with --show-secrets.

    \b
    Example:
      pumaguard-hb config get
      pumaguard-hb config get camera_heartbeat_interval
      sudo pumaguard-hb config get --show-secrets camera_heartbeat_webhooks
    """
    args: dict[str, Any] = {"key": key} if key else {}
    if show_secrets:
        args["show_secrets"] = True
    result = ask("config_get", args)
    if as_json():
        emit_json(result)
    elif key:
        click.echo(format_value(result.get("value")))
    else:
        settings: dict[str, Any] = result.get("settings") or {}
        helps: dict[str, Any] = result.get("help") or {}
        width = max((len(k) for k in settings), default=0) + 1
        for name, value in settings.items():
            text = f"{name + ':':<{width}} {format_value(value)}"
            if helps.get(name):
                text = f"{text:<{width + 24}} # {helps[name]}"
            click.echo(text)
    return exits.OK


def parse_value(raw: str) -> Any:
    """VALUE as a YAML scalar or flow list: ``30`` → 30, ``true`` → True, ``[a*, b*]`` → list."""
    import yaml

    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise click.BadParameter(
            f"{raw!r} is not a value ({problem}); quote text, write lists as '[a, b]'",
            param_hint="VALUE",
        ) from None
    if not _plain(value):
        return raw  # e.g. a date: the daemon gets the text and says what is allowed
    return value


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


@config.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
@common_options
def config_set(key: str, value: str) -> int:
    """Change one heartbeat setting; it is saved in the settings file and used at once.

    VALUE is read as YAML: 30 is a number, true a boolean, [Microseven*, M7*] a list.

    \b
    Example:
      pumaguard-hb config set camera_heartbeat_interval 30
      pumaguard-hb config set camera_heartbeat_method both
      pumaguard-hb config set camera_heartbeat_hostname_patterns '[Microseven*, M7*]'
    """
    result = ask("config_set", {"key": key, "value": parse_value(value)})
    if as_json():
        emit_json(result)
    else:
        click.echo(f"{result.get('key')}: {format_value(result.get('value'))} (saved)")
    return exits.OK


@cli.command("dhcp-event")
@click.argument("action", type=click.Choice(DHCP_ACTIONS))
@click.argument("mac")
@click.argument("ip")
@click.argument("hostname", required=False)
@click.option(
    "--settings",
    "settings",
    metavar="PATH",
    help="Settings file to write when the daemon is not running (default: $PUMAGUARD_SETTINGS, "
    "else /var/lib/pumaguard-heartbeat/pumaguard-settings.yaml when the service is installed).",
)
@common_options
def dhcp_event(action: str, mac: str, ip: str, hostname: str | None, settings: str | None) -> int:
    """Report a DHCP lease event, as dnsmasq's dhcp-script does.

    ACTION is add, old or del (others are accepted and ignored). When the daemon
    is not running, the event goes to the PumaGuard web UI when the daemon runs in
    web UI mode (and the web UI answers), else into the settings file directly.

    \b
    Example:
      pumaguard-hb dhcp-event add 00:11:22:33:44:55 192.168.52.101 Microseven-Gate
    """
    from pumaguard_hb.inputs.hook import handle_event

    result = handle_event(
        action, mac, ip, hostname, socket_path=socket_path(), settings_path=settings
    )
    if as_json():
        emit_json(
            {
                "message": result.message,
                "applied_by": result.via,
                "settings_path": None
                if result.settings_path is None
                else str(result.settings_path),
            }
        )
    elif result.via == "file":
        click.echo(f"{result.message} (daemon not running; written to {result.settings_path})")
    elif result.via == "webui":
        click.echo(f"{result.message} (daemon not running)")
    else:
        click.echo(result.message)
    return exits.OK


@cli.command()
@common_options
def reload() -> int:
    """Make the daemon re-read its settings file now (like systemctl reload).

    \b
    Example:
      pumaguard-hb reload
    """
    result = ask("reload")
    if as_json():
        emit_json(result)
    else:
        click.echo(str(result.get("message", "settings reloaded")))
    return exits.OK


@cli.command()
@click.option("--add", is_flag=True, help="Add the devices that are not known cameras yet.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.5, max=60),
    default=3.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds to wait for answers.",
)
@click.option(
    "--interface",
    metavar="IF",
    help="Probe on this network interface (or from this IPv4 address); "
    "default: where the multicast route points.",
)
@common_options
def discover(add: bool, timeout: float, interface: str | None) -> int:
    """Find the ONVIF cameras on the camera network (WS-Discovery).

    Sends one WS-Discovery Probe for ONVIF video devices to 239.255.255.250:3702
    and lists every device that answers: its address, service URLs, the name,
    hardware and location it announces, its MAC (when the kernel knows it) and
    whether it is a known camera already. Nothing else is sent, nothing answered.
    Works with the daemon down; --add adds the new ones through the daemon.
    Exit status 0 also when nothing answers; 6 when --add could not add one.

    \b
    Example:
      pumaguard-hb discover
      pumaguard-hb discover --interface eth1 --timeout 5
      pumaguard-hb discover --add
    """
    from .discover import run_discover  # docs/discovery.md

    return run_discover(add, timeout, interface, as_json(), ask)


@cli.group(invoke_without_command=True)
@common_options
@click.pass_context
def alert(ctx: click.Context) -> None:
    """Alerts by mail and Apprise: send a test message.

    \b
    Example:
      pumaguard-hb alert test
    """
    _help_without_command(ctx)


@alert.command("test")
@common_options
def alert_test() -> int:
    """Send a test message through every configured alert channel and show each result.

    Exit status 0 when every channel delivered, 6 when one did not (or none is set up).

    \b
    Example:
      pumaguard-hb alert test
    """
    result = ask("alert_test", timeout=300)
    results: list[dict[str, Any]] = result.get("results") or []
    if as_json():
        emit_json(result)
    else:
        for r in results:
            mark = "sent" if r.get("ok") else "FAILED"
            click.echo(f"{r.get('channel', '?'):<8} {mark}: {r.get('detail', '')}")
    return exits.OK if results and all(r.get("ok") for r in results) else exits.REJECTED


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
