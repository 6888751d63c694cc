"""What the workers say, turned into the pool's state and events: WorkerPool's message handlers.

A mixin of `WorkerPool` (pool/pool.py), kept apart so the pool's own file stays about its public API,
its loop and the dispatcher: started, step, done, cancelled, revoked and failed (an OOM retried once
one memory profile lower), and a worker's death (its jobs requeued, a job that stopped MAX_KILLS
workers failed, its half-written PNG removed first; a death during a split image is the group's, not
the job's: it is made again on one worker).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from studio.core import events as ev
from studio.core.atomic import remove_partials
from studio.core.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING
from studio.pool import protocol as p
from studio.pool.ledger import oom_message
from studio.pool.protocol import ErrorKind, RevokeReason
from studio.pool.scheduler import job_shape, lower_profile

if TYPE_CHECKING:
    from studio.core.jobs import Job
    from studio.pool.ledger import JobEntry
    from studio.pool.supervisor import Slot

MAX_KILLS = 2  # a job that took down this many workers is failed, not retried again
GROUP_BROKE = "stopped: its group lost a member"  # why the pool kills the rest of a broken group


class WorkerReplies:
    """WorkerPool's handlers for the workers' messages and deaths; they use the pool's slots, books,
    queue and supervisor (state set up in WorkerPool.__init__) and run under the pool's lock."""

    def _on_worker(self, slot: Slot, _js: None, msg: p.Warming | p.Ready | p.Fatal) -> None:
        """Warming, ready or cannot load: the supervisor updates the slot, the pool tells subscribers."""
        self._sup.note(slot, msg)
        if isinstance(msg, p.Warming):
            self._books.emit(ev.WORKER_WARMING, worker=slot.spec.name, **msg.payload())
        elif isinstance(msg, p.Ready):
            i = self._slots.index(slot)
            if self._hold_for_group(i):  # it says ready once its group has warmed (split_dispatch.py)
                self._books.emit(ev.WORKER_WARMING, worker=slot.spec.name, pct=None, stage="group")
            else:
                self._announce(i)

    def _common(self, slot: Slot, js: JobEntry) -> dict[str, Any]:
        return {"job_id": js.job.job_id, "request_id": js.job.request_id, "worker": slot.spec.name,
                "index": js.job.index}

    def _on_started(self, slot: Slot, js: JobEntry, msg: p.Started) -> None:
        js.state, js.started, js.last_seen = RUNNING, msg.time, time.monotonic()
        slot.last_request = js.job.request_id
        self._books.emit(ev.JOB_STARTED, **self._common(slot, js))

    def _on_step(self, slot: Slot, js: JobEntry, msg: p.Step) -> None:
        if js.job.job_id not in slot.assigned:
            return  # a member's late word on a split image the pool already gave to one worker
        js.last_seen = time.monotonic()
        run = self._split.get(js.job.job_id)
        if run is not None:  # every member says its steps: the pool tells which one went silent
            i = self._slots.index(slot)
            run.steps[i] = msg.step
            if i != run.members[0]:
                return  # the image's steps and events are the first member's
        js.step = msg.step
        js.first_step = js.first_step or (msg.step, js.last_seen)
        self._books.emit(ev.STEP, **self._common(slot, js), step=msg.step, steps=msg.steps)

    def _on_done(self, slot: Slot, js: JobEntry, msg: p.Done) -> None:
        self._release(slot, js)
        js.busy_s, js.finished, js.gpu_s = msg.busy_s, msg.finished, msg.gpu_s
        slot.images_done += 1
        slot.busy_s += js.busy_s
        slot.failures = 0
        run = self._split.get(js.job.job_id)
        if run is not None:  # its time is the group's, not this worker's own speed
            self._chooser.observe(run.group_id, job_shape(js.job), len(run.members), js.busy_s,
                                  compiled=bool(msg.compiled))
            self._member_reported(slot, js)
        else:
            slot.speed.observe(job_shape(js.job), js.busy_s)
        result = msg.result()
        self._books.finish(js, DONE, result, ev.JOB_DONE, **result)

    def _on_cancelled(self, slot: Slot, js: JobEntry, msg: p.Cancelled) -> None:
        self._release(slot, js)
        self._member_reported(slot, js)
        js.busy_s = msg.busy_s
        slot.busy_s += js.busy_s
        self._books.finish(js, CANCELLED, None, ev.JOB_CANCELLED, **self._common(slot, js),
                            reason=self._cancel_reason(js.job))

    def _on_revoked(self, slot: Slot, js: JobEntry, msg: p.Revoked) -> None:
        self._release(slot, js)
        if msg.reason == RevokeReason.CANCEL or self._requests[js.job.request_id].cancelled or self._sup.closing:
            self._books.finish(js, CANCELLED, None, ev.JOB_CANCELLED, **self._common(slot, js),
                                reason=self._cancel_reason(js.job))
        else:  # given back on pause: first in line again
            self._requeue_front(js)

    def _cancel_reason(self, job: Job) -> str:
        """"closing" when the pool stopped it only because it shuts down (the store keeps such a job
        queued for the next start), "cancelled" when a person cancelled its request."""
        return "closing" if self._sup.closing and not self._requests[job.request_id].cancelled else "cancelled"

    def _on_failed(self, slot: Slot, js: JobEntry, msg: p.Failed) -> None:
        self._release(slot, js)
        js.busy_s = msg.busy_s
        slot.busy_s += js.busy_s
        job, common = js.job, self._common(slot, js)
        if job.job_id in self._split:  # the group failed it: one worker makes it instead
            self._split_note(f"split image failed on {slot.spec.name}, made on one worker instead: {msg.message}")
            self._split_fault(js, slot, died=False)
            return
        if msg.error != ErrorKind.OOM:
            said = {"message_key": msg.message_key, "message_args": msg.message_args} if msg.message_key else {}
            self._books.finish(js, FAILED, None, ev.JOB_FAILED, **common, kind=msg.error.value, message=msg.message,
                                exception=msg.exception, **said)
            return
        lower = lower_profile(js.memory_profile or slot.info.get("memory_profile"))
        if not js.oom_retried and lower is not None and not self._requests[job.request_id].cancelled:
            js.oom_retried, js.memory_profile = True, lower
            self._requeue_front(js)
            self._books.emit(ev.JOB_REQUEUED, **common, reason="out_of_memory", memory_profile=lower)
            return
        retried = js.memory_profile if js.oom_retried else None
        self._books.finish(js, FAILED, None, ev.JOB_FAILED, **common, kind=ErrorKind.OOM.value,
                           message=oom_message(job_shape(job), slot.spec.name, retried))

    def _on_death(self, i: int) -> None:
        slot = self._slots[i]
        self._drain(i)  # what it said before dying (a "started" still in the pipe, say) counts
        death = self._sup.bury(i)
        if death is None:
            return
        name = slot.spec.name
        self._suspects.pop(i, None)
        self._announced.discard(i)
        self._held.pop(i, None)
        if self._held:  # a member of the group it waited for is gone: the others say ready now
            self._split_note(f"{name} died before its group warmed")
            for j in list(self._held):
                self._announce(j)
        if i in self._warming:
            self._split_note(f"{name} died while its group compiled the split")
            self._group_fault(self._warming.pop(i))
        split = [j for j in slot.assigned if j in self._split]  # a group's fault: made on one worker, not charged
        for job_id in split:
            js = self._jobs[job_id]
            self._split_note(f"{name} died during a split image ({death.how})")
            if self._split[job_id].members[0] == i:
                self._split_fault(js, slot, died=True)  # the leader: the job goes back (to one worker)
            else:
                self._member_reported(slot, js)
                self._release(slot, js)
                self._abandon_split(js)
        running = [j for j in slot.assigned if self._jobs[j].state == RUNNING]
        for job_id in running:  # its half-written PNG: nobody else writes it until the job is handed out again
            remove_partials(self._jobs[job_id].job.output_path)
        for job_id in reversed(slot.assigned):  # reversed: the front of the queue keeps their order
            js = self._jobs[job_id]
            common = self._common(slot, js)
            if js.state == RUNNING and slot.hung != GROUP_BROKE and job_id not in split:  # not this job's doing
                js.kills += 1
            js.state, js.worker, js.started = QUEUED, None, None
            if self._requests[js.job.request_id].cancelled:
                self._books.finish(js, CANCELLED, None, ev.JOB_CANCELLED, **common, reason="cancelled")
            elif js.kills >= MAX_KILLS:
                self._books.finish(js, FAILED, None, ev.JOB_FAILED, **common, kind=ErrorKind.WORKER_CRASH.value,
                                    message=f"This image stopped a worker process {js.kills} times (last: {name}, "
                                            f"{death.how}); it was not retried again. Try a smaller size or fewer steps.")
            else:
                self._requeue_front(js)
                self._books.emit(ev.JOB_REQUEUED, **common, reason="worker_died")
            self._check_request(js.job.request_id)
        slot.assigned.clear()
        delay = self._sup.after_death(slot, death)
        fatal = f": {slot.fatal['message']}" if slot.fatal else ""
        if delay is None:
            self._books.emit(ev.WORKER_DIED, worker=name, exitcode=death.exitcode, job_ids=running, restart_in_s=None,
                              message=f"{name} could not start{fatal}")
            if all(s.gone for s in self._slots):
                self._fail_queue(f"No worker could start{fatal}")
            return
        self._books.emit(ev.WORKER_DIED, worker=name, exitcode=death.exitcode, job_ids=running, restart_in_s=delay,
                          message=f"{name} {'hung' if death.hung else 'stopped'} ({death.how}); restarting in {delay:g} s"
                                  + (fatal or "."))

    def _fail_queue(self, message: str) -> None:
        for job_id in list(self._queue):
            self._queue.remove(job_id)
            js = self._jobs[job_id]
            self._books.finish(js, FAILED, None, ev.JOB_FAILED, job_id=job_id, request_id=js.job.request_id,
                                index=js.job.index, worker=None, kind=ErrorKind.NO_WORKER.value, message=message)
            self._check_request(js.job.request_id)
