"""Replacing a running pool without a gap (Settings → Restart workers).

The new pool starts beside the old one and takes over only once every one of its workers is ready;
then the old pool hands it every unfinished request (running images finish where they are) and
closes. If the new pool cannot start, it is closed and the old one keeps working: a bad change
never leaves the studio unable to generate.
"""

from __future__ import annotations

import time

from studio.core.errors import StudioError
from studio.pool.pool import WorkerPool

READY_TIMEOUT_S = 1800.0  # loading and compiling several sizes can take minutes on a first start


class PoolStartError(StudioError):
    """The new workers could not start; the old ones keep working. The message says why in one line."""


def wait_ready(pool: WorkerPool, timeout_s: float = READY_TIMEOUT_S) -> str | None:
    """None once every worker of `pool` is ready; else why not, in one line (a worker gave up, or time ran out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = pool.status()
        if all(r["state"] in ("idle", "busy") for r in rows):
            return None
        failed = [r for r in rows if r["state"] in ("failed", "stopped")]
        if failed:
            why = (failed[0]["last_error"] or "no reason given").strip().splitlines()[0]
            return f"{failed[0]['name']} could not start: {why}"
        time.sleep(0.1)
    return f"The new workers were not ready after {timeout_s:.0f} s."


def start_beside(new: WorkerPool, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Start `new` and wait until it is ready; raise PoolStartError (after closing it) if it cannot be.
    The caller then moves the work over with `old.hand_over(new)` and closes the old pool."""
    new.start()
    problem = wait_ready(new, timeout_s)
    if problem is not None:
        new.close()
        raise PoolStartError(problem)
