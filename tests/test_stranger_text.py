"""Text from strangers (issue 20 item 4, docs/security.md): hostnames from DHCP, camera
records, IPv6 zone ids and what an older daemon wrote into the history reach the log and a
terminal only as printable text, and addresses are strict. Tested as the attacker: the
hostile DHCP event sent (socket, CLI, the hook), the hostile settings file planted, the
hostile history line planted; then the daemon's journal lines and the CLI's output on a
pipe and on a terminal are read. Everything the daemon probes is on loopback.

Also issue 20 item 10: discovery's parse of one reply grows linearly with its elements."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from harness import REPO, Daemon, Listeners, camera, wait_for, write_settings
from helpers_cli import clean_env, run_cli, run_on_tty_bytes

from pumaguard_hb.control.protocol import ProtocolError
from pumaguard_hb.inputs import discovery
from pumaguard_hb.model.camera import normalize_ip
from pumaguard_hb.model.errors import InvalidValue
from pumaguard_hb.model.events import StateChange
from pumaguard_hb.model.text import printable

FORGED = "\n<3>forged line"  # a journal line of priority "error" if the newline got through
TITLE = "\x1b]2;pwned\x07"  # OSC 2: sets the terminal's title (and worse ones exist)
GOOD_MAC = "aa:bb:cc:00:07:01"
SGR = re.compile(rb"\x1b\[[0-9;]*m")  # rich's own colours on a terminal: the only ESC allowed

# -- strict addresses (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("fe80::1%eth0" + FORGED, "interface name"),
        ("fe80::1%eth0\nX", "interface name"),
        ("fe80::1%eth0" + TITLE, "interface name"),
        ("fe80::1%eth 0", "interface name"),
        ("fe80::1%" + "e" * 16, "interface name"),  # IFNAMSIZ: 15 characters at most
        ("fe80::1%eth0%eth1", "interface name"),
        ("fe80::1%\u0665", "interface name"),  # a non-ASCII digit
        ("fe80::1%", "interface name"),
        ("::ffff:0.0.0.0", "IPv4-mapped"),  # was kept as is: a probe of 0.0.0.0 = this host
        ("::ffff:192.0.2.1", "IPv4-mapped"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("::", "unicast"),
        ("::%eth0", "unicast"),
        ("0.0.0.0", "unicast"),
        ("192.0.2.1%eth0", "IPv4 or IPv6"),
    ],
)
def test_strict_addresses_refuse_hostile_zones_mapped_and_unspecified(
    bad: str, needle: str
) -> None:
    with pytest.raises(InvalidValue) as err:
        normalize_ip(bad)
    assert needle in str(err.value), err.value
    assert str(err.value).isprintable(), repr(str(err.value))  # the value is quoted escaped


@pytest.mark.parametrize(
    ("good", "canonical"),
    [
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("FE80::1%enp0s31f6", "fe80::1%enp0s31f6"),
        ("fe80::1%br-lan.10", "fe80::1%br-lan.10"),
        ("fe80::1%wlan_0", "fe80::1%wlan_0"),
        ("fe80::1%2", "fe80::1%2"),  # an interface index
        ("fe80::1%" + "e" * 15, "fe80::1%" + "e" * 15),
        (" 192.0.2.7 ", "192.0.2.7"),
        ("2001:db8::7", "2001:db8::7"),
    ],
)
def test_strict_addresses_keep_real_ones(good: str, canonical: str) -> None:
    assert normalize_ip(good) == canonical


def test_printable_escapes_what_a_terminal_or_the_journal_would_obey() -> None:
    assert printable("Gate" + FORGED + TITLE) == "Gate\\n<3>forged line\\x1b]2;pwned\\x07"
    assert printable("a\u202eb\u2028c\x85d\ud800") == "a\\u202eb\\u2028c\\x85d\\ud800"
    assert (
        printable("Microseven-Gate (192.0.2.7) é カメラ") == "Microseven-Gate (192.0.2.7) é カメラ"
    )


# -- the log ----------------------------------------------------------------------------------


def journal_problems(text: str) -> list[str]:
    """Lines of a journald-style log (``<N>message``) that are not one record of ours: a line
    without the prefix, or one whose message starts a second prefix (a forged line), or an
    escape or bell byte."""
    bad = [line for line in text.splitlines() if not re.match(r"<[0-7]>(?!<\d>)", line)]
    bad += [
        f"control byte in {line!r}"
        for line in text.splitlines()
        if "\x1b" in line or "\x07" in line
    ]
    return bad


def test_log_lines_under_journald_are_one_printable_line_each(tmp_path: Path) -> None:
    """logs.setup() as the daemon runs it under systemd (JOURNAL_STREAM names stderr)."""
    log_file = tmp_path / "journal"
    log_file.touch()
    st = log_file.stat()
    code = textwrap.dedent("""
        import logging, sys
        from pumaguard_hb import logs
        logs.setup()
        log = logging.getLogger("pumaguard_hb.test")
        log.warning("dhcp add %s: new camera %s", sys.argv[1], sys.argv[2])
        log.info(sys.argv[2])  # the text as the message itself, no arguments
        log.error("an error from %r and %s", sys.argv[2], ValueError(sys.argv[1]))
    """)
    with log_file.open("ab") as out:
        done = subprocess.run(
            [sys.executable, "-c", code, "fe80::1%eth0" + FORGED, "Microseven" + TITLE + FORGED],
            env={
                **clean_env(),
                "PYTHONPATH": str(REPO),
                "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
            },
            stdout=subprocess.DEVNULL,
            stderr=out,
            timeout=60,
            cwd="/",
        )
    assert done.returncode == 0
    text = log_file.read_text()
    assert len(text.splitlines()) == 3, text  # three records, three lines
    assert journal_problems(text) == [], text
    assert "forged line" in text and "\\n<3>forged line" in text  # escaped, still readable


def _hook(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in clean_env(**env).items() if not k.startswith("DNSMASQ")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pumaguard_hb.hook", *argv],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


def test_the_hook_logs_one_printable_line_for_a_hostile_event(tmp_path: Path) -> None:
    """dnsmasq's argv reaches the hook's log (stderr, which dnsmasq logs, and syslog): an
    unknown DHCPv6 client is logged with its address before anything checks it."""
    done = _hook(
        ["add", "00:01:00:01:aa", "fe80::1%eth0" + FORGED + TITLE, "Microseven-v6"],
        DNSMASQ_IAID="1",
        PUMAGUARD_SETTINGS=str(tmp_path / "none.yaml"),
        PUMAGUARD_HB_SOCKET=str(tmp_path / "none.sock"),
    )
    assert done.returncode == 0
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr, done.stderr
    assert "DHCPv6 client without a known MAC" in done.stderr


# -- a real daemon, attacked ------------------------------------------------------------------


def journald_daemon(tmp_path: Path) -> tuple[Daemon, dict[str, str]]:
    """A daemon that logs as under systemd: its stderr (the log file) is JOURNAL_STREAM."""
    d = Daemon(tmp_path)
    d.log_path.touch()
    st = d.log_path.stat()
    return d, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def assert_printable_output(out: bytes, terminal: bool) -> None:
    """No byte a terminal would obey but rich's own colours on a terminal; no bell."""
    shown = SGR.sub(b"", out) if terminal else out
    assert b"\x1b" not in shown and b"\x07" not in shown, out


def test_hostile_addresses_and_names_never_reach_the_journal_or_the_terminal(
    tmp_path: Path, listeners: Listeners
) -> None:
    ip, port = listeners.open("127.0.0.70")
    d, env = journald_daemon(tmp_path)
    # the settings file, as a web UI or a person with the group could write it
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 1,
            "camera-heartbeat-tcp-timeout": 0.5,
            "camera-heartbeat-tcp-port": port,
            "cameras": [
                camera("Microseven-good", ip, GOOD_MAC),
                {"hostname": "Microseven-zone", "ip_address": "fe80::1%eth0" + FORGED + TITLE},
                {
                    "hostname": "Microseven-mapped",
                    "ip_address": "::ffff:0.0.0.0",
                    "mac_address": "aa:bb:cc:00:07:02",
                },
                {
                    "hostname": "Microseven-host" + FORGED,
                    "mac_address": "aa:bb:cc:00:07:03",
                    "ip_address": "127.0.0.71",
                },
            ],
        },
    )
    cli_env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket), PUMAGUARD_SETTINGS=str(d.settings))
    try:
        d.start(env=env)
        wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= 2, timeout=30)
        # DHCP events over the socket (what the hook sends), camera-like names all
        for i, (hostile_ip, name) in enumerate(
            [
                ("fe80::1%eth0" + FORGED, "Microseven-a"),
                ("fe80::1%eth0" + TITLE, "Microseven-b"),
                ("fe80::1%eth0\nX", "Microseven-c"),
                ("::ffff:0.0.0.0", "Microseven-d"),
                ("::ffff:127.0.0.1", "Microseven-e"),
                ("::", "Microseven-f"),
                ("127.0.0.72", "Microseven" + FORGED),
                ("127.0.0.73", "Microseven" + TITLE),
            ]
        ):
            with pytest.raises(ProtocolError) as err:
                d.call(
                    "dhcp_event",
                    {
                        "action": "add",
                        "mac": f"aa:bb:cc:00:08:{i:02x}",
                        "ip": hostile_ip,
                        "hostname": name,
                    },
                )
            assert err.value.code == "invalid_value", err.value
            assert err.value.message.isprintable(), repr(err.value.message)
        # the CLI's dhcp-event and camera add: refused, one printable line on stderr
        for args in (
            ["dhcp-event", "add", "aa:bb:cc:00:09:01", "fe80::1%eth0\nX", "Microseven-g"],
            ["dhcp-event", "add", "aa:bb:cc:00:09:02", "::ffff:0.0.0.0", "Microseven-h"],
            ["dhcp-event", "add", "aa:bb:cc:00:09:03", "127.0.0.74", "Microseven" + TITLE],
            ["camera", "add", "cam-i", "::ffff:0.0.0.0"],
            ["camera", "add", "cam-j", "fe80::1%eth0" + FORGED],
            ["camera", "add", "cam-k", "fe80::1%eth0" + TITLE, "--mac", "aa:bb:cc:00:09:04"],
        ):
            done = run_cli(*args, env=cli_env)
            assert done.returncode != 0, (args, done.stdout)
            assert len(done.stderr.splitlines()) == 1, (args, done.stderr)
            assert "\x1b" not in done.stderr and "\x07" not in done.stderr, done.stderr
        status = d.call("status")
        cams = {c["id"]: c for c in status["cameras"]}
        # nothing learned; the planted entries kept, with a problem, never probed
        assert not [c for c in cams if c.startswith("aa:bb:cc:00:08") or "09:" in c], cams
        assert cams[GOOD_MAC]["status"] == "connected"
        for cam in cams.values():
            for key in ("id", "hostname", "ip_address", "mac_address", "problem", "reason"):
                assert str(cam[key] or "").isprintable(), (key, cam)
            if cam["id"] != GOOD_MAC:
                assert cam["problem"] and cam["checked_at"] is None, cam
        # the good camera has a history, the hostile ones none; then the CLI, as a user runs it
        wait_for(lambda: d.call("history")["changes"], timeout=30)
        for command in (["history"], ["status"], ["uptime"], ["history", "--json"]):
            done = subprocess.run(
                [sys.executable, "-m", "pumaguard_hb_cli.main", *command],
                env=cli_env,
                capture_output=True,
                timeout=60,
                cwd="/",
            )
            assert done.returncode in (0, 1), done.stderr  # 1: status sees cameras not up
            assert_printable_output(done.stdout, terminal=False)
            status_code, out = run_on_tty_bytes(command, {**cli_env, "TERM": "xterm-256color"})
            assert status_code in (0, 1), out
            assert_printable_output(out, terminal=True)
        assert d.proc is not None and d.proc.poll() is None
    finally:
        d.stop()
    log = d.log()
    assert journal_problems(log) == [], log
    assert "Traceback" not in log


def test_history_written_before_the_fix_prints_safely(tmp_path: Path, listeners: Listeners) -> None:
    """An older daemon accepted any zone: its history lines may hold ESC and newlines. The
    CLI shows them as U+FFFD, one row per change, on a pipe and on a terminal."""
    ip, port = listeners.open("127.0.0.75")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    now = time.time()
    hostile = StateChange(
        "ip:fe80::1%eth0" + TITLE,
        "Microseven" + TITLE,
        "fe80::1%eth0" + FORGED + TITLE,
        "",
        None,
        "disconnected" + TITLE,
        now - 60,
        "tcp [fe80::1%eth0" + FORGED + "]:80 refused" + TITLE,
        "tcp" + FORGED,
    ).as_dict()
    lines = [
        {"event": "daemon_start", "at": now - 120},
        hostile,
        {"event": "daemon_stop", "at": now - 30},
    ]
    (state / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    d = Daemon(tmp_path)
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 3600,
            "camera-heartbeat-tcp-port": port,
            "cameras": [camera("Microseven-good", ip, GOOD_MAC)],
        },
    )
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    try:
        d.start(args=["--state-dir", str(state)])
        wait_for(lambda: len(d.call("history")["changes"]) >= 2, timeout=30)
        done = subprocess.run(
            [sys.executable, "-m", "pumaguard_hb_cli.main", "history"],
            env=env,
            capture_output=True,
            timeout=60,
            cwd="/",
        )
        assert done.returncode == 0, done.stderr
        assert_printable_output(done.stdout, terminal=False)
        rows = [x for x in done.stdout.decode().splitlines() if "Microseven" in x]
        assert len(rows) == 2, done.stdout.decode()  # the hostile change is one row, not three
        assert "Microseven\ufffd]2;pwned\ufffd" in done.stdout.decode()  # shown, as U+FFFD
        status_code, out = run_on_tty_bytes(["history"], {**env, "TERM": "xterm-256color"})
        assert status_code == 0, out
        assert_printable_output(out, terminal=True)
    finally:
        d.stop()


# -- discovery: linear in the size of a reply (issue 20 item 10) ------------------------------


def nested_namespaces(n: int) -> bytes:
    """A reply of ``n`` nested elements, each declaring one more namespace prefix: what made
    the copy of the prefixes in scope per element quadratic."""
    opened = "".join(f'<p{i}:e xmlns:p{i}="u">' for i in range(n))
    closed = "".join(f"</p{i}:e>" for i in reversed(range(n)))
    return (
        f'<s:Envelope xmlns:s="{discovery.SOAP}"><s:Body>{opened}{closed}</s:Body></s:Envelope>'
    ).encode()


def parse_memory(data: bytes) -> int:
    """Peak bytes allocated while parsing one reply: the scopes the parse keeps are part of
    it, so a copy per element shows as n² here (counted, not timed)."""
    tracemalloc.start()
    try:
        assert discovery._parse_xml(data) is not None
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_discovery_parse_grows_linearly_with_nested_namespaces() -> None:
    small, large = nested_namespaces(250), nested_namespaces(1000)
    assert len(large) <= discovery.MAX_DATAGRAM  # a reply the daemon does parse
    ratio = parse_memory(large) / parse_memory(small)
    # 4x the elements: linear is about 4x (less: fixed costs), the copy per element was ~15x
    assert ratio < 6, ratio


def test_namespace_prefixes_still_resolve_through_the_chain() -> None:
    """Types resolved through prefixes declared on the envelope, the match and the element
    itself; a prefix redeclared deeper wins; an undeclared one names nothing."""
    mid = "urn:uuid:1"
    reply = f"""<e:Envelope xmlns:e="{discovery.SOAP}" xmlns:a="{discovery.WSA}"
      xmlns:d="{discovery.WSD}" xmlns:v="urn:other">
      <e:Header><a:RelatesTo>{mid}</a:RelatesTo></e:Header>
      <e:Body><d:ProbeMatches>
        <d:ProbeMatch xmlns:v="{discovery.DN}"><d:Types>v:NetworkVideoTransmitter</d:Types>
          <d:Scopes>onvif://www.onvif.org/name/Gate</d:Scopes></d:ProbeMatch>
        <d:ProbeMatch><d:Types xmlns:w="{discovery.DN}">w:NetworkVideoTransmitter</d:Types>
          <d:Scopes>onvif://www.onvif.org/name/Creek</d:Scopes></d:ProbeMatch>
        <d:ProbeMatch><d:Types>v:NetworkVideoTransmitter</d:Types>
          <d:Scopes>onvif://www.onvif.org/name/Other</d:Scopes></d:ProbeMatch>
        <d:ProbeMatch><d:Types>x:NetworkVideoTransmitter</d:Types>
          <d:Scopes>onvif://www.onvif.org/name/Nobody</d:Scopes></d:ProbeMatch>
      </d:ProbeMatches></e:Body></e:Envelope>""".encode()
    found = discovery.parse_reply(reply, mid, "192.0.2.9")
    assert [dev.name for dev in found] == ["Gate", "Creek"]


def test_settings_file_with_hostile_addresses_is_kept_untouched(
    tmp_path: Path, listeners: Listeners
) -> None:
    """The planted entries are not rewritten (the daemon owns only status): escaping is for
    what it shows and logs, never for the station's file."""
    ip, port = listeners.open("127.0.0.76")
    d = Daemon(tmp_path)
    hostile = {"hostname": "Microseven-zone", "ip_address": "fe80::1%eth0" + FORGED}
    write_settings(
        d.settings,
        {
            "camera-heartbeat-interval": 1,
            "camera-heartbeat-tcp-port": port,
            "cameras": [camera("Microseven-good", ip, GOOD_MAC), hostile],
        },
    )
    try:
        d.start()
        wait_for(lambda: b"status: connected" in d.settings.read_bytes(), timeout=30)
        cam = next(c for c in d.call("status")["cameras"] if c["id"] != GOOD_MAC)
        assert cam["ip_address"] == printable(hostile["ip_address"])
        assert cam["id"] == "ip:" + printable(hostile["ip_address"])
    finally:
        d.stop()
    doc = yaml.safe_load(d.settings.read_text())
    assert doc["cameras"][1] == hostile
