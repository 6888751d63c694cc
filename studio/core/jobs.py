"""Job states and the per-image job: the unit the pool runs and the store records."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
JOB_STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
FINISHED_STATES = (DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class Job:
    """One image to make: the validated request's fields for one seed, and where to write it."""

    job_id: str
    request_id: str
    index: int
    seed: int
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    output_path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
