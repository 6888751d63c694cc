"""Studio: the one facade that the UI, the tray, the CLI and scripts go through.

It composes the layers below (models, pool, store, monitor) so that callers never reach into them
directly; what goes wrong comes out as a `StudioError` (core/errors.py) with one readable sentence.
Constructing a Studio is cheap: the worker pool starts on the first `submit` (or `start`). Every
event, from whichever worker, is recorded in the store first (store/recorder.py) and then reaches
subscribers on one background thread, in order. Importing this module never imports torch,
diffusers or gradio (tests/test_facade.py): the CLI and the parent process stay light.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from studio.catalog import ModelCatalog
from studio.core import events as ev
from studio.core.delivery import EventDelivery, EventHandler
from studio.core.errors import StudioClosedError, StudioError, UnknownRequestError
from studio.core.jobs import Job, make_jobs
from studio.core.notice import Notice, database_rebuilt
from studio.core.paths import Paths, get_paths
from studio.core.request import GenerationRequest, validate
from studio.core.settings import Settings, load_settings, save_settings
from studio.core.workers_spec import WorkerSpecError, parse_workers_text
from studio.models.demo import NATIVE_SIZE
from studio.models.discovery import ModelInfo, ModelNotFoundError, resolve_model
from studio.monitor.sampler import Sampler
from studio.pool.pool import WorkerPool
from studio.pool.spec import not_started_status, parse_workers
from studio.pool.switch import start_beside
from studio.queries import StoreQueries
from studio.store import ORIGINS, Store, StoreError, reconcile
from studio.store.lease import OwnerLease
from studio.store.reconcile import STALE_PART_S
from studio.store.recorder import EventRecorder

if TYPE_CHECKING:
    from studio.store.healing import Recovery

log = logging.getLogger(__name__)

# What callers catch and call, from here rather than from the layers that define them.
__all__ = ["ModelInfo", "ModelNotFoundError", "Notice", "QuitHook", "StoreError", "Studio", "StudioClosedError",
           "StudioError", "UnknownRequestError", "WorkerSpecError"]


class QuitHook(Protocol):
    """How the window's Quit reaches whoever runs this studio as a desktop program (the launcher)."""

    def request(self, finish_running: bool = False) -> None: ...

    def running_images(self) -> int: ...


class Studio(StoreQueries, ModelCatalog):
    """The studio's operations; construct once per process, `close()` when done."""

    def __init__(self, settings: Settings | None = None, paths: Paths | None = None,
                 model: str | None = None, workers: str | None = None) -> None:
        super().__init__()
        self.paths = (paths or get_paths()).ensure()
        self.quit_hook: QuitHook | None = None  # set by the desktop launcher; None: no Quit to offer
        self.notices: list[str] = []  # messages for the person, shown once (a CLI line, a window banner)
        self.settings = settings or load_settings(self.paths, notices=self.notices)
        self._model_arg = model
        self._model: ModelInfo | None = None
        self._workers_arg = workers
        self._pool: WorkerPool | None = None
        self._lock = threading.RLock()
        self._delivery = EventDelivery()
        self._closed = False
        self._store: Store | None = None
        self._recorder: EventRecorder | None = None  # job states into the store; knows when a request is finished
        # Not self._lock: the pool's thread records events under it. Re-entrant: a rebuild reads `store`.
        self._store_lock = threading.RLock()
        self.resumed: list[str] = []  # request ids `start` put back in the queue
        self._sampler: Sampler | None = None  # the monitor's sampler thread, started by the first snapshot
        self._lease: OwnerLease | None = None  # this process as a job owner in the store, while the pool runs
        self.kept_queued = 0  # unfinished images this studio left queued when it stopped

    @property
    def model(self) -> ModelInfo:
        """The model in use (resolved once: explicit, configured, caches, then the demo model)."""
        if self._model is None:
            self._model = resolve_model(self._model_arg, self.settings.model or None, self.paths)
        return self._model

    @property
    def default_size(self) -> tuple[int, int]:
        """The size a new request starts at: the demo model's training size, else Z-Image's 1024²."""
        if self.model.is_demo:
            return NATIVE_SIZE, NATIVE_SIZE
        return 1024, 1024

    @property
    def output_dir(self) -> Path:
        return Path(self.settings.output_dir).expanduser() if self.settings.output_dir else self.paths.gallery_dir

    @property
    def workers_spec(self) -> str:
        return self._workers_arg or self.settings.workers or "auto"

    # ----------------------------------------------------------------- pool lifecycle

    def start(self, resume: bool = False) -> None:
        """Resolve the model and spawn the workers (they load in the background); idempotent.

        Images left queued by studios that are gone (a crash, a Quit) are made again only with
        `resume=True` (`zaoxiang resume`) or `resume_orphans()` (the window asks first); `orphans()`
        says how many there are. Raises ModelNotFoundError or WorkerSpecError (both one readable
        sentence) before any process starts.
        """
        with self._lock:
            if self._closed:
                raise StudioClosedError("This studio is closed.")
            if self._pool is not None:
                return
            specs = parse_workers(self.workers_spec)
            context = None
            if parse_workers_text(self.workers_spec).ray:  # workers on a Ray cluster too (studio/cluster/)
                from studio.cluster.workers import with_cluster

                cluster = with_cluster(specs)  # no cluster and nothing else asked for: WorkerSpecError
                specs, context = cluster.specs, cluster.context
                self.notices.extend([cluster.notice] if cluster.notice else [])
            model = self.model
            store = self.store  # open (and migrate) the history before any event can arrive
            self._recorder = self._recorder or EventRecorder(store)
            alone = not store.live_owners()
            self._lease = OwnerLease(store, model.name, str(model.path))
            self._delivery.start()
            self._pool = WorkerPool(specs, model_path=str(model.path), model_name=model.name,
                                    memory_profile=self.settings.memory_profile, on_event=self._on_event,
                                    context=context, split=self.settings.split_image)
            self._pool.start()
            self._reconcile(partial_age_s=0.0 if alone else None)
            if resume:
                self.resume_orphans()

    def _reconcile(self, partial_age_s: float | None = None) -> dict[str, Any]:
        """Make the store and the gallery folders agree (see store/reconcile.py). Temp files are all
        removed when no other studio is alive to be writing one, else only stale ones."""
        roots = {str(self.paths.gallery_dir), str(self.output_dir)}
        return reconcile(self.store, sorted(roots),
                         partial_age_s=STALE_PART_S if partial_age_s is None else partial_age_s)

    def orphans(self) -> dict[str, Any]:
        """Images left queued by studios that are gone: {"count": n this model can make,
        "requests": their requests, "other_models": [{model, model_path, jobs}] for the rest}."""
        groups = self.store.orphans()
        mine = [g for g in groups if self._is_my_model(g["model"], g["model_path"])]
        return {"count": sum(g["jobs"] for g in mine), "requests": sum(g["requests"] for g in mine),
                "other_models": [g for g in groups if g not in mine]}

    def _is_my_model(self, name: str | None, path: str | None) -> bool:
        try:
            model = self.model
        except Exception:  # no model here at all: nothing can be made
            return False
        return path == str(model.path) if path else name == model.name

    def resume_orphans(self, request_ids: set[str] | None = None) -> list[str]:
        """Take the images left queued by studios that are gone (made with this studio's model) and
        queue them again with their seeds and paths (bulk priority); returns their request ids.

        One transaction takes them, so two studios on one data dir never both make one. An image
        already on disk is marked done instead; images for another model stay queued for it.
        """
        self.start()
        model = self.model
        by_request: dict[str, list[Job]] = {}
        for job in self.store.claim_orphans(self._owner, model.name, str(model.path), request_ids=request_ids):
            by_request.setdefault(job.request_id, []).append(job)
        for request_id, jobs in by_request.items():
            self._pool.submit(request_id, jobs, interactive=False, origin="resume")
        self.resumed = [*self.resumed, *by_request]
        return list(by_request)

    def discard_orphans(self) -> int:
        """Cancel the images left queued by studios that are gone; returns how many."""
        return self.store.discard_orphans()

    @property
    def _owner(self) -> str | None:
        return self._lease.owner_id if self._lease is not None else None

    def _release(self) -> None:
        """This studio stops making images: its unfinished jobs stay queued, as nobody's, for the next start."""
        lease, self._lease = self._lease, None
        if lease is not None:
            self.kept_queued += lease.release()

    def close(self) -> None:
        """Cancel what is running, stop every worker (politely, then by force) and the event thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool = self._pool
        if pool is not None:
            pool.close()
        self._release()
        self._delivery.stop()
        if self._store is not None:
            self._store.close()
        if self._sampler is not None:
            self._sampler.close()

    def __enter__(self) -> Studio:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- requests

    def submit(self, request: GenerationRequest, origin: str = "ui", interactive: bool = True,
               out_dir: Path | str | None = None, request_id: str | None = None, api_key: str | None = None) -> str:
        """Validate (raises ValidationError), split into jobs and queue them; returns the request id.

        `api_key`: the API caller that asked (a key's id, or core.key_store.KEYLESS_CALLER), recorded so
        that it may read back these images and no others (store/caller_images.py).

        Interactive requests go ahead of bulk ones (origin "batch", "api"... with interactive=False).
        LoRA and ControlNet paths outside their folders are taken only from the CLI (origin "cli").
        """
        paths = origin == "cli"
        request = self._with_controlnet(validate(request, check_lora=self.lora_check(paths)), paths)
        request_id = request_id or uuid.uuid4().hex
        jobs = make_jobs(request, request_id, Path(out_dir) if out_dir else self.output_dir, self.model.name)
        self.start()
        # Committed before the pool sees it: from here a crash cannot lose the request or its jobs.
        self.store.record_request(request, jobs, origin=origin if origin in ORIGINS else "api",
                                  model=self.model.name, model_path=str(self.model.path), owner=self._owner,
                                  api_key=api_key)
        self._pool.submit(request_id, jobs, interactive=interactive, origin=origin)
        return request_id

    def cancel(self, request_id: str) -> bool:
        """Queued jobs are dropped, running ones stop at their next step. False if the id is unknown."""
        return self._pool.cancel(request_id) if self._pool is not None else False

    def pause(self) -> None:
        """Start no new images (running ones finish) until `resume`."""
        self.start()
        self._pool.pause()

    def resume(self) -> None:
        if self._pool is not None:
            self._pool.resume()

    @property
    def paused(self) -> bool:
        return self._pool.paused if self._pool is not None else False

    def wait(self, request_id: str, timeout: float | None = None) -> list[dict[str, Any]]:
        """Block until the request is finished and its final states are in the store; one dict per
        image by index (`status`: done, failed or cancelled; path, seed, worker, elapsed_s, job_id,
        index; `error` for failures). TimeoutError if `timeout` passes first, UnknownRequestError
        (a KeyError) for an id the workers do not know."""
        pool, recorder = self._pool, self._recorder
        try:
            if pool is None or recorder is None:
                raise KeyError(request_id)
            pool.results(request_id)
        except KeyError:
            raise UnknownRequestError(f"No request {request_id!r}.") from None
        if not recorder.wait_finished(request_id, timeout):
            raise TimeoutError(f"Request {request_id} is not finished after {timeout} s.")
        return pool.results(request_id)

    def generate(self, request: GenerationRequest, out_dir: Path | str | None = None,
                 on_event: EventHandler | None = None) -> list[dict[str, Any]]:
        """Submit and block until done (the CLI's path); `on_event` sees this request's events and
        worker events, ending with its `request_done`. Returns `wait`'s results."""
        request_id = uuid.uuid4().hex
        finished = threading.Event()

        def relay(event: ev.Event) -> None:
            rid = event.get("request_id")
            if rid not in (None, request_id):
                return
            try:
                if on_event is not None:
                    on_event(event)
            finally:
                if event["type"] == ev.REQUEST_DONE and rid == request_id:
                    finished.set()

        unsubscribe = self.subscribe(relay)
        try:
            self.submit(request, origin="cli", interactive=True, out_dir=out_dir, request_id=request_id)
            while not finished.wait(0.5):  # short waits keep Ctrl-C responsive
                pass
            return self.wait(request_id)
        finally:
            unsubscribe()

    # ----------------------------------------------------------------- figures

    def pool_status(self) -> list[dict[str, Any]]:
        """Per worker: name, device, state, pid, current job, images done, busy seconds, seconds per image."""
        if self._pool is not None:
            return self._pool.status()
        return [not_started_status(spec) for spec in parse_workers(self.workers_spec)]

    def request_stats(self, request_id: str) -> dict[str, Any]:
        """Makespan, ideal makespan (total work / workers), balance efficiency, per-worker busy time."""
        if self._pool is None:
            raise UnknownRequestError(f"No request {request_id!r}.")
        return self._pool.request_stats(request_id)

    def queue_length(self) -> int:
        return self._pool.queue_length() if self._pool is not None else 0

    def eta_s(self, request_id: str) -> float | None:
        """Seconds until the request's last image is done (measured speeds, the queue ahead); None: unknown."""
        return self._pool.eta_s(request_id) if self._pool is not None else None

    # ----------------------------------------------------------------- events

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Call `handler(event)` for every event, on the studio's event thread; returns unsubscribe."""
        return self._delivery.subscribe(handler)

    def _on_event(self, event: ev.Event) -> None:
        """Every pool event passes here first (on the pool's thread), in order: the store records it
        (and so learns that a request is finished), then subscribers get it on the delivery thread."""
        if self._recorder is not None:
            self._recorder.record(event)
        self._delivery.put(event)

    # ----------------------------------------------------------------- history and gallery (never start the pool)

    @property
    def store(self) -> Store:
        """The history database (opened on first use)."""
        with self._store_lock:
            if self._store is None:
                store = Store(self.paths.database, trash_dir=self.paths.trash_dir)
                self._store = store
                if store.recovery is not None:
                    self._rebuilt(store.recovery)
            return self._store

    def _rebuilt(self, recovery: Recovery) -> None:
        """The store had to start afresh: rebuild the history from the PNGs' own metadata and tell the person."""
        try:
            found = self._reconcile()
            count = found["indexed"] + found["jobs_completed"]
        except Exception:
            log.exception("could not rebuild the history from the gallery")
            count = 0
        self.notices.append(database_rebuilt(recovery.kind == "damaged", recovery.reason,
                                             str(recovery.moved_to) if recovery.moved_to else None, count))
        log.warning(self.notices[-1])

    # ----------------------------------------------------------------- settings (the UI's Settings tab)

    def update_settings(self, **changes: Any) -> list[str]:
        """Save changed settings to the settings file; returns the changed ones that only take effect
        after `restart_pool()` (model, workers, memory profile, fast path) while workers are running.

        A choice made here replaces a `--model`/`--workers` given at launch: the latest choice wins.
        """
        names = [f.name for f in fields(Settings)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ValueError(f"Unknown setting(s): {', '.join(unknown)}.")
        with self._lock:
            new = self.settings.with_changes(**changes)
            changed = [n for n in names if getattr(new, n) != getattr(self.settings, n)]
            if not changed:
                return []
            save_settings(new, self.paths)
            self.settings = new
            if "model" in changed:
                self._model_arg = None
                if self._pool is None:
                    self._model = None
            if "workers" in changed:
                self._workers_arg = None
            running = self._pool is not None
        restart = ("model", "workers", "memory_profile", "fast_path", "split_image")
        return [n for n in changed if n in restart] if running else []

    def restart_pool(self) -> None:
        """Start workers with the current settings beside the running ones and switch once they are all
        ready (pool/switch.py); the old workers' unfinished requests carry over, nothing lost or made
        twice (with another model they stay queued for theirs, as `orphans()` tells). If the new workers
        cannot start, the old ones keep working and a StudioError says why in one line."""
        with self._lock:
            if self._closed:
                raise StudioClosedError("This studio is closed.")
            old = self._pool
        if old is None:
            self._model = None
            return self.start()
        model = resolve_model(self._model_arg, self.settings.model or None, self.paths)
        new = WorkerPool(parse_workers(self.workers_spec), model_path=str(model.path), model_name=model.name,
                         memory_profile=self.settings.memory_profile, on_event=self._on_event,
                         split=self.settings.split_image)
        start_beside(new)  # PoolStartError: the old pool was never touched
        with self._lock:
            same_model = str(model.path) == str(self.model.path)
            if old.paused:  # a paused queue stays paused
                new.pause()
            if same_model:
                old.hand_over(new)
            self._pool, self._model = new, model
            if not same_model:  # the old jobs wait for their model; this studio now owns work for the new one
                self._release()
                self._lease = OwnerLease(self.store, model.name, str(model.path))
        old.close()  # what it still held (another model's jobs) is cancelled as "closing": kept queued

    # --- monitor -----------------------------------------------------------------------------

    def monitor_snapshot(self) -> dict[str, Any]:
        """GPU (NVML) and CPU readings of the last minutes, plus the pool's workers.

        The sampler thread starts on the first call, so a Studio used only for queries never runs it.
        """
        with self._lock:
            sampler = self._sampler
            if sampler is None:
                sampler = self._sampler = Sampler().start()
        snap = sampler.snapshot()
        snap["workers"] = self.pool_status()
        return snap
