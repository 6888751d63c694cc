"""Helpers for the store tests: requests split into jobs, and real PNGs written by the real writer."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from PIL import Image

from studio.core.jobs import Job, make_jobs
from studio.core.metadata import build_record
from studio.core.pngfile import write_png
from studio.core.request import GenerationRequest, validate


def split(request: GenerationRequest, gallery: Path, created: datetime | None = None) -> list[Job]:
    """One job per image with its seed and gallery path (what the facade does on submit)."""
    return make_jobs(validate(request), uuid.uuid4().hex, gallery, "demo", created)


def write_job_png(job: Job, model: str = "demo", worker: str = "cpu:0") -> Path:
    """The job's PNG at its size, with the metadata a worker embeds (flat pixels: the store never looks)."""
    spec = replace(job.spec, model=model)
    record = build_record(spec, worker, 0.5, job_id=job.job_id, request_id=job.request_id,
                          timings={"encode_s": 0.1, "denoise_s": 0.3, "decode_s": 0.1})
    return write_png(Image.new("RGB", (spec.width, spec.height), (spec.seed % 256, 40, 90)),
                     job.output_path, record)
