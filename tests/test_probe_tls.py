"""https checks share one TLS context, built once, not per probe on the event loop.

Issue 11, item 10.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pumaguard_hb.probes import http as probe

SERVERS = Path(__file__).parent / "servers"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[int]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=camera", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(SERVERS / "http_server.py"),
            "127.0.0.1",
            str(port),
            str(cert),
            str(key),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_https_checks_reuse_one_context(https_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_new_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        raise AssertionError("a TLS context was built for a probe")

    monkeypatch.setattr(probe.ssl, "create_default_context", no_new_context)
    seen: list[Any] = []
    real_open = asyncio.open_connection

    async def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("ssl"))
        return await real_open(*args, **kwargs)

    monkeypatch.setattr(probe.asyncio, "open_connection", spy)

    async def sweep() -> list[probe.ProbeResult]:
        return list(
            await asyncio.gather(
                *(probe.probe_request("https", "127.0.0.1", https_server, 10.0) for _ in range(5))
            )
        )

    results = asyncio.run(sweep())
    assert all(r.reachable for r in results), [r.reason for r in results]
    assert len(seen) == 5
    assert all(ctx is probe.TLS_CONTEXT for ctx in seen)
    assert isinstance(probe.TLS_CONTEXT, ssl.SSLContext)
    assert probe.TLS_CONTEXT.verify_mode == ssl.CERT_NONE  # self-signed cameras still pass
    assert not probe.TLS_CONTEXT.check_hostname
