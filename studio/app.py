"""Studio: the one facade that the UI, the tray, the CLI and scripts go through.

It composes the layers below (models, pool, store, monitor) so that callers never reach into them
directly. Constructing a Studio is cheap: the worker pool starts on the first `submit` (or `start`).
Every event, from whichever worker, passes through `Studio._on_event` and reaches subscribers on
one background thread, in order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from studio.core import events as ev
from studio.core.jobs import Job, make_jobs
from studio.core.paths import Paths, get_paths
from studio.core.request import GenerationRequest, validate
from studio.core.settings import Settings, load_settings
from studio.models.discovery import ModelInfo, resolve_model
from studio.models.loras import checker as lora_checker

EventHandler = Callable[[ev.Event], None]
log = logging.getLogger(__name__)


class QuitHook(Protocol):
    """How the window's Quit reaches whoever runs this studio as a desktop program (the launcher)."""

    def request(self, finish_running: bool = False) -> None: ...

    def running_images(self) -> int: ...


class Notice(str):
    """A message for the person: the English line (what the CLI prints and the log keeps), plus an
    i18n key and its values so that a window says it in its own language."""

    key: str
    values: dict[str, Any]

    def __new__(cls, text: str, key: str, **values: Any) -> Notice:
        notice = super().__new__(cls, text)
        notice.key, notice.values = key, values
        return notice


class Studio:
    """The studio's operations; construct once per process, `close()` when done."""

    def __init__(self, settings: Settings | None = None, paths: Paths | None = None,
                 model: str | None = None, workers: str | None = None) -> None:
        self.paths = (paths or get_paths()).ensure()
        self.quit_hook: QuitHook | None = None  # set by the desktop launcher; None: no Quit to offer
        self.notices: list[str] = []  # messages for the person, shown once (a CLI line, a window banner)
        self.settings = settings or load_settings(self.paths, notices=self.notices)
        self._model_arg = model
        self._model: ModelInfo | None = None
        self._workers_arg = workers
        self._pool: Any = None
        self._lock = threading.RLock()
        self._handlers: dict[int, EventHandler] = {}
        self._next_handler = 0
        self._events: queue.Queue[ev.Event | None] = queue.Queue()
        self._delivery: threading.Thread | None = None
        self._closed = False
        self._store: Any = None
        # Not self._lock: the pool's thread records events under it. Re-entrant: a rebuild reads `store`.
        self._store_lock = threading.RLock()
        self.resumed: list[str] = []  # request ids `start` put back in the queue
        self._sampler: Any = None  # the monitor's sampler thread, started by the first snapshot
        self._recorded = threading.Condition()  # signalled when a request's last event is in the store
        self._recorded_done: list[str] = []
        self._owner: str | None = None  # this process's id in the store's owners table, while the pool runs
        self._heartbeat_stop = threading.Event()
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
            from studio.models.demo import NATIVE_SIZE

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
                raise RuntimeError("This studio is closed.")
            if self._pool is not None:
                return
            from studio.pool.pool import WorkerPool
            from studio.pool.spec import parse_workers

            specs = parse_workers(self.workers_spec)
            model = self.model
            store = self.store  # open (and migrate) the history before any event can arrive
            alone = not store.live_owners()
            self._owner = store.register_owner(model.name, str(model.path))
            self._heartbeat_stop = threading.Event()  # one per owner: a restart's old beat ends with its owner
            threading.Thread(target=self._heartbeat, args=(self._owner, self._heartbeat_stop), name="studio-lease",
                             daemon=True).start()
            self._delivery = threading.Thread(target=self._deliver, name="studio-events", daemon=True)
            self._delivery.start()
            self._pool = WorkerPool(specs, model_path=str(model.path), model_name=model.name,
                                    memory_profile=self.settings.memory_profile, on_event=self._on_event)
            self._pool.start()
            self._reconcile(partial_age_s=0.0 if alone else None)
            if resume:
                self.resume_orphans()

    def _reconcile(self, partial_age_s: float | None = None) -> dict[str, Any]:
        """Make the store and the gallery folders agree (see store/reconcile.py). Temp files are all
        removed when no other studio is alive to be writing one, else only stale ones."""
        from studio.store import reconcile
        from studio.store.reconcile import STALE_PART_S

        roots = {str(self.paths.gallery_dir), str(self.output_dir)}
        return reconcile(self.store, sorted(roots),
                         partial_age_s=STALE_PART_S if partial_age_s is None else partial_age_s)

    def _heartbeat(self, owner: str, stop: threading.Event) -> None:
        from studio.store.owners import HEARTBEAT_S

        while not stop.wait(HEARTBEAT_S):
            try:
                if not self.store.heartbeat(owner):
                    log.warning("this studio's lease was taken over by another process")
            except Exception:  # a busy or full disk: the next beat tries again
                log.warning("could not renew this studio's lease", exc_info=True)

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

    def _release(self) -> None:
        """This studio stops making images: its unfinished jobs stay queued, as nobody's, for the next start."""
        self._heartbeat_stop.set()
        owner, self._owner = self._owner, None
        if owner is not None and self._store is not None:
            try:
                kept = self._store.release_owner(owner)
            except Exception:  # the process is ending anyway: the pid check frees them later
                log.warning("could not hand back this studio's jobs", exc_info=True)
            else:
                self.kept_queued += kept
                if kept:
                    log.info("%d unfinished images stay queued for the next start", kept)

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
        self._events.put(None)
        if self._delivery is not None:
            self._delivery.join(10)
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
               out_dir: Path | str | None = None, request_id: str | None = None) -> str:
        """Validate (raises ValidationError), split into jobs and queue them; returns the request id.

        Interactive requests go ahead of bulk ones (origin "batch", "api"... with interactive=False).
        """
        request = validate(request, check_lora=lora_checker(self.model.path))
        request_id = request_id or uuid.uuid4().hex
        jobs = make_jobs(request, request_id, Path(out_dir) if out_dir else self.output_dir, self.model.name)
        self.start()
        # Committed before the pool sees it: from here a crash cannot lose the request or its jobs.
        from studio.store import ORIGINS

        self.store.record_request(request, jobs, origin=origin if origin in ORIGINS else "api",
                                  model=self.model.name, model_path=str(self.model.path), owner=self._owner)
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
        """Block until the request is finished; one dict per image by index (`status`: done, failed or
        cancelled; path, seed, worker, elapsed_s, job_id, index; `error` for failures). TimeoutError if
        `timeout` passes first, KeyError for an unknown id."""
        if self._pool is None:
            raise KeyError(f"No request {request_id!r}.")
        results = self._pool.wait(request_id, timeout)
        deadline = time.monotonic() + 10.0  # never long: the store lags the pool by milliseconds
        # The pool answers as soon as it knows; its events reach the store a moment later, on the
        # event path. Wait for that too, so a caller that reads history next sees the final states.
        with self._recorded:
            while request_id not in self._recorded_done:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._recorded.wait(left)
        return results

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
            return self._pool.results(request_id)
        finally:
            unsubscribe()

    # ----------------------------------------------------------------- figures

    def pool_status(self) -> list[dict[str, Any]]:
        """Per worker: name, device, state, pid, current job, images done, busy seconds, seconds per image."""
        if self._pool is not None:
            return self._pool.status()
        from studio.pool.spec import parse_workers

        return [{"name": s.name, "device": s.device, "state": "not started", "pid": None, "current_job": None,
                 "current_request": None, "prefetched": 0, "images_done": 0, "busy_s": 0.0,
                 "s_per_image": None, "load_s": None, "memory_gb": None, "threads": s.threads, "restarts": 0,
                 "last_error": ""} for s in parse_workers(self.workers_spec)]

    def request_stats(self, request_id: str) -> dict[str, Any]:
        """Makespan, ideal makespan (total work / workers), balance efficiency, per-worker busy time."""
        if self._pool is None:
            raise KeyError(f"No request {request_id!r}.")
        return self._pool.request_stats(request_id)

    def queue_length(self) -> int:
        return self._pool.queue_length() if self._pool is not None else 0

    # ----------------------------------------------------------------- events

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Call `handler(event)` for every event, on the studio's event thread; returns unsubscribe."""
        with self._lock:
            key = self._next_handler
            self._next_handler += 1
            self._handlers[key] = handler

        def unsubscribe() -> None:
            with self._lock:
                self._handlers.pop(key, None)

        return unsubscribe

    def _on_event(self, event: ev.Event) -> None:
        """Every pool event passes here first (on the pool's thread), in order. The store hooks in
        here to record job states; keep it quick: subscribers run later, on the delivery thread."""
        try:
            self._record(event)
        except Exception:  # the history must never stop the pool; the reconciliation pass catches up
            log.exception("could not record %s in the history", event.get("type"))
        if event.get("type") == ev.REQUEST_DONE:
            with self._recorded:
                self._recorded_done.append(event.get("request_id"))
                del self._recorded_done[:-2000]  # bounded, like the pool's memory of requests
                self._recorded.notify_all()
        self._events.put(event)

    def _record(self, event: ev.Event) -> None:
        """Job states into the store. Jobs cancelled only because the studio is closing stay queued in
        the store, so the next start resumes them."""
        kind, job_id = event["type"], event.get("job_id")
        if job_id is None:
            return
        if kind == ev.JOB_STARTED:
            self.store.mark_running(job_id, event.get("worker"))
        elif kind == ev.JOB_DONE:
            event["image_id"] = self.store.mark_done(
                job_id, event["path"], worker=event.get("worker"),
                timings={k: event[k] for k in ("elapsed_s", "busy_s") if event.get(k) is not None})
        elif kind == ev.JOB_FAILED:
            if self.store.mark_failed(job_id, event.get("kind"), event.get("message", "")) == "queued":
                event.update(queued_for_retry=True, message=self.store.job_state(job_id)["error"])
        elif kind == ev.JOB_CANCELLED and event.get("reason") != "closing":
            self.store.mark_cancelled(job_id)
        elif kind == ev.JOB_REQUEUED:
            self.store.requeue(job_id)

    # ----------------------------------------------------------------- history and gallery (never start the pool)

    @property
    def store(self) -> Any:
        """The history database (opened on first use)."""
        with self._store_lock:
            if self._store is None:
                from studio.store import Store

                store = Store(self.paths.database, trash_dir=self.paths.trash_dir)
                self._store = store
                if store.recovery is not None:
                    self._rebuilt(store.recovery)
            return self._store

    def _rebuilt(self, recovery: Any) -> None:
        """The store had to start afresh: rebuild the history from the PNGs' own metadata and tell the person."""
        try:
            found = self._reconcile()
            count = found["indexed"] + found["jobs_completed"]
        except Exception:
            log.exception("could not rebuild the history from the gallery")
            count = 0
        where = f"; the damaged file was kept as {recovery.moved_to}" if recovery.moved_to else ""
        what = "was damaged" if recovery.kind == "damaged" else "was empty (0 bytes)"
        key = f"notice.db_{'damaged' if recovery.kind == 'damaged' else 'empty'}{'_kept' if recovery.moved_to else ''}"
        self.notices.append(Notice(f"The history database {what} ({recovery.reason}){where}. A new one was started "
                                   f"and {count} images were found again from their files.",
                                   key, count=count, path=str(recovery.moved_to or "")))
        log.warning(self.notices[-1])

    def history(self, search: str | None = None, favorites_only: bool = False, since: Any = None,
                limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Requests newest first (see Store.history), each with its job counts, errors and images."""
        return self.store.history(search=search, favorites_only=favorites_only, since=since, limit=limit,
                                  offset=offset)

    def gallery(self, page: int = 0, per_page: int = 48) -> dict[str, Any]:
        """One page of images, newest first: {"items": [...], "total": n, "page": p, "per_page": k}."""
        return {"items": self.store.gallery(page, per_page), "total": self.store.gallery_count(),
                "page": page, "per_page": per_page}

    def image_info(self, image_id: int) -> dict[str, Any]:
        return self.store.image_info(image_id)

    def reuse(self, image_id: int | None = None, request_id: str | None = None) -> GenerationRequest:
        return self.store.reuse(image_id=image_id, request_id=request_id)

    def set_favorite(self, image_id: int, value: bool = True) -> bool:
        return self.store.set_favorite(image_id, value)

    def delete_image(self, image_id: int) -> Path | None:
        """The file goes to the trash folder and the row goes, together."""
        return self.store.delete_image(image_id)

    def empty_trash(self) -> dict[str, int]:
        return self.store.empty_trash()

    def export(self, image_ids: list[int], zip_path: Path | str) -> Path:
        return self.store.export(image_ids, zip_path)

    def last_reconciliation(self) -> dict[str, Any] | None:
        return self.store.last_reconciliation()

    def _deliver(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            with self._lock:
                handlers = list(self._handlers.values())
            for handler in handlers:
                try:
                    handler(event)
                except Exception:  # one broken subscriber must not silence the others
                    log.exception("event handler %r failed on %s", handler, event.get("type"))

    # ----------------------------------------------------------------- settings (the UI's Settings tab)

    def update_settings(self, **changes: Any) -> list[str]:
        """Save changed settings to the settings file; returns the changed ones that only take effect
        after `restart_pool()` (model, workers, memory profile, fast path) while workers are running.

        A choice made here replaces a `--model`/`--workers` given at launch: the latest choice wins.
        """
        from dataclasses import fields

        from studio.core.settings import save_settings

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
        restart = ("model", "workers", "memory_profile", "fast_path")
        return [n for n in changed if n in restart] if running else []

    def restart_pool(self) -> None:
        """Stop every worker and start new ones with the current settings. Jobs the old workers had
        not finished stay queued in the store, and the new pool resumes them (if its model is theirs;
        else they wait for it, as `orphans()` tells)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("This studio is closed.")
            pool, self._pool = self._pool, None
            delivery, self._delivery = self._delivery, None
            self._model = None
            if pool is not None:
                pool.close()
            mine = set(self.store.owned_requests(self._owner)) if self._owner is not None else set()
            self._release()
        if delivery is not None:  # the old event thread delivers what is queued, then ends
            self._events.put(None)
            delivery.join(10)
        self.start()
        if mine:
            self.resume_orphans(request_ids=mine)

    # --- monitor -----------------------------------------------------------------------------

    def monitor_snapshot(self) -> dict[str, Any]:
        """GPU (NVML) and CPU readings of the last minutes, plus the pool's workers.

        The sampler thread starts on the first call, so a Studio used only for queries never runs it.
        """
        with self._lock:
            sampler = self._sampler
            if sampler is None:
                from studio.monitor.sampler import Sampler

                sampler = self._sampler = Sampler().start()
        snap = sampler.snapshot()
        snap["workers"] = self.pool_status()
        return snap
