"""Alert mail through the standard library's smtplib (docs/alerts.md).

Everything here blocks: :mod:`.alerts` calls :func:`send` in a worker thread, never on the
event loop. Security is STARTTLS (the default), implicit TLS or none (plain text); TLS
certificates are verified (hostname included) against the system's store or a configured
CA file. A password is never sent over a plain connection to anything but loopback.
"""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from pumaguard_hb.model.errors import HeartbeatError
from pumaguard_hb.model.settings import Settings

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


class MailError(HeartbeatError):
    """Mail could not be handed to the server; the message says why, without secrets."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class MailConfig:
    """How to reach the mail server and whom to write to."""

    host: str
    port: int
    security: str
    user: str
    password: str
    sender: str
    to: tuple[str, ...]
    ca_file: str
    timeout: float

    @property
    def where(self) -> str:
        """The server as shown in logs and status (no credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"smtp {host}:{self.port} ({self.security})"


def config(s: Settings) -> MailConfig | None:
    """The mail settings, or None when mail is off (no server or no recipient)."""
    if not s.smtp_host or not s.smtp_to:
        return None
    return MailConfig(
        host=s.smtp_host,
        port=s.smtp_port or DEFAULT_PORTS[s.smtp_security],
        security=s.smtp_security,
        user=s.smtp_user,
        password=s.smtp_password,
        sender=s.smtp_from or f"pumaguard-heartbeat@{socket.gethostname()}",
        to=s.smtp_to,
        ca_file=s.smtp_ca_file,
        timeout=float(s.smtp_timeout),
    )


def is_loopback(host: str) -> bool:
    """``localhost`` or an address of 127.0.0.0/8 or ::1."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build(cfg: MailConfig, subject: str, body: str) -> EmailMessage:
    """The message; EmailMessage folds and encodes headers (no header injection), and the
    subject given is one line already (alerts.clean)."""
    msg = EmailMessage()
    msg["Subject"] = " ".join(subject.split())
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.to)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=cfg.sender.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    msg.set_content(body)
    return msg


def _tls(cfg: MailConfig) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=cfg.ca_file or None)
    except (OSError, ssl.SSLError) as err:
        raise MailError(f"cannot use CA file {cfg.ca_file}: {err}") from None


def send(cfg: MailConfig, msg: EmailMessage) -> None:
    """Hand ``msg`` to the server (blocking, each step bounded by cfg.timeout).

    Raises MailError with a sentence fit for the log; ``retry`` tells a passing
    problem (server down, timeout) from one that needs the admin (login refused)."""
    if cfg.password and cfg.security == "none" and not is_loopback(cfg.host):
        raise MailError(
            f"{cfg.where}: refusing to send the password over a plain connection; "
            "set camera_heartbeat_smtp_security to starttls or tls",
            retry=False,
        )
    try:
        smtp: smtplib.SMTP
        if cfg.security == "tls":
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=_tls(cfg))
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        with smtp:
            smtp.ehlo()
            if cfg.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise MailError(f"{cfg.where}: the server does not offer STARTTLS", retry=False)
                smtp.starttls(context=_tls(cfg))
                smtp.ehlo()
            if cfg.user:
                smtp.login(cfg.user, cfg.password)
            smtp.send_message(msg)
    except MailError:
        raise
    except smtplib.SMTPAuthenticationError as err:
        raise MailError(f"{cfg.where}: login refused: {_reply(err)}", retry=False) from None
    except smtplib.SMTPRecipientsRefused as err:
        who = ", ".join(err.recipients)
        raise MailError(f"{cfg.where}: recipients refused: {who}", retry=False) from None
    except smtplib.SMTPResponseException as err:
        raise MailError(f"{cfg.where}: {_reply(err)}", retry=err.smtp_code < 500) from None
    except ssl.SSLCertVerificationError as err:
        raise MailError(
            f"{cfg.where}: certificate not trusted: {err.verify_message}", retry=False
        ) from None
    except (smtplib.SMTPException, OSError) as err:
        raise MailError(f"{cfg.where}: {describe(err)}") from None


def _reply(err: smtplib.SMTPResponseException) -> str:
    text = err.smtp_error.decode("utf-8", "replace") if isinstance(err.smtp_error, bytes) else ""
    return f"{err.smtp_code} {' '.join(text.split())}"[:200]


def describe(err: BaseException) -> str:
    """An exception as a short sentence."""
    if isinstance(err, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, smtplib.SMTPServerDisconnected):
        return f"server disconnected: {err}" if str(err) else "server disconnected"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__
