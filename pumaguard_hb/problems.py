"""Problems of the daemon's inputs and outputs that ``status`` shows, each logged once."""

from __future__ import annotations

import logging

from pumaguard_hb.logs import NOTICE

log = logging.getLogger(__name__)


class Problems(dict[str, str]):
    """Kind (``settings``, ``values``, ``write``) -> what is wrong now; logged when it
    starts or changes, and once more when it is solved."""

    def problem(self, kind: str, message: str) -> None:
        """``kind`` is wrong: log ``message`` unless it is already the known problem."""
        if self.get(kind) != message:
            log.error("%s", message)
            self[kind] = message

    def solved(self, kind: str) -> None:
        """``kind`` is right again (said once, if it was wrong)."""
        if self.pop(kind, None) is not None:
            log.log(NOTICE, "%s problem resolved", kind)
