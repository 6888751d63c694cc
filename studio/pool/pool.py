"""The worker pool: the ledger of requests and jobs, wired to the supervisor's processes and the scheduler.

One thread (the pool loop) waits on every worker's result pipe and process sentinel at once (through
the supervisor), hands messages and deaths to their handlers (pool/replies.py) and asks the pure
scheduler what to hand out next. Public methods (submit, cancel, pause...) only change state under
the lock and dispatch; events are emitted in order, outside the lock, through one callback.
`hand_over`/`adopt` move unfinished requests to a new pool (a restart that loses nothing).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from studio.core import events as ev
from studio.core.jobs import CANCELLED, FINISHED_STATES, QUEUED, RUNNING, Job
from studio.pool import protocol as p
from studio.pool.eta import pool_eta_s
from studio.pool.group import GroupBook, SplitChooser, SplitMode
from studio.pool.ledger import Carried, JobEntry, Ledger
from studio.pool.protocol import SENT, Msg, RevokeReason, SlotState
from studio.pool.replies import GROUP_BROKE, WorkerReplies
from studio.pool.scheduler import Held, JobQueue, Queued, WorkerView, job_shape, plan_next
from studio.pool.spec import WorkerSpec
from studio.pool.speed import Size
from studio.pool.split_dispatch import SplitDispatch, SplitRun
from studio.pool.stats import worker_row
from studio.pool.supervisor import Slot, Supervisor

log = logging.getLogger("zaoxiang.pool")


class WorkerPool(WorkerReplies, SplitDispatch):
    """Processes, queue and dispatcher; thread-safe. `on_event` is called from the pool's own thread;
    `context`/`target`: how workers run (pool/inline.py passes threads; the default spawns processes)."""

    def __init__(self, specs: list[WorkerSpec], *, model_path: str, model_name: str,
                 memory_profile: str | None = None, on_event: Callable[[ev.Event], None] | None = None,
                 context: Any = None, target: Callable[..., None] | None = None, split: str = "never") -> None:
        if not specs:
            raise ValueError("A pool needs at least one worker.")
        # "full,24gb": one profile per worker, in order (the bench caps one card to show a measured split)
        per_worker = [p.strip() for p in (memory_profile or "").split(",")] if "," in (memory_profile or "") else []
        self._profile = None if memory_profile in (None, "", "auto") or per_worker else memory_profile
        cfg = {"model_path": str(model_path), "model_name": model_name, "memory_profile": self._profile}
        self._sup = Supervisor(specs, cfg, [None if p in ("", "auto") else p for p in per_worker],
                               context=context, target=target)
        self._slots = self._sup.slots
        self._sink = on_event or (lambda _e: None)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._emit_lock = threading.Lock()
        self._books = Ledger([s.spec.name for s in self._slots])
        self._jobs, self._requests = self._books.jobs, self._books.requests
        self._queue = JobQueue()
        self._paused = False
        self._started = False
        self._successor: WorkerPool | None = None  # the pool its unfinished requests were handed to
        # One image over several workers (studio/pool/group.py): only between worker processes of this
        # machine, which can join one torch.distributed group.
        self._split_allowed = context is None and target is None
        self._split_mode = SplitMode(split) if self._split_allowed else SplitMode.NEVER
        self._groups, self._chooser = GroupBook(), SplitChooser()
        self._split: dict[str, SplitRun] = {}
        self._no_split: set[str] = set()  # jobs whose split failed: they run on one worker
        self._warming: dict[int, int] = {}  # slot index -> the group it is compiling the split for
        self._warm_reported: dict[int, p.Helped] = {}  # of those, the ones done (waiting for the others)
        self._warm_seen: dict[int, float] = {}  # of those, when each was last heard from (its stall deadline)
        self._held: dict[int, float] = {}  # said READY at start-up, warming on until its group has: deadline
        self._announced: set[int] = set()  # slots that said ready (WORKER_READY) since they (re)started
        self._warm_s: dict[int, float] = {}  # group id -> seconds its warm-up took (split_status)
        self._no_group = ""  # why "auto" forms no group in this pool (GPUs of different kinds or speeds)
        self._broken_groups: set[int] = set()
        self._suspects: dict[int, float] = {}  # slot index -> when it is stopped unless it reports first
        self._split_log: list[str] = []  # why recent splits did not happen or failed (split_status)
        self._thread = threading.Thread(target=self._loop, name="worker-pool", daemon=True)
        self._handlers: dict[Msg, Callable[[Slot, Any, Any], None]] = {
            Msg.WARMING: self._on_worker, Msg.READY: self._on_worker, Msg.FATAL: self._on_worker,
            Msg.STARTED: self._on_started, Msg.STEP: self._on_step, Msg.DONE: self._on_done,
            Msg.CANCELLED: self._on_cancelled, Msg.REVOKED: self._on_revoked, Msg.FAILED: self._on_failed,
            Msg.HELPED: self._on_helped,
            Msg.PREVIEW: lambda slot, js, msg: self._books.emit(ev.PREVIEW, **self._common(slot, js), **msg.event()),
        }

    # ----------------------------------------------------------------- public API

    def start(self) -> None:
        """Spawn every worker (they load in parallel) and start the pool loop; returns at once."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._sup.spawn_all()
        self._thread.start()
        self._flush()

    def submit(self, request_id: str, jobs: list[Job], *, interactive: bool = True, origin: str = "ui") -> None:
        """Queue a request's jobs (already validated and named by the caller)."""
        with self._lock:
            if self._sup.closing:
                raise RuntimeError("The worker pool is shut down.")
            self._books.add(request_id, jobs, origin=origin, interactive=interactive, memory_profile=self._profile)
            for job in jobs:
                self._queue.add(job.job_id, interactive=interactive)
            self._check_request(request_id)
            self._dispatch()
        self._flush()

    def cancel(self, request_id: str) -> bool:
        """Drop the request's queued jobs and stop its running ones at their next step."""
        with self._lock:
            req = self._requests.get(request_id)
            if req is None:
                return False
            req.cancelled = True
            for job_id in req.job_ids:
                js = self._jobs[job_id]
                if js.state == QUEUED:
                    self._queue.remove(job_id)
                    self._books.finish(js, CANCELLED, None, ev.JOB_CANCELLED, reason="cancelled")
                elif js.state in (SENT, RUNNING) and js.worker is not None:
                    for i in self._split[job_id].pending if job_id in self._split else [js.worker]:
                        self._sup.send(self._slots[i], p.Revoke(job_id, RevokeReason.CANCEL))
            self._check_request(request_id)
        self._flush()
        return True

    def pause(self, *, quiet: bool = False) -> None:
        """Stop starting new jobs; running ones finish, prefetched ones come back to the queue (`quiet`:
        no QUEUE_PAUSED event, when a hand-over pauses a pool nobody watches any more)."""
        with self._lock:
            if self._paused:
                return
            self._paused = True
            for slot in self._slots:
                for job_id in slot.assigned:  # a split image runs on: its members start it together
                    if self._jobs[job_id].state == SENT and job_id not in self._split:
                        self._sup.send(slot, p.Revoke(job_id, RevokeReason.PAUSE))
            if not quiet:
                self._books.emit(ev.QUEUE_PAUSED)
        self._flush()

    def resume(self) -> None:
        with self._lock:
            if not self._paused:
                return
            self._paused = False
            self._books.emit(ev.QUEUE_RESUMED)
            self._dispatch()
        self._flush()

    def set_split(self, mode: str) -> None:
        """Change "one image on several GPUs" (auto/never/always) for the images handed out from now on."""
        with self._lock:
            if self._split_allowed:
                self._split_mode = SplitMode(mode)
            self._dispatch()
        self._flush()

    @property
    def paused(self) -> bool:
        return self._paused

    def wait(self, request_id: str, timeout: float | None = None) -> list[dict[str, Any]]:
        """Block until every job of the request is finished; its results by index. TimeoutError if not."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if request_id not in self._requests:
                raise KeyError(f"No request {request_id!r}.")
            while not self._requests[request_id].done:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"Request {request_id} is not finished after {timeout} s.")
                self._changed.wait(left)
            return self.results(request_id)

    def results(self, request_id: str) -> list[dict[str, Any]]:
        """What each job of the request came to so far (state, and path/seed/worker when done)."""
        with self._lock:
            if request_id not in self._requests and self._successor is not None:  # handed over: ask there
                return self._successor.results(request_id)
            return [self._books.result(self._jobs[j]) for j in self._requests[request_id].job_ids]

    def eta_s(self, request_id: str) -> float | None:
        """Seconds until the request's last image is done, from measured speeds and the queue ahead."""
        with self._lock:
            return pool_eta_s(self._slots, self._jobs, self._queue, request_id)

    def request_stats(self, request_id: str) -> dict[str, Any]:
        with self._lock:
            return self._books.request_stats(request_id)

    def status(self) -> list[dict[str, Any]]:
        """One row per worker, for the monitor and `pool_status`."""
        with self._lock:
            rows = [worker_row(slot, self._books) for slot in self._slots]
            for i in [*self._warming, *self._held]:  # its group's split not warm yet: not idle (ready means warm)
                if rows[i]["state"] == "idle":
                    rows[i]["state"] = "warming"
            return rows

    def queue_length(self) -> int:
        """Jobs not started yet (waiting in the queue or prefetched by a worker)."""
        with self._lock:
            return sum(1 for js in self._jobs.values() if js.state in (QUEUED, SENT))

    def hand_over(self, to: WorkerPool, timeout: float = 120.0) -> None:
        """Give every unfinished request to pool `to` (a restart that loses nothing): running jobs may
        finish here for up to `timeout` s, then are carried too. Close this pool next; `results` asks `to`."""
        self.pause(quiet=True)
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(s.assigned and s.proc is not None for s in self._slots) and time.monotonic() < deadline:
                self._changed.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            carried = self._books.take_unfinished()
            for js in (js for _req, entries in carried for js in entries):
                if js.job.job_id in self._queue:
                    self._queue.remove(js.job.job_id)
                if js.state in (SENT, RUNNING) and js.worker is not None:  # still here after the timeout
                    self._sup.send(self._slots[js.worker], p.Revoke(js.job.job_id, RevokeReason.CANCEL))
                    self._release(self._slots[js.worker], js)
                if js.state not in FINISHED_STATES:
                    js.state, js.started = QUEUED, None
                js.worker = None  # an index into this pool's workers; a done job's result names its worker
            self._successor = to
            to.adopt(carried)  # under this lock: `results` never finds the request in neither pool

    def adopt(self, carried: list[Carried]) -> None:
        """Take over requests another pool handed over: their finished jobs as they were, the rest queued."""
        with self._lock:
            for req, entries in carried:
                self._books.adopt(req, entries)
                for js in entries:
                    if js.state == QUEUED:
                        js.memory_profile = js.memory_profile if js.oom_retried else self._profile  # new settings
                        self._queue.add(js.job.job_id, interactive=req.interactive)
                self._check_request(req.request_id)
            self._dispatch()
        self._flush()

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything, ask workers to stop, then escalate (SIGTERM, SIGKILL) after `timeout`."""
        with self._lock:
            if self._sup.closing:
                return
            for slot in self._slots:
                for job_id in slot.assigned:
                    self._sup.send(slot, p.Revoke(job_id, RevokeReason.CANCEL))
            self._sup.stop_all()
            for job_id in list(self._queue):
                self._queue.remove(job_id)
                self._books.finish(self._jobs[job_id], CANCELLED, None, ev.JOB_CANCELLED, reason="closing")
        self._sup.wake()
        self._flush()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sup.reap()
        with self._lock:
            for slot in self._slots:
                self._sup.forget(slot)
            if self._books.close_all():
                self._changed.notify_all()
        self._flush()

    # ----------------------------------------------------------------- the loop

    def _loop(self) -> None:
        sup = self._sup
        while True:
            with self._lock:
                if self._sup.closing and sup.all_gone:
                    return
                due = [d for d in (self._stall(s)[0] for s in self._slots) if d is not None]
                due += list(self._suspects.values()) + list(self._held.values())
            spoke, ended = sup.wait(due)
            with self._lock:
                for i in spoke:
                    self._drain(i)
                for i in ended:
                    self._on_death(i)
                now = time.monotonic()
                for i, slot in enumerate(self._slots):
                    deadline, limit = self._stall(slot)
                    if deadline is not None and deadline <= now:
                        self._stalled(i, limit)  # alone: killed; in a group: its silent members (split_dispatch.py)
                for i, deadline in list(self._suspects.items()):
                    slot = self._slots[i]
                    if deadline <= now:
                        del self._suspects[i]
                        if slot.proc is not None and not slot.hung:
                            sup.kill_member(slot, GROUP_BROKE)
                sup.respawn_due(now)
                self._dispatch()
            self._flush()

    def _drain(self, i: int) -> None:
        slot = self._slots[i]
        for msg in self._sup.drain(i):
            handler = self._handlers.get(msg.kind)  # none for STOPPED: the process's end says the rest
            job_id = getattr(msg, "job_id", None)
            if msg.kind in (Msg.HELPED, Msg.DONE, Msg.FAILED, Msg.CANCELLED):
                self._suspects.pop(i, None)  # it answered: not stuck in a broken group's collective
            if i in self._warming:
                self._warm_seen[i] = time.monotonic()
            if msg.kind == Msg.HELPED and i in self._warming and job_id == p.warm_id(self._warming[i]):
                self._on_group_warmed(i, msg)
                continue
            js = self._jobs.get(job_id) if job_id is not None else None
            if handler is not None and (js is not None or job_id is None):
                handler(slot, js, msg)
            if js is not None:
                self._check_request(js.job.request_id)

    def _stall(self, slot: Slot) -> tuple[float | None, float]:
        """When the slot's running job or group warm-up counts as hung (None: nothing running, already
        killed, or a suspect of a broken group, which has its own deadline), and the limit. A group's
        first split image compiles: it gets the compile's allowance (supervisor.COMPILE_SLACK)."""
        i = self._slots.index(slot)
        if i in self._suspects:
            return None, 0.0
        if i in self._warming:
            warm = slot.info.get("warmup") or {}
            shape = Size(int(warm.get("width", 256)), int(warm.get("height", 256)), int(warm.get("steps", 2)))
            return self._sup.stall_deadline(slot, shape, self._warm_seen.get(i, time.monotonic()), compiling=True)
        for job_id in slot.assigned:
            js = self._jobs[job_id]
            if js.state == RUNNING and js.last_seen is not None:
                run = self._split.get(job_id)
                first = run is not None and run.group_id not in self._chooser.warmed
                return self._sup.stall_deadline(slot, job_shape(js.job), js.last_seen, compiling=first)
        return None, 0.0

    # ----------------------------------------------------------------- dispatch

    def _requeue_front(self, js: JobEntry) -> None:
        js.state, js.worker, js.started, js.step, js.first_step = QUEUED, None, None, 0, None
        self._queue.push_front(js.job.job_id, interactive=self._requests[js.job.request_id].interactive)
        if all(s.gone for s in self._slots):
            self._fail_queue("No worker is running to take this image.")

    def _release(self, slot: Slot, js: JobEntry) -> None:
        if js.job.job_id in slot.assigned:
            slot.assigned.remove(js.job.job_id)
            self._changed.notify_all()  # hand_over waits for workers to empty

    def _view(self, slot: Slot) -> WorkerView:
        held = []
        for job_id in slot.assigned:
            js = self._jobs[job_id]
            held.append(Held(job_shape(js.job), js.started if js.state == RUNNING else None))
        return WorkerView(slot.speed, held, slot.profile, slot.spec.index)

    def _dispatch(self) -> None:
        if self._paused or self._sup.closing:
            return
        self._warm_group()
        now = time.time()
        while len(self._queue):
            ready = [s for i, s in enumerate(self._slots) if s.state == SlotState.READY and s.control is not None
                     and i not in self._warming and i not in self._suspects and i not in self._held]
            if not ready:
                return
            if self._dispatch_split():
                continue
            queued = [Queued(job_shape(self._jobs[j].job), self._jobs[j].memory_profile) for j in self._queue.head()]
            planned = plan_next(queued, [self._view(s) for s in ready], now)
            if planned is None:
                return
            idx, w = planned
            best = ready[w]
            js = self._jobs[self._queue.pop(idx)]
            js.state, js.worker = SENT, self._slots.index(best)
            best.assigned.append(js.job.job_id)
            if js.memory_profile:
                best.profile = js.memory_profile  # the worker reloads under it before this job
            self._sup.send(best, p.RunJob(js.job.to_dict(), js.memory_profile))

    # ----------------------------------------------------------------- bookkeeping and events

    def _check_request(self, request_id: str) -> None:
        if self._books.check_request(request_id):
            self._changed.notify_all()

    def _flush(self) -> None:
        """Hand queued events to the sink in creation order, outside the pool lock."""
        with self._emit_lock:
            while True:
                with self._lock:
                    if not self._books.outbox:
                        return
                    batch, self._books.outbox = self._books.outbox, []
                for event in batch:
                    try:
                        self._sink(event)
                    except Exception:  # a broken subscriber must not stop the pool
                        pass
