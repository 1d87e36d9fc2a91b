"""``pumaguard-heartbeat``: the daemon's entry point. Runs in the foreground, never forks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pumaguard_hb import __version__, logs
from pumaguard_hb.control.commands import metrics_text
from pumaguard_hb.control.server import ControlServer, SocketInUse
from pumaguard_hb.devices.power_cycle import PowerCycles
from pumaguard_hb.inputs.discovery import run_periodic
from pumaguard_hb.model.errors import InvalidValue, SettingsError
from pumaguard_hb.model.keys import KEYS_BY_NAME
from pumaguard_hb.model.settings import raw_value, untrusted_view
from pumaguard_hb.monitor import UNSAVED, Monitor
from pumaguard_hb.notify import Notifier, watchdog_interval
from pumaguard_hb.outputs.actions import Actions
from pumaguard_hb.outputs.alerts import Alerts
from pumaguard_hb.outputs.metrics import Freshness, MetricsServer
from pumaguard_hb.outputs.page import StatusPage
from pumaguard_hb.paths import daemon_socket_path, default_settings_path, state_dir
from pumaguard_hb.probes.icmp import IcmpMode, detect_access
from pumaguard_hb.stores.cameras import CameraStore
from pumaguard_hb.stores.history import History
from pumaguard_hb.stores.settings_file import SettingsFile
from pumaguard_hb.stores.watch import FileWatch
from pumaguard_hb.stores.webstore import WebUIStore
from pumaguard_hb.stores.webui import WebUI

log = logging.getLogger("pumaguard_hb")

EX_CONFIG = 78
FILE_POLL = 2.0  # seconds between checks of a settings file inotify cannot watch
FILE_SETTLE = 0.3  # seconds without a file event before an edited file is looked at
SETTLE_ROUNDS = 10  # ... but at most this many rounds: a file rewritten without end is read
HISTORY_CHECK = 60.0  # seconds: whether the history needs pruning, asked at most this often
IDLE_MAX = 3600.0  # seconds the housekeeping sleeps at most when nothing happens


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The daemon's command line."""
    parser = argparse.ArgumentParser(
        prog="pumaguard-heartbeat",
        description="Probe PumaGuard's IP cameras and keep their status and last_seen in the "
        "settings file; answer pumaguard-hb on a Unix socket. Runs in the foreground.",
        epilog="Signals: SIGHUP reloads the settings, SIGTERM/SIGINT stop. Exit status: 0 "
        "stopped cleanly, 78 invalid settings, 1 any other failure to start.",
    )
    parser.add_argument(
        "--settings",
        metavar="PATH",
        help="settings file (default: $PUMAGUARD_SETTINGS, else "
        "$XDG_CONFIG_HOME/pumaguard/pumaguard-settings.yaml)",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="the daemon's own settings file, which the web UI never touches; where it sets a "
        "key it wins over --settings, and 'pumaguard-hb config set' writes there "
        "(default: $PUMAGUARD_HB_CONFIG, else none)",
    )
    parser.add_argument(
        "--webui",
        metavar="URL",
        help="web UI mode: take the cameras from the PumaGuard web UI at URL and report "
        "through its API; the daemon then never writes the shared settings file "
        "(default: $PUMAGUARD_WEBUI_URL, else camera_heartbeat_webui_url of --config, else off)",
    )
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help="control socket (default: $PUMAGUARD_HB_SOCKET, else "
        "$XDG_RUNTIME_DIR/pumaguard/heartbeat.sock for a user, /run/pumaguard/heartbeat.sock)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="PATH",
        help="folder for the daemon's own state such as history (default: $STATE_DIRECTORY, "
        "else /var/lib/pumaguard-heartbeat for root, else ~/.local/state/pumaguard-heartbeat)",
    )
    parser.add_argument(
        "--check-config", action="store_true", help="validate the settings file and exit"
    )
    parser.add_argument("--debug", action="store_true", help="log every probe and write")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def raise_fd_limit() -> None:
    """Allow one socket per camera of a large sweep (soft limit up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))


def webui_url(option: str | None, own: SettingsFile | None) -> str:
    """The web UI to report through: --webui > $PUMAGUARD_WEBUI_URL > the own config's key.

    SettingsError for a URL that is not one (or an own config that does not parse).
    """
    key = KEYS_BY_NAME["camera_heartbeat_webui_url"]
    for where, value in (
        ("--webui", option),
        ("PUMAGUARD_WEBUI_URL", os.environ.get("PUMAGUARD_WEBUI_URL")),
    ):
        if value:
            try:
                return str(key.check(where, value))
            except InvalidValue as err:  # err.value: without a user name or password
                raise SettingsError(where, f"invalid value {err.value!r}: {err.allowed}") from None
    if own is None:
        return ""
    doc = own.read().doc
    if own.untrusted:  # a file others may write gives no privileged key (docs/security.md)
        doc = untrusted_view(doc, str(own.path), own.untrusted)
    found = raw_value(doc, key)
    if found is None:
        return ""
    try:
        return str(key.check(found[0], found[1]))
    except InvalidValue as err:
        raise SettingsError(
            str(own.path), f"invalid value {err.value!r}: {err.allowed}", found[0]
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Start the daemon; returns the exit status."""
    args = parse_args(argv)
    logs.setup(args.debug)
    shared = SettingsFile(Path(args.settings) if args.settings else default_settings_path())
    config = args.config or os.environ.get("PUMAGUARD_HB_CONFIG")
    own = SettingsFile(Path(config)) if config else None
    icmp = detect_access()
    try:
        url = webui_url(args.webui, own)
    except SettingsError as err:
        print(f"pumaguard-heartbeat: {err}", file=sys.stderr)
        return EX_CONFIG
    store: CameraStore | None = None
    if url:
        try:
            store = WebUIStore(WebUI(url), lambda: monitor.settings)
        except InvalidValue as err:  # never a traceback (settings.check_webui_url agrees)
            print(f"pumaguard-heartbeat: {err.key}: {err.allowed}", file=sys.stderr)
            return EX_CONFIG
    monitor = Monitor(shared, icmp, store, own)
    monitor.spool = state_dir(args.state_dir) / UNSAVED
    try:
        monitor.load()
    except SettingsError as err:
        print(f"pumaguard-heartbeat: {err}", file=sys.stderr)
        return EX_CONFIG
    if args.check_config:
        s = monitor.settings
        where = f"web UI {url}" if url else f"{len(monitor.cameras)} cameras"
        mine = f", config {own.path}" if own else ""
        print(
            f"{shared.path}: ok ({where}{mine}, method {s.method}, "
            f"interval {s.interval}s{'' if s.enabled else ', monitoring disabled'})"
        )
        return 0
    if icmp.mode is IcmpMode.UNAVAILABLE:
        log.error("%s", icmp.problem)
    raise_fd_limit()
    history = History(state_dir(args.state_dir), monitor.settings.history_days)
    history.open()  # on failure: one clear error, and the daemon runs without history
    power = power_cycles(monitor, state_dir(args.state_dir), store)
    try:
        return asyncio.run(serve(monitor, daemon_socket_path(args.socket), history, power))
    except SocketInUse as err:
        log.error("%s", err)
        return 1
    except OSError as err:
        log.error("cannot start: %s", err)
        return 1
    finally:
        history.close()


def power_cycles(monitor: Monitor, state: Path, store: CameraStore | None) -> PowerCycles:
    """Power cycling (docs/power-cycle.md): its record read back from the state folder; in
    web UI mode a plug named by its MAC is found in the web UI's plug list."""
    plug_list = None
    if isinstance(store, WebUIStore):
        client = store.client

        async def plug_list() -> list[dict[str, Any]]:
            return await asyncio.to_thread(client.plugs)

    check = monitor.schedule.check_now
    power = PowerCycles(state, lambda: monitor.cameras, lambda: monitor.settings, check, plug_list)
    power.load()
    return power


async def serve(
    monitor: Monitor,
    socket_path: Path,
    history: History | None = None,
    power: PowerCycles | None = None,
) -> int:
    """Run until SIGTERM/SIGINT: sweeps, the control socket, file watching, sd_notify,
    the history, power cycling and the optional metrics listener."""
    loop = asyncio.get_running_loop()
    if history is not None:
        monitor.use_history(history)
    metrics_server = MetricsServer(  # bodies cached per sweep or change (Freshness)
        lambda: metrics_text(monitor), StatusPage(monitor, max_age=0), Freshness(monitor)
    )
    notifier = Notifier()
    monitor.notifier = notifier
    server = ControlServer(monitor, socket_path)
    actions = Actions(lambda: monitor.settings)  # webhooks and command, docs/actions.md
    monitor.listeners.append(actions.notify)
    alerts = Alerts(  # mail and Apprise, docs/alerts.md
        lambda: monitor.settings,
        lambda: (monitor.station.connected(), len(monitor.station)),
        {c.id: c.seen.since for c in monitor.station.cameras.values() if c.seen.since},
    )
    monitor.listeners.append(alerts.notify)
    monitor.forgetters.append(alerts.forget)  # a camera gone: its state goes too
    housekeeping, discovery = asyncio.Event(), asyncio.Event()

    def happened(*_: object) -> None:  # a sweep starts or ends, a re-plan, a state change
        housekeeping.set()
        discovery.set()

    monitor.schedule.watchers.append(happened)
    monitor.listeners.append(happened)
    if power is not None:
        monitor.power = power
        monitor.swept.append(power.swept)
        monitor.forgetters.append(power.forget)
        power.listeners += [actions.power, alerts.power]  # the events, docs/power-cycle.md
    await server.start()
    stop = asyncio.Event()

    reloads: set[asyncio.Task[object]] = set()

    def reload() -> None:  # RELOADING=1 ... READY=1 around it, as for `pumaguard-hb reload`
        task: asyncio.Task[object] = asyncio.create_task(monitor.reload("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    s = monitor.settings
    log.info(
        "pumaguard-heartbeat %s started: %s, method %s, interval %ss, ICMP %s, "
        "settings %s, socket %s",
        __version__,
        f"web UI mode ({monitor.store.info()['url']})"
        if monitor.webui
        else f"{len(monitor.cameras)} cameras",
        s.method,
        s.interval,
        monitor.icmp.mode.value,
        monitor.shared.path,
        socket_path,
    )
    notifier.ready(monitor.summary_line())
    kept = history if history is not None and history.available else None
    tasks = [
        asyncio.create_task(monitor.schedule.run(), name="sweeps"),
        asyncio.create_task(
            _housekeeping(monitor, notifier, metrics_server, housekeeping, kept),
            name="housekeeping",
        ),
        asyncio.create_task(_discovery(monitor, discovery), name="discovery"),
    ]
    interval = watchdog_interval()
    if interval:
        tasks.append(asyncio.create_task(_watchdog(monitor, notifier, interval), name="watchdog"))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    notifier.stopping()
    log.info("stopping")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if power is not None:
        await power.close()  # a cycle under way: the plug's own timer gives the power back
    await actions.close()  # a short grace for pending webhooks and commands
    await alerts.close()  # the same for alert messages
    await server.close()
    await monitor.stop()  # bounded; what it cannot write waits for the next start
    failed = 0
    for finished in done:
        if finished is not stopper and not finished.cancelled() and finished.exception():
            log.error("task %s failed: %r", finished.get_name(), finished.exception())
            failed += 1
    return 1 if failed else 0


async def _housekeeping(
    monitor: Monitor,
    notifier: Notifier,
    metrics: MetricsServer,
    wake: asyncio.Event,
    history: History | None,
) -> None:
    """Runs when something happens, never on a clock (a Pi's CPU sleeps between sweeps):
    an edit of a settings file by others (inotify on their folders, stores/watch.py; where
    it cannot watch, a look every FILE_POLL seconds), a sweep starting or ending, a re-plan,
    a state change (``wake``). Each time: reload an edited file, follow the metrics listener
    setting, keep STATUS= current under systemd, prune the history when it is due."""
    files = [monitor.shared.path] + ([monitor.own.path] if monitor.own else [])
    edits = [0]  # file events since the last look

    def edited() -> None:
        edits[0] += 1
        wake.set()

    watch = FileWatch(files, edited)
    watch.start()
    history_checked = time.monotonic()  # the first look a minute after the start, as ever
    try:
        while True:
            wake.clear()
            for _ in range(SETTLE_ROUNDS):  # a burst of edits (unlink, mkdir; truncate,
                seen = edits[0]  # write) is looked at once, when it is over
                if not seen:
                    break
                await asyncio.sleep(FILE_SETTLE)
                if edits[0] == seen:
                    break
            edits[0] = 0
            watch.rewatch()  # a folder back, a symlink pointing elsewhere
            async with monitor.publisher.lock:  # a write of ours is adopted before comparing
                changed = monitor.file_changed()
            if changed:
                await monitor.reload("file changed", notify=False)
                await monitor.flush()  # changes held back while the file was broken
            await metrics.apply(monitor.settings.metrics_listen)
            if notifier.enabled:
                notifier.status(monitor.summary_line())  # sent only when the text changed
            if history is not None and time.monotonic() - history_checked >= HISTORY_CHECK:
                history_checked = time.monotonic()
                history.days = monitor.settings.history_days
                if history.needs_prune():
                    await asyncio.to_thread(history.prune_quietly)
            with contextlib.suppress(TimeoutError):  # not wait_for: see schedule.run
                async with asyncio.timeout(FILE_POLL if watch.polling else IDLE_MAX):
                    await wake.wait()
    finally:
        watch.close()
        await metrics.close()


async def _discovery(monitor: Monitor, wake: asyncio.Event) -> None:
    """Periodic ONVIF discovery (docs/discovery.md) while camera_heartbeat_discovery_interval
    is set; while it is 0 (the default) nothing runs and nothing wakes up. Started and
    stopped as the settings change (``wake``)."""
    while True:
        wake.clear()
        if not monitor.settings.discovery_interval:
            monitor.discoveries.devices.clear()
            await wake.wait()
            continue
        runner = asyncio.create_task(run_periodic(monitor))
        try:
            while monitor.settings.discovery_interval and not runner.done():
                wake.clear()
                woken = asyncio.create_task(wake.wait())
                await asyncio.wait([runner, woken], return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
            if runner.done():
                runner.result()  # its failure is this task's: the daemon says so and stops
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


async def _watchdog(monitor: Monitor, notifier: Notifier, interval: float) -> None:
    while True:
        notifier.watchdog(monitor.summary_line())  # STATUS= too, in the same datagram
        await asyncio.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
