"""Faults: SIGKILL mid-write, a concurrent foreign writer, and a file system that misbehaves
(disk full, read-only, deleted, replaced by a folder, permission denied, broken YAML).

The daemon must stay up and keep probing, never corrupt or overwrite the file, log each
condition once, show it in ``status``, and recover by itself. Cameras are TCP listeners on
loopback addresses this test owns.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import (
    REPO,
    RUNNING,
    Daemon,
    Listeners,
    camera,
    is_root,
    wait_for,
    write_settings,
)

from pumaguard_hb.control.client import ClientError
from pumaguard_hb.control.protocol import ProtocolError

pytestmark = pytest.mark.skipif(not is_root(), reason="needs root (tmpfs, setpriv, chown)")

FIXTURE = REPO / "tests" / "fixtures" / "pumaguard-webui-settings.yaml"
NOBODY = 65534
MAC = "aa:bb:cc:dd:ee:61"


def fixture_doc(ips: list[str], port: int, interval: float) -> dict[str, Any]:
    """The web UI's settings file with its camera IPs moved to loopback addresses we own."""
    doc = yaml.safe_load(FIXTURE.read_text())
    for cam, ip in zip(doc["cameras"], ips, strict=False):
        cam["ip_address"] = ip
    doc["camera-heartbeat-interval"] = interval
    doc["camera-heartbeat-tcp-timeout"] = 0.2
    doc["camera-heartbeat-tcp-port"] = port
    return doc


def assert_intact(original: dict[str, Any], path: Path) -> dict[str, Any]:
    """The file parses; every key the daemon does not own is exactly as it was."""
    doc = yaml.safe_load(path.read_bytes())
    assert isinstance(doc, dict)
    assert {k: v for k, v in doc.items() if k != "cameras"} == \
        {k: v for k, v in original.items() if k != "cameras"}
    assert len(doc["cameras"]) == len(original["cameras"])
    for old, new in zip(original["cameras"], doc["cameras"], strict=True):
        assert {k: v for k, v in new.items() if k not in ("status", "last_seen")} == \
            {k: v for k, v in old.items() if k not in ("status", "last_seen")}
        assert new["status"] in ("connected", "disconnected")
        assert new["last_seen"] == old["last_seen"] or re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", new["last_seen"])
    return doc


class Toggler:
    """Opens and closes a camera's listener over and over, so that every sweep has news."""

    def __init__(self, listeners: Listeners, ip: str, port: int, period: float) -> None:
        self.listeners, self.addr, self.period = listeners, (ip, port), period
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        up = True
        while not self.stop.wait(self.period):
            with contextlib.suppress(OSError, KeyError):
                if up:
                    self.listeners.close(self.addr)
                else:
                    self.listeners.open(*self.addr)
                up = not up

    def __enter__(self) -> Toggler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


# ----------------------------------------------------------------------------- SIGKILL


@pytest.mark.daemon_log(exit=(0, -9))  # it SIGKILLs the daemon, round after round
@pytest.mark.slow
def test_sigkill_at_random_moments_never_damages_the_file(tmp_path: Path,
                                                          listeners: Listeners) -> None:
    ip1, port = listeners.open("127.0.0.81")
    ip2, _ = listeners.open("127.0.0.82", port)
    d = Daemon(tmp_path)
    original = fixture_doc([ip1, ip2], port, 1)  # the minimum; check_now drives the sweeps
    write_settings(d.settings, original)
    original = yaml.safe_load(d.settings.read_text())
    rng = random.Random(5)
    writes = rounds = torn = 0
    started = time.monotonic()
    with Toggler(listeners, ip1, port, 0.023), Toggler(listeners, ip2, port, 0.037):
        while rounds < 25 and time.monotonic() - started < 35:
            rounds += 1
            d.start()
            assert d.proc is not None
            killer = threading.Timer(rng.uniform(0.2, 1.2), d.proc.send_signal,
                                     [signal.SIGKILL])
            killer.start()
            seen = 0
            try:
                while d.proc.poll() is None:  # sweeps (and writes) back to back until killed
                    d.call("check_now", timeout=2)
                    seen = d.call("status", timeout=2)["daemon"]["writes"]
            except (ClientError, ProtocolError):
                pass
            finally:
                killer.join(5)
            d.proc.wait(15)
            assert d.proc.returncode == -signal.SIGKILL, d.log()[-2000:]
            d.stop()
            writes += seen
            assert_intact(original, d.settings)
            torn += any(".tmp-" in p.name for p in tmp_path.iterdir())  # killed mid-write
    print(f"\n{rounds} SIGKILLs across >= {writes} settings writes; file intact every time; "
          f"{torn} kills landed mid-write (a temp file left behind, removed by the next write)")
    assert writes >= 150, writes
    # the next daemon sweeps away what killed ones left half-written. Both cameras up, so
    # that it has something to write (the togglers may have stopped with both down, and a
    # sweep that changes nothing rightly writes nothing)
    for ip in (ip1, ip2):
        if (ip, port) not in listeners.socks:
            listeners.open(ip, port)
    d.start()
    wait_for(lambda: d.call("status")["daemon"]["writes"] >= 1, timeout=10)
    d.stop()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    assert_intact(original, d.settings)


# ------------------------------------------------------------------ concurrent writer


class InPlaceWriter:
    """Saves the way the PumaGuard web UI (and nano) really do: open with truncation, write
    the YAML in pieces with small pauses, no lock, no temp file, no rename, no fsync.

    ``guard`` is held for the length of each save, so that the test's observer never takes
    the writer's own half-written file for a loss: it sees only finished saves and the
    daemon's writes (atomic renames)."""

    def __init__(self, path: Path, memory: dict[str, Any], saves: int, seed: int = 11) -> None:
        self.path, self.memory, self.saves = path, memory, saves
        self.guard = threading.Lock()
        self.done = threading.Event()
        self.rng = random.Random(seed)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.count = 0

    def _run(self) -> None:
        try:
            for i in range(self.saves):
                self.memory["webui-counter"] = i + 1
                text = yaml.safe_dump(self.memory, default_flow_style=False).encode()
                with self.guard:
                    fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)  # empty from here on
                    try:
                        time.sleep(self.rng.uniform(0.001, 0.01))
                        pieces = self.rng.randint(2, 6)
                        step = len(text) // pieces + 1
                        for at in range(0, len(text), step):
                            os.write(fd, text[at : at + step])
                            time.sleep(self.rng.uniform(0.001, 0.01))
                    finally:
                        os.close(fd)
                self.count += 1
                time.sleep(self.rng.uniform(0.02, 0.3))
        finally:
            self.done.set()


def lost_parts(memory: dict[str, Any], doc: Any) -> tuple[set[str], set[str]]:
    """Top-level keys and ``mac.field`` camera fields of the writer's memory missing in doc."""
    if not isinstance(doc, dict):
        return set(memory), {"(no document)"}
    keys = set(memory) - set(doc)
    have = {c.get("mac_address"): c for c in doc.get("cameras") or [] if isinstance(c, dict)}
    fields = {
        f"{cam['mac_address']}.{k}"
        for cam in memory["cameras"]
        for k in cam
        if k not in have.get(cam["mac_address"], {})
    }
    return keys, fields


@pytest.mark.slow
def test_in_place_writer_racing_the_daemon_loses_nothing(
    tmp_path: Path, listeners: Listeners
) -> None:
    """The web UI's way of saving (truncate, then write in pieces, no lock) racing a daemon
    that keeps writing (DHCP events adding cameras and refreshing known ones): no version
    of the file, at any point and afterwards, lacks a key or a camera field the writer
    keeps. Before the torn-read fix the daemon merged its new cameras into the empty or
    half-written file it read and replaced the whole file with only its part."""
    ip1, port = listeners.open("127.0.0.83")
    ip2, _ = listeners.open("127.0.0.84", port)
    d = Daemon(tmp_path)
    memory = fixture_doc([ip1, ip2], port, 1)  # the minimum
    memory["webui-counter"] = 0
    for i, cam in enumerate(memory["cameras"]):
        cam["webui-note"] = f"note {i}"
    write_settings(d.settings, memory)
    d.start()
    wait_for(lambda: d.call("status")["daemon"]["writes"] >= 1)
    writer = InPlaceWriter(d.settings, memory, saves=60)
    known = [c["mac_address"] for c in memory["cameras"]]
    seen: list[tuple[set[str], set[str]]] = []
    observed = 0
    events = refused = 0
    slowest = 0.0

    def observe() -> None:
        nonlocal observed
        while not writer.done.is_set():
            with writer.guard, contextlib.suppress(FileNotFoundError):
                raw = d.settings.read_bytes()
                doc = yaml.safe_load(raw)  # a finished save or the daemon's rename
                observed += 1
                keys, fields = lost_parts(memory, doc)
                if keys or fields:
                    seen.append((keys, fields))
            time.sleep(0.003)

    def drive() -> None:
        nonlocal events, refused, slowest
        n = 0
        while not writer.done.is_set():
            n += 1
            if n % 2:
                args = {"action": "add", "mac": f"aa:bb:cc:00:{n // 256:02x}:{n % 256:02x}",
                        "ip": f"127.0.1.{n % 250 + 1}", "hostname": f"Microseven-race-{n}"}
            else:
                args = {"action": "old", "mac": known[n // 2 % len(known)],
                        "ip": [ip1, ip2][n // 2 % len(known)]}
            try:
                t0 = time.monotonic()
                d.call("dhcp_event", args, timeout=15)
                slowest = max(slowest, time.monotonic() - t0)
                events += 1
            except (ClientError, ProtocolError):
                refused += 1
            time.sleep(0.02)

    threads = [threading.Thread(target=f, daemon=True) for f in (observe, drive)]
    w0 = d.call("status")["daemon"]["writes"]
    try:
        writer.thread.start()
        for t in threads:
            t.start()
        writer.thread.join(120)
        assert writer.done.is_set(), "the writer did not finish in 120 s"
        for t in threads:
            t.join(30)
        w1 = d.call("status")["daemon"]["writes"]
        # afterwards: the daemon's changes land again, on top of the writer's last save
        d.call("dhcp_event", {"action": "add", "mac": "aa:bb:cc:00:ff:ff", "ip": "127.0.1.251",
                              "hostname": "Microseven-after"})
        wait_for(lambda: "Microseven-after" in d.settings.read_text(), timeout=30)
        final = yaml.safe_load(d.settings.read_text())
        alive = d.proc is not None and d.proc.poll() is None
    finally:
        d.stop()
    print(f"\nin-place writer: {writer.count} saves; daemon: {events} DHCP events "
          f"({refused} refused, slowest answer {slowest:.2f}s), {w1 - w0} writes meanwhile; "
          f"{observed} versions observed")
    assert alive
    assert not seen, f"{len(seen)} versions lost parts, first: {seen[0]}"
    assert lost_parts(memory, final) == (set(), set())
    assert final["webui-counter"] == writer.count
    assert writer.count == 60 and observed >= 100 and events >= 20  # it did race
    assert w1 - w0 >= 5  # the daemon kept writing during the race


# --------------------------------------------------------------- misbehaving file system


class Station:
    """A daemon (as root, or as nobody) on a settings file in ``folder``, one camera."""

    def __init__(self, folder: Path, listeners: Listeners, as_nobody: bool = False) -> None:
        self.folder = folder
        self.listeners = listeners
        self.addr = listeners.open("127.0.0.85")
        self.as_nobody = as_nobody
        self.d = Daemon(folder)
        self.d.log_path = Path(tempfile.mkdtemp(prefix="phb-log-")) / "daemon.log"
        write_settings(self.d.settings, {
            "camera-heartbeat-interval": 1,  # the minimum
            "camera-heartbeat-tcp-timeout": 0.3,
            "camera-heartbeat-tcp-port": self.addr[1],
            "web-ui-key": {"keep": [1, 2, 3]},
            "cameras": [camera("Microseven-cam", self.addr[0], MAC, webui_field="x")],
        })
        if as_nobody:
            for p in (folder, self.d.settings):
                os.chown(p, NOBODY, NOBODY)

    def start(self) -> None:
        if not self.as_nobody:
            self.d.start()
        else:  # pyenv's python under /root is out of reach: Debian's python3 has the deps
            python = "/usr/bin/python3"
            cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                   python, "-m", "pumaguard_hb", "--settings", str(self.d.settings),
                   "--socket", str(self.d.socket)]
            env = {k: v for k, v in os.environ.items()
                   if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
            env.update(PYTHONPATH=str(REPO), HOME="/nonexistent")
            self.d._log = open(self.d.log_path, "ab")  # noqa: SIM115 - closed by Daemon.stop
            self.d.proc = subprocess.Popen(cmd, env=env, stdout=self.d._log,
                                           stderr=self.d._log, cwd="/")
            RUNNING.add(self.d)  # stopped after the test even if it fails
            self.d.wait_ready()
        self.wait_file_status("connected")

    def status(self) -> dict[str, Any]:
        return self.d.call("status", timeout=5)["daemon"]  # type: ignore[no-any-return]

    def file_status(self) -> str | None:
        with contextlib.suppress(Exception):
            return str(yaml.safe_load(self.d.settings.read_text())["cameras"][0]["status"])
        return None

    def wait_file_status(self, want: str, timeout: float = 10) -> None:
        wait_for(lambda: self.file_status() == want, timeout=timeout)

    def camera_down(self) -> None:
        self.listeners.close(self.addr)

    def close(self) -> None:
        self.d.stop()
        shutil.rmtree(self.d.log_path.parent, ignore_errors=True)


def run_fault(s: Station, kind: str, needle: str, break_it: Callable[[], None],
              fix_it: Callable[[], None], file_check: Callable[[], None]) -> dict[str, Any]:
    """Break, watch several sweeps, fix, and check the daemon recovers by itself."""
    s.start()
    mark = len(s.d.log())
    break_it()
    s.camera_down()  # news the daemon will want to write while it cannot
    shown = wait_for(lambda: (st := s.status())[f"{kind}_error"] and st, timeout=10)
    assert needle in shown[f"{kind}_error"], shown
    sweeps = shown["sweeps"]
    wait_for(lambda: s.status()["sweeps"] >= sweeps + 6, timeout=15)
    report = s.d.call("check_now")  # keeps probing
    assert report["cameras"][MAC]["status"] == "disconnected"
    assert report["cameras"][MAC]["reason"].startswith("tcp ")
    status = s.status()
    assert needle in (status[f"{kind}_error"] or "")
    file_check()
    errors = [ln for ln in s.d.log()[mark:].splitlines()
              if " ERROR " in ln and " ERROR history:" not in ln]  # history has its own file
    assert len(errors) == 1, "\n".join(errors)
    assert needle in errors[0]
    fix_it()
    wait_for(lambda: s.status()[f"{kind}_error"] is None, timeout=10)
    s.wait_file_status("disconnected")  # the change held in memory is written
    doc = yaml.safe_load(s.d.settings.read_text())
    assert doc["web-ui-key"] == {"keep": [1, 2, 3]}
    assert doc["cameras"][0]["webui_field"] == "x"
    assert "problem resolved" in s.d.log()[mark:]
    assert s.d.proc is not None and s.d.proc.poll() is None
    assert "Traceback" not in s.d.log()
    print(f"\n{kind}: {errors[0].split(' ERROR ', 1)[1]}")
    return status


@pytest.fixture
def station(tmp_path: Path, listeners: Listeners) -> Iterator[Station]:
    s = Station(tmp_path, listeners)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def nobody_station(listeners: Listeners) -> Iterator[Station]:
    folder = Path(tempfile.mkdtemp(prefix="phb-faults-"))
    os.chmod(folder, 0o755)
    s = Station(folder, listeners, as_nobody=True)
    try:
        yield s
    finally:
        s.close()
        os.chmod(folder, 0o755)
        shutil.rmtree(folder, ignore_errors=True)


def test_disk_full(tmp_path: Path, listeners: Listeners) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mnt)],
                   check=True, timeout=10)
    s: Station | None = None
    try:
        s = Station(mnt, listeners)
        s.d.socket = tmp_path / "hb.sock"
        filler = mnt / "filler"
        saved: dict[str, bytes] = {}

        def fill() -> None:
            saved["file"] = s.d.settings.read_bytes()
            with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as f:
                for _ in range(1000):  # 64 KiB fill up long before
                    f.write(b"\0" * 1024)

        def same() -> None:
            assert s is not None
            assert s.d.settings.read_bytes() == saved["file"]
            assert [p.name for p in mnt.iterdir() if ".tmp-" in p.name] == []

        run_fault(s, "write", "No space left", fill, filler.unlink, same)
    finally:
        if s is not None:
            s.close()
        subprocess.run(["umount", str(mnt)], check=False, timeout=10)


def test_yaml_broken_mid_run_then_fixed(station: Station) -> None:
    s = station
    broken = b"camera-heartbeat-interval: 0.3\ncameras: [unclosed\n  - what: {\n"

    def same() -> None:
        assert s.d.settings.read_bytes() == broken

    def fix() -> None:
        doc = yaml.safe_load(s.d.settings.with_name("good.yaml").read_text())
        write_settings(s.d.settings, doc)

    shutil.copy(s.d.settings, s.d.settings.with_name("good.yaml"))
    run_fault(s, "settings", "does not parse as YAML",
              lambda: s.d.settings.write_bytes(broken), fix, same)


TYPOS = {
    "date": ("typo-date: 2024-02-30\n", "'2024-02-30' is not a valid timestamp"),
    "int": ("typo-int: !!int abc\n", "'abc' is not a valid int"),
}


@pytest.mark.parametrize("typo", sorted(TYPOS))
def test_value_typo_mid_run_keeps_the_daemon_up(station: Station, typo: str) -> None:
    """PyYAML raises a plain ValueError for these: still a settings error, never a crash."""
    s = station
    good = s.d.settings.read_bytes()
    line, needle = TYPOS[typo]
    broken = good + line.encode()
    run_fault(s, "settings", needle, lambda: s.d.settings.write_bytes(broken),
              lambda: s.d.settings.write_bytes(good),
              lambda: None if s.d.settings.read_bytes() == broken else pytest.fail("overwritten"))


@pytest.mark.daemon_log(exit=78)
@pytest.mark.parametrize("typo", sorted(TYPOS))
def test_value_typo_at_start_exits_78_with_one_line(tmp_path: Path, typo: str) -> None:
    line, needle = TYPOS[typo]
    d = Daemon(tmp_path)
    d.settings.write_text("camera-heartbeat-interval: 30\ncameras: []\n" + line)
    d.start(wait=False)
    assert d.proc is not None
    assert d.proc.wait(timeout=30) == 78
    d.stop()
    lines = [ln for ln in d.log().splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert str(d.settings) in lines[0] and needle in lines[0] and "line 3" in lines[0]


def test_yaml_nested_too_deeply_mid_run(station: Station) -> None:
    s = station
    good = s.d.settings.read_bytes()
    deep = b"[" * 20000 + b"]" * 20000 + b"\n"
    run_fault(s, "settings", "nested too deeply", lambda: s.d.settings.write_bytes(deep),
              lambda: s.d.settings.write_bytes(good),
              lambda: None if s.d.settings.read_bytes() == deep else pytest.fail("overwritten"))


def test_file_deleted_while_running(station: Station) -> None:
    s = station
    saved = s.d.settings.with_name("saved.yaml")

    def delete() -> None:
        shutil.copy(s.d.settings, saved)
        s.d.settings.unlink()

    def not_recreated() -> None:
        assert not s.d.settings.exists()  # never re-created with only the daemon's part

    run_fault(s, "settings", "deleted", delete, lambda: shutil.copy(saved, s.d.settings),
              not_recreated)


def test_file_replaced_by_a_directory(station: Station) -> None:
    s = station
    saved = s.d.settings.with_name("saved.yaml")

    def to_dir() -> None:
        shutil.copy(s.d.settings, saved)
        s.d.settings.unlink()
        s.d.settings.mkdir()
        (s.d.settings / "inside").write_text("x")

    def back() -> None:
        shutil.rmtree(s.d.settings)
        shutil.copy(saved, s.d.settings)

    def untouched() -> None:
        assert sorted(p.name for p in s.d.settings.iterdir()) == ["inside"]

    run_fault(s, "settings", "directory", to_dir, back, untouched)


def test_read_only_folder(nobody_station: Station) -> None:
    s = nobody_station
    saved: dict[str, bytes] = {}

    def ro() -> None:
        saved["file"] = s.d.settings.read_bytes()
        os.chmod(s.folder, 0o555)

    run_fault(s, "write", "Permission denied", ro, lambda: os.chmod(s.folder, 0o755),
              lambda: None if s.d.settings.read_bytes() == saved["file"] else pytest.fail("w"))


def test_read_only_file(nobody_station: Station) -> None:
    """chmod a-w on the file: the daemon could still replace it (the folder is writable),
    but a read-only file is somebody's decision; it is not written until writable again."""
    s = nobody_station
    saved: dict[str, bytes] = {}

    def ro() -> None:
        saved["file"] = s.d.settings.read_bytes()
        os.chmod(s.d.settings, 0o444)

    def same() -> None:
        assert s.d.settings.read_bytes() == saved["file"]
        assert os.stat(s.d.settings).st_mode & 0o777 == 0o444

    run_fault(s, "write", "read-only", ro, lambda: os.chmod(s.d.settings, 0o644), same)
    assert os.stat(s.d.settings).st_mode & 0o777 == 0o644


def test_permission_denied_on_the_file(nobody_station: Station) -> None:
    """The file becomes root's, mode 0600: the daemon (nobody) cannot even read it."""
    s = nobody_station
    saved: dict[str, bytes] = {}

    def deny() -> None:
        saved["file"] = s.d.settings.read_bytes()
        os.chown(s.d.settings, 0, 0)
        os.chmod(s.d.settings, 0o600)

    def allow() -> None:
        os.chown(s.d.settings, NOBODY, NOBODY)
        os.chmod(s.d.settings, 0o644)

    run_fault(s, "settings", "Permission denied", deny, allow,
              lambda: None if s.d.settings.read_bytes() == saved["file"] else pytest.fail("w"))


def test_read_only_bind_mount(tmp_path: Path, listeners: Listeners) -> None:
    """The folder is remounted read-only (root ignores permissions, not a read-only mount)."""
    folder = tmp_path / "state"
    folder.mkdir()
    s = Station(folder, listeners)
    s.d.socket = tmp_path / "hb.sock"
    mounted = False
    saved: dict[str, bytes] = {}
    try:
        def ro() -> None:
            nonlocal mounted
            saved["file"] = s.d.settings.read_bytes()
            subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True, timeout=10)
            mounted = True
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True,
                           timeout=10)

        def rw() -> None:
            nonlocal mounted
            subprocess.run(["umount", str(folder)], check=True, timeout=10)
            mounted = False

        run_fault(s, "write", "Read-only file system", ro, rw,
                  lambda: None if s.d.settings.read_bytes() == saved["file"] else
                  pytest.fail("written"))
    finally:
        s.close()
        if mounted:
            subprocess.run(["umount", str(folder)], check=False, timeout=10)
