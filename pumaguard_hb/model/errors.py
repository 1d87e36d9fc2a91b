"""The project's exception root: every error a user can meet builds its own message."""

from __future__ import annotations


class HeartbeatError(Exception):
    """Base of every error raised on purpose by pumaguard-heartbeat."""


class SettingsError(HeartbeatError):
    """The settings file cannot be used: it does not parse or holds an invalid value."""

    def __init__(self, path: str, message: str, key: str | None = None) -> None:
        self.path = path
        self.key = key
        self.detail = message
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(where + message)


class InvalidValue(HeartbeatError):
    """A value given for a setting or a camera field is not allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"{key}: invalid value {value!r}: {allowed}")


class CameraNotFound(HeartbeatError):
    """No camera matches the MAC, IP, hostname or id the user gave."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"no camera matches {ref!r}")


class Conflict(HeartbeatError):
    """The request contradicts the current state (e.g. the camera already exists)."""


class Disabled(HeartbeatError):
    """Monitoring is switched off in the settings."""


class PermissionDenied(HeartbeatError):
    """The caller may not do this (e.g. only root may set what runs a program)."""
