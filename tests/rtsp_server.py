"""A real RTSP server for the stream tests: GStreamer's gst-rtsp-server, run as a subprocess
with Debian's ``/usr/bin/python3`` (python3-gi lives in its site-packages, so both test venvs
can use it). Three servers on free loopback ports in one process: no auth, Basic, Digest
(GStreamer 1.22's GstRTSPAuth does Digest with MD5 and no qop). Mounts:

- ``/test``: ``videotestsrc is-live=true ! jpegenc ! rtpjpegpay name=pay0 pt=26``
- ``/hd``: 960x540 JPEG at 25 fps, a camera-like bit rate (for the benchmark)
- ``/audio``: audio only (``audiotestsrc ! rtpL16pay``): "no video track in SDP"

Protocol on stdout: one ``READY none=P basic=P digest=P`` line, then ``EVENT ...`` lines
(``new-session``, ``teardown``). On stdin: ``sessions`` -> ``SESSIONS none=N basic=N
digest=N``; end of stdin or SIGTERM -> exit. The parent side is :class:`RtspServer`.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SYSTEM_PYTHON = "/usr/bin/python3"
VIDEO = (
    "( videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120,framerate=10/1 "
    "! jpegenc ! rtpjpegpay name=pay0 pt=26 )"
)
# a camera-like load for bench/bench_stream.py: about 2 Mbit/s of JPEG (measured there)
HD = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=960,height=540,"
    "framerate=25/1 ! jpegenc quality=90 ! rtpjpegpay name=pay0 pt=26 )"
)
AUDIO = "( audiotestsrc is-live=true ! audio/x-raw,rate=8000,channels=1 ! rtpL16pay name=pay0 )"
USER = "viewer"
PASSWORD = "s3cret-pw"


def gst_available() -> str:
    """ "" when the system python can run the server, else why not."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} missing"
    code = (
        "import gi; gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import GstRtspServer"
    )
    try:
        run = subprocess.run(
            [SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return "" if run.returncode == 0 else (run.stderr.strip().splitlines() or ["?"])[-1]


class RtspServer:
    """The server subprocess; ``ports`` maps none/basic/digest to its port."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._buf = b""
        self.events: list[str] = []
        self.ports: dict[str, int] = {}
        try:
            line = self._line(60.0)
            if not line.startswith("READY "):
                raise RuntimeError(f"rtsp_server.py: {line!r}; stderr: {self._stderr()}")
            self.ports = {k: int(v) for k, v in (w.split("=") for w in line.split()[1:])}
        except BaseException:
            self.close()
            raise

    def url(self, auth: str = "none", path: str = "/test") -> str:
        return f"rtsp://127.0.0.1:{self.ports[auth]}{path}"

    def _line(self, timeout: float) -> str:
        """The next line that is not an event (raw reads: a buffered file and select()
        disagree about lines already read ahead)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                raw, _, rest = self._buf.partition(b"\n")
                self._buf = rest
                line = raw.decode().strip()
                if line.startswith("EVENT "):
                    self.events.append(line[6:])
                    continue
                return line
            left = end - time.monotonic()
            if left <= 0:
                raise RuntimeError("rtsp_server.py did not answer in time")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    raise RuntimeError(f"rtsp_server.py exited; stderr: {self._stderr()}")
                self._buf += data

    def sessions(self) -> dict[str, int]:
        """The servers' open RTSP sessions now."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"sessions\n")
        self.proc.stdin.flush()
        line = self._line(30.0)
        return {k: int(v) for k, v in (w.split("=") for w in line.split()[1:])}

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-2000:].decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


# ---------------------------------------------------------------- the subprocess


def _serve() -> None:  # pragma: no cover - runs under /usr/bin/python3
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    Gst.init(None)
    loop = GLib.MainLoop()

    def say(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def make(kind: str) -> Any:
        server = GstRtspServer.RTSPServer()
        server.set_address("127.0.0.1")
        server.set_service("0")
        mounts = server.get_mount_points()
        for path, launch in (("/test", VIDEO), ("/hd", HD), ("/audio", AUDIO)):
            factory = GstRtspServer.RTSPMediaFactory()
            factory.set_launch(launch)
            factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
            if kind != "none":
                perms = GstRtspServer.RTSPPermissions()
                perms.add_permission_for_role("user", "media.factory.access", True)
                perms.add_permission_for_role("user", "media.factory.construct", True)
                factory.set_permissions(perms)
            mounts.add_factory(path, factory)
        if kind != "none":
            auth = GstRtspServer.RTSPAuth()
            token = GstRtspServer.RTSPToken()
            token.set_string("media.factory.role", "user")
            if kind == "basic":
                auth.add_basic(GstRtspServer.RTSPAuth.make_basic(USER, PASSWORD), token)
                auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
            else:
                auth.add_digest(USER, PASSWORD, token)
                auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            server.set_auth(auth)

        def on_client(_server: Any, client: Any) -> None:
            client.connect("new-session", lambda *_: say(f"EVENT {kind} new-session"))
            client.connect("teardown-request", lambda *_: say(f"EVENT {kind} teardown"))

        server.connect("client-connected", on_client)
        server.attach(None)
        return server

    servers = {kind: make(kind) for kind in ("none", "basic", "digest")}

    def on_stdin(_fd: Any, cond: Any) -> bool:
        line = sys.stdin.readline()
        if not line:
            loop.quit()
            return False
        if line.strip() == "sessions":
            counts = " ".join(
                f"{k}={s.get_session_pool().get_n_sessions()}" for k, s in servers.items()
            )
            say(f"SESSIONS {counts}")
        return True

    GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, on_stdin)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    # a session whose client vanished without TEARDOWN would linger 60 s: clean every second
    GLib.timeout_add_seconds(
        1, lambda: [s.get_session_pool().cleanup() for s in servers.values()] and True
    )
    say("READY " + " ".join(f"{k}={s.get_bound_port()}" for k, s in servers.items()))
    loop.run()
    os._exit(0)


if __name__ == "__main__":
    _serve()
