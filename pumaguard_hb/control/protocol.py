"""The control protocol: newline-delimited JSON, one reply line per request. Pure, no I/O.

Request:  ``{"id": 7, "cmd": "status", "args": {}}``
Reply:    ``{"id": 7, "ok": true, "result": {...}}``
Error:    ``{"id": 7, "ok": false, "error": {"code": "not_found", "message": "..."}}``

See docs/protocol.md for the commands and the meaning of each error code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
MAX_LINE = 64 * 1024  # bytes of one request line, newline included

# Stable error codes. A user's mistake is told apart from a daemon bug ("internal").
BAD_REQUEST = "bad_request"  # not JSON, not an object, no "cmd"
TOO_LARGE = "too_large"  # request line longer than MAX_LINE; the connection is closed
UNKNOWN_COMMAND = "unknown_command"
BAD_ARGS = "bad_args"  # missing or wrongly typed arguments
INVALID_VALUE = "invalid_value"  # a setting or camera field that is not allowed
NOT_FOUND = "not_found"  # no such camera
CONFLICT = "conflict"  # contradicts the current state, or could not be saved
PERMISSION_DENIED = "permission_denied"
DISABLED = "disabled"  # monitoring is switched off
VERSION_MISMATCH = "version_mismatch"
BUSY = "busy"  # too many connections
INTERNAL = "internal"  # a bug in the daemon; the message says what failed
ERROR_CODES = (
    BAD_REQUEST,
    TOO_LARGE,
    UNKNOWN_COMMAND,
    BAD_ARGS,
    INVALID_VALUE,
    NOT_FOUND,
    CONFLICT,
    PERMISSION_DENIED,
    DISABLED,
    VERSION_MISMATCH,
    BUSY,
    INTERNAL,
)


class ProtocolError(Exception):
    """An error that travels in the reply envelope: a stable code and a sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Request:
    """One decoded request."""

    cmd: str
    args: dict[str, Any] = field(default_factory=dict)
    id: Any = None


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def encode_request(cmd: str, args: dict[str, Any] | None = None, id: Any = None) -> bytes:
    """One request line."""
    body: dict[str, Any] = {"cmd": cmd, "args": args or {}}
    if id is not None:
        body["id"] = id
    return _dumps(body)


def decode_request(line: bytes) -> Request:
    """Parse one request line; ProtocolError with a stable code when it is not a request."""
    if len(line) > MAX_LINE:
        raise ProtocolError(TOO_LARGE, f"request longer than {MAX_LINE} bytes")
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError(BAD_REQUEST, "request is not UTF-8 text") from None
    except ValueError as err:
        raise ProtocolError(BAD_REQUEST, f"request is not JSON: {err}") from None
    except RecursionError:  # "[[[[..." within the size cap: the stdlib decoder recurses
        raise ProtocolError(BAD_REQUEST, "request is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_REQUEST, "request must be a JSON object")
    cmd = obj.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise ProtocolError(BAD_REQUEST, 'request needs "cmd": a command name')
    args = obj.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ProtocolError(BAD_ARGS, '"args" must be a JSON object')
    rid = obj.get("id")
    if (rid is not None and not isinstance(rid, str | int)) or isinstance(rid, bool):
        raise ProtocolError(BAD_REQUEST, '"id" must be a string or an integer')
    return Request(cmd, args, rid)


def request_id(line: bytes) -> Any:
    """The id of a request that failed to decode, when it can still be found (else None)."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    rid = obj.get("id") if isinstance(obj, dict) else None
    return rid if isinstance(rid, str | int) and not isinstance(rid, bool) else None


def encode_result(rid: Any, result: Any) -> bytes:
    """A success reply line."""
    return _dumps({"id": rid, "ok": True, "result": result})


def encode_error(rid: Any, code: str, message: str) -> bytes:
    """An error reply line."""
    return _dumps({"id": rid, "ok": False, "error": {"code": code, "message": message}})


def decode_reply(line: bytes) -> Any:
    """The result of a reply line; ProtocolError for an error reply or a malformed line."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(INTERNAL, "the daemon sent a reply that is not JSON") from None
    if not isinstance(obj, dict) or "ok" not in obj:
        raise ProtocolError(INTERNAL, "the daemon sent a reply without an envelope")
    if obj["ok"]:
        return obj.get("result")
    error = obj.get("error") or {}
    raise ProtocolError(str(error.get("code", INTERNAL)), str(error.get("message", "error")))
