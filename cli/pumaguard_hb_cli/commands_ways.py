"""The ways in and out: ``dhcp-event`` (the DHCP hook's path), ``discover`` (ONVIF
WS-Discovery) and ``alert test`` (mail and Apprise)."""

from __future__ import annotations

from typing import Any

import click

from . import exits
from .common import as_json, ask, common_options, emit_json, help_without_command, socket_path

DHCP_ACTIONS = ("add", "old", "del", "init", "tftp", "arp-add", "arp-del", "relay-snoop")


@click.command("dhcp-event")
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


@click.command()
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


@click.group(invoke_without_command=True)
@common_options
@click.pass_context
def alert(ctx: click.Context) -> None:
    """Alerts by mail and Apprise: send a test message.

    \b
    Example:
      pumaguard-hb alert test
    """
    help_without_command(ctx)


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
