"""Power-cycling hung cameras through their smart plugs, beside the sweeps
(docs/power-cycle.md).

After every sweep :meth:`PowerCycles.swept` asks the pure rules (``model/power.py``) about
each disconnected camera that has a ``heartbeat_plug``; when only the plug is left to ask,
a task asks it and, if the rules still agree, runs the cycle: the plug's own timer cuts
the power for ``off_time`` seconds (``Switch.Set on=false toggle_after=…``), so the camera
gets it back even if this daemon, the station or the network dies meanwhile; then the
plug is checked to be on again, and the camera is checked until it answers or
``boot_time`` has passed. Probes never wait for any of it.

What each camera's cycles were is kept in ``power-cycles.json`` in the state folder (0600,
written before the power is cut and after the outcome), so that a restart neither repeats
a cycle nor forgets one: a cycle found under way at start was interrupted and counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pumaguard_hb.devices.shelly import (
    Plug,
    PlugError,
    parse_plug,
    switch_set,
    switch_status,
)
from pumaguard_hb.model.camera import CONNECTED, Camera, label
from pumaguard_hb.model.errors import Conflict, HeartbeatError
from pumaguard_hb.model.events import (
    NEEDS_VISIT,
    POWER_CYCLED,
    RECOVERED_AFTER_CYCLE,
    PowerEvent,
    PowerListener,
)
from pumaguard_hb.model.power import (
    ASK_PLUG,
    CYCLE,
    INTERRUPTED,
    NOT_RECOVERED,
    PLUG_FAILED,
    RECOVERED,
    Decision,
    PlugAnswer,
    Record,
    Rules,
    Situation,
    decide,
)
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.model.text import printable
from pumaguard_hb.stores.own_files import read_own, write_json

log = logging.getLogger(__name__)

STATE_FILE = "power-cycles.json"
MAX_STATE = 1 << 20  # bytes of the state file read at most
PLUG_TIMEOUT = 5.0  # seconds for one call to a plug (or the web UI's plug list)
_FIGURES = re.compile(r"\d+")
SETTLE = 2.0  # seconds after the plug's timer should have switched the power on again

#: the web UI's plug list: the records of GET /api/dhcp/plugs (web UI mode), else None
PlugList = Callable[[], Awaitable[list[dict[str, Any]]]]


class PowerError(Conflict):
    """A power cycle asked for by hand was refused; the message says why (the socket's
    ``conflict``)."""


class PowerCycles:
    """Every camera's power cycles: the decision after each sweep, the sequences, their
    record in the state folder and what status shows of them."""

    def __init__(
        self,
        state_dir: Path,
        cameras: Callable[[], dict[str, Camera]],
        settings: Callable[[], Settings],
        check: Callable[[frozenset[str]], Awaitable[object]],
        plug_list: PlugList | None = None,
    ) -> None:
        self.path = state_dir / STATE_FILE
        self._cameras = cameras
        self._settings = settings
        self._check = check
        self._plug_list = plug_list
        self.listeners: list[PowerListener] = []
        self.records: dict[str, Record] = {}
        self.counts: dict[tuple[str, str], int] = {}  # (camera id, outcome): cycles since start
        self._tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._said: dict[str, str] = {}  # the last reason logged per camera

    # -- the state file ------------------------------------------------------------------

    def load(self) -> None:
        """Read the cycles of earlier runs; a cycle under way when the daemon stopped was
        interrupted: it counts, and its plug's timer has given the power back."""
        try:
            with read_own(self.path) as f:
                raw = json.loads(f.read(MAX_STATE + 1)[:MAX_STATE] or b"{}")
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            log.warning("%s: cannot be read (%s); power cycles start from none", self.path, err)
            return
        if not isinstance(raw, dict):
            return
        now = time.time()
        interrupted = False
        for cid, value in list(raw.items())[:4096]:
            if not isinstance(cid, str):
                continue
            record = Record.from_dict(value)
            record.prune(now)
            if record.running is not None:
                log.warning(
                    "power cycle of %s was interrupted by a stop of the daemon; it counts",
                    printable(cid),
                )
                record.running = None
                record.last_outcome = INTERRUPTED
                record.last_end = now
                interrupted = True
            self.records[cid] = record
        if interrupted:
            self._save()

    def _save(self) -> None:
        now = time.time()
        doc = {}
        for cid, record in self.records.items():
            record.prune(now)
            if record.cycles or record.visit or record.running is not None:
                doc[cid] = record.as_dict()
        try:
            write_json(self.path, doc)
        except OSError as err:
            log.error("cannot write %s: %s", self.path, err)

    # -- what the rules are asked -----------------------------------------------------------

    def rules(self) -> Rules:
        s = self._settings()
        return Rules(
            s.power_cycle,
            s.power_cycle_after,
            s.power_cycle_max_per_day,
            s.power_cycle_off_time,
            s.power_cycle_boot_time,
        )

    def plug_of(self, cam: Camera) -> tuple[str, str] | None:
        """The camera's ``heartbeat_plug`` and its password (``camera_heartbeat_cameras``
        wins over the camera's entry), or None."""
        o = cam.spec.overrides
        s = self._settings()
        if s.camera_overrides and cam.mac_address:
            o = {**o, **s.overrides_for(cam.mac_address)}
        plug = o.get("plug")
        return (plug, o.get("plug_password", "")) if plug else None

    def _situation(self, cam: Camera, by_hand: bool) -> Situation:
        checked = [c for c in self._cameras().values() if c.spec.probe_ip and c.seen.known]
        down = sum(1 for c in checked if c.seen.status != CONNECTED)
        connected = cam.seen.status == CONNECTED
        since = cam.seen.since if cam.seen.known and not connected else None
        return Situation(
            time.time(), connected, since, self.plug_of(cam) is not None,
            len(checked), down, by_hand,
        )  # fmt: skip

    def _record(self, cid: str) -> Record:
        return self.records.setdefault(cid, Record())

    def _say(self, cam: Camera, decision: Decision) -> None:
        """Log a camera's decision once, not every sweep: again only when its reason
        changes in more than its figures ("down for 40 s" and "for 50 s" are one)."""
        shape = _FIGURES.sub("#", decision.reason)
        if self._said.get(cam.id) != shape:
            self._said[cam.id] = shape
            log.info("power cycle of %s: not now: %s", label(cam), decision.reason)

    # -- after every sweep ---------------------------------------------------------------------

    def swept(self) -> None:
        """Called on the loop after each sweep: start the cycles the rules allow."""
        rules = self.rules()
        if not rules.enabled and not any(r.visit for r in self.records.values()):
            return  # off (the default): nothing to decide, nothing to clear
        for cam in list(self._cameras().values()):
            if self.plug_of(cam) is None:
                continue
            record = self.records.get(cam.id)
            if cam.seen.status == CONNECTED and cam.seen.known:
                self._said.pop(cam.id, None)
                if record is not None and record.visit:
                    record.visit = False  # seen again: cycles are allowed again
                    self._save()
                continue
            if not rules.enabled or cam.id in self._tasks:
                continue
            decision = decide(rules, self._situation(cam, False), record or Record(), None)
            if decision.action == ASK_PLUG:
                self._start(cam, by_hand=False)
            elif cam.seen.known:
                self._say(cam, decision)

    def _start(self, cam: Camera, by_hand: bool) -> asyncio.Task[dict[str, Any]]:
        task = asyncio.get_running_loop().create_task(
            self._attempt(cam, by_hand), name=f"power-cycle {cam.id}"
        )
        self._tasks[cam.id] = task

        def done(_task: object, cid: str = cam.id) -> None:
            self._tasks.pop(cid, None)

        task.add_done_callback(done)
        return task

    async def cycle_now(self, cam: Camera) -> dict[str, Any]:
        """``pumaguard-hb power-cycle``: one cycle now under the same rules but the wait;
        PowerError says why not. Returns when the outcome is known."""
        if cam.id in self._tasks:
            raise PowerError(f"{label(cam)}: a power cycle is under way")
        if self.plug_of(cam) is None:
            raise PowerError(f"{label(cam)} has no heartbeat_plug (docs/power-cycle.md)")
        result = await self._start(cam, by_hand=True)
        if not result.get("cycled"):
            raise PowerError(f"{label(cam)}: no power cycle: {result['reason']}")
        return result

    # -- one attempt: ask the plug, decide again, cycle ----------------------------------------

    async def _attempt(self, cam: Camera, by_hand: bool) -> dict[str, Any]:
        record = self._record(cam.id)
        plug, answer = await self._ask(cam)
        decision = decide(self.rules(), self._situation(cam, by_hand), record, answer)
        if decision.action != CYCLE or plug is None:
            self._say(cam, decision)
            return {"camera": cam.id, "cycled": False, "reason": decision.reason}
        # a stop cancels it here: the plug's timer gives the power back; load() counts it
        outcome = await self._cycle(cam, plug, record, decision.reason)
        return {
            "camera": cam.id,
            "cycled": True,
            "outcome": outcome,
            "reason": decision.reason,
            "cycles_today": record.today(time.time()),
        }

    async def _ask(self, cam: Camera) -> tuple[Plug | None, PlugAnswer]:
        """The plug named by the camera's heartbeat_plug, and what it says of itself."""
        named = self.plug_of(cam)
        assert named is not None
        value, password = named
        mode: str | None = None
        try:
            if "://" not in value:  # a MAC: a plug of the web UI's list
                url, mode = await self._from_webui(value)
                plug = parse_plug(url, password)
            else:
                plug = parse_plug(value, password)
            state = await switch_status(plug, PLUG_TIMEOUT)
        except (PlugError, HeartbeatError, OSError) as err:
            return None, PlugAnswer(False, problem=printable(str(err))[:200])
        return plug, PlugAnswer(True, on=state.on, mode=mode)

    async def _from_webui(self, mac: str) -> tuple[str, str]:
        if self._plug_list is None:
            raise PowerError(
                f"plug {mac}: a plug named by its MAC is found in the web UI's plug list, and "
                "this daemon does not report to a web UI (give http://HOST instead)"
            )
        for rec in await self._plug_list():
            if str(rec.get("mac_address", "")).strip().lower() == mac:
                ip, mode = rec.get("ip_address"), rec.get("mode")
                if not isinstance(ip, str) or not ip.strip():
                    raise PowerError(f"plug {mac} has no IP address in the web UI's list")
                host = f"[{ip.strip()}]" if ":" in ip else ip.strip()
                return f"http://{host}", mode if isinstance(mode, str) else "automatic"
        raise PowerError(f"plug {mac} is not in the web UI's plug list")

    async def _cycle(self, cam: Camera, plug: Plug, record: Record, why: str) -> str:
        rules = self.rules()
        now = time.time()
        record.cycles.append(now)
        record.running = now
        self._save()  # before the power is cut: a restart must not repeat this cycle
        log.warning("power cycle of %s: %s", label(cam), why)
        try:
            await switch_set(plug, False, rules.off_time, PLUG_TIMEOUT)
        except PlugError as err:
            return self._end(cam, record, PLUG_FAILED, f"the plug did not switch off: {err}")
        self._event(cam, POWER_CYCLED, f"power off for {rules.off_time:g} s: {why}", record)
        await asyncio.sleep(rules.off_time + SETTLE)
        await self._power_back(cam, plug)
        deadline = time.monotonic() + rules.boot_time
        step = max(1.0, min(5.0, rules.boot_time / 12))
        while True:
            with contextlib.suppress(HeartbeatError):
                await self._check(frozenset({cam.id}))
            current = self._cameras().get(cam.id)
            if current is not None and current.seen.status == CONNECTED:
                return self._end(cam, record, RECOVERED, "it answers again")
            if current is None:
                return self._end(cam, record, NOT_RECOVERED, "it is no longer listed")
            if time.monotonic() + step > deadline:
                return self._end(
                    cam, record, NOT_RECOVERED, f"no answer {rules.boot_time:g} s after power on"
                )
            await asyncio.sleep(step)

    async def _power_back(self, cam: Camera, plug: Plug) -> None:
        """The plug's timer should have switched the power on: check, else switch it on."""
        for _ in range(3):
            try:
                if (await switch_status(plug, PLUG_TIMEOUT)).on:
                    return
                log.warning("power cycle of %s: the plug is still off: switching it on", label(cam))
                await switch_set(plug, True, None, PLUG_TIMEOUT)
                return
            except PlugError as err:
                log.warning("power cycle of %s: %s", label(cam), err)
                await asyncio.sleep(SETTLE)

    def _end(self, cam: Camera, record: Record, outcome: str, detail: str) -> str:
        now = time.time()
        record.running = None
        record.last_end = now
        record.last_outcome = outcome
        self.counts[cam.id, outcome] = self.counts.get((cam.id, outcome), 0) + 1
        log.warning("power cycle of %s: %s: %s", label(cam), outcome, detail)
        if outcome == RECOVERED:
            self._event(cam, RECOVERED_AFTER_CYCLE, detail, record)
        elif record.today(now) >= self.rules().max_per_day:
            record.visit = True
            why = f"{record.today(now)} power cycles in 24 h did not bring it back ({detail})"
            log.warning("camera %s needs a visit: %s", label(cam), why)
            self._event(cam, NEEDS_VISIT, why, record)
        self._save()
        return outcome

    def _event(self, cam: Camera, kind: str, reason: str, record: Record) -> None:
        event = PowerEvent(
            cam.id, cam.hostname, cam.ip_address, cam.mac_address, kind, time.time(),
            reason, record.today(time.time()),
        )  # fmt: skip
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # one broken output must not stop the others
                log.exception("a listener of power events failed")

    # -- what status and metrics show -------------------------------------------------------------

    def view(self, cid: str) -> dict[str, Any] | None:
        """A camera's power cycles for status and --json, or None when it has none."""
        record = self.records.get(cid)
        if record is None:
            return None
        return {
            "cycles_today": record.today(time.time()),
            "last_outcome": record.last_outcome or None,
            "running": cid in self._tasks and record.running is not None,
            "needs_visit": record.visit,
        }

    def forget(self, cid: str) -> None:
        """A camera gone: its decisions are forgotten; its cycles stay counted (a camera
        removed and added again must not get more cycles than the day allows)."""
        self._said.pop(cid, None)

    async def close(self) -> None:
        """Stop: a cycle under way stays as it is (the plug's timer gives the power back);
        the next start counts it as interrupted."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
