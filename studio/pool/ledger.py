"""The pool's books: every request and job it knows of, their results, and the events they make.

Kept apart from the wiring so that what a job came to (and which event says so) is decided in one
place; the pool calls it under its lock and hands the events out afterwards, in order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from studio.core import events as ev
from studio.core.jobs import CANCELLED, DONE, FAILED, FINISHED_STATES, QUEUED, Job
from studio.pool.stats import request_stats

KEEP_FINISHED = 2000  # finished requests remembered for wait/results/stats (the store keeps history)


@dataclass
class JobEntry:
    job: Job
    state: str = QUEUED  # a core job state, or protocol.SENT
    worker: int | None = None
    started: float | None = None
    finished: float | None = None
    busy_s: float | None = None
    gpu_s: float | None = None  # the engine's time for the image (its PNG is written while the next runs)
    kills: int = 0
    memory_profile: str | None = None
    oom_retried: bool = False
    last_seen: float | None = None  # monotonic time of its last "started" or "step" message
    step: int = 0  # steps done, and (step, monotonic time) of the first step heard: its live speed (ETA)
    first_step: tuple[int, float] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass
class RequestEntry:
    request_id: str
    job_ids: list[str]
    origin: str
    interactive: bool
    submitted: float
    cancelled: bool = False
    done: bool = False


def oom_message(shape: Any, worker: str, retried_profile: str | None) -> str:
    """What a person reads when an image does not fit in GPU memory (after the retry one profile lower)."""
    even = f" even with the {retried_profile!r} memory profile" if retried_profile else ""
    return (f"Out of GPU memory at {shape.width}x{shape.height} on {worker}{even}. Try a smaller size, close "
            "other programs using the GPU, or pick a lower memory profile in Settings.")


Carried = tuple[RequestEntry, list[JobEntry]]  # a request and its jobs, handed from one pool to the next


class Ledger:
    """Requests and jobs by id; `names`: the workers' names by index; `outbox`: events not sent yet."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.jobs: dict[str, JobEntry] = {}
        self.requests: dict[str, RequestEntry] = {}
        self.outbox: list[ev.Event] = []
        self._finished: list[str] = []  # request ids in the order they finished, oldest first

    def add(self, request_id: str, jobs: list[Job], *, origin: str, interactive: bool,
            memory_profile: str | None) -> None:
        self.requests[request_id] = RequestEntry(request_id, [j.job_id for j in jobs], origin, interactive,
                                                 time.time())
        for job in jobs:
            self.jobs[job.job_id] = JobEntry(job, memory_profile=memory_profile)

    def take_unfinished(self) -> list[Carried]:
        """Remove and return every request not done, with all its jobs (finished ones keep their results)."""
        out = []
        for rid in [r for r, req in self.requests.items() if not req.done]:
            req = self.requests.pop(rid)
            out.append((req, [self.jobs.pop(j) for j in req.job_ids]))
        return out

    def adopt(self, req: RequestEntry, entries: list[JobEntry]) -> None:
        self.requests[req.request_id] = req
        for js in entries:
            self.jobs[js.job.job_id] = js

    def emit(self, kind: str, /, **payload: Any) -> None:
        self.outbox.append(ev.make_event(kind, **payload))

    def name(self, i: int | None) -> str | None:
        return self.names[i] if i is not None else None

    def finish(self, js: JobEntry, state: str, result: dict[str, Any] | None, kind: str, /,
               **payload: Any) -> None:
        """A job's end, once: its state and result, and the event that says so."""
        if js.state in FINISHED_STATES:
            return
        js.state, js.result = state, result
        if js.finished is None:
            js.finished = time.time()
        if state == FAILED:
            js.error = {"error_kind": payload.get("kind"), "error": payload.get("message")}
            if payload.get("message_key"):  # a `SaidError`: what a window needs to say it in its language
                js.error.update(error_key=payload["message_key"], error_args=payload.get("message_args") or {})
        job = js.job
        base = {"job_id": job.job_id, "request_id": job.request_id, "index": job.index, "worker": self.name(js.worker)}
        self.emit(kind, **{**base, **payload})

    def check_request(self, request_id: str) -> bool:
        """Mark the request done once every job is finished (emitting REQUEST_DONE); True when it just was."""
        req = self.requests.get(request_id)
        if req is None or req.done or not all(self.jobs[j].state in FINISHED_STATES for j in req.job_ids):
            return False
        req.done = True
        states = [self.jobs[j].state for j in req.job_ids]
        self.emit(ev.REQUEST_DONE, request_id=request_id, origin=req.origin, jobs=len(states),
                  done=states.count(DONE), failed=states.count(FAILED), cancelled=states.count(CANCELLED))
        self._finished.append(request_id)
        while len(self._finished) > KEEP_FINISHED:  # a long-running studio must not grow forever
            old = self.requests.pop(self._finished.pop(0))
            for job_id in old.job_ids:
                self.jobs.pop(job_id, None)
        return True

    def close_all(self) -> bool:
        """The pool shut down: every unfinished job is cancelled as "closing" (the store keeps it queued
        for the next start); True when some request just finished."""
        for js in self.jobs.values():
            if js.state not in FINISHED_STATES:
                self.finish(js, CANCELLED, None, ev.JOB_CANCELLED, reason="closing")
        return any([self.check_request(rid) for rid in list(self.requests)])

    def result(self, js: JobEntry) -> dict[str, Any]:
        job = js.job
        base = {"job_id": job.job_id, "request_id": job.request_id, "index": job.index, "seed": job.spec.seed,
                "status": js.state, "worker": self.name(js.worker), "path": None, "elapsed_s": None}
        if js.result:
            base.update(js.result)
            base["status"] = js.state
        elif js.error:
            base.update(js.error)
        return base

    def request_stats(self, request_id: str) -> dict[str, Any]:
        out = request_stats(self.stat_rows(request_id), self.names)
        out.update(request_id=request_id, finished=self.requests[request_id].done)
        return out

    def stat_rows(self, request_id: str) -> list[dict[str, Any]]:
        """The request's jobs as `stats.request_stats` reads them."""
        return [{"state": js.state, "worker": self.name(js.worker), "started": js.started,
                 "finished": js.finished, "busy_s": js.busy_s, "gpu_s": js.gpu_s}
                for js in (self.jobs[j] for j in self.requests[request_id].job_ids)]
