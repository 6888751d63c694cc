"""Pool events into the store, and the one place that knows a request is finished.

Every event from the workers passes `EventRecorder.record` on the pool's thread before anyone else
sees it, so a request counts as finished only once its last job state is in the store: a caller
that reads the history right after `Studio.wait` sees final states, with no second wait.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from studio.core import events as ev

if TYPE_CHECKING:
    from studio.store.store import Store

log = logging.getLogger(__name__)
KEEP_FINISHED = 4000  # more than the pool remembers, so a request it still knows is never forgotten here


class EventRecorder:
    """Job states into `store` as events arrive; `wait_finished` blocks until a request's end is recorded."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._changed = threading.Condition()

    def record(self, event: ev.Event) -> None:
        """Apply `event` to the store (never raises: the history must not stop the pool, and the
        start-up reconciliation catches up), then mark its request finished if this was its end."""
        try:
            self._apply(event)
        except Exception:
            log.exception("could not record %s in the history", event.get("type"))
        if event.get("type") == ev.REQUEST_DONE:
            with self._changed:
                self._finished[event.get("request_id")] = None
                while len(self._finished) > KEEP_FINISHED:
                    self._finished.popitem(last=False)
                self._changed.notify_all()

    def finished(self, request_id: str) -> bool:
        with self._changed:
            return request_id in self._finished

    def wait_finished(self, request_id: str, timeout: float | None = None) -> bool:
        """Block until the request's last event is recorded; False if `timeout` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: request_id in self._finished, timeout)

    def _apply(self, event: ev.Event) -> None:
        """Jobs cancelled only because the studio is closing stay queued, so the next start resumes them."""
        kind, job_id = event["type"], event.get("job_id")
        if job_id is None:
            return
        store = self._store
        if kind == ev.JOB_STARTED:
            store.mark_running(job_id, event.get("worker"))
        elif kind == ev.JOB_DONE:
            event["image_id"] = store.mark_done(
                job_id, event["path"], worker=event.get("worker"),
                timings={k: event[k] for k in ("elapsed_s", "busy_s") if event.get(k) is not None})
        elif kind == ev.JOB_FAILED:
            if store.mark_failed(job_id, event.get("kind"), event.get("message", "")) == "queued":
                event.update(queued_for_retry=True, message=store.job_state(job_id)["error"])
        elif kind == ev.JOB_CANCELLED and event.get("reason") != "closing":
            store.mark_cancelled(job_id)
        elif kind == ev.JOB_REQUEUED:
            store.requeue(job_id)
