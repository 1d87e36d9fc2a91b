"""The camera model's transitions (pure): which side wins for each field."""

from __future__ import annotations

from typing import Any

import pytest

from pumaguard_hb.model.camera import CONNECTED, DISCONNECTED, Spec
from pumaguard_hb.model.errors import Conflict, InvalidValue
from pumaguard_hb.model.probing import ProbeResult
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.model.station import Station, check_event, target_for

MAC = "aa:bb:cc:dd:ee:01"
T0 = 1_800_000_000.0
UP = ProbeResult(True, "tcp", 1.5, "tcp 127.0.0.2:80 connected")
DOWN = ProbeResult(False, "tcp", None, "tcp 127.0.0.2:80 timed out after 3.0s")


def entry(**extra: Any) -> dict[str, Any]:
    base = {
        "hostname": "Microseven-Gate",
        "ip_address": "127.0.0.2",
        "mac_address": MAC,
        "last_seen": "2026-11-30T10:00:00Z",
        "status": CONNECTED,
    }
    return base | extra


def station_with(*entries: dict[str, Any]) -> Station:
    st = Station()
    st.listing(list(entries) or [entry()], T0)
    return st


def probe(st: Station, result: ProbeResult, s: Settings | None = None, at: float = T0) -> Any:
    s = s or Settings()
    target = target_for(st.cameras[MAC], s)
    assert target is not None
    return st.observe(target, result, s, at, "2026-12-01T08:00:00Z")


def test_listing_takes_the_report_of_a_camera_not_yet_observed() -> None:
    st = station_with(entry(status=DISCONNECTED))
    cam = st.cameras[MAC]
    assert (cam.status, cam.last_seen, cam.seen.known) == (
        DISCONNECTED,
        "2026-11-30T10:00:00Z",
        False,
    )
    st.listing([entry(status=CONNECTED, last_seen="2026-11-30T11:00:00Z")], T0)
    assert (cam.status, cam.last_seen) == (CONNECTED, "2026-11-30T11:00:00Z")


def test_a_foreign_status_never_overrides_what_the_daemon_observed() -> None:
    st = station_with()
    change = probe(st, DOWN)
    assert change is not None and change.old == CONNECTED
    cam = st.cameras[MAC]
    # the web UI writes its stale memory back: connected, a newer last_seen
    outcome = st.listing([entry(status=CONNECTED, last_seen="2026-12-01T09:00:00Z")], T0 + 5)
    assert outcome.added == [] and outcome.removed == []
    assert (cam.status, cam.last_seen) == (DISCONNECTED, "2026-11-30T10:00:00Z")
    # so the next failed probe is no change at all: no false "up" then "down"
    assert probe(st, DOWN, at=T0 + 60) is None


def test_the_outside_list_wins_for_the_spec_and_for_membership() -> None:
    st = station_with(entry(), entry(mac_address="aa:bb:cc:dd:ee:02", ip_address="127.0.0.3"))
    probe(st, UP)
    outcome = st.listing(
        [entry(ip_address="127.0.0.9", hostname="Renamed", heartbeat_port=8080)], T0
    )
    cam = st.cameras[MAC]
    assert [c.id for c in outcome.removed] == ["aa:bb:cc:dd:ee:02"]
    assert [c.id for c in outcome.respecced] == [MAC]
    assert (cam.hostname, cam.ip_address, cam.overrides) == ("Renamed", "127.0.0.9", {"port": 8080})
    assert cam.seen.known and cam.status == CONNECTED  # what was observed stays


def test_a_camera_listed_twice_counts_once() -> None:
    st = Station()
    outcome = st.listing([entry(), entry(hostname="Second")], T0)
    assert outcome.duplicates == [MAC] and st.cameras[MAC].hostname == "Microseven-Gate"


def test_thresholds_decide_the_status_and_every_contact_sets_last_seen() -> None:
    s = Settings(failure_threshold=2, recovery_threshold=2)
    st = station_with()
    cam = st.cameras[MAC]
    assert probe(st, DOWN, s) is None and cam.status == CONNECTED
    change = probe(st, DOWN, s, at=T0 + 60)
    assert change is not None and cam.status == DISCONNECTED and cam.seen.since == T0 + 60
    assert cam.last_seen == "2026-11-30T10:00:00Z"  # down keeps the last good contact
    assert probe(st, UP, s, at=T0 + 120) is None and cam.status == DISCONNECTED
    assert cam.last_seen == "2026-12-01T08:00:00Z"  # a contact is a contact
    assert probe(st, UP, s, at=T0 + 180) is not None and cam.status == CONNECTED


def test_a_result_for_an_old_address_is_dropped() -> None:
    st = station_with()
    s = Settings()
    old_target = target_for(st.cameras[MAC], s)
    assert old_target is not None
    event = check_event("old", MAC, "127.0.0.7", "Microseven-Gate")
    assert event is not None
    st.dhcp(event, s.hostname_patterns, T0, "2026-12-01T08:00:00Z")
    cam = st.cameras[MAC]
    assert cam.ip_address == "127.0.0.7" and cam.status == CONNECTED
    assert st.observe(old_target, DOWN, s, T0 + 1, "x") is None
    assert cam.status == CONNECTED and cam.seen.fails == 0
    # and a result of a method that is no longer the camera's is dropped too
    new_target = target_for(cam, s)
    assert new_target is not None
    assert st.observe(new_target, DOWN, Settings(method="icmp"), T0 + 2, "x") is None


def test_dhcp_learns_cameras_by_name_and_updates_known_ones() -> None:
    st = Station()
    s = Settings()
    laptop = check_event("add", "aa:bb:cc:dd:ee:99", "127.0.0.50", "laptop")
    assert laptop is not None
    assert st.dhcp(laptop, s.hostname_patterns, T0, "t").camera is None and len(st) == 0
    reolink = check_event("add", "AA-BB-CC-DD-EE-05", "127.0.0.5", "Reolink-Barn")
    assert reolink is not None
    outcome = st.dhcp(reolink, s.hostname_patterns, T0, "2026-12-01T08:00:00Z")
    assert outcome.learned and outcome.camera is not None
    assert (outcome.camera.status, outcome.camera.last_seen) == (CONNECTED, "2026-12-01T08:00:00Z")
    unknown = check_event("old", "aa:bb:cc:dd:ee:05", "127.0.0.6", "unknown")
    assert unknown is not None and unknown.hostname == ""
    outcome = st.dhcp(unknown, s.hostname_patterns, T0 + 1, "t2")
    cam = st.cameras["aa:bb:cc:dd:ee:05"]
    assert (cam.hostname, cam.ip_address) == ("Reolink-Barn", "127.0.0.6") and outcome.spec_changed
    release = check_event("del", "aa:bb:cc:dd:ee:05", "127.0.0.6", None)
    assert release is not None
    outcome = st.dhcp(release, s.hostname_patterns, T0 + 2, "t3")
    assert outcome.change is not None and cam.status == DISCONNECTED and cam.last_seen == "t2"


def test_learning_is_bounded() -> None:
    st = Station()
    patterns = Settings().hostname_patterns
    for i in range(5):
        event = check_event("add", f"aa:bb:cc:00:00:{i:02x}", f"127.0.1.{i + 1}", "Microseven-x")
        assert event is not None
        outcome = st.dhcp(event, patterns, T0, "t", max_learned=3)
        assert outcome.refused == (i >= 3)
    assert len(st) == 3
    # a known camera's events still count when the station is full
    event = check_event("del", "aa:bb:cc:00:00:00", "127.0.1.1", None)
    assert event is not None and st.dhcp(event, patterns, T0, "t", max_learned=3).change


def test_bad_dhcp_input_is_refused_and_other_actions_ignored() -> None:
    assert check_event("tftp", "x", "y", None) is None
    for args in (
        ("add", "not-a-mac", "127.0.0.1"),
        ("add", MAC, "999.1.1.1"),
        ("bogus", MAC, "127.0.0.1"),
    ):
        with pytest.raises(InvalidValue):
            check_event(*args, None)
    with pytest.raises(InvalidValue):
        check_event("add", MAC, "127.0.0.1", "name\x1b[2J")


def test_by_hand_add_refuses_a_taken_id_and_remove_finds_by_any_name() -> None:
    st = station_with()
    with pytest.raises(Conflict):
        st.add(Spec(MAC, "again", "127.0.0.8", MAC))
    cam = st.add(Spec("ip:127.0.0.8", "Pond", "127.0.0.8", ""))
    assert cam.status == DISCONNECTED and cam.last_seen is None and not cam.seen.known
    assert st.find("pond") is cam and st.find("127.0.0.8") is cam
    assert st.find("AA-BB-CC-DD-EE-01").id == MAC
    assert st.remove("ip:127.0.0.8") is cam and len(st) == 1
