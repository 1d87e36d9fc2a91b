"""A real RTSP server for tests: GStreamer's gst-rtsp-server (Debian's packages), via PyGObject.

Run with Debian's /usr/bin/python3: ``rtsp_server.py ADDRESS PORT``. Prints "ready" once
it listens; stops on SIGTERM. Serves one test stream at /stream (videotestsrc, raw RTP):
enough for OPTIONS, DESCRIBE and SETUP to be answered by real RTSP code.
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    address, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(address)
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch("( videotestsrc is-live=true ! rtpvrawpay name=pay0 pt=96 )")
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
