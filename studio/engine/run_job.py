"""Running one Job end to end on a loaded Engine: generate, embed parameters, write the PNG atomically.

This is what a worker does for each job, and what the in-process path does too, so both produce
byte-for-byte the same files. The two halves are separate (`make_image` on the GPU, `save_image` on
the CPU and disk) so a worker can write one image while the GPU already makes the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image

from studio.core.jobs import Job
from studio.core.metadata import build_record
from studio.core.pngfile import write_png
from studio.engine.generate import CancelCheck, Engine, PreviewCallback, StepCallback
from studio.models import loras as lora_files


@dataclass
class MadeImage:
    """An image in memory with everything its PNG needs; `gpu_s` is the engine's time for it."""

    job: Job
    image: Image.Image
    record: dict[str, Any]
    worker: str
    gpu_s: float


def make_image(engine: Engine, job: Job, *, model_name: str, worker: str,
               on_step: StepCallback | None = None, should_cancel: CancelCheck | None = None,
               on_preview: PreviewCallback | None = None, group: dict[str, Any] | None = None) -> MadeImage:
    """Generate `job`'s image and its metadata record (nothing written yet); the record names
    `model_name`, the model that actually drew it, and the hashes of the LoRA files it used;
    `group` (workers, devices) when several GPUs made it together."""
    files = [(lora_files.resolve(lora.name), lora.weight) for lora in job.spec.loras]
    engine.set_loras(files)  # the same set as the last image costs nothing
    engine.images_in.before_job(job.spec)  # a ControlNet this job does not use gives its room back
    spec = replace(job.spec, model=model_name, loras=tuple(
        replace(lora, sha256=lora_files.content_hash(path)) for lora, (path, _w) in zip(job.spec.loras, files)))
    t0 = time.perf_counter()
    image, timings = engine.generate(spec, on_step=on_step, should_cancel=should_cancel, on_preview=on_preview)
    elapsed = time.perf_counter() - t0
    record = build_record(spec, worker, elapsed, job_id=job.job_id, request_id=job.request_id,
                          device=engine.device_name,
                          timings={"encode_s": round(timings.encode_s, 4),
                                   "denoise_s": round(timings.denoise_s, 4),
                                   "decode_s": round(timings.decode_s, 4)},
                          **({"group": group} if group else {}))
    return MadeImage(job, image, record, worker, elapsed)


def save_image(made: MadeImage, before_commit: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Write the PNG atomically (durable when this returns); returns path, seed, worker and timings."""
    job = made.job
    path = write_png(made.image, job.output_path, made.record, before_commit=before_commit)
    return {"path": str(path), "seed": job.spec.seed, "worker": made.worker, "elapsed_s": round(made.gpu_s, 4),
            "job_id": job.job_id, "request_id": job.request_id, "index": job.index}


def run_job(engine: Engine, job: Job, *, model_name: str, worker: str,
            on_step: StepCallback | None = None, should_cancel: CancelCheck | None = None) -> dict[str, Any]:
    """Make `job`'s image and write it to `job.output_path`; returns path, seed, worker and timings."""
    return save_image(make_image(engine, job, model_name=model_name, worker=worker, on_step=on_step,
                                 should_cancel=should_cancel))
