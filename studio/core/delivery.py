"""Subscribers to the studio's events, called in order on one thread of their own.

The pool hands events over on its own thread and must never wait for a slow window or a broken
subscriber, so events queue here and one delivery thread calls every subscriber in turn.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from studio.core.events import Event

EventHandler = Callable[[Event], None]
log = logging.getLogger(__name__)


class EventDelivery:
    """Subscribers and the thread that calls them; `start`/`stop` bracket one run of the pool."""

    def __init__(self, name: str = "studio-events") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._handlers: dict[int, EventHandler] = {}
        self._next = 0
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Call `handler(event)` for every event, on the delivery thread; returns unsubscribe."""
        with self._lock:
            key = self._next
            self._next += 1
            self._handlers[key] = handler

        def unsubscribe() -> None:
            with self._lock:
                self._handlers.pop(key, None)

        return unsubscribe

    def put(self, event: Event) -> None:
        self._queue.put(event)

    def start(self) -> None:
        """Start a delivery thread (events put before it are delivered first)."""
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued, then end the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            with self._lock:
                handlers = list(self._handlers.values())
            for handler in handlers:
                try:
                    handler(event)
                except Exception:  # one broken subscriber must not silence the others
                    log.exception("event handler %r failed on %s", handler, event.get("type"))
