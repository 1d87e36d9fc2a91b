"""The client's connect: a momentarily full listen backlog is waited out, not "not running"."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from pumaguard_hb.control.client import _connect


def test_full_backlog_is_waited_out(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(0)
    queued = []
    try:
        while True:  # fill the backlog until the kernel says EAGAIN (bounded)
            c = socket.socket(socket.AF_UNIX)
            c.setblocking(False)
            queued.append(c)
            try:
                c.connect(path)
            except BlockingIOError:
                break
            assert len(queued) < 100

        def accept_later() -> None:
            time.sleep(0.3)
            server.settimeout(2)
            for _ in range(len(queued) + 1):
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                conn.close()

        threading.Thread(target=accept_later, daemon=True).start()
        client = socket.socket(socket.AF_UNIX)
        client.settimeout(3)
        _connect(client, path)  # raised BlockingIOError before the fix
        assert client.getpeername() == str(path)  # connected, to this server's socket
        assert client.recv(1) == b""  # and accepted by it: it closes what it accepts
        client.close()
    finally:
        for c in queued:
            c.close()
        server.close()
