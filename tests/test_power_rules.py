"""The power-cycle decision as a table (model/power.py; docs/power-cycle.md "The rules")."""

from __future__ import annotations

import pytest

from pumaguard_hb.model.errors import InvalidValue
from pumaguard_hb.model.power import (
    ASK_PLUG,
    CYCLE,
    DAY,
    WAIT,
    PlugAnswer,
    Record,
    Rules,
    Situation,
    check_off_time,
    check_per_day,
    check_plug,
    decide,
)

NOW = 1_800_000_000.0
RULES = Rules(enabled=True, after=300, max_per_day=3, off_time=10, boot_time=120)
DOWN_LONG = Situation(NOW, False, NOW - 600, True, cameras=4, down=1)
ON = PlugAnswer(answered=True, on=True)

# (name, rules, situation, record, plug, action, words in the reason)
CASES = [
    ("long down, plug on: cycle", RULES, DOWN_LONG, Record(), ON, CYCLE, "1 of at most 3"),
    ("the cheap rules pass: ask the plug", RULES, DOWN_LONG, Record(), None, ASK_PLUG, "asked"),
    ("off by default", Rules(), DOWN_LONG, Record(), ON, WAIT, "power cycling is off"),
    (
        "by hand while off",
        Rules(),
        Situation(NOW, False, NOW - 5, True, 4, 1, by_hand=True),
        Record(),
        ON,
        CYCLE,
        "1 of at most 3",
    ),
    (
        "no plug",
        RULES,
        Situation(NOW, False, NOW - 600, False, 4, 1),
        Record(),
        ON,
        WAIT,
        "no heartbeat_plug",
    ),
    (
        "connected",
        RULES,
        Situation(NOW, True, None, True, 4, 0),
        Record(),
        ON,
        WAIT,
        "connected",
    ),
    (
        "connected, by hand",
        RULES,
        Situation(NOW, True, None, True, 4, 0, by_hand=True),
        Record(),
        ON,
        WAIT,
        "connected",
    ),
    (
        "not down long enough",
        RULES,
        Situation(NOW, False, NOW - 100, True, 4, 1),
        Record(),
        ON,
        WAIT,
        "down for 100 s; a power cycle after 5 min",
    ),
    (
        "not judged yet this run",
        RULES,
        Situation(NOW, False, None, True, 4, 1),
        Record(),
        ON,
        WAIT,
        "not been checked",
    ),
    (
        "the after delay counts again from the last cycle",
        RULES,
        DOWN_LONG,
        Record(cycles=[NOW - 200], last_end=NOW - 60),
        ON,
        WAIT,
        "since the last power cycle for 60 s",
    ),
    (
        "a second cycle once the delay has passed again",
        RULES,
        DOWN_LONG,
        Record(cycles=[NOW - 900], last_end=NOW - 400),
        ON,
        CYCLE,
        "2 of at most 3",
    ),
    (
        "more than half the station down: the network",
        RULES,
        Situation(NOW, False, NOW - 600, True, 4, 3),
        Record(),
        ON,
        WAIT,
        "3 of the station's 4 cameras are down",
    ),
    (
        "exactly half down is a camera",
        RULES,
        Situation(NOW, False, NOW - 600, True, 4, 2),
        Record(),
        ON,
        CYCLE,
        "1 of",
    ),
    (
        "more than half down, by hand too",
        RULES,
        Situation(NOW, False, NOW - 600, True, 3, 2, by_hand=True),
        Record(),
        ON,
        WAIT,
        "the network",
    ),
    (
        "a station of one camera: the plug's answer shows the network",
        RULES,
        Situation(NOW, False, NOW - 600, True, 1, 1),
        Record(),
        ON,
        CYCLE,
        "1 of",
    ),
    (
        "the daily maximum",
        RULES,
        DOWN_LONG,
        Record(cycles=[NOW - 7200, NOW - 3600, NOW - 1800], last_end=NOW - 1700),
        ON,
        WAIT,
        "3 power cycles in the last 24 h, the most allowed",
    ),
    (
        "the daily maximum, by hand too",
        RULES,
        Situation(NOW, False, NOW - 600, True, 4, 1, by_hand=True),
        Record(cycles=[NOW - 7200, NOW - 3600, NOW - 1800]),
        ON,
        WAIT,
        "the most allowed",
    ),
    (
        "cycles older than 24 h do not count",
        RULES,
        DOWN_LONG,
        Record(cycles=[NOW - DAY - 5, NOW - DAY - 1, NOW - 3600], last_end=NOW - 3500),
        ON,
        CYCLE,
        "2 of at most 3",
    ),
    (
        "needs a visit until seen again, even after 24 h",
        RULES,
        DOWN_LONG,
        Record(cycles=[NOW - 2 * DAY], last_end=NOW - 2 * DAY, visit=True),
        ON,
        WAIT,
        "needs a visit",
    ),
    (
        "a cycle under way",
        RULES,
        DOWN_LONG,
        Record(running=NOW - 5),
        ON,
        WAIT,
        "under way",
    ),
    (
        "plug does not answer",
        RULES,
        DOWN_LONG,
        Record(),
        PlugAnswer(False, problem="connection refused"),
        WAIT,
        "does not answer: connection refused",
    ),
    (
        "plug off",
        RULES,
        DOWN_LONG,
        Record(),
        PlugAnswer(True, on=False),
        WAIT,
        "its plug is off",
    ),
    (
        "web UI plug in automatic mode is a deterrent",
        RULES,
        DOWN_LONG,
        Record(),
        PlugAnswer(True, on=True, mode="automatic"),
        WAIT,
        "'automatic', not 'on' (an automatic plug is a deterrent)",
    ),
    (
        "web UI plug in mode on",
        RULES,
        DOWN_LONG,
        Record(),
        PlugAnswer(True, on=True, mode="on"),
        CYCLE,
        "1 of",
    ),
]


@pytest.mark.parametrize(
    ("rules", "situation", "record", "plug", "action", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    rules: Rules,
    situation: Situation,
    record: Record,
    plug: PlugAnswer | None,
    action: str,
    words: str,
) -> None:
    decision = decide(rules, situation, record, plug)
    assert (decision.action, words in decision.reason) == (action, True), decision.reason
    assert "\n" not in decision.reason


def test_the_next_allowed_cycle_is_named() -> None:
    record = Record(cycles=[NOW - DAY + 600, NOW - 3600, NOW - 1800])
    reason = decide(RULES, DOWN_LONG, record, ON).reason
    assert reason.endswith("the next is allowed in 10 min"), reason


def test_record_survives_its_file_and_refuses_garbage() -> None:
    record = Record(cycles=[NOW - 10], last_outcome="recovered", last_end=NOW - 5, visit=True)
    assert Record.from_dict(record.as_dict()) == record
    hostile = {
        "cycles": ["x", None, float("nan"), -1, True, *([NOW] * 100)],
        "last_outcome": "y" * 10_000,
        "last_end": "soon",
        "visit": "yes",
        "running": float("inf"),
    }
    back = Record.from_dict(hostile)
    assert back.cycles == [NOW] * 19  # 24 read at most, the five bad ones dropped
    assert len(back.last_outcome) == 100
    assert (back.last_end, back.visit, back.running) == (None, False, None)
    assert Record.from_dict([1, 2]) == Record()


def test_prune_keeps_only_the_last_day() -> None:
    record = Record(cycles=[NOW - DAY - 1, NOW - 10, NOW + 10_000])
    record.prune(NOW)
    assert record.cycles == [NOW - 10]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("AA-BB-CC-DD-EE-FF", "aa:bb:cc:dd:ee:ff"),
        ("http://192.0.2.10", "http://192.0.2.10"),
        ("http://plug-1.local:8080/", "http://plug-1.local:8080/"),
        ("http://[fd42::5]?id=1", "http://[fd42::5]?id=1"),
        (" http://192.0.2.10/?id=15 ", "http://192.0.2.10/?id=15"),
    ],
)
def test_plug_values(value: str, expected: str) -> None:
    assert check_plug("heartbeat_plug", value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        None,
        42,
        "plug",
        "https://192.0.2.10",
        "ftp://192.0.2.10",
        "http://admin:pw@192.0.2.10",
        "http://192.0.2.10/rpc",
        "http://192.0.2.10?id=16",
        "http://192.0.2.10?id=1&x=2",
        "http://192.0.2.10?on=true",
        "http://192.0.2.10#x",
        "http://192.0.2.10:0",
        "http://192.0.2.10:99999",
        "http://192.0.2.10/\x1b[31m",
        "http://",
        "http://" + "a" * 400,
    ],
)
def test_plug_values_refused(value: object) -> None:
    with pytest.raises(InvalidValue) as err:
        check_plug("heartbeat_plug", value)
    assert "\x1b" not in str(err.value) and "pw" not in str(err.value)


def test_counts_and_times_refused() -> None:
    for bad in (0, 25, 1.5, True, "3"):
        with pytest.raises(InvalidValue):
            check_per_day("camera_heartbeat_power_cycle_max_per_day", bad)
    for bad in (0, 0.5, 3601, True, "10"):
        with pytest.raises(InvalidValue):
            check_off_time("camera_heartbeat_power_cycle_off_time", bad)
    assert check_per_day("k", 24) == 24
    assert check_off_time("k", 2.5) == 2.5
