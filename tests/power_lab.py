"""A camera powered by a smart plug, in a netlab :class:`~netlab.Lab` (tests/netlab.py).

Both live in the lab's cameras namespace: the camera on a lab address of its own (it
answers ICMP through the kernel and TCP on ``port`` through a lab listener, or nothing),
the plug (tests/shelly_sim.py) on port 80 of another. The daemon under test, in the
prober namespace, reaches both through the lab's link. The plug's output is the
camera's power:

- off: the camera goes silent at once (its address is taken away: no answer, no error);
- on: after ``boot_time`` the camera answers again, unless it is ``dead``; a ``hung``
  camera answers nothing until its power has been off and then on.

Usage::

    with Lab() as lab, PoweredCamera(lab, state="hung", boot_time=1) as cam:
        run_in_netns(lab.prober, lambda: asyncio.run(switch_set(Plug(cam.plug_url), False, 1)))

A PoweredCamera is closed on ``with`` exit, by :meth:`close`, and when its lab closes
(it hooks the lab's ``close``), so a failing test leaves no server or timer behind.
"""

from __future__ import annotations

import atexit
import contextlib
import socket
import threading
import weakref

from netlab import Lab, NetlabError, run_in_netns
from shelly_sim import ShellyPlug

STATES = ("up", "hung", "dead")
_LIVE: weakref.WeakSet[PoweredCamera] = weakref.WeakSet()


def _listen(ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


def _close_with(lab: Lab, cam: PoweredCamera) -> None:
    """Have ``lab.close()`` (``with`` exit, its fixture, its atexit net) close ``cam`` first."""
    cams: list[PoweredCamera] | None = getattr(lab, "_powered_cameras", None)
    if cams is None:
        cams = []
        lab._powered_cameras = cams  # type: ignore[attr-defined]
        lab_close = lab.close

        def close() -> None:
            for each in list(cams):
                with contextlib.suppress(Exception):
                    each.close()
            lab_close()

        lab.close = close  # type: ignore[method-assign]
    cams.append(cam)


class PoweredCamera:
    """A camera and the simulated plug that powers it, both in the lab's cameras namespace.

    ``state`` is what the camera does while it has power: ``up`` answers (``boot_time``
    after its power came on), ``hung`` answers nothing until a power cut (after one it is
    ``up``), ``dead`` never answers.
    """

    def __init__(
        self,
        lab: Lab,
        *,
        state: str = "hung",
        boot_time: float = 2.0,
        password: str | None = None,
        plug_on: bool = True,
        port: int = 80,
    ) -> None:
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, not {state!r}")
        self.lab = lab
        self.state = state
        self.boot_time = boot_time
        self.port = port
        self.powered_off_count = 0
        self._powered = plug_on
        self._lock = threading.RLock()
        self._boot: threading.Timer | None = None
        self._closed = False
        self.plug: ShellyPlug | None = None
        # the camera: a listener that exists while its address is silent (the lab allows
        # a non-local bind), so it answers as soon as the address comes back
        self.camera_ip = lab.add_camera_ip("silent")
        self.listener = lab.tcp_listener(self.camera_ip, port)
        self.plug_ip = lab.add_camera_ip("answering")
        sock = run_in_netns(lab.cameras, lambda: _listen(self.plug_ip, 80))
        _close_with(lab, self)
        _LIVE.add(self)
        try:
            self.plug = ShellyPlug(sock, on=plug_on, password=password or "", on_power=self._power)
        except BaseException:
            sock.close()
            self.close()
            raise
        if not plug_on and state == "hung":
            self.state = "up"  # no power yet: it boots clean when the plug switches on
        if state == "up" and plug_on:
            lab.make_answering(self.camera_ip)

    @property
    def plug_url(self) -> str:
        return f"http://{self.plug_ip}"

    @property
    def answering(self) -> bool:
        """The camera's address answers now (as the lab sees it)."""
        return self.lab.is_answering(self.camera_ip)

    def __enter__(self) -> PoweredCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PoweredCamera {self.camera_ip} {self.state} plug {self.plug_url}>"

    def hang(self) -> None:
        """An up camera hangs now: silent until its power goes off and on again."""
        with self._lock:
            if self._closed or self.state == "dead":
                return
            self.state = "hung"
            self._cancel_boot()
            self.lab.make_silent(self.camera_ip)

    def close(self) -> None:
        """Stop the plug, the boot timer and the camera's listener; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            boot = self._cancel_boot()
        if boot is not None and boot is not threading.current_thread():
            boot.join(5)
        if self.plug is not None:
            self.plug.close()
        with contextlib.suppress(NetlabError, OSError):
            self.listener.stop()
        _LIVE.discard(self)

    # -- the power ---------------------------------------------------------------------

    def _power(self, on: bool) -> None:
        """The plug's output changed (called by the plug, one change at a time)."""
        with self._lock:
            if self._closed:
                return
            self._powered = on
            if not on:
                self.powered_off_count += 1
                self._cancel_boot()
                if self.state == "hung":
                    self.state = "up"  # the cut clears the hang: it boots when power returns
                self.lab.make_silent(self.camera_ip)
            elif self.state == "up":
                self._start_boot()

    def _start_boot(self) -> None:
        self._cancel_boot()
        timer = threading.Timer(self.boot_time, self._booted)
        timer.daemon = True
        self._boot = timer
        timer.start()

    def _cancel_boot(self) -> threading.Timer | None:
        boot, self._boot = self._boot, None
        if boot is not None:
            boot.cancel()
        return boot

    def _booted(self) -> None:
        with self._lock:
            if self._closed or self._boot is not threading.current_thread():
                return
            self._boot = None
            if self._powered and self.state == "up":
                self.lab.make_answering(self.camera_ip)


@atexit.register
def _close_leftovers() -> None:
    """Safety net: close cameras a crashed test never closed (before netlab's labs go)."""
    for cam in list(_LIVE):
        with contextlib.suppress(Exception):
            cam.close()
