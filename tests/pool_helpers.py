"""Helpers for the pool tests: an event recorder, waits, and reading what the workers wrote."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from studio.core.metadata import request_from_chunks
from studio.core.pngfile import read_chunks


class Recorder:
    """Collects a studio's events (they arrive on the studio's event thread)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching event within {timeout} s; last: {self.events[-3:]}")
                self._cond.wait(left)


def wait_idle(studio: Any, timeout: float = 240.0) -> list[dict[str, Any]]:
    """Block until every worker has loaded and is idle (loading is slow on a busy 2-core machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = studio.pool_status()
        if all(r["state"] == "idle" for r in rows):
            return rows
        time.sleep(0.2)
    raise AssertionError(f"workers not ready after {timeout} s: {studio.pool_status()}")


@contextmanager
def running_studio(workers: str) -> Iterator[tuple[Any, Recorder]]:
    """A started Studio in the current home with every worker idle, and the recorder of its events;
    closed on the way out."""
    from studio.app import Studio

    studio = Studio(workers=workers)
    recorder = Recorder()
    studio.subscribe(recorder)
    studio.start()
    try:
        wait_idle(studio)
        yield studio, recorder
    finally:
        studio.close()


def png_worker(path: str | Path) -> str:
    """Which worker made this PNG, from its embedded zaoxiang record."""
    _req, record = request_from_chunks(read_chunks(path))
    return record["worker"]
