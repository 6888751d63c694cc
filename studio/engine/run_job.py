"""Running one Job end to end on a loaded Engine: generate, embed parameters, write the PNG atomically.

This is what a worker does for each job, and what the in-process path does too, so both produce
byte-for-byte the same files.
"""

from __future__ import annotations

import time
from typing import Any

from studio.core.jobs import Job
from studio.core.metadata import build_record
from studio.core.pngfile import write_png
from studio.core.request import GenerationRequest
from studio.engine.generate import CancelCheck, Engine, StepCallback


def run_job(engine: Engine, job: Job, *, model_name: str, worker: str,
            on_step: StepCallback | None = None, should_cancel: CancelCheck | None = None,
            request: GenerationRequest | None = None) -> dict[str, Any]:
    """Make `job`'s image and write it to `job.output_path`; returns path, seed, worker and timings."""
    t0 = time.perf_counter()
    image, timings = engine.generate(
        prompt=job.prompt, negative_prompt=job.negative_prompt, width=job.width, height=job.height,
        steps=job.steps, guidance=job.guidance, seed=job.seed, on_step=on_step, should_cancel=should_cancel,
    )
    elapsed = time.perf_counter() - t0
    req = request or GenerationRequest(
        prompt=job.prompt, negative_prompt=job.negative_prompt, width=job.width, height=job.height,
        steps=job.steps, guidance=job.guidance, seed=job.seed, seed_mode="fixed", count=1,
    )
    record = build_record(req, job.seed, model_name, worker, elapsed, job_id=job.job_id,
                          request_id=job.request_id, device=engine.device_name,
                          timings={"encode_s": round(timings.encode_s, 4),
                                   "denoise_s": round(timings.denoise_s, 4),
                                   "decode_s": round(timings.decode_s, 4)})
    path = write_png(image, job.output_path, record)
    return {"path": str(path), "seed": job.seed, "worker": worker, "elapsed_s": round(elapsed, 4),
            "job_id": job.job_id, "request_id": job.request_id, "index": job.index}
