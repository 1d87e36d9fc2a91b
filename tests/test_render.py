"""Outside text is shown literally in every human view of the CLI (issue 11, item 3).

Hostnames (DHCP, ``camera add``, the settings file), reasons, problems and paths come
from outside; rich would read ``[/]`` or ``[bold]`` in them as markup (a MarkupError,
"internal error", or text that silently vanishes).
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from helpers_cli import HbDaemon, Listeners, camera_entry, clean_env, run_cli, write_settings
from pumaguard_hb_cli import render
from rich.console import Console

HOSTILE = ["Microseven-Gate[/]", "Microseven-[bold]Barn", "Microseven-[red]X[/red]", "[/]"]


def shown(*parts: Any) -> str:
    out = io.StringIO()
    console = Console(file=out, no_color=True, highlight=False, emoji=False, width=400)
    for part in parts:
        console.print(part)
    return out.getvalue()


def hostile_cameras(now: float) -> list[dict[str, Any]]:
    return [
        {
            "id": f"00:11:22:33:44:{i:02x}",
            "hostname": name,
            "ip_address": "127.0.0.2",
            "mac_address": f"00:11:22:33:44:{i:02x}",
            "status": "disconnected",
            "last_seen": "[bold]not a time[/bold]",
            "since": now - 10,
            "reason": f"tcp 127.0.0.2:80 refused [{name}]",
            "problem": None if i else "heartbeat_method: 'x[/]' is not allowed",
            "uptime_24h": 50.0,
            "recent": [{"at": now - 5, "old": "connected", "new": "disconnected"}],
        }
        for i, name in enumerate(HOSTILE)
    ]


def test_views_show_markup_like_text_literally() -> None:
    now = time.time()
    cams = hostile_cameras(now)
    status = {
        "daemon": {
            "version": "0.1[/]",
            "method": "tcp[bold]",
            "interval_s": 60,
            "icmp_mode": "none",
            "icmp_problem": "no [red]raw[/] socket",
            "settings_path": "/srv/[bold]x[/bold]/pumaguard-settings.yaml",
            "settings_error": "does not parse [/] at line 3",
            "write_error": "cannot write [dim]x",
            "history": {"available": False, "problem": "cannot use [/] here"},
        },
        "summary": {"total": len(cams), "connected": 0},
        "cameras": cams,
    }
    out = shown(render.status_view(status))
    watch = shown(render.status_view(status, watch=True, now=now, width=400))
    for text in (out, watch):
        for name in HOSTILE:
            assert name in text
        assert "refused [Microseven-[bold]Barn]" in text
        assert "/srv/[bold]x[/bold]/pumaguard-settings.yaml" in text
        assert "does not parse [/] at line 3" in text
        assert "cannot write [dim]x" in text
        assert "no [red]raw[/] socket" in text
        assert "tcp[bold]" in text
    assert "[bold]not a time[/bold]" in out
    assert "cannot use [/] here" in out
    assert "heartbeat_method: 'x[/]' is not allowed" in out

    check = io.StringIO()
    render.print_check(
        {"cameras": {c["mac_address"]: {**c, "reachable": False} for c in cams}},
        Console(file=check, no_color=True, width=400),
    )
    for name in HOSTILE:
        assert name in check.getvalue()

    history = io.StringIO()
    render.print_history(
        {
            "changes": [
                {
                    "at": now,
                    "camera_id": "x",
                    "hostname": name,
                    "ip_address": "127.0.0.2",
                    "old": "connected[/]",
                    "new": "disconnected",
                    "method": "tcp[bold]",
                    "reason": f"refused [{name}]",
                }
                for name in HOSTILE
            ]
        },
        Console(file=history, no_color=True, width=400),
    )
    for name in HOSTILE:
        assert name in history.getvalue()
        assert f"refused [{name}]" in history.getvalue()
    assert "connected[/] → disconnected" in history.getvalue()


def test_hostile_names_from_dhcp_camera_add_and_the_file(tmp_path: Path) -> None:
    """The real daemon and CLI: names arriving by every way in are shown as they are."""
    folder = tmp_path / "st[bold]ation[red]"  # the settings path is outside text too
    folder.mkdir()
    ls = Listeners()
    port = ls.open_same_port(["127.0.0.2"])
    settings = write_settings(
        folder / "pumaguard-settings.yaml",
        {
            "camera-heartbeat-interval": 3600,
            "camera-heartbeat-tcp-port": port,
            "camera-heartbeat-tcp-timeout": 2,
            "cameras": [
                camera_entry("Microseven-Gate[/]", "127.0.0.2", "00:11:22:33:44:01"),
                camera_entry("Microseven-[bold]Barn", "127.0.0.4", "00:11:22:33:44:02"),
            ],
        },
    )
    sock = tmp_path / "hb.sock"
    d = HbDaemon(settings, sock)
    try:
        d.start()
        env = clean_env(PUMAGUARD_HB_SOCKET=str(sock))
        added = run_cli("camera", "add", "Microseven-[red]Added[/red]", "127.0.0.5", env=env)
        assert added.returncode == 0, added.stderr
        assert "Microseven-[red]Added[/red]" in added.stdout
        event = run_cli(
            "dhcp-event", "add", "00:11:22:33:44:09", "127.0.0.6", "Microseven-Yard[/]", env=env
        )
        assert event.returncode == 0, event.stderr
        names = [
            "Microseven-Gate[/]",
            "Microseven-[bold]Barn",
            "Microseven-[red]Added[/red]",
            "Microseven-Yard[/]",
        ]
        views = {
            "check-now": run_cli("check-now", env=env),
            "status": run_cli("status", env=env),
            "watch": run_cli("status", "--watch", "--count", "1", env=env),
            "history": run_cli("history", env=env),
        }
        for what, result in views.items():
            assert "Traceback" not in result.stderr, (what, result.stderr)
            assert "internal error" not in result.stderr, (what, result.stderr)
            assert result.returncode in (0, 1, 2, 3), (what, result.returncode, result.stderr)
            # history lists changes of state: Gate came up (it answers), Yard went down
            expected = names[::3] if what == "history" else names
            for name in expected:
                assert name in result.stdout, (what, name, result.stdout)
        assert str(settings) in views["status"].stdout
        one = run_cli("check-now", "Microseven-Gate[/]", env=env)
        assert "Microseven-Gate[/]" in one.stdout, one.stderr
    finally:
        d.stop()
        ls.close_all()
