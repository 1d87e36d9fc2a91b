"""The ``rtsp`` fixture of the stream tests: one real GStreamer RTSP server per test module
(tests/rtsp_server.py, which itself runs under Debian's python3 and imports no pytest)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from rtsp_server import RtspServer, gst_available


# The one server of a test module (imported by the stream tests as their fixture): skipped
# where GStreamer is missing, a failure under CI (./dev test installs it).
@pytest.fixture(scope="module")
def rtsp() -> Iterator[RtspServer]:
    why = gst_available()
    if why:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"GStreamer RTSP server unavailable under CI: {why}")
        pytest.skip(
            f"GStreamer RTSP server unavailable (python3-gi, gir1.2-gst-rtsp-server-1.0): {why}"
        )
    server = RtspServer()
    try:
        yield server
    finally:
        server.close()
