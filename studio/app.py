"""Studio: the one facade that the UI, the tray, the CLI and scripts go through.

It composes the layers below (models, engine/pool, store, monitor) so that callers never reach
into them directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from studio.core import events as ev
from studio.core.jobs import Job
from studio.core.naming import image_path
from studio.core.paths import Paths, get_paths
from studio.core.request import GenerationRequest, expand_seeds, validate
from studio.core.settings import Settings, load_settings
from studio.models.discovery import ModelInfo, resolve_model

EventHandler = Callable[[ev.Event], None]


def make_jobs(request: GenerationRequest, request_id: str, out_dir: Path,
              created: datetime | None = None) -> list[Job]:
    """Split a validated request into one job per image, each with its seed and output path."""
    created = created or datetime.now()
    jobs = []
    for index, seed in enumerate(expand_seeds(request)):
        job_id = uuid.uuid4().hex
        jobs.append(Job(
            job_id=job_id, request_id=request_id, index=index, seed=seed, prompt=request.prompt,
            negative_prompt=request.negative_prompt, width=request.width, height=request.height,
            steps=request.steps, guidance=request.guidance,
            output_path=str(image_path(out_dir, created, request.prompt, seed, job_id)),
        ))
    return jobs


class Studio:
    """The studio's operations; construct once per process."""

    def __init__(self, settings: Settings | None = None, paths: Paths | None = None,
                 model: str | None = None) -> None:
        self.paths = (paths or get_paths()).ensure()
        self.settings = settings or load_settings(self.paths)
        self._model_arg = model
        self._model: ModelInfo | None = None
        self._engine = None

    @property
    def model(self) -> ModelInfo:
        """The model in use (resolved once: explicit, configured, caches, then the demo model)."""
        if self._model is None:
            self._model = resolve_model(self._model_arg, self.settings.model or None, self.paths)
        return self._model

    @property
    def output_dir(self) -> Path:
        return Path(self.settings.output_dir).expanduser() if self.settings.output_dir else self.paths.gallery_dir

    def generate(self, request: GenerationRequest, out_dir: Path | None = None,
                 on_event: EventHandler | None = None) -> list[dict[str, Any]]:
        """Validate and run a request in this process, one image after another; returns each result."""
        request = validate(request)
        request_id = uuid.uuid4().hex
        jobs = make_jobs(request, request_id, Path(out_dir) if out_dir else self.output_dir)
        engine = self._local_engine()
        from studio.engine.run_job import run_job

        emit = on_event or (lambda _e: None)
        results = []
        for job in jobs:
            emit(ev.make_event(ev.JOB_STARTED, job_id=job.job_id, request_id=request_id, worker="local"))

            def on_step(i: int, n: int, job: Job = job) -> None:
                emit(ev.make_event(ev.STEP, job_id=job.job_id, request_id=request_id, step=i, steps=n))

            result = run_job(engine, job, model_name=self.model.name, worker="local", on_step=on_step)
            emit(ev.make_event(ev.JOB_DONE, **result))
            results.append(result)
        return results

    def _local_engine(self):
        if self._engine is None:
            import torch

            from studio.engine.generate import Engine

            self._engine = Engine(self.model.path, "cuda" if torch.cuda.is_available() else "cpu")
        return self._engine

    def close(self) -> None:
        self._engine = None
