"""The monitor's settings: read from its two files, reloaded, and changed one key at a time.

The heartbeat keys of the shared settings file, overridden by the daemon's own config file
(:func:`~pumaguard_hb.model.settings.layered_settings`); a file others may write gives no
privileged key (docs/security.md). A bad version keeps the last good settings, and is not
read again until it changes. File work runs in threads; the rest on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pumaguard_hb.model.errors import Conflict, PermissionDenied, SettingsError
from pumaguard_hb.model.keys import lookup_key, plain_value
from pumaguard_hb.model.settings import (
    Settings,
    layered_settings,
    privileged_fields,
    raw_value,
    spelling_for,
)
from pumaguard_hb.problems import Problems
from pumaguard_hb.stores.settings_file import SettingsFile, Snapshot, StoreError

log = logging.getLogger(__name__)

_MISSING = object()


class MonitorSettings:
    """The settings in force, and the two files' documents and versions they came from.

    ``listed`` is told each new version of the shared file's document (standalone mode
    takes its camera list from it); ``changed`` when the settings in force change.
    """

    def __init__(
        self,
        shared: SettingsFile,
        own: SettingsFile | None,
        webui: bool,
        problems: Problems,
        listed: Callable[[dict[str, Any]], None],
        changed: Callable[[], None],
    ) -> None:
        self.shared = shared
        self.own = own
        self.webui = webui
        self.problems = problems
        self._listed = listed
        self._changed = changed
        self.settings = Settings()
        self.shared_doc: dict[str, Any] = {}
        self.own_doc: dict[str, Any] = {}
        self.shared_id: tuple[int, int, int, int] | None = None
        self._own_id: tuple[int, int, int, int] | None = None

    def load(self) -> None:
        """Read and validate both files at start; SettingsError if they cannot be used."""
        shared, own = self._read()
        settings = self._layered(shared.doc, own.doc if own else None)
        self._take_docs(shared, own)
        self.settings = settings

    def _layered(self, shared: dict[str, Any], own: dict[str, Any] | None) -> Settings:
        return layered_settings(
            shared,
            str(self.shared.path),
            own,
            str(self.own.path) if self.own else "<config>",
            webui=self.webui,
            # a file others may write gives no privileged key (docs/security.md)
            shared_untrusted=self.shared.untrusted,
            own_untrusted=self.own.untrusted if self.own else "",
        )

    def _take_docs(self, shared: Snapshot, own: Snapshot | None) -> None:
        self.shared_doc, self.shared_id = shared.doc, shared.identity
        if own is not None:
            self.own_doc, self._own_id = own.doc, own.identity

    def _read(self) -> tuple[Snapshot, Snapshot | None]:
        """Both files (in a thread): SettingsError when one does not parse."""
        shared = self.shared.read()
        own = self.own.read() if self.own else None
        return shared, own

    async def reload(self, why: str) -> str | None:
        """Re-read both files; bad values keep the old settings. What went wrong, or None.

        A file that does not parse (or a shared file deleted under a running daemon, in
        standalone mode) is a ``settings`` problem, which also stops writes to it; a
        readable file with an invalid value is a ``values`` problem, which does not.
        """
        try:
            shared, own = await asyncio.to_thread(self._read)
        except SettingsError as err:
            self.problems.problem("settings", f"{err}; keeping the last good settings")
            self.shared_id, self._own_id = self._stat_quietly()
            return str(err)
        if shared.identity is None and self.shared_id is not None and not self.webui:
            self.problems.problem(
                "settings", f"{self.shared.path}: was deleted; keeping the last good settings"
            )
            return "settings file missing"
        self._take_docs(shared, own)
        self.problems.solved("settings")
        if not self.webui:
            self._listed(self.shared_doc)
        try:
            settings = self._layered(shared.doc, own.doc if own else None)
        except SettingsError as err:
            self.problems.problem("values", f"{err}; keeping the last good settings")
            return str(err)
        self.problems.solved("values")
        old, self.settings = self.settings, settings
        if settings != old:
            new, shown, was = settings.as_dict(), settings.public_dict(), old.public_dict()
            changes = ", ".join(  # secrets redacted (docs/alerts.md)
                f"{k}: {was[k]!r} -> {shown[k]!r}" for k, v in old.as_dict().items() if new[k] != v
            )
            log.info("settings reloaded (%s): %s", why, changes)
            self._changed()
        else:
            log.debug("settings reloaded (%s): heartbeat settings unchanged", why)
        return None

    def _stat_quietly(self) -> tuple[Any, Any]:
        """Identities now, so that a bad version is not re-read until it changes again."""
        ids = []
        for file in (self.shared, self.own):
            try:
                ids.append(file.identity() if file else None)
            except SettingsError:
                ids.append(None)
        return ids[0], ids[1]

    def file_changed(self) -> bool:
        """True when a settings file is not the version last read or written (by stat)."""
        try:
            if self.shared.identity() != self.shared_id:
                return True
            return self.own is not None and self.own.identity() != self._own_id
        except SettingsError as err:
            self.problems.problem("settings", f"{err}; keeping the last good settings")
            return False

    def adopt_written(self, snap: Snapshot) -> None:
        """The shared file as the daemon just wrote it: new cameras and settings of others."""
        self.shared_doc, self.shared_id = snap.doc, snap.identity
        try:
            self.settings = self._layered(snap.doc, self.own_doc if self.own else None)
            self.problems.solved("values")
        except SettingsError as err:
            self.problems.problem("values", f"{err}; keeping the last good settings")
        self._listed(snap.doc)

    async def set(self, name: str, value: Any, by_root: bool, lock: asyncio.Lock) -> Settings:
        """Validate and persist one heartbeat setting (under ``lock``, the monitor's lock of
        writes); it takes effect at once."""
        key = lookup_key(name)
        checked = key.check(key.name, value)
        file = self.own or (None if self.webui else self.shared)
        # a per-camera override that points a probe somewhere (method, port, path, URL,
        # stream credentials) is as privileged as a privileged key (docs/security.md)
        steering = privileged_fields(key.name, value)
        if (key.privileged or steering) and not by_root:
            where = file.path if file else "the daemon's config file"
            if steering:
                what = f"{key.name} ({', '.join(steering)}) points a probe or a plug somewhere"
            elif key.name.startswith("camera_heartbeat_power_cycle"):
                what = f"{key.name} switches the power of cameras (docs/power-cycle.md)"
            else:
                what = f"{key.name} runs a program or sends data off the machine"
            raise PermissionDenied(
                f"permission denied: {what}; only root may change it over the socket "
                f"(or edit {where})"
            )
        if file is None:
            raise Conflict(
                "cannot change settings: in web UI mode the shared file is the web UI's; "
                "start the daemon with --config PATH (its own settings file)"
            )
        if key.name == "camera_heartbeat_webui_url" and file is not self.own:
            raise Conflict(
                f"{key.name} belongs in the daemon's own settings file, which the web UI never "
                "rewrites: start the daemon with --config PATH (the service has one)"
            )
        if file is self.shared and "settings" in self.problems:
            raise Conflict(f"cannot change settings: {self.problems['settings']}")
        if (key.privileged or steering) and file.untrusted:  # ignored there (security.md)
            raise Conflict(
                f"not saved: {file.path}: {file.untrusted}, so {key.name} would be ignored "
                "there; make it writable by root and the service user only"
            )
        doc = self.own_doc if file is self.own else self.shared_doc
        stored = plain_value(key, checked) if isinstance(checked, tuple) else value
        # our own file: the README's spelling unless it has another; the shared file keeps
        # the spelling it already uses
        found = raw_value(doc, key)
        own_spelling = found[0] if found else key.name
        spelling = own_spelling if file is self.own else spelling_for(doc, key)

        def change(d: dict[str, Any]) -> bool:
            if d.get(spelling, _MISSING) == stored:
                return False
            d[spelling] = stored
            return True

        async with lock:
            try:
                snap = await asyncio.to_thread(file.update, change, False)
            except (SettingsError, StoreError) as err:
                raise Conflict(f"not saved: {err}") from None
        if file is self.own:
            self.own_doc, self._own_id = snap.doc, snap.identity
            self.settings = self._layered(self.shared_doc, self.own_doc)
        else:
            self.adopt_written(snap)
        shown = self.settings.public_dict()[key.name]  # secrets redacted
        log.info("setting %s changed to %r in %s", key.name, shown, file.path)
        if key.name == "camera_heartbeat_webui_url":
            log.warning("%s takes effect when the daemon restarts", key.name)
        self._changed()
        return self.settings
