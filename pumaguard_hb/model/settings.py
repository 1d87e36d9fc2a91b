"""Heartbeat settings: the keys this project reads, their defaults and their validation.

The settings file is shared with the PumaGuard web UI, which spells keys with
hyphens (``camera-heartbeat-interval``); this module reads both spellings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any

from pumaguard_hb.model.camera import redact_overrides
from pumaguard_hb.model.checks import MAX_CAMERAS, REDACTED, redact_secret, redact_value
from pumaguard_hb.model.errors import InvalidValue, SettingsError
from pumaguard_hb.model.keys import (
    KEYS,
    KEYS_BY_NAME,
    CameraOverrides,
    Key,
    check_camera_overrides,
    plain_value,
)

log = logging.getLogger(__name__)
_ENABLED = KEYS_BY_NAME["camera_heartbeat_enabled"]


@dataclass(frozen=True)
class Settings:
    """The validated heartbeat settings the daemon runs on."""

    enabled: bool = True
    interval: float = 60
    method: str = "tcp"
    tcp_port: int = 80
    tcp_timeout: float = 3
    icmp_timeout: float = 2
    icmp_count: int = 1
    failure_threshold: int = 1
    recovery_threshold: int = 1
    http_path: str = "/"
    stream_path: str = "/"
    stream_timeout: float = 5
    stream_username: str = ""
    stream_password: str = field(default="", repr=False)
    stream_concurrency: int = 4
    webhooks: tuple[str, ...] = ()
    on_change_command: str = ""
    history_days: int = 30
    metrics_listen: str = ""
    hostname_patterns: tuple[str, ...] = field(default=("Microseven*", "Reolink*"))
    webui_url: str = ""
    webui_refresh: float = 300
    alert_delay: float = 30
    smtp_host: str = ""
    smtp_port: int = 0
    smtp_security: str = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = ""
    smtp_to: tuple[str, ...] = ()
    smtp_ca_file: str = ""
    smtp_timeout: float = 20
    apprise_urls: tuple[str, ...] = ()
    discovery_interval: float = 0
    discovery_add: bool = False
    discovery_interface: str = ""
    station: str = ""
    power_cycle: bool = False
    power_cycle_after: float = 300
    power_cycle_max_per_day: int = 3
    power_cycle_off_time: float = 10
    power_cycle_boot_time: float = 120
    camera_overrides: CameraOverrides = ()

    def overrides_for(self, mac: str) -> dict[str, Any]:
        """The camera_heartbeat_cameras overrides of the camera with this (normalised) MAC,
        by short name (method, port, timeout, path, interval)."""
        return self._overrides_by_mac.get(mac, {}) if self.camera_overrides else {}

    @cached_property
    def _overrides_by_mac(self) -> dict[str, dict[str, Any]]:
        from pumaguard_hb.model.camera import OVERRIDES

        return {
            mac: {OVERRIDES[name][0]: value for name, value in found}
            for mac, found in self.camera_overrides
        }

    def as_dict(self) -> dict[str, Any]:
        """The settings under their canonical key names (for status and config get)."""
        out: dict[str, Any] = {}
        for key in KEYS:
            out[key.name] = plain_value(key, getattr(self, key.attr))
        return out

    def public_dict(self) -> dict[str, Any]:
        """as_dict() with secrets (passwords, token-bearing URLs) redacted: what anybody,
        root included, is shown (``config get --show-secrets`` is root's way to read one),
        and what is fit for a log."""
        out = self.as_dict()
        for key in KEYS:
            if key.secret and out[key.name]:
                value = out[key.name]
                secret = isinstance(value, list)
                out[key.name] = [redact_secret(v) for v in value] if secret else REDACTED
            elif key.check is check_camera_overrides:  # heartbeat_password, heartbeat_url
                out[key.name] = {mac: redact_overrides(f) for mac, f in out[key.name].items()}
        return out


def raw_value(doc: Mapping[str, Any], key: Key) -> tuple[str, Any] | None:
    """The spelling and value of ``key`` as found in ``doc``; the web UI's spelling wins."""
    for spelling in (key.hyphenated, key.name):
        if spelling in doc:
            return spelling, doc[spelling]
    return None


def spelling_for(doc: Mapping[str, Any], key: Key) -> str:
    """Which spelling to write ``key`` with so the file keeps the style it already uses."""
    found = raw_value(doc, key)
    if found:
        return found[0]
    if any(isinstance(k, str) and k.startswith("camera_heartbeat_") for k in doc):
        return key.name
    return key.hyphenated


def check_camera_count(doc: Mapping[str, Any], path: str) -> None:
    """SettingsError when the document lists more than MAX_CAMERAS cameras."""
    cameras = doc.get("cameras")
    if isinstance(cameras, list) and len(cameras) > MAX_CAMERAS:
        raise SettingsError(
            path,
            f"{len(cameras)} cameras listed: at most {MAX_CAMERAS} are monitored "
            "(docs/security.md); remove some",
            "cameras",
        )


def parse_settings(doc: Mapping[str, Any], path: str = "<settings>") -> Settings:
    """Validate the heartbeat keys of a settings document; SettingsError names key and value
    (a secret's value as its scheme and ``***``). More than MAX_CAMERAS cameras is an error."""
    check_camera_count(doc, path)
    values: dict[str, Any] = {}
    for key in KEYS:
        found = raw_value(doc, key)
        if found is None:
            continue
        spelling, value = found
        try:
            values[key.attr] = key.check(spelling, value)
        except InvalidValue as err:
            shown = err.value  # the check's own excerpt of a large value (secrets redacted)
            if key.secret:
                shown = redact_value(value)
            raise SettingsError(path, f"invalid value {shown!r}: {err.allowed}", spelling) from None
    names = {f.name for f in fields(Settings)}
    assert set(values) <= names
    return replace(Settings(), **values)


#: per-camera overrides that point a probe somewhere: privileged (docs/security.md)
PRIVILEGED_OVERRIDES = (
    "heartbeat_method",
    "heartbeat_port",
    "heartbeat_path",
    "heartbeat_url",
    "heartbeat_username",
    "heartbeat_password",
    "heartbeat_plug",
    "heartbeat_plug_password",
)


def privileged_fields(name: str, value: Any) -> list[str]:
    """The privileged per-camera overrides in ``value`` of key ``name`` (only
    ``camera_heartbeat_cameras`` has them), as ``MAC: field``: a value that holds one is as
    privileged as a privileged key (docs/security.md)."""
    key = KEYS_BY_NAME.get(name)
    if key is None or key.check is not check_camera_overrides or not isinstance(value, dict):
        return []
    found = []
    for mac, entry in value.items():
        if isinstance(entry, dict):
            for field_ in entry:
                canonical = field_.replace("-", "_") if isinstance(field_, str) else field_
                if canonical in PRIVILEGED_OVERRIDES:
                    found.append(f"{mac}: {canonical}")
    return found


_said_ignored: set[tuple[str, str]] = set()  # (file, key) already named in the log


def _ignored(path: str, key: str, why: str) -> None:
    """Say once per file and key that a privileged key of an untrusted file is ignored."""
    if (path, key) in _said_ignored:
        return
    if len(_said_ignored) < 1000:
        _said_ignored.add((path, key))
    log.warning(
        "%s: %s ignored: %s; a privileged key is honoured only from a file that only root "
        "and the service user can write (docs/security.md)",
        path,
        key,
        why,
    )


def untrusted_view(doc: Mapping[str, Any], path: str, why: str) -> dict[str, Any]:
    """``doc`` as a file that others may write is honoured: without its privileged keys and
    without the privileged fields of ``camera_heartbeat_cameras``; each is named once in the
    log (file and key), and everything else is used. The one place that strips them."""
    out: dict[str, Any] = {}
    for name, value in doc.items():
        key = KEYS_BY_NAME.get(name) if isinstance(name, str) else None
        if key is not None and key.privileged:
            _ignored(path, name, why)
            continue
        if key is not None and key.check is check_camera_overrides and isinstance(value, dict):
            value = {mac: _without_overrides(f, path, name, why) for mac, f in value.items()}
        out[name] = value
    return out


def untrusted_camera(entry: Any, path: str, why: str) -> Any:
    """A camera record (an item of a ``cameras`` list) from a file or a place that others
    may write: without its probe overrides (method, port, path, URL), named once in the log."""
    return _without_overrides(entry, path, "cameras", why)


def _without_overrides(fields_: Any, path: str, where: str, why: str) -> Any:
    if not isinstance(fields_, dict):
        return fields_
    out = {}
    for name, value in fields_.items():
        canonical = name.replace("-", "_") if isinstance(name, str) else name
        if canonical in PRIVILEGED_OVERRIDES:
            if value is not None:
                _ignored(path, f"{where}: {canonical}", why)
            continue
        out[name] = value
    return out


def layered_settings(
    shared: Mapping[str, Any],
    shared_path: str,
    own: Mapping[str, Any] | None = None,
    own_path: str = "<config>",
    webui: bool = False,
    shared_untrusted: str = "",
    own_untrusted: str = "",
) -> Settings:
    """The settings the daemon runs on: the shared file's heartbeat keys, overridden by the
    daemon's own config file where it sets a key. In web UI mode the shared
    ``camera-heartbeat-enabled`` is the web UI's own switch and never turns the daemon off.
    A file others may write (``*_untrusted``: why, from SettingsFile.untrusted) gives no
    privileged key (:func:`untrusted_view`).

    Raises SettingsError naming the file (and key) that holds a bad value.
    """
    if webui:
        shared = {k: v for k, v in shared.items() if KEYS_BY_NAME.get(k) is not _ENABLED}
    if shared_untrusted:
        shared = untrusted_view(shared, shared_path, shared_untrusted)
    if own and own_untrusted:
        own = untrusted_view(own, own_path, own_untrusted)
    base = parse_settings(shared, shared_path)
    if not own:
        return base
    mine = parse_settings(own, own_path)
    values = {key.attr: getattr(mine, key.attr) for key in KEYS if raw_value(own, key) is not None}
    return replace(base, **values)
