"""The same behaviour from both places where cameras live: the settings file (standalone)
and the real PumaGuard web UI (web UI mode). Each test runs against both stores."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from webui_harness import (
    camera_record,
    require_webui,
    running_webui,
    webui_settings,
    write_webui_settings,
)

from pumaguard_hb.model.camera import CONNECTED, DISCONNECTED, Camera, Spec
from pumaguard_hb.model.probing import ProbeResult
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.model.station import Station, check_event, target_for
from pumaguard_hb.stores.cameras import CameraStore
from pumaguard_hb.stores.filestore import FileStore
from pumaguard_hb.stores.settings_file import SettingsFile
from pumaguard_hb.stores.webstore import WebUIStore
from pumaguard_hb.stores.webui import WebUI

GATE = camera_record(
    "Microseven-Gate", "127.0.70.1", "aa:bb:cc:70:00:01", "connected", "2026-11-30T10:00:00Z"
)
CREEK = camera_record(
    "Microseven-Creek", "127.0.70.2", "aa:bb:cc:70:00:02", "disconnected", "2026-11-29T09:00:00Z"
)
SETTINGS = Settings(webui_refresh=300)


@dataclass
class Place:
    """A store, and a way to see what it shows (the file, or the web UI's API)."""

    store: CameraStore
    shown: Any  # () -> {mac: record}
    saves: Any  # () -> writes of the file / saves of the web UI so far
    file: Path


@pytest.fixture(params=["file", "webui"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    path = tmp_path / "pumaguard-settings.yaml"
    write_webui_settings(path, webui_settings([dict(GATE), dict(CREEK)], **{"YOLO-max-dets": 7}))
    if request.param == "file":
        file = SettingsFile(path)
        store = FileStore(file, lambda: True)

        def on_disk() -> dict[str, Any]:
            return {c["mac_address"]: c for c in yaml.safe_load(path.read_text())["cameras"]}

        yield Place(store, on_disk, lambda: file.writes, path)
        return
    require_webui()
    with running_webui(path) as server:
        client = WebUI(server.url)
        yield Place(
            WebUIStore(client, lambda: SETTINGS), server.cameras_by_mac, lambda: client.saves, path
        )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def listed(place: Place) -> Station:
    """A station built from what the place lists (the file is read the way the daemon does)."""
    doc = yaml.safe_load(place.file.read_text()) if isinstance(place.store, FileStore) else None
    entries = await place.store.listing(doc)
    assert entries is not None
    station = Station()
    station.listing(entries, 0.0)
    return station


def observe(station: Station, mac: str, reachable: bool, now_iso: str) -> None:
    cam = station.cameras[mac]
    target = target_for(cam, SETTINGS)
    assert target is not None
    result = ProbeResult(reachable, "tcp", 1.0 if reachable else None, "test")
    station.observe(target, result, SETTINGS, 1.0, now_iso)


def test_lists_the_station_cameras(place: Place) -> None:
    async def go() -> None:
        station = await listed(place)
        assert set(station.cameras) == {GATE["mac_address"], CREEK["mac_address"]}
        gate = station.cameras[GATE["mac_address"]]
        assert (gate.hostname, gate.ip_address, gate.status) == (
            "Microseven-Gate",
            "127.0.70.1",
            CONNECTED,
        )
        assert not gate.seen.known  # a report until the daemon checks it

    run(go())


def test_shows_what_the_daemon_observed_and_keeps_the_last_good_contact(place: Place) -> None:
    async def go() -> None:
        station = await listed(place)
        observe(station, GATE["mac_address"], False, "2026-12-01T08:00:00Z")
        observe(station, CREEK["mac_address"], True, "2026-12-01T08:00:00Z")
        await place.store.publish(station)
        shown = place.shown()
        assert (shown[GATE["mac_address"]]["status"], shown[GATE["mac_address"]]["last_seen"]) == (
            DISCONNECTED,
            "2026-11-30T10:00:00Z",
        )
        assert (
            shown[CREEK["mac_address"]]["status"],
            shown[CREEK["mac_address"]]["last_seen"],
        ) == (CONNECTED, "2026-12-01T08:00:00Z")

    run(go())


def test_publishes_nothing_when_nothing_changed(place: Place) -> None:
    async def go() -> None:
        station = await listed(place)
        await place.store.publish(station)  # nothing observed yet: nothing to say
        assert place.saves() == 0
        observe(station, GATE["mac_address"], True, "2026-12-01T08:00:00Z")
        await place.store.publish(station)
        first = place.saves()
        assert first == 1
        await listed(place)  # the web UI store re-reads what it shows before each sweep
        observe(station, GATE["mac_address"], True, "2026-12-01T08:00:01Z")
        await place.store.publish(station)
        # the file writes the new last_seen (as PumaGuard does, once per sweep);
        # the web UI refreshes last_seen only every camera_heartbeat_webui_refresh
        assert place.saves() == (2 if isinstance(place.store, FileStore) else 1)

    run(go())


def test_cameras_added_and_removed_by_hand(place: Place) -> None:
    async def go() -> None:
        station = await listed(place)
        cam = Camera(Spec("aa:bb:cc:70:00:03", "Pond", "127.0.70.3", "aa:bb:cc:70:00:03"))
        await place.store.add(cam)
        station.cameras[cam.id] = cam
        await place.store.remove(station.cameras[CREEK["mac_address"]])
        del station.cameras[CREEK["mac_address"]]
        await place.store.publish(station)
        shown = place.shown()
        assert set(shown) == {GATE["mac_address"], "aa:bb:cc:70:00:03"}
        assert (shown["aa:bb:cc:70:00:03"]["status"], shown["aa:bb:cc:70:00:03"]["last_seen"]) == (
            DISCONNECTED,
            None,
        )  # never seen
        assert set((await listed(place)).cameras) == set(shown)

    run(go())


def test_a_dhcp_event_reaches_the_place(place: Place) -> None:
    async def go() -> None:
        station = await listed(place)
        for args in (
            ("add", "aa:bb:cc:70:00:04", "127.0.70.4", "Reolink-Barn"),
            ("old", GATE["mac_address"], "127.0.70.9", "unknown"),
        ):
            event = check_event(*args)
            assert event is not None
            outcome = station.dhcp(event, SETTINGS.hostname_patterns, 1.0, "2026-12-01T08:00:00Z")
            await place.store.dhcp(outcome)
        await place.store.publish(station)
        shown = place.shown()
        barn = shown["aa:bb:cc:70:00:04"]
        assert (barn["hostname"], barn["status"]) == ("Reolink-Barn", CONNECTED)
        gate = shown[GATE["mac_address"]]
        assert (gate["hostname"], gate["ip_address"]) == ("Microseven-Gate", "127.0.70.9")
        if isinstance(place.store, FileStore):  # the rest of the file is kept by our writes
            assert yaml.safe_load(place.file.read_text())["YOLO-max-dets"] == 7

    run(go())
