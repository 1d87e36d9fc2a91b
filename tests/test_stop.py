"""A daemon asked to stop stops, even when the stop comes as something wakes it.

Python 3.11's ``asyncio.wait_for`` loses a cancel that arrives in the same turn of the
loop as the event it waits for (fixed in 3.12): a task waiting that way swallowed the
daemon's stop and waited on, and the daemon hung until SIGKILL (seen in CI: the teardown
check of test_hook's daemon found signal 9; reproduced 3 runs in 4 by SIGTERM right after
the first sweep). The waits use ``asyncio.timeout`` now.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from pumaguard_hb.model.settings import Settings
from pumaguard_hb.probes.icmp import IcmpMode
from pumaguard_hb.schedule import Hooks, Schedule


async def _nothing(*_: Any) -> None:
    return None


def _schedule() -> Schedule:
    return Schedule(
        Hooks(
            settings=lambda: Settings(interval=3600),
            icmp_mode=lambda: IcmpMode.PRIVILEGED,
            before=_nothing,
            targets=lambda _ids: [],
            record=lambda _t, _r: None,
            after=_nothing,
            report=lambda _ids, _r: {},
        )
    )


@pytest.mark.parametrize("rounds", [50])
def test_the_sweep_loop_stops_when_cancelled_as_it_is_woken(rounds: int) -> None:
    async def main() -> int:
        stopped = 0
        for _ in range(rounds):
            schedule = _schedule()
            task = asyncio.create_task(schedule.run())
            for _ in range(3):
                await asyncio.sleep(0)  # it waits for its wake-up now
            schedule.settings_changed()  # the wake-up and the stop in one turn
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=5)
            stopped += len(done)
            if not done:  # the failure: clean up so that the loop can close
                task.cancel()
                await asyncio.wait([task], timeout=5)
        return stopped

    # in a thread of its own: a loop that lost the cancel may never give control back
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(asyncio.run(main())), daemon=True)
    runner.start()
    runner.join(60)
    assert result == [rounds], "the sweep loop did not stop when cancelled"
