"""The worker pool: spawned processes that keep the model loaded, fed by an expected-finish-time dispatcher.

One thread (the pool loop) owns the processes: it waits on every worker's result pipe and process
sentinel at once, turns messages into events, restarts dead workers with back-off and re-queues the
job a dead worker held. Public methods (submit, cancel, pause...) only change state under the lock
and dispatch; events are emitted in order, outside the lock, through one callback.

Dispatch: the job at the head of the queue (interactive before bulk, then first come) goes to the
ready worker where it is expected to finish first, from that worker's measured seconds per image
for that size and step count. A worker holds at most one job beyond the one it runs (prefetch 1);
if the best worker is full, the job waits for it rather than going to a slower worker.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from studio.core import events as ev
from studio.core.atomic import remove_partials
from studio.core.jobs import CANCELLED, DONE, FAILED, FINISHED_STATES, QUEUED, RUNNING, Job
from studio.pool.spec import WorkerSpec
from studio.pool.speed import SpeedModel
from studio.pool.stats import request_stats
from studio.pool.worker import worker_main

PREFETCH = 1  # queued jobs a worker may hold beyond the running one
PLAN_HORIZON = 256  # queued jobs the dispatcher looks through when planning the next hand-out
MAX_KILLS = 2  # a job that took down this many workers is failed, not retried again
MAX_LOAD_FAILURES = 3  # a worker that cannot load the model this many times in a row gives up
SENT = "sent"  # handed to a worker's pipe, not started yet
PROFILE_ORDER = ("full", "24gb", "16gb", "12gb")  # highest to lowest memory use
KEEP_FINISHED = 2000  # finished requests remembered for wait/results/stats (the store keeps history)
# A running job that sends no step for this long is taken as a hung worker (a wedged driver, a deadlock):
# the worker is killed and the job requeued like after a crash. The limit is 10 of the worker's
# measured steps, never under STALL_FLOOR_S (ZAOXIANG_STALL_S overrides the floor).
STALL_FLOOR_S = 120.0
STALL_STEPS = 10

EventSink = Callable[[ev.Event], None]


def lower_profile(profile: str | None) -> str | None:
    """The next lower memory profile after an OOM ("auto" counts as the top; None: nothing lower)."""
    if not profile or profile == "auto":
        return PROFILE_ORDER[1]
    if profile in PROFILE_ORDER and profile != PROFILE_ORDER[-1]:
        return PROFILE_ORDER[PROFILE_ORDER.index(profile) + 1]
    return None


def backoff_s(failures: int) -> float:
    """Seconds before restarting a worker that died `failures` times in a row."""
    return min(30.0, 0.5 * 2 ** max(0, failures - 1))


@dataclass
class _Job:
    job: Job
    priority: int  # 0 interactive, 1 bulk
    seq: int
    state: str = QUEUED
    worker: int | None = None
    started: float | None = None
    finished: float | None = None
    busy_s: float | None = None
    gpu_s: float | None = None  # the engine's time for the image (its PNG is written while the next runs)
    kills: int = 0
    memory_profile: str | None = None
    oom_retried: bool = False
    last_seen: float | None = None  # monotonic time of its last "started" or "step" message
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass
class _Request:
    request_id: str
    job_ids: list[str]
    origin: str
    interactive: bool
    submitted: float
    cancelled: bool = False
    done: bool = False


@dataclass
class _Slot:
    spec: WorkerSpec
    state: str = "not started"  # starting | warming | ready | restarting | failed | stopped
    warm_pct: float | None = None  # compile progress while warming (None: not reported)
    proc: Any = None
    control: Connection | None = None
    results: Connection | None = None
    assigned: list[str] = field(default_factory=list)  # job ids in the order sent
    speed: SpeedModel = field(default_factory=SpeedModel)
    info: dict[str, Any] = field(default_factory=dict)
    images_done: int = 0
    busy_s: float = 0.0
    restarts: int = 0
    failures: int = 0  # deaths in a row without a finished job
    fatal: dict[str, Any] | None = None
    respawn_at: float | None = None
    last_error: str = ""
    hung: str = ""  # why the pool killed it for not responding, until it is respawned
    last_request: str | None = None  # the request of its latest job (its GPU busy share in `status`)


def _reap(procs: dict[int, Any], controls: dict[int, Any], timeout: float = 3.0) -> None:
    """Stop worker processes on every exit path: EOF on their control pipe, join, SIGTERM, SIGKILL."""
    for conn in list(controls.values()):
        try:
            conn.close()
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    for proc in list(procs.values()):
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in list(procs.values()):
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


class WorkerPool:
    """Processes, queue and dispatcher; thread-safe. `on_event` is called from the pool's own thread."""

    def __init__(self, specs: list[WorkerSpec], *, model_path: str, model_name: str,
                 memory_profile: str | None = None, on_event: EventSink | None = None) -> None:
        if not specs:
            raise ValueError("A pool needs at least one worker.")
        self._ctx = mp.get_context("spawn")
        self._slots = [_Slot(spec) for spec in specs]
        # "full,24gb": one profile per worker, in order (the bench caps one card to show a measured split)
        per_worker = [p.strip() for p in (memory_profile or "").split(",")] if "," in (memory_profile or "") else []
        self._worker_profiles = [None if p in ("", "auto") else p for p in per_worker]
        self._cfg = {"model_path": str(model_path), "model_name": model_name,
                     "memory_profile": None if memory_profile in (None, "", "auto") or per_worker else memory_profile}
        self._sink = on_event or (lambda _e: None)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._emit_lock = threading.Lock()
        self._outbox: list[ev.Event] = []
        self._jobs: dict[str, _Job] = {}
        self._requests: dict[str, _Request] = {}
        self._queue: list[str] = []  # job ids, kept sorted by (priority, seq)
        self._finished: list[str] = []  # request ids in the order they finished, oldest first
        self._seq = 0
        self._front_seq = 0
        self._paused = False
        self._closing = False
        self._started = False
        self._stall_floor = _stall_floor()
        self._wake_r, self._wake_w = mp.Pipe(duplex=False)
        self._procs: dict[int, Any] = {}
        self._controls: dict[int, Any] = {}
        self._finalizer = weakref.finalize(self, _reap, self._procs, self._controls)
        self._thread = threading.Thread(target=self._loop, name="worker-pool", daemon=True)

    # ----------------------------------------------------------------- public API

    def start(self) -> None:
        """Spawn every worker (they load in parallel) and start the pool loop; returns at once."""
        with self._lock:
            if self._started:
                return
            self._started = True
            for i in range(len(self._slots)):
                self._spawn(i)
        self._thread.start()
        self._flush()

    def submit(self, request_id: str, jobs: list[Job], *, interactive: bool = True, origin: str = "ui") -> None:
        """Queue a request's jobs (already validated and named by the caller)."""
        with self._lock:
            if self._closing:
                raise RuntimeError("The worker pool is shut down.")
            self._requests[request_id] = _Request(request_id, [j.job_id for j in jobs], origin, interactive,
                                                  time.time())
            for job in jobs:
                self._seq += 1
                self._jobs[job.job_id] = _Job(job, 0 if interactive else 1, self._seq,
                                              memory_profile=self._cfg["memory_profile"])
                self._enqueue(job.job_id)
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
                    self._finish(js, CANCELLED, None, ev.JOB_CANCELLED, reason="cancelled")
                elif js.state in (SENT, RUNNING) and js.worker is not None:
                    self._send(self._slots[js.worker], ("revoke", job_id, "cancel"))
            self._check_request(request_id)
        self._flush()
        return True

    def pause(self) -> None:
        """Stop starting new jobs; running ones finish, prefetched ones come back to the queue."""
        with self._lock:
            if self._paused:
                return
            self._paused = True
            for slot in self._slots:
                for job_id in slot.assigned:
                    if self._jobs[job_id].state == SENT:
                        self._send(slot, ("revoke", job_id, "pause"))
            self._emit(ev.QUEUE_PAUSED)
        self._flush()

    def resume(self) -> None:
        with self._lock:
            if not self._paused:
                return
            self._paused = False
            self._emit(ev.QUEUE_RESUMED)
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
            return [self._result(self._jobs[j]) for j in self._requests[request_id].job_ids]

    def request_stats(self, request_id: str) -> dict[str, Any]:
        with self._lock:
            req = self._requests[request_id]
            out = request_stats(self._stat_rows(req), [s.spec.name for s in self._slots])
            out.update(request_id=request_id, finished=req.done)
            return out

    def status(self) -> list[dict[str, Any]]:
        """One row per worker, for the monitor and `pool_status`."""
        with self._lock:
            rows = []
            shares = self._busy_shares()
            for slot in self._slots:
                # the newest running job: an older one may still be having its PNG written
                running = next((j for j in reversed(slot.assigned) if self._jobs[j].state == RUNNING), None)
                state = slot.state
                if state == "ready":
                    state = "busy" if running else "idle"
                rows.append({
                    "name": slot.spec.name, "device": slot.info.get("device") or slot.spec.device,
                    "state": state, "pid": slot.proc.pid if slot.proc is not None else None,
                    "current_job": running,
                    "current_request": self._jobs[running].job.request_id if running else None,
                    "prefetched": sum(1 for j in slot.assigned if self._jobs[j].state == SENT),
                    "images_done": slot.images_done, "busy_s": round(slot.busy_s, 3),
                    "s_per_image": round(slot.busy_s / slot.images_done, 4) if slot.images_done else None,
                    "load_s": slot.info.get("load_s"), "memory_gb": slot.info.get("memory_gb"),
                    "memory_profile": slot.info.get("memory_profile"), "threads": slot.spec.threads,
                    "restarts": slot.restarts, "last_error": slot.last_error,
                    "warm_pct": slot.warm_pct, "compile_s": slot.info.get("compile_s"),
                    "gpu_busy": shares.get(slot.spec.name),
                })
            return rows

    def _busy_shares(self) -> dict[str, float | None]:
        """Per worker, the share of wall time its GPU was busy during the latest request it worked on."""
        out: dict[str, float | None] = {}
        names = [s.spec.name for s in self._slots]
        for slot in self._slots:
            req = self._requests.get(slot.last_request or "")
            if req is None:
                continue
            out[slot.spec.name] = request_stats(self._stat_rows(req), names)["gpu_busy"].get(slot.spec.name)
        return out

    def _stat_rows(self, req: _Request) -> list[dict[str, Any]]:
        return [{"state": js.state, "worker": self._name(js.worker), "started": js.started,
                 "finished": js.finished, "busy_s": js.busy_s, "gpu_s": js.gpu_s}
                for js in (self._jobs[j] for j in req.job_ids)]

    def queue_length(self) -> int:
        """Jobs not started yet (waiting in the queue or prefetched by a worker)."""
        with self._lock:
            return sum(1 for js in self._jobs.values() if js.state in (QUEUED, SENT))

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything, ask workers to stop, then escalate (SIGTERM, SIGKILL) after `timeout`."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            for job_id in list(self._queue):
                self._queue.remove(job_id)
                self._finish(self._jobs[job_id], CANCELLED, None, ev.JOB_CANCELLED, reason="closing")
            for slot in self._slots:
                for job_id in slot.assigned:
                    self._send(slot, ("revoke", job_id, "cancel"))
                self._send(slot, ("stop",))
                if slot.proc is None:
                    slot.state = "stopped"
        self._wake()
        self._flush()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._finalizer()  # whatever is still alive: SIGTERM, then SIGKILL
        with self._lock:
            for slot in self._slots:
                self._worker_gone(slot, exitcode=None)
            for js in self._jobs.values():
                if js.state not in FINISHED_STATES:
                    self._finish(js, CANCELLED, None, ev.JOB_CANCELLED, reason="closing")
            for rid in list(self._requests):
                self._check_request(rid)
        self._flush()

    # ----------------------------------------------------------------- processes

    def _spawn(self, i: int) -> None:
        slot = self._slots[i]
        parent_control, child_control = self._ctx.Pipe(duplex=False)  # (reader, writer)
        parent_results, child_results = self._ctx.Pipe(duplex=False)
        spec = slot.spec
        cfg = {"index": spec.index, "name": spec.name, "device": spec.device,
               "visible_devices": spec.visible_devices, "threads": spec.threads, **self._cfg}
        if i < len(self._worker_profiles):
            cfg["memory_profile"] = self._worker_profiles[i]
        proc = self._ctx.Process(target=worker_main, args=(cfg, parent_control, child_results),
                                 name=f"zaoxiang-worker-{spec.name}", daemon=False)
        proc.start()
        parent_control.close()  # the child's copies are the only ones now: our EOF is its signal
        child_results.close()
        slot.proc, slot.control, slot.results = proc, child_control, parent_results
        slot.state, slot.fatal, slot.respawn_at, slot.hung, slot.warm_pct = "starting", None, None, "", None
        self._procs[i], self._controls[i] = proc, child_control

    def _send(self, slot: _Slot, msg: tuple) -> bool:
        if slot.control is None:
            return False
        try:
            slot.control.send(msg)
            return True
        except (OSError, ValueError):  # dying worker: its sentinel will tell the loop
            return False

    def _wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"!")
        except OSError:
            pass

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closing and all(s.proc is None for s in self._slots):
                    return
                waitables: list[Any] = [self._wake_r]
                owner: dict[Any, tuple[str, int]] = {}
                for i, slot in enumerate(self._slots):
                    if slot.results is not None:
                        waitables.append(slot.results)
                        owner[slot.results] = ("msg", i)
                    if slot.proc is not None:
                        waitables.append(slot.proc.sentinel)
                        owner[slot.proc.sentinel] = ("dead", i)
                due = [s.respawn_at for s in self._slots if s.respawn_at is not None]
                due += [d for d in (self._stall_deadline(s)[0] for s in self._slots) if d is not None]
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            if self._closing:
                timeout = 0.2 if timeout is None else min(timeout, 0.2)
            ready = wait(waitables, timeout)
            with self._lock:
                if self._wake_r in ready:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                for obj in ready:
                    kind, i = owner.get(obj, ("", -1))
                    if kind == "msg":
                        self._drain(i)
                for obj in ready:
                    kind, i = owner.get(obj, ("", -1))
                    if kind == "dead":
                        self._on_death(i)
                now = time.monotonic()
                self._kill_hung(now)
                for i, slot in enumerate(self._slots):
                    if slot.respawn_at is not None and slot.respawn_at <= now and not self._closing:
                        slot.restarts += 1
                        self._spawn(i)
                self._dispatch()
            self._flush()

    def _drain(self, i: int) -> None:
        slot = self._slots[i]
        conn = slot.results
        while conn is not None:
            try:
                if not conn.poll():
                    return
                status, payload = conn.recv()
            except Exception:  # EOF or a message torn by a kill: nothing more comes from this one
                conn.close()
                slot.results = conn = None
                return
            self._on_message(i, status, payload)

    # ----------------------------------------------------------------- messages

    def _on_message(self, i: int, status: str, payload: dict[str, Any]) -> None:
        slot = self._slots[i]
        name = slot.spec.name
        if status == "warming":  # compiling before ready (or again after an OOM reload)
            slot.warm_pct = payload.get("pct")
            if slot.state == "starting":
                slot.state = "warming"
            self._emit(ev.WORKER_WARMING, worker=name, **payload)
            return
        if status == "ready":
            slot.state, slot.info, slot.warm_pct = "ready", payload, None
            w = payload["warmup"]
            if not slot.speed.per_key:
                slot.speed.observe(w["width"], w["height"], w["steps"], payload["warmup_s"], seed=True)
            self._emit(ev.WORKER_READY, worker=name, **payload)
            if slot.restarts:
                self._emit(ev.WORKER_RESTARTED, worker=name, restarts=slot.restarts, pid=payload["pid"])
            return
        if status == "fatal":
            slot.fatal = payload
            slot.last_error = payload["message"]
            return
        if status == "stopped":
            return
        js = self._jobs.get(payload.get("job_id", ""))
        if js is None:
            return
        job = js.job
        common = {"job_id": job.job_id, "request_id": job.request_id, "worker": name, "index": job.index}
        if status == "started":
            js.state, js.started, js.last_seen = RUNNING, payload["time"], time.monotonic()
            slot.last_request = job.request_id
            self._emit(ev.JOB_STARTED, **common)
        elif status == "step":
            js.last_seen = time.monotonic()
            self._emit(ev.STEP, **common, step=payload["step"], steps=payload["steps"])
        elif status == "done":
            self._release(slot, js)
            js.busy_s, js.finished, js.gpu_s = payload["busy_s"], payload["finished"], payload.get("gpu_s")
            slot.images_done += 1
            slot.busy_s += js.busy_s
            slot.failures = 0
            slot.speed.observe(job.spec.width, job.spec.height, job.spec.steps, js.busy_s)
            result = {k: payload[k] for k in ("path", "seed", "worker", "elapsed_s", "job_id", "request_id",
                                              "index", "busy_s")}
            result.update({k: payload[k] for k in ("gpu_s", "write_s", "png_s", "sync_s") if k in payload})
            self._finish(js, DONE, result, ev.JOB_DONE, **result)
        elif status == "cancelled":
            self._release(slot, js)
            js.busy_s = payload["busy_s"]
            slot.busy_s += js.busy_s
            self._finish(js, CANCELLED, None, ev.JOB_CANCELLED, **common, reason=self._cancel_reason(job))
        elif status == "revoked":
            self._release(slot, js)
            if payload["reason"] == "cancel" or self._requests[job.request_id].cancelled or self._closing:
                self._finish(js, CANCELLED, None, ev.JOB_CANCELLED, **common, reason=self._cancel_reason(job))
            else:  # given back on pause: first in line again
                self._requeue_front(js)
        elif status == "failed":
            self._release(slot, js)
            js.busy_s = payload["busy_s"]
            slot.busy_s += js.busy_s
            self._on_failure(js, slot, payload)
        self._check_request(job.request_id)

    def _cancel_reason(self, job: Job) -> str:
        """"closing" when the pool stopped it only because it shuts down (the store keeps such a job
        queued for the next start), "cancelled" when a person cancelled its request."""
        return "closing" if self._closing and not self._requests[job.request_id].cancelled else "cancelled"

    def _on_failure(self, js: _Job, slot: _Slot, payload: dict[str, Any]) -> None:
        job = js.job
        common = {"job_id": job.job_id, "request_id": job.request_id, "worker": slot.spec.name,
                  "index": job.index}
        if payload["kind"] == "oom":
            lower = lower_profile(js.memory_profile or slot.info.get("memory_profile"))
            if not js.oom_retried and lower is not None and not self._requests[job.request_id].cancelled:
                js.oom_retried, js.memory_profile = True, lower
                self._requeue_front(js)
                self._emit(ev.JOB_REQUEUED, **common, reason="out_of_memory", memory_profile=lower)
                return
            message = (f"Out of GPU memory at {job.spec.width}x{job.spec.height} on {slot.spec.name}"
                       f"{' even with the ' + repr(js.memory_profile) + ' memory profile' if js.oom_retried else ''}. "
                       "Try a smaller size, close other programs using the GPU, or pick a lower memory "
                       "profile in Settings.")
            self._finish(js, FAILED, None, ev.JOB_FAILED, **common, kind="oom", message=message)
            return
        self._finish(js, FAILED, None, ev.JOB_FAILED, **common, kind=payload["kind"],
                     message=payload["message"], exception=payload.get("exception", ""))

    def _on_death(self, i: int) -> None:
        slot = self._slots[i]
        self._drain(i)  # what it said before dying (a "started" still in the pipe, say) counts
        proc = slot.proc
        if proc is None:
            return
        proc.join(1.0)
        exitcode = proc.exitcode
        self._worker_gone(slot, exitcode)
        self._procs.pop(i, None)
        self._controls.pop(i, None)
        name = slot.spec.name
        if self._closing:
            slot.state = "stopped"
            return
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
        if slot.hung:
            how = slot.hung  # "no progress for N s": the pool killed it
        running = [j for j in slot.assigned if self._jobs[j].state == RUNNING]
        for job_id in running:  # its half-written PNG: nobody else writes it until the job is handed out again
            remove_partials(self._jobs[job_id].job.output_path)
        for job_id in reversed(slot.assigned):  # reversed: the front of the queue keeps their order
            js = self._jobs[job_id]
            common = {"job_id": job_id, "request_id": js.job.request_id, "worker": name, "index": js.job.index}
            was_running = js.state == RUNNING
            js.state, js.worker, js.started = QUEUED, None, None
            if was_running:
                js.kills += 1
            if self._requests[js.job.request_id].cancelled:
                self._finish(js, CANCELLED, None, ev.JOB_CANCELLED, **common, reason="cancelled")
            elif js.kills >= MAX_KILLS:
                self._finish(js, FAILED, None, ev.JOB_FAILED, **common, kind="worker_crash",
                             message=f"This image stopped a worker process {js.kills} times (last: {name}, "
                                     f"{how}); it was not retried again. Try a smaller size or fewer steps.")
            else:
                self._requeue_front(js)
                self._emit(ev.JOB_REQUEUED, **common, reason="worker_died")
            self._check_request(js.job.request_id)
        slot.assigned.clear()
        slot.failures += 1
        if slot.fatal is not None and slot.failures >= MAX_LOAD_FAILURES:
            slot.state = "failed"
            self._emit(ev.WORKER_DIED, worker=name, exitcode=exitcode, job_ids=running, restart_in_s=None,
                       message=f"{name} could not start: {slot.fatal['message']}")
            if all(s.state in ("failed", "stopped") for s in self._slots):
                self._fail_queue(f"No worker could start: {slot.fatal['message']}")
            return
        delay = backoff_s(slot.failures)
        slot.state, slot.respawn_at = "restarting", time.monotonic() + delay
        if slot.fatal is None:
            slot.last_error = f"died ({how})"
        self._emit(ev.WORKER_DIED, worker=name, exitcode=exitcode, job_ids=running, restart_in_s=delay,
                   message=f"{name} {'hung' if slot.hung else 'stopped'} ({how}); restarting in {delay:g} s"
                           + (f": {slot.fatal['message']}" if slot.fatal else "."))

    def _stall_deadline(self, slot: _Slot) -> tuple[float | None, float]:
        """When the slot's running job counts as hung (None: nothing running or already killed), and the limit."""
        if slot.proc is None or slot.hung:
            return None, 0.0
        for job_id in slot.assigned:
            js = self._jobs[job_id]
            if js.state == RUNNING and js.last_seen is not None:
                job = js.job
                step_s = slot.speed.estimate(job.spec.width, job.spec.height, job.spec.steps) / max(1, job.spec.steps)
                limit = max(self._stall_floor, STALL_STEPS * step_s)
                return js.last_seen + limit, limit
        return None, 0.0

    def _kill_hung(self, now: float) -> None:
        """Kill workers whose running job stopped sending steps; their death requeues the job."""
        for slot in self._slots:
            deadline, limit = self._stall_deadline(slot)
            if deadline is not None and deadline <= now and not self._closing:
                slot.hung = f"no progress for {limit:.0f} s"
                slot.last_error = slot.hung
                slot.proc.kill()  # its sentinel wakes the loop, and _on_death does the rest

    def _worker_gone(self, slot: _Slot, exitcode: int | None) -> None:
        for conn in (slot.control, slot.results):
            if conn is not None:
                conn.close()
        slot.control = slot.results = None
        slot.proc = None
        if self._closing:
            slot.state = "stopped"

    def _fail_queue(self, message: str) -> None:
        for job_id in list(self._queue):
            self._queue.remove(job_id)
            js = self._jobs[job_id]
            self._finish(js, FAILED, None, ev.JOB_FAILED, job_id=job_id, request_id=js.job.request_id,
                         index=js.job.index, worker=None, kind="no_worker", message=message)
            self._check_request(js.job.request_id)

    # ----------------------------------------------------------------- dispatch

    def _enqueue(self, job_id: str) -> None:
        js = self._jobs[job_id]
        key = (js.priority, js.seq)
        pos = len(self._queue)
        while pos > 0 and (self._jobs[self._queue[pos - 1]].priority, self._jobs[self._queue[pos - 1]].seq) > key:
            pos -= 1
        self._queue.insert(pos, job_id)

    def _requeue_front(self, js: _Job) -> None:
        self._front_seq -= 1
        js.state, js.worker, js.started, js.seq = QUEUED, None, None, self._front_seq
        self._enqueue(js.job.job_id)
        if all(s.state in ("failed", "stopped") for s in self._slots):
            self._fail_queue("No worker is running to take this image.")

    def _release(self, slot: _Slot, js: _Job) -> None:
        if js.job.job_id in slot.assigned:
            slot.assigned.remove(js.job.job_id)

    def _ahead(self, slot: _Slot, now: float) -> float:
        """Seconds of work `slot` holds already (its running job's remainder plus what it prefetched)."""
        ahead = 0.0
        for job_id in slot.assigned:
            other = self._jobs[job_id]
            est = slot.speed.estimate(other.job.spec.width, other.job.spec.height, other.job.spec.steps)
            if other.state == RUNNING and other.started is not None:
                est = max(0.05 * est, est - (now - other.started))
            ahead += est
        return ahead

    def _plan_next(self, ready: list[_Slot], now: float) -> tuple[int, _Slot] | None:
        """The next hand-out: (queue index, worker) of the first queued job that a greedy
        earliest-finish list schedule of the whole queue puts on a worker with room, or None.

        Looking past the queue's head is what keeps a slower card busy: the head may be best left for
        a fast card that is momentarily full, while a later job still finishes sooner on the slow one.
        """
        finish = {id(s): self._ahead(s, now) for s in ready}
        for idx, job_id in enumerate(self._queue[:PLAN_HORIZON]):
            job = self._jobs[job_id].job

            def finish_on(s: _Slot, job: Job = job) -> float:
                return finish[id(s)] + s.speed.estimate(job.spec.width, job.spec.height, job.spec.steps)

            best = min(ready, key=lambda s: (finish_on(s), len(s.assigned), s.spec.index))
            if len(best.assigned) <= PREFETCH:
                return idx, best
            finish[id(best)] = finish_on(best)
        return None

    def _dispatch(self) -> None:
        if self._paused or self._closing:
            return
        now = time.time()
        while self._queue:
            ready = [s for s in self._slots if s.state == "ready" and s.control is not None]
            if not ready:
                return
            planned = self._plan_next(ready, now)
            if planned is None:
                # Every planned place is full. An idle worker judged only by its warm-up still gets one
                # job: a warm-up taken while the machine was busy (other workers loading) can make a
                # card look many times slower than it is, and without a real job it would never be
                # measured again.
                unproven = [s for s in ready if not s.assigned and s.speed.jobs_seen == 0]
                if not unproven:
                    return
                planned = (0, unproven[0])
            idx, best = planned
            js = self._jobs[self._queue.pop(idx)]
            js.state, js.worker = SENT, self._slots.index(best)
            best.assigned.append(js.job.job_id)
            self._send(best, ("job", {**js.job.to_dict(), "memory_profile": js.memory_profile}))

    # ----------------------------------------------------------------- bookkeeping and events

    def _name(self, i: int | None) -> str | None:
        return self._slots[i].spec.name if i is not None else None

    def _result(self, js: _Job) -> dict[str, Any]:
        job = js.job
        base = {"job_id": job.job_id, "request_id": job.request_id, "index": job.index, "seed": job.spec.seed,
                "status": js.state, "worker": self._name(js.worker), "path": None, "elapsed_s": None}
        if js.result:
            base.update(js.result)
            base["status"] = js.state
        elif js.error:
            base.update(js.error)
        return base

    def _finish(self, js: _Job, state: str, result: dict[str, Any] | None, kind: str, /,
                **payload: Any) -> None:
        if js.state in FINISHED_STATES:
            return
        js.state, js.result = state, result
        if js.finished is None:
            js.finished = time.time()
        if state == FAILED:
            js.error = {"error_kind": payload.get("kind"), "error": payload.get("message")}
        job = js.job
        base = {"job_id": job.job_id, "request_id": job.request_id, "index": job.index,
                "worker": self._name(js.worker)}
        self._emit(kind, **{**base, **payload})

    def _check_request(self, request_id: str) -> None:
        req = self._requests.get(request_id)
        if req is None or req.done:
            return
        if all(self._jobs[j].state in FINISHED_STATES for j in req.job_ids):
            req.done = True
            states = [self._jobs[j].state for j in req.job_ids]
            self._emit(ev.REQUEST_DONE, request_id=request_id, origin=req.origin, jobs=len(states),
                       done=states.count(DONE), failed=states.count(FAILED), cancelled=states.count(CANCELLED))
            self._changed.notify_all()
            self._finished.append(request_id)
            while len(self._finished) > KEEP_FINISHED:  # a long-running studio must not grow forever
                old = self._requests.pop(self._finished.pop(0))
                for job_id in old.job_ids:
                    self._jobs.pop(job_id, None)

    def _emit(self, kind: str, /, **payload: Any) -> None:
        self._outbox.append(ev.make_event(kind, **payload))

    def _flush(self) -> None:
        """Hand queued events to the sink in creation order, outside the pool lock."""
        with self._emit_lock:
            while True:
                with self._lock:
                    if not self._outbox:
                        return
                    batch, self._outbox = self._outbox, []
                for event in batch:
                    try:
                        self._sink(event)
                    except Exception:  # a broken subscriber must not stop the pool
                        pass


def _stall_floor() -> float:
    """STALL_FLOOR_S, or ZAOXIANG_STALL_S when it holds a positive number of seconds."""
    try:
        value = float(os.environ.get("ZAOXIANG_STALL_S", ""))
    except ValueError:
        return STALL_FLOOR_S
    return value if value > 0 else STALL_FLOOR_S
