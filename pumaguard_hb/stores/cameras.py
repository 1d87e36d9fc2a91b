"""Where the station's cameras live: one small interface, two places.

- :class:`~.filestore.FileStore` — the shared settings file (standalone): the daemon is a
  writer of the file, under the lock, changing only what it owns.
- :class:`~.webstore.WebUIStore` — the PumaGuard web UI (web UI mode): its API is the
  camera list and takes the daemon's results; the web UI stays the one writer of the file.

The daemon's entry point picks one; the monitor never knows which. Both are tested by
the same behavioural tests (tests/test_stores.py).

The calls may take long (a web UI answering slowly): in web UI mode the monitor makes
:meth:`CameraStore.listing` and :meth:`CameraStore.publish` from one task of its own,
beside the sweeps, never inside one; :meth:`CameraStore.dhcp` only queues.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pumaguard_hb.model.camera import Camera
from pumaguard_hb.model.station import DhcpOutcome, Station
from pumaguard_hb.stores.settings_file import Snapshot


class CameraStore(Protocol):
    """A place where the station's cameras live."""

    #: "file" or "webui"
    kind: str

    async def listing(self, doc: Mapping[str, Any] | None) -> list[Any] | None:
        """The camera list as this place has it now, or None when it has nothing new.

        ``doc`` is the shared settings file just read (None: called before a sweep).
        """

    async def publish(self, station: Station) -> Snapshot | None:
        """Make this place show what the daemon observed (at most one write).

        Returns what is on disk when this wrote the shared settings file, else None.
        Raises SettingsError, StoreError or WebUIError; what was not published is kept.
        """

    async def add(self, camera: Camera) -> None:
        """A camera added by hand (persisted by the next publish or at once)."""

    async def remove(self, camera: Camera) -> None:
        """A camera removed by hand."""

    async def dhcp(self, outcome: DhcpOutcome) -> None:
        """A DHCP event the daemon received (learned cameras, new addresses); the web UI
        store queues it for the next publish."""

    def unsaved(self) -> dict[str, Any]:
        """What was changed by hand or by DHCP but not yet published (kept over a restart)."""

    def restore(self, unsaved: Mapping[str, Any]) -> None:
        """Take back what :meth:`unsaved` returned before the last stop."""

    def info(self) -> dict[str, Any]:
        """For ``status``: where the cameras live and how that place is doing."""
