"""The settings file on disk: nothing the daemon does not own changes, ever."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from pumaguard_hb.model.errors import SettingsError
from pumaguard_hb.stores.filestore import Patch
from pumaguard_hb.stores.settings_file import BeingWritten, SettingsFile

FIXTURE = Path(__file__).parent / "fixtures" / "pumaguard-webui-settings.yaml"


def test_fixture_patch_changes_only_owned_fields_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    original = FIXTURE.read_text()
    path.write_text(original)
    patch = Patch()
    patch.set_fields("aa:bb:cc:dd:ee:01", status="connected", last_seen="2026-11-27T01:02:03Z")
    SettingsFile(path).update(patch.apply)
    after = path.read_text()
    expected = original.replace(
        "  last_seen: '2024-01-15T09:02:44Z'\n  mac_address: aa:bb:cc:dd:ee:01\n"
        "  status: disconnected",
        "  last_seen: '2026-11-27T01:02:03Z'\n  mac_address: aa:bb:cc:dd:ee:01\n"
        "  status: connected",
    )
    assert expected != original
    assert after == expected


def test_no_write_when_nothing_changes(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(FIXTURE.read_text())
    before = os.stat(path)
    store = SettingsFile(path)
    patch = Patch()
    patch.set_fields("aa:bb:cc:dd:ee:ff", status="connected")  # already so
    store.update(patch.apply)
    assert store.writes == 0
    assert os.stat(path).st_ino == before.st_ino


def test_mode_and_owner_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(FIXTURE.read_text())
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, 1234, 4321)
    patch = Patch()
    patch.set_fields("aa:bb:cc:dd:ee:ff", status="disconnected")
    SettingsFile(path).update(patch.apply)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 4321)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_broken_file_is_never_written_over(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    broken = "cameras:\n- hostname: x\n  ip_address: [unclosed\n"
    path.write_text(broken)
    patch = Patch()
    patch.add_camera("aa:bb:cc:dd:ee:09", {"hostname": "new", "mac_address": "aa:bb:cc:dd:ee:09"})
    with pytest.raises(SettingsError, match="does not parse as YAML at line"):
        SettingsFile(path).update(patch.apply)
    assert path.read_text() == broken


def test_a_file_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(SettingsError, match="mapping"):
        SettingsFile(path).read()


def test_missing_file_is_an_empty_document_and_can_be_created(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "s.yaml"
    store = SettingsFile(path)
    assert store.read().doc == {}
    patch = Patch()
    patch.add_camera(
        "aa:bb:cc:dd:ee:09",
        {
            "hostname": "Microseven-1",
            "ip_address": "127.0.0.9",
            "mac_address": "aa:bb:cc:dd:ee:09",
            "status": "connected",
            "last_seen": "x",
        },
    )
    store.update(patch.apply)
    doc = yaml.safe_load(path.read_text())
    assert doc["cameras"][0]["hostname"] == "Microseven-1"
    assert list(doc["cameras"][0]) == [
        "hostname",
        "ip_address",
        "last_seen",
        "mac_address",
        "status",
    ]


def test_vanished_file_is_not_recreated_when_it_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    patch = Patch()
    patch.set_fields("aa:bb:cc:dd:ee:ff", status="connected")
    with pytest.raises(SettingsError, match="deleted"):
        SettingsFile(path).update(patch.apply, must_exist=True)
    assert not path.exists()


def test_removed_camera_and_foreign_fields(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    doc = yaml.safe_load(FIXTURE.read_text())
    doc["cameras"][0]["web_ui_field"] = {"nested": [1, 2]}
    path.write_text(yaml.safe_dump(doc))
    patch = Patch()
    patch.remove_camera("aa:bb:cc:dd:ee:01")
    patch.set_fields("aa:bb:cc:dd:ee:ff", last_seen="2026-01-01T00:00:00Z")
    SettingsFile(path).update(patch.apply)
    after = yaml.safe_load(path.read_text())
    assert [c["mac_address"] for c in after["cameras"]] == ["aa:bb:cc:dd:ee:ff"]
    assert after["cameras"][0]["web_ui_field"] == {"nested": [1, 2]}
    for key in doc:
        if key != "cameras":
            assert after[key] == doc[key]


def test_symlinked_settings_file_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text(FIXTURE.read_text())
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    patch = Patch()
    patch.set_fields("aa:bb:cc:dd:ee:ff", status="disconnected")
    SettingsFile(link).update(patch.apply)
    assert link.is_symlink()
    assert "status: disconnected" in real.read_text().split("aa:bb:cc:dd:ee:ff")[1]


def _foreign_writer(path: str, rounds: int) -> None:
    """Another program (the web UI) doing read-modify-write under the same lock."""
    store = SettingsFile(Path(path))
    for _i in range(rounds):
        with store.locked():
            doc = yaml.safe_load(Path(path).read_text())
            doc["web-counter"] = doc.get("web-counter", 0) + 1
            tmp = Path(path + ".web")
            tmp.write_text(yaml.safe_dump(doc))
            os.replace(tmp, path)


def _daemon_writer(path: str, rounds: int) -> None:
    store = SettingsFile(Path(path))
    for i in range(rounds):
        patch = Patch()
        patch.set_fields(
            "aa:bb:cc:dd:ee:ff",
            last_seen=f"2026-01-01T00:00:{i % 60:02d}Z",
            status="connected" if i % 2 else "disconnected",
        )
        store.update(patch.apply)
        patch = Patch()
        patch.add_camera(
            f"02:00:00:00:{i // 256:02x}:{i % 256:02x}",
            {"hostname": f"cam{i}", "mac_address": f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"},
        )
        store.update(patch.apply)


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(FIXTURE.read_text())
    rounds = 80
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_foreign_writer, args=(str(path), rounds)),
        ctx.Process(target=_daemon_writer, args=(str(path), rounds)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    doc = yaml.safe_load(path.read_text())
    assert doc["web-counter"] == rounds
    assert len(doc["cameras"]) == 2 + rounds
    assert doc["plugs"][0]["hostname"] == "shellyplug-s-1A2B3C"


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 200_000 + "]" * 200_000 + "\n",  # flow nesting
        "a:\n" + "- " * 200_000 + "x\n",  # block nesting on one line
    ],
    ids=["flow", "block"],
)
def test_absurd_nesting_is_a_settings_error_not_a_crash(tmp_path: Path, text: str) -> None:
    """libyaml's C parser recurses on the C stack and dies of this; the store must not."""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from pumaguard_hb.stores.settings_file import SettingsFile\n"
        "from pumaguard_hb.model.errors import SettingsError\n"
        f"try:\n    SettingsFile(Path({str(path)!r})).read()\n"
        "except SettingsError as err:\n    print('settings error:', err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert done.stdout.startswith("settings error:"), done.stdout


# -- every failure to parse is a settings error (issue 11, item 5) ---------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("when: 2024-02-30\n", "'2024-02-30' is not a valid timestamp"),  # ValueError in PyYAML
        ("n: !!int abc\n", "'abc' is not a valid int"),
        ("x: !!float nope\n", "'nope' is not a valid float"),
        ("cameras:\n- last_seen: 2024-13-01\n", "at line 3, column 14"),
        ("b: {x: !!bool maybe}\n", "'maybe' is not a valid bool"),  # a KeyError inside PyYAML
        ("v: !!binary '%%%'\nw: !!timestamp 2024-02-30T25:00:00Z\n", "timestamp"),
    ],
)
def test_every_failure_to_parse_is_a_settings_error(
    tmp_path: Path, text: str, shown: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("camera-heartbeat-interval: 30\n" + text)
    with pytest.raises(SettingsError) as err:
        SettingsFile(path).read()
    assert "does not parse as YAML" in str(err.value)
    assert shown in str(err.value)
    assert len(str(err.value).splitlines()) == 1


# -- never a torn read (issue 10, "never act on a torn read") --------------------------------


GOOD = {"camera-heartbeat-interval": 30, "plugs": [{"hostname": "p"}], "cameras": []}


def _slow_write(path: Path, text: str, pause: float, pieces: int = 4) -> threading.Thread:
    """Save as the web UI and nano do: truncate in place, then write in pieces."""

    def run() -> None:
        with open(path, "w") as f:  # O_TRUNC: the file is empty from here on
            time.sleep(pause)
            step = len(text) // pieces + 1
            for i in range(0, len(text), step):
                f.write(text[i : i + step])
                f.flush()
                time.sleep(pause)

    t = threading.Thread(target=run)
    t.start()
    return t


def test_an_empty_file_after_a_good_one_is_a_write_in_progress(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    store = SettingsFile(path, settle_timeout=0.5)
    assert store.read().doc == GOOD
    path.write_text("")  # truncated, and the writer never finished
    with pytest.raises(BeingWritten, match="is empty"):
        store.read()
    with pytest.raises(SettingsError):  # so no write takes it as its base
        store.update(lambda doc: doc.setdefault("cameras", [{"hostname": "x"}]) is not None)
    assert path.read_text() == ""
    assert store.writes == 0


def test_a_file_written_in_place_is_read_once_written(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    store = SettingsFile(path)
    assert store.read().doc == GOOD
    big = {**GOOD, "padding": ["x" * 60 for _ in range(200)]}
    writer = _slow_write(path, yaml.safe_dump(big), 0.05)
    try:
        time.sleep(0.01)  # the writer has truncated: empty, then a growing prefix
        assert store.read().doc == big
    finally:
        writer.join()
    small = {**GOOD, "cameras": [{"hostname": "only"}]}
    writer = _slow_write(path, yaml.safe_dump(small), 0.05)
    try:
        time.sleep(0.08)  # a prefix that parses and is shorter than the last good read
        assert store.read().doc == small
    finally:
        writer.join()


def test_an_empty_file_never_read_before_is_empty_settings(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("")
    store = SettingsFile(path, settle_timeout=0.5)
    assert store.read().doc == {}
    assert store.read().doc == {}  # and stays so: the last good read was empty too


def test_a_save_in_place_during_our_write_is_not_thrown_away(tmp_path: Path) -> None:
    """A writer without the lock (the web UI) saves in place while the daemon writes: the
    daemon's rename would throw that save away; it reads it and writes again instead."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"webui-counter": 1, "cameras": []}))
    calls = 0

    def change(doc: dict[str, object]) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:  # after our read, before our rename: the web UI saves in place
            with open(path, "w") as f:
                f.write(yaml.safe_dump({"webui-counter": 2, "webui-new": "x", "cameras": []}))
        doc["camera_heartbeat_interval"] = 30
        return True

    store = SettingsFile(path)
    store.update(change)
    assert calls == 2
    assert yaml.safe_load(path.read_text()) == {
        "webui-counter": 2,
        "webui-new": "x",
        "cameras": [],
        "camera_heartbeat_interval": 30,
    }
    assert store.writes == 1


def test_a_save_in_place_between_our_check_and_our_rename_is_put_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The narrowest window: a writer without the lock saves in place after the daemon's
    last look and before its rename (seen once in CI under load: an edit lost). The save
    lands in the file the rename unlinks; the daemon notices, puts the save back and
    applies its own change again on top of it."""
    import pumaguard_hb.stores.settings_file as settings_file

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"webui-counter": 1, "cameras": []}))
    real_replace = os.replace
    saved = []

    def replace_after_a_save(src: str | Path, dst: str | Path) -> None:
        if not saved:  # the first rename: the web UI's save comes first, in place
            saved.append(True)
            with open(path, "w") as f:
                f.write(yaml.safe_dump({"webui-counter": 2, "webui-new": "x", "cameras": []}))
        real_replace(src, dst)

    monkeypatch.setattr(settings_file.os, "replace", replace_after_a_save)

    def change(doc: dict[str, object]) -> bool:
        doc["camera_heartbeat_interval"] = 30
        return True

    store = SettingsFile(path)
    store.update(change)
    assert yaml.safe_load(path.read_text()) == {
        "webui-counter": 2,
        "webui-new": "x",
        "cameras": [],
        "camera_heartbeat_interval": 30,
    }
    assert not list(tmp_path.glob(".s.yaml.tmp*"))
