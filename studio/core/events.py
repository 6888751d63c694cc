"""Events that workers and the pool send to subscribers (UI, CLI, store).

Events are plain dicts with a "type" key so they cross process pipes and JSON unchanged.
"""

from __future__ import annotations

import time
from typing import Any

JOB_STARTED = "job_started"
STEP = "step"
PREVIEW = "preview"  # a step's cheap look at the image: job_id, step, steps, image (a JPEG data URL)
JOB_DONE = "job_done"
JOB_FAILED = "job_failed"
JOB_CANCELLED = "job_cancelled"
JOB_REQUEUED = "job_requeued"
REQUEST_DONE = "request_done"
WORKER_WARMING = "worker_warming"  # compiling before ready: pct, stage
WORKER_READY = "worker_ready"
WORKER_DIED = "worker_died"
WORKER_RESTARTED = "worker_restarted"
QUEUE_PAUSED = "queue_paused"
QUEUE_RESUMED = "queue_resumed"

Event = dict[str, Any]


def make_event(kind: str, /, **payload: Any) -> Event:
    """A new event of `kind` stamped with the wall-clock time."""
    return {"type": kind, "time": time.time(), **payload}
