"""The shared settings file as the place where cameras live (standalone mode).

The daemon is one writer of the file among others (the web UI when it is not running
in web UI mode, a person with an editor). Every write takes the lock, re-reads the
file, and changes only what the daemon owns: ``status`` and ``last_seen`` of the
cameras it has observed in this run, and what it was asked to change (cameras added
or removed by hand, addresses and names from DHCP), kept in a :class:`Patch` until
they are in the file. Everything else stays as the file has it.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pumaguard_hb.model.camera import Camera, camera_id
from pumaguard_hb.model.settings import untrusted_camera
from pumaguard_hb.model.station import DhcpOutcome, Station
from pumaguard_hb.stores.settings_file import CAMERA_KEY_ORDER, SettingsFile, Snapshot

_MISSING = object()


def _ordered(entry: dict[str, Any]) -> list[str]:
    known = [k for k in CAMERA_KEY_ORDER if k in entry]
    return known + sorted(k for k in entry if k not in CAMERA_KEY_ORDER)


def entry_of(cam: Camera) -> dict[str, Any]:
    """A new camera's entry in the form PumaGuard writes it."""
    entry: dict[str, Any] = {
        "hostname": cam.hostname,
        "ip_address": cam.ip_address,
        "last_seen": cam.last_seen,
    }
    if cam.mac_address:
        entry["mac_address"] = cam.mac_address
    entry["status"] = cam.status
    return entry


class FileStore:
    """Cameras in the shared settings file; see the module's docstring."""

    kind = "file"

    def __init__(self, file: SettingsFile, must_exist: Callable[[], bool] = lambda: False) -> None:
        self.file = file
        self.must_exist = must_exist  # the file was there: never re-create it with our part only
        self.pending = Patch()

    async def listing(self, doc: Mapping[str, Any] | None) -> list[Any] | None:
        """The file's cameras with what is still pending (None before a sweep: the file is
        watched, not polled per sweep)."""
        if doc is None:
            return None
        return self.entries(doc)

    def entries(self, doc: Mapping[str, Any]) -> list[Any]:
        """The cameras of ``doc`` as they will be once the pending changes are written."""
        view = dict(doc)
        if self.pending:
            view = copy.deepcopy(view)
            self.pending.apply(view)
        cameras = view.get("cameras")
        if not isinstance(cameras, list):
            return []
        why = self.file.untrusted  # a file others may write: no probe overrides from it
        if why:
            where = str(self.file.path)
            return [untrusted_camera(entry, where, why) for entry in cameras]
        return cameras

    async def publish(self, station: Station) -> Snapshot | None:
        patch, self.pending = self.pending, Patch()
        try:
            snap = await asyncio.to_thread(self._write, station, patch)
        except BaseException:
            patch.merge(self.pending)  # what arrived meanwhile is newer
            self.pending = patch
            raise
        return snap

    def write(self, station: Station) -> Snapshot | None:
        """Write the pending changes and the observations (at most one write); the hook's
        way in, when no daemon runs. Returns what is on disk when it wrote."""
        patch, self.pending = self.pending, Patch()
        try:
            return self._write(station, patch)
        except BaseException:
            patch.merge(self.pending)
            self.pending = patch
            raise

    def _write(self, station: Station, pending: Patch) -> Snapshot | None:
        patch = Patch()
        patch.merge(pending)
        for cam in station.cameras.values():
            if cam.seen.known:  # only what the daemon saw itself: a report is not re-written
                values: dict[str, Any] = {"status": cam.status}
                if cam.last_seen:
                    values["last_seen"] = cam.last_seen
                patch.set_fields(cam.id, **values)
        if not patch:
            return None
        written: list[bool] = []

        def change(doc: dict[str, Any]) -> bool:
            written.append(patch.apply(doc))
            return written[-1]

        snap = self.file.update(change, self.must_exist())
        return snap if written and written[-1] else None

    async def add(self, camera: Camera) -> None:
        self.pending.add_camera(camera.id, entry_of(camera))

    async def remove(self, camera: Camera) -> None:
        self.pending.remove_camera(camera.id)

    async def dhcp(self, outcome: DhcpOutcome) -> None:
        self.record_dhcp(outcome)

    def record_dhcp(self, outcome: DhcpOutcome) -> None:
        """Keep what a DHCP event changed in a camera's spec until it is written."""
        cam = outcome.camera
        if cam is None:
            return
        if outcome.learned:
            self.pending.add_camera(cam.id, entry_of(cam))
        elif outcome.spec_changed:
            self.pending.set_fields(cam.id, ip_address=cam.ip_address, hostname=cam.hostname)

    def unsaved(self) -> dict[str, Any]:
        p = self.pending
        if not p:
            return {}
        return {
            "camera_fields": p.camera_fields,
            "added": p.added,
            "removed": sorted(p.removed),
            "settings": p.settings,
        }

    def restore(self, unsaved: Mapping[str, Any]) -> None:
        later = Patch(
            camera_fields=dict(unsaved.get("camera_fields") or {}),
            added=dict(unsaved.get("added") or {}),
            removed=set(unsaved.get("removed") or ()),
            settings=dict(unsaved.get("settings") or {}),
        )
        restored, self.pending = self.pending, later
        self.pending.merge(restored)

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.file.path), "writes": self.file.writes}


@dataclass
class Patch:
    """What the daemon wants to change in the file: only fields and cameras it owns."""

    camera_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    added: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    settings: dict[str, Any] = field(default_factory=dict)  # key spelling → value

    def __bool__(self) -> bool:
        return bool(self.camera_fields or self.added or self.removed or self.settings)

    def set_fields(self, cid: str, **values: Any) -> None:
        """Record new values for daemon-owned fields of camera ``cid``."""
        if cid in self.added:
            self.added[cid].update(values)
        else:
            self.camera_fields.setdefault(cid, {}).update(values)

    def add_camera(self, cid: str, entry: dict[str, Any]) -> None:
        """Record a camera the daemon learned (DHCP) or was told to add."""
        self.removed.discard(cid)
        self.added[cid] = dict(entry)

    def remove_camera(self, cid: str) -> None:
        """Record that camera ``cid`` goes away."""
        self.added.pop(cid, None)
        self.camera_fields.pop(cid, None)
        self.removed.add(cid)

    def merge(self, later: Patch) -> None:
        """Fold a newer patch into this one (used when a write failed and is retried)."""
        for cid in later.removed:
            self.remove_camera(cid)
        for cid, entry in later.added.items():
            self.add_camera(cid, entry)
        for cid, values in later.camera_fields.items():
            self.set_fields(cid, **values)
        self.settings.update(later.settings)

    def apply(self, doc: dict[str, Any]) -> bool:
        """Apply to a freshly read document; True when the document changed."""
        changed = False
        for key, value in self.settings.items():
            if doc.get(key, _MISSING) != value:
                doc[key] = value
                changed = True
        cameras = doc.get("cameras")
        if not isinstance(cameras, list):
            if not self.added:
                return changed
            cameras = []
            doc["cameras"] = cameras
        kept: list[Any] = []
        seen: set[str] = set()
        for entry in cameras:
            cid = camera_id(entry) if isinstance(entry, dict) else None
            if cid is not None and cid in self.removed:
                changed = True
                continue
            if cid is not None and cid in seen:
                kept.append(entry)  # listed twice: the daemon uses the first; leave this alone
                continue
            if cid is not None:
                seen.add(cid)
                values = dict(self.camera_fields.get(cid, {}))
                values.update(self.added.get(cid, {}))
                for k, v in values.items():
                    if entry.get(k, _MISSING) != v:
                        entry[k] = v
                        changed = True
            kept.append(entry)
        for cid, entry in self.added.items():
            if cid not in seen:
                kept.append({k: entry[k] for k in _ordered(entry)})
                changed = True
        if changed:
            doc["cameras"] = kept
        return changed
