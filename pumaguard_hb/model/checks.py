"""Validators of setting values (key, raw value -> checked value or InvalidValue)
and the redaction of secrets; pure."""

from __future__ import annotations

import re
from typing import Any

from pumaguard_hb.model.errors import InvalidValue

METHODS = ("icmp", "tcp", "both", "http", "https", "rtsp", "stream")
#: at most this many cameras on a station (docs/security.md "Limits"): a longer list from
#: the settings file or the web UI is one clear error, never a slower daemon
MAX_CAMERAS = 4096
#: the shortest interval between two checks of a camera, global and per camera (seconds)
MIN_INTERVAL = 1
_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")


def normalize_mac(value: Any) -> str:
    """``AA-BB-CC-DD-EE-FF`` → ``aa:bb:cc:dd:ee:ff``; InvalidValue for anything else."""
    if not isinstance(value, str) or not _MAC.match(value.strip().lower()):
        raise InvalidValue("mac_address", value, "must look like aa:bb:cc:dd:ee:ff")
    hexdigits = re.sub(r"[^0-9a-f]", "", value.strip().lower())
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


def check_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidValue(key, value, "must be true or false")


def check_seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidValue(key, value, "must be a number of seconds greater than 0")
    if value > 86400:
        raise InvalidValue(key, value, "must be at most 86400 seconds")
    return float(value) if isinstance(value, float) else value


def check_interval(key: str, value: Any) -> float:
    """Seconds between two checks of a camera: at least MIN_INTERVAL (a member of the group
    may set a camera's interval; 0.001 s would be a flood, not monitoring)."""
    seconds = check_seconds(key, value)
    if seconds < MIN_INTERVAL:
        raise InvalidValue(key, value, f"must be at least {MIN_INTERVAL} second (the minimum)")
    return seconds


def check_method(key: str, value: Any) -> str:
    if value not in METHODS:
        raise InvalidValue(key, value, "must be one of " + ", ".join(METHODS))
    return str(value)


def check_port(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidValue(key, value, "must be a whole number from 1 to 65535")
    return value


def check_concurrency(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
        raise InvalidValue(key, value, "must be a whole number from 1 to 256")
    return value


def check_rtsp_url(key: str, value: Any) -> str:
    """A camera's stream URL (``heartbeat_url``): ``rtsp://HOST[:PORT]/PATH``; credentials
    in it are a secret, so a refused value is shown without them (:func:`redact_rtsp_url`)."""
    from urllib.parse import urlsplit

    allowed = "must be an rtsp:// URL such as rtsp://192.168.52.101:554/stream1"
    if not isinstance(value, str):
        raise InvalidValue(key, REDACTED, allowed)
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidValue(key, redact_rtsp_url(text), allowed + "; port 1-65535") from None
    if (
        parts.scheme.lower() != "rtsp"
        or not parts.hostname
        or port == 0
        or parts.fragment
        or len(text) > 1000
        or any(ord(c) < 33 or not c.isprintable() for c in text)
    ):
        raise InvalidValue(key, redact_rtsp_url(text), allowed)
    return text


def redact_rtsp_url(text: str) -> str:
    """A stream URL as it may be shown: ``user:pass@`` as ``***@``, a query (which may hold
    ``password=``) as ``?***``; printable, at most 200 characters."""
    shown = redact_url(text)
    base, query, _ = shown.partition("?")
    shown = f"{base}?{REDACTED}" if query else base
    shown = "".join(c if c.isprintable() else "?" for c in shown)
    return shown if len(shown) <= 200 else shown[:197] + "..."


def check_count(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        raise InvalidValue(key, value, "must be a whole number from 1 to 10")
    return value


def check_threshold(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise InvalidValue(key, value, "must be a whole number of sweeps from 1 to 100")
    return value


def check_days(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3650:
        raise InvalidValue(key, value, "must be a whole number of days from 1 to 3650")
    return value


def check_http_path(key: str, value: Any) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or any(ch.isspace() or not ch.isprintable() for ch in value)
    ):
        raise InvalidValue(key, value, "must be a URL path starting with /, without spaces")
    return value


def as_list(value: Any) -> Any:
    """A list setting as given: None and "" are none, one string is a list of one; anything
    else is returned for the caller to check."""
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else value


def check_urls(key: str, value: Any) -> tuple[str, ...]:
    value = as_list(value)
    if not isinstance(value, list | tuple) or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) and " " not in u for u in value
    ):  # a webhook URL is often its own token: the error shows each as its scheme only
        raise InvalidValue(key, redact_value(value), "must be a list of http:// or https:// URLs")
    return tuple(value)


def check_command(key: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or "\n" in value:
        raise InvalidValue(key, value, "must be one command line (empty for none)")
    return value.strip()


def check_listen(key: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        _host, sep, port = value.rpartition(":")
        if sep and port.isdigit() and 1 <= int(port) <= 65535:
            return value
    raise InvalidValue(key, value, "must be HOST:PORT such as 127.0.0.1:9469 (empty: off)")


def check_webui_url(key: str, value: Any) -> str:
    """The web UI's base URL, as webui.check_url takes it: no user name or password (the
    URL is shown in the log and status), no query or fragment. A refused value is shown
    without what could be a credential."""
    if value is None or value == "":
        return ""
    allowed = "must be the web UI's URL such as http://127.0.0.1:5000 (empty: off)"
    if not isinstance(value, str):
        raise InvalidValue(key, value, allowed)
    from urllib.parse import urlsplit

    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidValue(key, redact_url(text), allowed + "; the port must be 1-65535") from None
    if "@" in parts.netloc:
        raise InvalidValue(
            key, redact_url(text), allowed + "; without a user name or password (it is shown)"
        )
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or text.endswith(("?", "#"))
        or port == 0
        or any(ord(c) < 33 or not c.isprintable() for c in text)
    ):
        raise InvalidValue(key, redact_url(text), allowed)
    return text.rstrip("/")


STATION_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def check_station(key: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str) and STATION_CHARS.fullmatch(value):
        return value
    raise InvalidValue(
        key, value, "must be 1-63 letters, digits, '.', '-' or '_' (empty: the host name)"
    )


def check_patterns(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(
        isinstance(p, str) and p.strip() for p in value
    ):
        raise InvalidValue(key, value, "must be a list of hostname patterns like 'Microseven*'")
    return tuple(p.strip() for p in value)


def check_discovery_interval(key: str, value: Any) -> float:
    if value == 0 and not isinstance(value, bool):
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not 60 <= value <= 86400:
        raise InvalidValue(key, value, "must be 0 (off) or a number of seconds from 60 to 86400")
    return float(value) if isinstance(value, float) else value


def check_interface(key: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        import re

        if re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", value.strip()):
            return value.strip()
    raise InvalidValue(key, value, "must be a network interface name such as eth1 (empty: any)")


def check_text(key: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not value.isprintable() or len(value) > 1000:
        raise InvalidValue(key, value, "must be one line of printable text (empty for none)")
    return value.strip()


def check_password(key: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not value.isprintable() or len(value) > 1000:
        raise InvalidValue(key, REDACTED, "must be one line of printable text (empty for none)")
    return value  # as given: spaces may belong to it; never echoed in an error


def check_host(key: str, value: Any) -> str:
    text = check_text(key, value)
    if any(ch.isspace() or ch in "/@?#" for ch in text):
        raise InvalidValue(key, value, "must be a host name or IP address (empty: off)")
    return text


def check_port_or_default(key: str, value: Any) -> int:
    if value == 0 and not isinstance(value, bool):
        return 0
    return check_port(key, value)


SMTP_SECURITY = ("starttls", "tls", "none")


def check_smtp_security(key: str, value: Any) -> str:
    if value not in SMTP_SECURITY:
        raise InvalidValue(key, value, "must be one of " + ", ".join(SMTP_SECURITY))
    return str(value)


def _is_address(value: Any) -> bool:
    if not isinstance(value, str) or not value.isprintable() or len(value) > 254:
        return False
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain) and not any(
        ch.isspace() or ch in "<>,;\"'" for ch in value
    )


def check_address_or_empty(key: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if not _is_address(value):
        raise InvalidValue(key, value, "must be a mail address such as hb@example.org")
    return str(value)


def check_addresses(key: str, value: Any) -> tuple[str, ...]:
    value = as_list(value)
    if not isinstance(value, list | tuple) or not all(_is_address(a) for a in value):
        raise InvalidValue(key, value, "must be a list of mail addresses such as admin@example.org")
    return tuple(value)


def check_apprise_urls(key: str, value: Any) -> tuple[str, ...]:
    value = as_list(value)
    if not isinstance(value, list | tuple) or not all(
        isinstance(u, str) and "://" in u and u.isprintable() and " " not in u for u in value
    ):
        allowed = "must be a list of Apprise URLs such as tgram://TOKEN/CHAT"
        raise InvalidValue(key, redact_value(value), allowed)
    return tuple(value)


REDACTED = "***"


def redact_secret(value: str) -> str:
    """A secret URL as its scheme and ``***`` (``tgram://***``); anything else as ``***``."""
    scheme, sep, _rest = value.partition("://")
    if sep and scheme.isalnum() and scheme.isascii() and len(scheme) <= 20:
        return f"{scheme}://{REDACTED}"
    return REDACTED


def redact_value(value: Any) -> Any:
    """A secret setting's value as an error message or the log may show it: each URL of a
    list as :func:`redact_secret`, anything else as ``***``."""
    if isinstance(value, list | tuple):
        return [redact_secret(v) if isinstance(v, str) else REDACTED for v in value[:10]]
    return redact_secret(value) if isinstance(value, str) else REDACTED


def redact_url(text: str) -> str:
    """A URL with its user name and password (``user:pass@``) as ``***@``; other URLs as
    they are (the web UI's address is no secret, credentials in it are)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return redact_secret(text)
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        return f"{redact_secret(scheme + '://')}@{netloc.rpartition('@')[2]}{slash}{path}"
    return text
