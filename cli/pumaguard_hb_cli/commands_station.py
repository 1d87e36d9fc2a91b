"""``camera add|remove``, ``config get|set`` and ``reload``: changing the station by hand."""

from __future__ import annotations

import json
from typing import Any

import click

from . import exits
from .common import as_json, ask, common_options, emit_json, help_without_command


@click.group(invoke_without_command=True)
@common_options
@click.pass_context
def camera(ctx: click.Context) -> None:
    """Add or remove a camera by hand.

    \b
    Example:
      pumaguard-hb camera add Microseven-Gate 192.168.52.101 --mac 00:11:22:33:44:55
      pumaguard-hb camera remove Microseven-Gate
    """
    help_without_command(ctx)


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


@click.group(invoke_without_command=True)
@common_options
@click.pass_context
def config(ctx: click.Context) -> None:
    """Show or change the heartbeat settings (validated and saved by the daemon).

    \b
    Example:
      pumaguard-hb config get
      pumaguard-hb config set camera_heartbeat_interval 30
    """
    help_without_command(ctx)


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


@click.command()
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


@click.command("power-cycle")
@click.argument("camera")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before cutting the power.")
@common_options
def power_cycle(camera: str, yes: bool) -> int:
    """Cut a camera's power through its smart plug now, and wait until it answers again.

    The camera's heartbeat_plug is switched off with the plug's own timer, which switches
    it on again after camera_heartbeat_power_cycle_off_time seconds (so the camera gets
    its power back whatever happens to this station meanwhile); then the camera is checked
    for up to camera_heartbeat_power_cycle_boot_time seconds. The safety rules hold (see
    docs/power-cycle.md): never a connected camera, never when its plug does not answer
    or is off, never when more than half the cameras are down, never more than
    camera_heartbeat_power_cycle_max_per_day cycles in 24 h. Only the wait before an
    automatic cycle is skipped. Members of the pumaguard-heartbeat group and root only.

    Asks before cutting the power unless --yes is given; without a terminal to ask on,
    --yes is required.

    \b
    Exit status: 0 it answers again, 1 it did not come back within the boot time,
    4 not allowed, 5 no such camera, 6 refused (no plug, a safety rule; the reason is
    printed), 3 no daemon, 7 no answer.

    \b
    Example:
      pumaguard-hb power-cycle Microseven-Gate
      pumaguard-hb power-cycle 00:11:22:33:44:55 --yes --json
    """
    import sys

    from pumaguard_hb.model.text import printable

    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("no terminal to ask on: add --yes to cut the power")
        if not click.confirm(f"Cut the power of {printable(camera)} now?", err=True):
            click.echo("not cut", err=True)
            return exits.REJECTED
    settings = ask("config_get").get("settings", {})
    off = float(settings.get("camera_heartbeat_power_cycle_off_time") or 10)
    boot = float(settings.get("camera_heartbeat_power_cycle_boot_time") or 120)
    if not as_json():
        click.echo(
            f"power cycle of {printable(camera)}: power off for {off:g} s, then up to "
            f"{boot:g} s for it to answer...",
            err=True,
        )
    result = ask("power_cycle", {"camera": camera}, off + boot + 60)
    recovered = result.get("outcome") == "recovered"
    if as_json():
        emit_json(result)
    else:
        click.echo(
            f"{printable(str(result.get('camera', camera)))}: {result.get('outcome')} "
            f"({result.get('cycles_today')} power cycles in 24 h)"
        )
    return exits.OK if recovered else exits.DISCONNECTED
