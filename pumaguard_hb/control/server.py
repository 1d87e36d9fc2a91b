"""The control socket: a Unix stream socket serving the protocol to many clients at once.

Each connection is its own task, so a slow, idle or hostile client can delay
nobody else; limits on line size, idle time, reply backlog and the number of
connections keep memory bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import socket
import struct
import time
from pathlib import Path

from pumaguard_hb.control.commands import COMMANDS, Peer, to_protocol_error
from pumaguard_hb.control.protocol import (
    BAD_REQUEST,
    BUSY,
    INTERNAL,
    MAX_LINE,
    PERMISSION_DENIED,
    TOO_LARGE,
    UNKNOWN_COMMAND,
    ProtocolError,
    decode_request,
    encode_error,
    encode_result,
    request_id,
)
from pumaguard_hb.model.errors import HeartbeatError
from pumaguard_hb.monitor import Monitor

log = logging.getLogger(__name__)

MAX_CLIENTS = 256
IDLE_TIMEOUT = 120.0  # seconds a connection may take to send its next complete request line
WRITE_TIMEOUT = 10.0  # seconds a client may leave a reply unread


class SocketInUse(HeartbeatError):
    """Another daemon already answers on the socket path."""


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def group_name() -> str:
    """The group whose members may use the socket (the daemon's own group)."""
    try:
        return grp.getgrgid(os.getegid()).gr_name
    except KeyError:
        return str(os.getegid())


def may_change(uid: int, gid: int) -> bool:
    """True for root, the daemon's user, and members of the daemon's group."""
    if uid in (0, os.geteuid()) or gid == os.getegid():
        return True
    try:
        name = pwd.getpwuid(uid).pw_name
        return os.getegid() in os.getgrouplist(name, gid)
    except (KeyError, OSError):
        return False


class ControlServer:
    """Serves the control protocol for a monitor on a Unix socket path."""

    def __init__(self, monitor: Monitor, path: Path) -> None:
        self.monitor = monitor
        self.path = Path(path)
        self.clients = 0
        self._server: asyncio.Server | None = None
        # connections waiting for their next request line, the longest-waiting first
        self._idle: dict[asyncio.StreamWriter, float] = {}

    async def start(self) -> None:
        """Bind the socket (mode 0660) and start accepting; SocketInUse if a daemon answers."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if await _answers(self.path):
                raise SocketInUse(f"another daemon is already listening on {self.path}")
            self.path.unlink()
        old = os.umask(0o117)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_LINE, backlog=128
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)

    async def close(self) -> None:
        """Stop accepting, close the socket and remove its path."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 0.5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients += 1
        try:
            if self.clients > MAX_CLIENTS and not self._evict_idle():
                writer.write(encode_error(None, BUSY, f"more than {MAX_CLIENTS} clients connected"))
                await asyncio.wait_for(writer.drain(), 1.0)
                return
            sock = writer.get_extra_info("socket")
            _, uid, gid = peer_credentials(sock)
            await self._conversation(reader, writer, Peer(uid, gid), may_change(uid, gid))
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self.clients -= 1
            self._idle.pop(writer, None)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except Exception:
                # close() waits for unsent replies to drain, which never happens for a client
                # that does not read: drop them, or the socket stays open for ever
                writer.transport.abort()

    async def _conversation(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
        trusted: bool,
    ) -> None:
        while True:
            self._idle[writer] = time.monotonic()
            try:
                async with asyncio.timeout(IDLE_TIMEOUT):
                    line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return  # the client hung up
            except asyncio.LimitOverrunError:
                writer.write(encode_error(None, TOO_LARGE, f"request longer than {MAX_LINE} bytes"))
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
                return  # cannot find the next request boundary cheaply: hang up
            finally:
                self._idle.pop(writer, None)
            reply = await self._answer(line, peer, trusted)
            writer.write(reply)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)

    def _evict_idle(self) -> bool:
        """Make room for a new client by closing the connection idle the longest.

        Hundreds of idle (or slowloris) connections would otherwise lock everybody out
        until IDLE_TIMEOUT; a connection in the middle of a request is never closed.
        """
        victim = next(iter(self._idle), None)
        if victim is None:
            return False
        del self._idle[victim]
        with contextlib.suppress(Exception):
            victim.write(
                encode_error(
                    None, BUSY, f"more than {MAX_CLIENTS} clients: closing the longest idle one"
                )
            )
            victim.close()
        return True

    async def _answer(self, line: bytes, peer: Peer, trusted: bool) -> bytes:
        rid = None
        try:
            if not line.strip():
                raise ProtocolError(BAD_REQUEST, "empty request line")
            try:
                request = decode_request(line)
            except ProtocolError:
                rid = request_id(line)
                raise
            rid = request.id
            command = COMMANDS.get(request.cmd)
            if command is None:
                raise ProtocolError(
                    UNKNOWN_COMMAND,
                    f"unknown command {request.cmd[:60]!r}; known: {', '.join(sorted(COMMANDS))}",
                )
            if command.changes and not trusted:
                raise ProtocolError(
                    PERMISSION_DENIED,
                    f"permission denied: add yourself to group {group_name()} "
                    f"(sudo usermod -aG {group_name()} $USER, then log in again)",
                )
            return encode_result(rid, await command.handler(self.monitor, request.args, peer))
        except Exception as err:
            known = to_protocol_error(err)
            if known is None:
                log.exception("request failed")
                known = ProtocolError(INTERNAL, f"internal error: {type(err).__name__}: {err}")
            return encode_error(rid, known.code, known.message)


async def _answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
