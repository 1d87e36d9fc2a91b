"""The exit statuses of pumaguard-hb (documented in docs/cli.md and pumaguard-hb(1))."""

from __future__ import annotations

OK = 0  # success; for status and check-now: every camera is connected
DISCONNECTED = 1  # status, check-now: at least one camera is disconnected
USAGE = 2  # bad command, option or argument (click's own usage-error status)
NOT_RUNNING = 3  # no daemon listens on the socket
PERMISSION = 4  # the user may not use the socket, or may not change anything
NOT_FOUND = 5  # no camera matches the name, MAC or IP given
REJECTED = 6  # the daemon refused the request: invalid value, conflict, disabled, ...
FAILURE = 7  # no answer, protocol error, or an internal error
INTERRUPTED = 130  # Ctrl-C

# Error codes of the control protocol (pumaguard_hb.control.protocol) → exit status.
BY_ERROR_CODE = {
    "not_found": NOT_FOUND,
    "permission_denied": PERMISSION,
    "invalid_value": REJECTED,
    "conflict": REJECTED,
    "disabled": REJECTED,
    "bad_args": REJECTED,
    "unknown_command": REJECTED,
}


def for_error_code(code: str) -> int:
    """The exit status for an error reply of the daemon."""
    return BY_ERROR_CODE.get(code, FAILURE)
