"""Alerts by mail and Apprise against real receivers: a real daemon, a real SMTP server
(aiosmtpd) on 127.0.0.1 with and without STARTTLS and with AUTH LOGIN, a real HTTP server
for Apprise's json://, cameras as real TCP listeners. Only loopback is used."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from harness import Daemon, camera, free_port, wait_for, write_settings
from helpers_cli import (
    Listeners,
    as_user,
    clean_env,
    run_cli,
    temp_accounts,
    unprivileged_python,
)
from receiver import Receiver

from pumaguard_hb.model.events import StateChange
from pumaguard_hb.model.settings import Settings
from pumaguard_hb.outputs import mail
from pumaguard_hb.outputs.alerts import Entry, clean, compose

# the test servers require AUTH over plain connections on purpose (loopback, plain mode)
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "station", "s3cret-pass"
FROM, TO = "hb@station.test", "admin@example.test"


# -- a real SMTP server --------------------------------------------------------------------


class Smtp:
    """aiosmtpd on 127.0.0.1 that keeps every message; AUTH LOGIN/PLAIN with USER/PASSWORD.
    ``security``: "none" (plain, auth allowed without TLS), "starttls" (required before
    AUTH and MAIL) or "tls" (implicit TLS)."""

    def __init__(
        self, security: str, cert: tuple[Path, Path] | None = None, port: int = 0, auth: bool = True
    ) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                msg = email.message_from_bytes(
                    envelope.original_content, policy=email.policy.default
                )
                with outer.lock:
                    outer.messages.append(msg)  # type: ignore[arg-type]
                    outer.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                return "250 OK"

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                USER.encode(),
                PASSWORD.encode(),
            )
            if ok:
                with outer.lock:
                    outer.logins.append(mechanism)
            return AuthResult(success=ok, handled=False)  # aiosmtpd answers 535 itself

        ctx = None
        if cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        kw: dict[str, Any] = {
            "authenticator": authenticator,
            "auth_required": auth,
            "auth_require_tls": security == "starttls",  # implicit TLS is not seen as TLS
        }
        if security == "starttls":
            kw.update(tls_context=ctx, require_starttls=True)
        self.port = port or free_port()
        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=ctx if security == "tls" else None,
            server_hostname="mail.test",
            ready_timeout=20,
            **kw,
        )
        self.controller.start()

    def got(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by openssl (it is its own CA)."""
    folder = tmp_path_factory.mktemp("cert")
    crt, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(crt), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return crt, key


@pytest.fixture
def smtp_plain() -> Iterator[Smtp]:
    s = Smtp("none")
    yield s
    s.stop()


@pytest.fixture
def smtp_starttls(cert: tuple[Path, Path]) -> Iterator[Smtp]:
    s = Smtp("starttls", cert)
    yield s
    s.stop()


@pytest.fixture
def smtp_tls(cert: tuple[Path, Path]) -> Iterator[Smtp]:
    s = Smtp("tls", cert)
    yield s
    s.stop()


JsonReceiver = Receiver  # records what Apprise's json:// POSTs


@pytest.fixture
def json_receiver() -> Iterator[JsonReceiver]:
    r = JsonReceiver()
    yield r
    r.close()


@pytest.fixture
def cams() -> Iterator[Listeners]:
    ls = Listeners()
    yield ls
    ls.close_all()


def mail_keys(smtp: Smtp, security: str, ca: Path | None = None, **more: Any) -> dict[str, Any]:
    keys: dict[str, Any] = {
        "camera_heartbeat_smtp_host": "127.0.0.1",
        "camera_heartbeat_smtp_port": smtp.port,
        "camera_heartbeat_smtp_security": security,
        "camera_heartbeat_smtp_user": USER,
        "camera_heartbeat_smtp_password": PASSWORD,
        "camera_heartbeat_smtp_from": FROM,
        "camera_heartbeat_smtp_to": [TO],
        "camera_heartbeat_smtp_timeout": 10,
    }
    if ca is not None:
        keys["camera_heartbeat_smtp_ca_file"] = str(ca)
    keys.update(more)
    return keys


def station(
    daemon_factory: Any, cams: Listeners, names: list[str], **keys: Any
) -> tuple[Any, int, list[str]]:
    """A daemon watching ``names`` (cameras on 127.0.0.41, .42, ..., all up, one port)."""
    ips = [f"127.0.0.{41 + i}" for i in range(len(names))]
    port = cams.open_same_port(ips)
    d = daemon_factory()
    doc: dict[str, Any] = {
        "camera-heartbeat-interval": 3600,
        "camera-heartbeat-tcp-timeout": 1,
        "camera-heartbeat-tcp-port": port,
        "camera_heartbeat_alert_delay": 1,
        "camera_heartbeat_station": "creek-station",
        "cameras": [
            camera(n, ip, f"aa:bb:cc:00:00:{i:02x}", status="connected")
            for i, (n, ip) in enumerate(zip(names, ips, strict=True))
        ],
    }
    doc.update(keys)
    write_settings(d.settings, doc)
    d.start()
    wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= 1, 20)
    return d, port, ips


def text(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


# -- pure functions ------------------------------------------------------------------------


def change(cid: str, old: str | None, new: str, at: float, host: str = "") -> StateChange:
    return StateChange(cid, host or f"cam-{cid}", "192.168.52.1", cid, old, new, at,
                       "tcp 192.168.52.1:80 refused", "tcp")  # fmt: skip


def test_compose_groups_a_burst_into_one_message() -> None:
    t = 1_780_000_000.0
    entries = [Entry(change(f"m{i}", "connected", "disconnected", t), 3600.0) for i in range(3)]
    entries.append(Entry(change("m9", "disconnected", "connected", t), 300.0))
    entries += [Entry(change("m5", "connected", "disconnected", t), 10.0),
                Entry(change("m5", "disconnected", "connected", t + 1), 1.0)]  # fmt: skip
    entries += [  # down, back and down again: down
        Entry(change("m7", "connected", "disconnected", t), None),
        Entry(change("m7", "disconnected", "connected", t + 1), 1.0),
        Entry(change("m7", "connected", "disconnected", t + 2), 1.0),
    ]
    msg = compose(entries, "Creek", "pi-creek", (8, 11))
    assert msg.subject == "[Creek] 4 cameras down, 1 back, 1 down and back"
    assert "Down (4):" in msg.body and "Back (1):" in msg.body and "Down and back (1):" in msg.body
    assert "after 1h 0m connected" in msg.body and "after 5m 0s disconnected" in msg.body
    assert "why: tcp 192.168.52.1:80 refused (tcp)" in msg.body
    assert "Now 8 of 11 cameras are connected." in msg.body
    one = compose([entries[0]], "Creek", "Creek")
    assert one.subject == "[Creek] 1 camera down: cam-m0"


def test_clean_and_secrets_redacted() -> None:
    assert clean("cam\r\nBcc: evil@x\x00\x1b[31m") == "cam Bcc: evil@x [31m"
    s = Settings(smtp_password="pw", apprise_urls=("tgram://123:TOKEN/456", "json://h/p"))
    public = s.public_dict()
    assert public["camera_heartbeat_smtp_password"] == "***"
    assert public["camera_heartbeat_apprise_urls"] == ["tgram://***", "json://***"]
    assert "TOKEN" not in json.dumps(public) and "pw" not in json.dumps(public)
    assert s.as_dict()["camera_heartbeat_smtp_password"] == "pw"


def test_mail_send_verifies_the_certificate(smtp_tls: Smtp, cert: tuple[Path, Path]) -> None:
    s = Settings(**{k.removeprefix("camera_heartbeat_"): v  # type: ignore[arg-type]
                    for k, v in mail_keys(smtp_tls, "tls").items()})  # fmt: skip
    cfg = mail.config(s)
    assert cfg is not None
    with pytest.raises(mail.MailError, match="certificate not trusted") as caught:
        mail.send(cfg, mail.build(cfg, "x", "y"))  # the system's store does not know it
    assert not caught.value.retry
    trusted = mail.config(Settings(**{**s.__dict__, "smtp_ca_file": str(cert[0])}))
    assert trusted is not None
    mail.send(trusted, mail.build(trusted, "implicit TLS", "body"))
    (got,) = wait_for(smtp_tls.got, 10)
    assert got["Subject"] == "implicit TLS" and text(got).strip() == "body"
    assert smtp_tls.logins  # AUTH over the TLS connection
    plain = mail.config(
        Settings(**{**s.__dict__, "smtp_security": "none", "smtp_host": "mail.example.org"})
    )
    assert plain is not None
    with pytest.raises(mail.MailError, match="refusing to send the password"):
        mail.send(plain, mail.build(plain, "x", "y"))  # never leaves the machine: refused first


# -- a real daemon -------------------------------------------------------------------------


def test_starttls_mail_on_down_and_recovery(
    daemon_factory: Any, cams: Listeners, smtp_starttls: Smtp, cert: tuple[Path, Path]
) -> None:
    names = ["Microseven-Gate", "Microseven-Creek", "Reolink-Barn"]
    d, port, ips = station(
        daemon_factory, cams, names, **mail_keys(smtp_starttls, "starttls", cert[0])
    )
    cams.close((ips[0], port))
    cams.close((ips[1], port))
    d.call("check_now")
    (down,) = wait_for(smtp_starttls.got, 30)
    assert down["Subject"] == "[creek-station] 2 cameras down"
    assert down["From"] == FROM and down["To"] == TO
    body = text(down)
    for name, ip in zip(names[:2], ips[:2], strict=True):
        assert name in body and f"IP {ip}" in body
    assert f"tcp {ips[0]}:{port} refused" in body or f"{ips[0]}:{port}" in body
    assert "Reolink-Barn" not in body
    assert "Now 1 of 3 cameras are connected." in body
    assert smtp_starttls.logins  # AUTH after STARTTLS (the server requires both)

    cams.open(ips[0], port)
    d.call("check_now")
    wait_for(lambda: len(smtp_starttls.got()) == 2, 30)
    back = smtp_starttls.got()[1]
    assert back["Subject"] == "[creek-station] 1 camera back: Microseven-Gate"
    assert "disconnected" in text(back)  # after Ns disconnected
    # counted when the send returns, which may be a moment after the server has the mail
    alerts = wait_for(lambda: (a := d.call("status")["alerts"])["mail"]["sent"] >= 2 and a, 30)
    assert alerts["mail"]["sent"] == 2 and alerts["mail"]["problem"] is None
    assert PASSWORD not in json.dumps(d.call("status"))
    assert PASSWORD not in d.log()
    assert d.stop() == 0


def test_burst_of_ten_is_one_message(
    daemon_factory: Any, cams: Listeners, smtp_plain: Smtp
) -> None:
    names = [f"Microseven-{i}" for i in range(10)]
    d, port, ips = station(daemon_factory, cams, names, **mail_keys(smtp_plain, "none"))
    for ip in ips:  # the switch loses power
        cams.close((ip, port))
    d.call("check_now")
    (msg,) = wait_for(smtp_plain.got, 30)
    assert msg["Subject"] == "[creek-station] 10 cameras down"
    body = text(msg)
    assert all(n in body for n in names) and body.count("why: ") == 10
    time.sleep(3)  # well past the 1 s window: nothing more comes
    assert len(smtp_plain.got()) == 1
    assert smtp_plain.envelopes == [(FROM, [TO])]
    assert d.stop() == 0


def test_smtp_down_probing_goes_on_failure_logged_once(
    daemon_factory: Any, cams: Listeners
) -> None:
    dead = free_port()
    keys = {
        "camera_heartbeat_smtp_host": "127.0.0.1",
        "camera_heartbeat_smtp_port": dead,
        "camera_heartbeat_smtp_security": "none",
        "camera_heartbeat_smtp_to": [TO],
        "camera-heartbeat-interval": 1,
    }
    d, port, ips = station(daemon_factory, cams, ["Microseven-A", "Microseven-B"], **keys)
    cams.close((ips[0], port))
    first = wait_for(lambda: d.call("status")["alerts"]["mail"]["problem"], 40)
    assert "not delivered after 3 attempts" in first and "connection refused" in first
    cams.close((ips[1], port))  # a second outage message, also undeliverable
    wait_for(lambda: d.call("status")["alerts"]["mail"]["failed"] >= 2, 40)
    sweeps = d.call("status")["daemon"]["sweeps"]
    wait_for(lambda: d.call("status")["daemon"]["sweeps"] >= sweeps + 2, 20)  # probing goes on
    log = d.log()
    assert log.count("alerts by mail") == 1, log  # one warning for the outage
    assert "logged once until it works again" in log
    human = run_cli("status", env=clean_env(PUMAGUARD_HB_SOCKET=str(d.socket)))
    (line,) = [x for x in human.stdout.splitlines() if x.startswith("alerts")]
    assert "mail: 0 sent" in line and "not delivered after 3 attempts" in line, human.stdout

    server = Smtp("none", port=dead, auth=False)  # the mail server is back
    try:
        cams.open(ips[0], port)
        (msg,) = wait_for(server.got, 40)
        assert msg["Subject"] == "[creek-station] 1 camera back: Microseven-A"
        mail_status = wait_for(  # counted when the send returns, after the server has it
            lambda: (m := d.call("status")["alerts"]["mail"])["sent"] >= 1 and m, 30
        )
        assert mail_status["problem"] is None and mail_status["sent"] == 1
        assert "alerts by mail work again" in d.log()
    finally:
        server.stop()
    started = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - started < 5  # bounded, not a performance figure


def test_login_refused_is_not_retried(smtp_starttls: Smtp, cert: tuple[Path, Path]) -> None:
    keys = mail_keys(smtp_starttls, "starttls", cert[0], camera_heartbeat_smtp_password="wrong")
    cfg = mail.config(Settings(**{k.removeprefix("camera_heartbeat_"): v for k, v in keys.items()}))
    assert cfg is not None
    with pytest.raises(mail.MailError, match="login refused: 535") as caught:
        mail.send(cfg, mail.build(cfg, "x", "y"))
    assert not caught.value.retry and "wrong" not in str(caught.value)
    assert smtp_starttls.got() == []


def test_apprise_json_and_mailto(
    daemon_factory: Any, cams: Listeners, json_receiver: JsonReceiver, smtp_plain: Smtp
) -> None:
    urls = [
        f"json://127.0.0.1:{json_receiver.port}/alerts",
        f"mailto://{USER}:{PASSWORD}@127.0.0.1:{smtp_plain.port}"
        f"?smtp=127.0.0.1&from={FROM}&to={TO}",
    ]
    d, port, ips = station(
        daemon_factory, cams, ["Reolink-Pond"], camera_heartbeat_apprise_urls=urls
    )
    cams.close((ips[0], port))
    d.call("check_now")
    (post,) = wait_for(lambda: json_receiver.posts, 30)
    assert post["path"] == "/alerts"
    assert post["body"]["title"] == "[creek-station] 1 camera down: Reolink-Pond"
    assert "Reolink-Pond" in post["body"]["message"] and "refused" in post["body"]["message"]
    (msg,) = wait_for(smtp_plain.got, 30)
    assert "Reolink-Pond" in str(msg["Subject"])
    # counted once Apprise's notify() returns, which may be a moment after the mail arrived
    st = wait_for(lambda: (s := d.call("status"))["alerts"]["apprise"]["sent"] and s, 30)
    assert st["alerts"]["apprise"]["sent"] == 1
    assert st["alerts"]["apprise"]["urls"] == ["json://***", "mailto://***"]
    assert PASSWORD not in json.dumps(st) and PASSWORD not in d.log()
    assert d.stop() == 0


def test_apprise_missing_is_one_clear_message(
    daemon_factory: Any, cams: Listeners, tmp_path: Path
) -> None:
    hide = tmp_path / "hide"
    (hide / "apprise").mkdir(parents=True)
    (hide / "apprise" / "__init__.py").write_text('raise ImportError("hidden by the test")\n')
    ips = ["127.0.0.41"]
    port = cams.open_same_port(ips)
    d = daemon_factory()
    write_settings(d.settings, {
        "camera-heartbeat-interval": 1,
        "camera-heartbeat-tcp-port": port,
        "camera_heartbeat_alert_delay": 1,
        "camera_heartbeat_apprise_urls": ["json://127.0.0.1:9/x"],
        "cameras": [camera("Reolink-Hidden", ips[0], "aa:bb:cc:00:00:99", status="connected")],
    })  # fmt: skip
    repo = Path(__file__).resolve().parent.parent
    d.start(env={"PYTHONPATH": f"{hide}{os.pathsep}{repo}"})
    cams.close((ips[0], port))  # a change: alerts look for Apprise
    problem = wait_for(lambda: d.call("status")["alerts"]["apprise"]["problem"], 30)
    assert problem.startswith("Apprise is not installed: apt install apprise")
    wait_for(lambda: d.call("status")["alerts"]["apprise"]["failed"] >= 1, 30)
    log = d.log()
    assert log.count("Apprise is not installed") == 1, log
    assert d.stop() == 0


def test_hostile_hostname_injects_no_header(
    daemon_factory: Any, cams: Listeners, smtp_plain: Smtp
) -> None:
    # control characters never get this far (the daemon refuses such a camera entry, and
    # compose() would blank them: test_crlf_in_a_message_is_blanked); a printable name that
    # looks like headers and addresses must stay text in the subject and body
    evil = 'Microseven-x" <evil@attacker.test>, Bcc: evil@attacker.test'
    d, port, ips = station(daemon_factory, cams, [evil], **mail_keys(smtp_plain, "none"))
    cams.close((ips[0], port))
    d.call("check_now")
    (msg,) = wait_for(smtp_plain.got, 30)
    assert msg["Bcc"] is None and len(msg.get_all("Subject") or []) == 1
    assert str(msg["Subject"]) == f"[creek-station] 1 camera down: {evil}"
    assert str(msg["To"]) == TO
    assert smtp_plain.envelopes == [(FROM, [TO])]  # nobody else got it
    assert f"- {evil}" in text(msg)
    assert d.stop() == 0


def test_crlf_in_a_message_is_blanked() -> None:
    evil = "cam\r\nBcc: evil@attacker.test\r\n\r\nfake body"
    msg = compose(
        [Entry(change("m1", "connected", "disconnected", 1.7e9, evil), None)], "St\nX", "h"
    )
    cfg = mail.config(Settings(smtp_host="127.0.0.1", smtp_to=(TO,), smtp_from=FROM))
    assert cfg is not None
    raw = mail.build(cfg, msg.subject, msg.body).as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None and set(parsed.keys()) >= {"Subject", "From", "To", "Date"}
    assert str(parsed["Subject"]) == "[St X] 1 camera down: cam Bcc: evil@attacker.test fake body"
    assert "\nBcc:" not in text(parsed)  # type: ignore[arg-type]
    assert "- cam Bcc: evil@attacker.test fake body" in text(parsed)  # type: ignore[arg-type]


def test_alert_test_command_reports_each_channel(
    daemon_factory: Any, cams: Listeners, smtp_plain: Smtp, json_receiver: JsonReceiver
) -> None:
    bad = f"json://127.0.0.1:{free_port()}/nobody"
    d, _port, _ips = station(
        daemon_factory, cams, ["Reolink-T"], **mail_keys(smtp_plain, "none"),
        camera_heartbeat_apprise_urls=[f"json://127.0.0.1:{json_receiver.port}/t", bad],
    )  # fmt: skip
    env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
    done = run_cli("alert", "test", env=env, timeout=120)
    assert done.returncode == 6, done.stdout + done.stderr  # Apprise: one URL failed
    lines = done.stdout.splitlines()
    assert any(line.startswith("mail") and "sent" in line for line in lines), done.stdout
    assert any(line.startswith("apprise") and "FAILED" in line and "json://***" in line
               for line in lines), done.stdout  # fmt: skip
    (msg,) = wait_for(smtp_plain.got, 10)
    assert msg["Subject"] == "[creek-station] test alert"
    assert (
        json_receiver.posts
        and json_receiver.posts[0]["body"]["title"] == "[creek-station] test alert"
    )
    as_json = run_cli("--json", "alert", "test", env=env, timeout=120)
    results = json.loads(as_json.stdout)["results"]
    assert [r["channel"] for r in results] == ["mail", "apprise"]
    assert d.stop() == 0


def test_secrets_are_root_only_and_never_shown() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("useradd") is None:
        pytest.skip("needs root, setpriv and useradd to run the CLI as a group member")
    folder = Path(tempfile.mkdtemp(prefix="phb-alerts-"))
    folder.chmod(0o755)
    try:
        with temp_accounts() as accounts:
            group = accounts.group("a")
            member = accounts.user("am", groups=[group.gr_name])
            d = Daemon(folder)
            write_settings(d.settings, {
                "camera-heartbeat-interval": 3600,
                "camera_heartbeat_apprise_urls": ["tgram://123456:SECRETTOKEN/789"],
                "camera_heartbeat_webhooks": ["http://127.0.0.1:9/api/webhook/HOOKSECRET"],
                "cameras": [],
            })  # fmt: skip
            d.start(prefix=["setpriv", f"--regid={group.gr_gid}", "--clear-groups"])
            python = unprivileged_python(as_user(member))
            if python is None:
                pytest.skip("no python3 with click and rich that an unprivileged user can run")
            env = clean_env(PUMAGUARD_HB_SOCKET=str(d.socket))
            mine = as_user(member, init_groups=True)
            shown = run_cli("--json", "config", "get", env=env, prefix=mine, python=python)
            assert shown.returncode == 0, shown.stderr
            values = json.loads(shown.stdout)["settings"]
            assert values["camera_heartbeat_apprise_urls"] == ["tgram://***"]
            assert values["camera_heartbeat_webhooks"] == ["http://***"]  # its path is a token
            denied = run_cli("config", "set", "camera_heartbeat_smtp_password", "x",
                             env=env, prefix=mine, python=python)  # fmt: skip
            assert denied.returncode == 4, denied.stderr
            ok = run_cli("--json", "config", "set", "camera_heartbeat_smtp_password",
                         "hunter2-pw", env=env)  # fmt: skip
            assert ok.returncode == 0, ok.stderr
            assert json.loads(ok.stdout)["value"] == "***"
            root = json.loads(run_cli("--json", "config", "get", env=env).stdout)["settings"]
            assert root["camera_heartbeat_smtp_password"] == "***"  # root too, unless asked
            asked = run_cli("--json", "config", "get", "--show-secrets", env=env)
            assert json.loads(asked.stdout)["settings"]["camera_heartbeat_smtp_password"] == (
                "hunter2-pw"  # root may read it back
            )
            member_view = run_cli("--json", "status", env=env, prefix=mine, python=python)
            assert (
                "hunter2-pw" not in member_view.stdout and "SECRETTOKEN" not in member_view.stdout
            )
            assert "HOOKSECRET" not in member_view.stdout
            again = run_cli("--json", "config", "get", env=env, prefix=mine, python=python)
            assert "hunter2-pw" not in again.stdout and "SECRETTOKEN" not in again.stdout
            assert d.stop() == 0
            assert "hunter2-pw" not in d.log() and "SECRETTOKEN" not in d.log()
            assert "HOOKSECRET" not in d.log()
            assert "camera_heartbeat_smtp_password" in d.log()  # the change is logged, redacted
    finally:
        shutil.rmtree(folder, ignore_errors=True)
