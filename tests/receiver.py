"""A real HTTP server on 127.0.0.1 that records every JSON POST: the webhook receiver of
tests/test_actions.py, Apprise's ``json://`` target in tests/test_alerts.py and
Alertmanager's webhook in tests/test_prometheus.py."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1 << 20


class Receiver:
    """Records each POST as ``{"path", "headers", "body", "answered", "t"}``. ``plan[path]``
    lists the statuses to answer in turn (200 once it runs out)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.plan: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                raw = self.rfile.read(length)
                with receiver.lock:
                    plan = receiver.plan.get(self.path, [])
                    status = plan.pop(0) if plan else 200
                    receiver.posts.append({
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(raw),
                        "answered": status,
                        "t": time.monotonic(),
                    })  # fmt: skip
                reply = b'{"ok": true}' if status < 400 else b"no thanks\nsecond line"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.port: int = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/hook") -> str:
        return self.base + path

    def bodies(self) -> list[Any]:
        with self.lock:
            return [p["body"] for p in self.posts]

    def got(self, path: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                p for p in self.posts
                if (path is None or p["path"] == path)
                and (event is None or p["body"]["event"] == event)
            ]  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
