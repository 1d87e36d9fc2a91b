"""``pumaguard-hb discover``: find ONVIF cameras with one WS-Discovery probe (docs/discovery.md).

The probe runs here, in the CLI (it works with the daemon down); the daemon is asked only
which cameras it knows already and, with ``--add``, to add the new ones (``camera add``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from pumaguard_hb.control.client import DaemonNotRunning, NoAnswer, NotPermitted
from pumaguard_hb.control.protocol import ProtocolError
from pumaguard_hb.inputs.discovery import Device, DiscoveryError, hostname_for
from pumaguard_hb.inputs.discovery import is_known as known_camera
from pumaguard_hb.inputs.discovery import probe as send_probe

from . import exits


class DiscoverFailed(click.ClickException):
    """A failure of ``discover``: one line and its exit status (pumaguard-hb prints it)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.exit_code = status  # type: ignore[misc]  # click: a class default


Ask = Callable[..., Any]


def run_discover(add: bool, timeout: float, interface: str | None, json_out: bool, ask: Ask) -> int:
    """``pumaguard-hb discover``: probe, mark the known cameras, add the new ones with --add."""
    cameras = _known_cameras(ask, required=add)
    try:
        devices = _probe_with_progress(timeout, interface, json_out)
    except DiscoveryError as err:
        raise DiscoverFailed(str(err), exits.FAILURE) from None
    rows: list[dict[str, Any]] = []
    refused = 0
    for dev in devices:
        row = dev.to_dict()
        row["known"] = None if cameras is None else known_camera(dev, cameras)
        row["added"] = False
        row["problem"] = None
        if add and not row["known"]:
            try:
                _add(ask, dev)
                row["added"] = True
            except ProtocolError as err:
                row["problem"] = err.message
                refused += 1
        rows.append(row)
    result = {
        "devices": rows,
        "daemon": cameras is not None,
        "timeout_s": timeout,
        "interface": interface,
    }
    if json_out:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        from .render import make_console

        print_devices(result, make_console())
    return exits.REJECTED if refused else exits.OK


def _known_cameras(ask: Ask, required: bool) -> list[dict[str, Any]] | None:
    """The daemon's cameras; None when it cannot be asked (an error when ``required``)."""
    try:
        status = ask("status")
    except (DaemonNotRunning, NotPermitted, NoAnswer) as err:
        if required:
            code = exits.FAILURE  # no answer
            if isinstance(err, NotPermitted):
                code = exits.PERMISSION
            elif isinstance(err, DaemonNotRunning):
                code = exits.NOT_RUNNING
            raise DiscoverFailed(
                f"--add adds cameras through the daemon, which cannot be asked: {err}", code
            ) from None
        return None
    cams = status.get("cameras") if isinstance(status, dict) else None
    return [c for c in cams if isinstance(c, dict)] if isinstance(cams, list) else []


def _probe_with_progress(timeout: float, interface: str | None, quiet: bool) -> list[Device]:
    if quiet:
        return send_probe(timeout, interface)
    from .render import make_console

    progress = make_console(stderr=True)
    if not progress.is_terminal:
        return send_probe(timeout, interface)
    line = f"probing for ONVIF cameras ({timeout:g}s)…"
    if progress.is_dumb_terminal:  # TERM=dumb: no spinner can be drawn, say it once
        progress.print(line, highlight=False)
        return send_probe(timeout, interface)
    with progress.status(line):
        return send_probe(timeout, interface)


def _add(ask: Ask, dev: Device) -> None:
    args = {"hostname": hostname_for(dev), "ip_address": dev.ip_address}
    if dev.mac_address:
        args["mac_address"] = dev.mac_address
    ask("camera_add", args)


def print_devices(result: dict[str, Any], con: Any) -> None:
    """The devices that answered, as a table (rich; every text from outside via ``lit``)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from .render import lit

    rows: list[dict[str, Any]] = result.get("devices") or []
    if not rows:
        con.print(lit(f"no ONVIF device answered within {result.get('timeout_s', 0):g}s"))
        return
    table = Table(box=box.SIMPLE, pad_edge=False, show_edge=False)
    for name in ("IP", "NAME", "HARDWARE", "LOCATION", "MAC", "CAMERA", "XADDRS"):
        table.add_column(name)
    for row in rows:
        if row.get("added"):
            state = lit("added", "bold green")
        elif row.get("problem"):
            state = lit(f"not added: {row['problem']}", "bold red")
        elif row.get("known") is None:
            state = lit("?")
        else:
            state = lit("known" if row["known"] else "new", "" if row["known"] else "bold")
        table.add_row(
            lit(row.get("ip_address") or "-"),
            lit(row.get("name") or "-"),
            lit(row.get("hardware") or "-"),
            lit(row.get("location") or "-"),
            lit(row.get("mac_address") or "-"),
            state,
            lit(" ".join(row.get("xaddrs") or []) or "-"),
        )
    con.print(table)
    new = sum(1 for r in rows if r.get("known") is False)
    tail = "" if result.get("daemon") else " (daemon not running: known cameras not checked)"
    con.print(Text(f"{len(rows)} ONVIF devices, {new} not known cameras{tail}"))
