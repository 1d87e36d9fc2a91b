"""A small blocking client of the control socket, used by the CLI, the DHCP hook and tests."""

from __future__ import annotations

import grp
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from pumaguard_hb.control.protocol import (
    MAX_LINE,
    PROTOCOL_VERSION,
    ProtocolError,
    decode_reply,
    encode_request,
)
from pumaguard_hb.model.errors import HeartbeatError
from pumaguard_hb.paths import client_socket_path

CONNECT_TIMEOUT = 3.0
REPLY_TIMEOUT = 10.0
MAX_REPLY = 64 * 1024 * 1024


class ClientError(HeartbeatError):
    """The daemon could not be asked: not running, not permitted, or no answer."""


class DaemonNotRunning(ClientError):
    """No daemon listens on the socket path."""


class NotPermitted(ClientError):
    """The socket exists but this user may not use it."""


class NoAnswer(ClientError):
    """The daemon did not answer in time, or hung up."""


def _connect(sock: socket.socket, path: str) -> None:
    """Connect, retrying while the daemon's listen backlog is full (EAGAIN on Unix sockets)."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError from None
            time.sleep(0.01)


def socket_group(path: Path) -> str:
    """Name of the group that owns the socket (whom to join to use it)."""
    try:
        gid = os.stat(path).st_gid
        return grp.getgrgid(gid).gr_name
    except (OSError, KeyError):
        return "pumaguard-hb"


class Client:
    """One connection to the daemon; several requests may be sent over it."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, timeout: float = REPLY_TIMEOUT
    ) -> None:
        self.path = client_socket_path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._next_id = 0

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Connect and shake hands; raises a ClientError saying what to do about it."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            _connect(sock, str(self.path))
        except FileNotFoundError:
            sock.close()
            raise DaemonNotRunning(
                f"pumaguard-heartbeat is not running (no socket at {self.path}); "
                "start it with: sudo systemctl start pumaguard-heartbeat"
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise DaemonNotRunning(
                f"pumaguard-heartbeat is not running (nobody listens on {self.path}); "
                "start it with: sudo systemctl start pumaguard-heartbeat"
            ) from None
        except PermissionError:
            sock.close()
            group = socket_group(self.path)
            raise NotPermitted(
                f"permission denied on {self.path}: add yourself to group {group} "
                f"(sudo usermod -aG {group} $USER, then log in again)"
            ) from None
        except TimeoutError:
            sock.close()
            raise NoAnswer(
                f"pumaguard-heartbeat did not accept a connection on {self.path}"
            ) from None
        except OSError as err:
            sock.close()
            raise DaemonNotRunning(f"cannot connect to {self.path}: {err.strerror}") from None
        self._sock = sock
        self.call("hello", {"protocol": PROTOCOL_VERSION, "client": "pumaguard-hb"})

    def close(self) -> None:
        """Hang up."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def call(
        self, cmd: str, args: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Send one request and return its result; ProtocolError for an error reply."""
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        self._next_id += 1
        line = encode_request(cmd, args, self._next_id)
        if len(line) > MAX_LINE:
            raise ProtocolError("too_large", f"request longer than {MAX_LINE} bytes")
        self._sock.settimeout(timeout or self.timeout)
        try:
            self._sock.sendall(line)
            return decode_reply(self._read_line())
        except TimeoutError:
            self.close()
            raise NoAnswer(
                f"pumaguard-heartbeat did not answer {cmd} within {timeout or self.timeout:.0f}s"
            ) from None
        except (BrokenPipeError, ConnectionResetError):
            self.close()
            raise NoAnswer("pumaguard-heartbeat closed the connection") from None

    def _read_line(self) -> bytes:
        assert self._sock is not None
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise NoAnswer("pumaguard-heartbeat closed the connection without a reply")
            self._buffer += chunk
            if len(self._buffer) > MAX_REPLY:
                raise NoAnswer("reply too large")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


def call(
    cmd: str,
    args: dict[str, Any] | None = None,
    *,
    socket_path: str | os.PathLike[str] | None = None,
    timeout: float = REPLY_TIMEOUT,
) -> Any:
    """Connect, send one request, return its result."""
    with Client(socket_path, timeout) as client:
        return client.call(cmd, args)
