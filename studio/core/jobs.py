"""Job states and the per-image job: the unit the pool runs and the store records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from studio.core.naming import image_path
from studio.core.request import GenerationRequest
from studio.core.spec import ImageSpec

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
JOB_STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
FINISHED_STATES = (DONE, FAILED, CANCELLED)
_PLACE = ("job_id", "request_id", "index", "output_path")  # where the job sits, beside what it draws


@dataclass(frozen=True)
class Job:
    """One image to make: its spec (what to draw), which request and place it belongs to, where to write it.

    `spec` may be given as its dict (a pipe message, a store row); it is read into an ImageSpec."""

    job_id: str
    request_id: str
    index: int
    spec: ImageSpec
    output_path: str

    def __post_init__(self) -> None:
        if not isinstance(self.spec, ImageSpec):
            object.__setattr__(self, "spec", ImageSpec.from_dict(self.spec))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (the spec as `spec.to_dict()`), read back by `from_dict`."""
        return {**{k: getattr(self, k) for k in _PLACE}, "spec": self.spec.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """A job from `to_dict`'s output, or from the flat fields that store rows written before
        the spec existed hold (job_id, seed, prompt, width... side by side)."""
        spec = data.get("spec")
        return cls(**{k: data[k] for k in _PLACE}, spec=spec if spec is not None else ImageSpec.from_dict(data))


def make_jobs(request: GenerationRequest, request_id: str, out_dir: Path, model: str = "",
              created: datetime | None = None) -> list[Job]:
    """Split a validated request into one job per image, each with its spec (seed fixed) and output path."""
    created = created or datetime.now()
    jobs = []
    for index, spec in enumerate(request.expand(model)):
        job_id = uuid.uuid4().hex
        jobs.append(Job(job_id=job_id, request_id=request_id, index=index, spec=spec,
                        output_path=str(image_path(out_dir, created, spec.prompt, spec.seed, job_id))))
    return jobs
