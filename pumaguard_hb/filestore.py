"""The settings file as the place where cameras live (standalone mode).

Placeholder during the redesign: :class:`Patch` is what the daemon wants to change in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .camera import camera_id
from .settings_file import CAMERA_KEY_ORDER

_MISSING = object()


def _ordered(entry: dict[str, Any]) -> list[str]:
    known = [k for k in CAMERA_KEY_ORDER if k in entry]
    return known + sorted(k for k in entry if k not in CAMERA_KEY_ORDER)


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
