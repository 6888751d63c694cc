"""This studio as a job owner in the store while its workers run (see owners.py for the rules).

Registered when the pool starts, renewed by a heartbeat thread, released when it stops: its
unfinished jobs then go back to the queue as nobody's, for the next start to take.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from studio.store.owners import HEARTBEAT_S

if TYPE_CHECKING:
    from studio.store import Store

log = logging.getLogger(__name__)


class OwnerLease:
    """One owner row and the thread that keeps it alive; `release` ends both."""

    def __init__(self, store: Store, model_name: str, model_path: str) -> None:
        self.store = store
        self.owner_id = store.register_owner(model_name, model_path)
        self._stop = threading.Event()
        threading.Thread(target=self._beat, name="studio-lease", daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if not self.store.heartbeat(self.owner_id):
                    log.warning("this studio's lease was taken over by another process")
            except Exception:  # a busy or full disk: the next beat tries again
                log.warning("could not renew this studio's lease", exc_info=True)

    def owned_requests(self) -> set[str]:
        """Requests with a job this owner has not finished."""
        return set(self.store.owned_requests(self.owner_id))

    def release(self) -> int:
        """Stop renewing and hand the unfinished jobs back as nobody's; returns how many."""
        self._stop.set()
        try:
            kept = self.store.release_owner(self.owner_id)
        except Exception:  # the process is ending anyway: the pid check frees them later
            log.warning("could not hand back this studio's jobs", exc_info=True)
            return 0
        if kept:
            log.info("%d unfinished images stay queued for the next start", kept)
        return kept
