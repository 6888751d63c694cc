"""Helpers for the store tests: requests split into jobs, and real PNGs written by the real writer."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from PIL import Image

from studio.core.jobs import Job
from studio.core.metadata import build_record
from studio.core.naming import image_path
from studio.core.pngfile import write_png
from studio.core.request import GenerationRequest, expand_seeds, validate


def split(request: GenerationRequest, gallery: Path, created: datetime | None = None) -> list[Job]:
    """One job per image with its seed and gallery path (what the facade does on submit)."""
    request = validate(request)
    created = created or datetime.now()
    rid = uuid.uuid4().hex
    out = []
    for i, seed in enumerate(expand_seeds(request)):
        jid = uuid.uuid4().hex
        out.append(Job(jid, rid, i, seed, request.prompt, request.negative_prompt, request.width,
                       request.height, request.steps, request.guidance,
                       str(image_path(gallery, created, request.prompt, seed, jid))))
    return out


def write_job_png(job: Job, model: str = "demo", worker: str = "cpu:0") -> Path:
    """The job's PNG at its size, with the metadata a worker embeds (flat pixels: the store never looks)."""
    req = GenerationRequest(prompt=job.prompt, negative_prompt=job.negative_prompt, width=job.width,
                            height=job.height, steps=job.steps, guidance=job.guidance, seed=job.seed,
                            seed_mode="fixed")
    record = build_record(req, job.seed, model, worker, 0.5, job_id=job.job_id, request_id=job.request_id,
                          timings={"encode_s": 0.1, "denoise_s": 0.3, "decode_s": 0.1})
    return write_png(Image.new("RGB", (job.width, job.height), (job.seed % 256, 40, 90)),
                     job.output_path, record)
