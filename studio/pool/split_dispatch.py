"""The pool's latency mode: one queued image handed to a group of idle workers (issue 16).

A mixin of `WorkerPool` (pool/pool.py), kept apart so the pool's own file stays about the ledger and
the dispatcher: it forms and warms the group (pool/group.py), hands it the only queued image when the
`split_image` setting and the measured speeds say so, and turns a member's failure, death or silence
(the stall deadline) into the image made again on one worker, not charged to it, the group formed anew
(never again after MAX_SPLIT_FAULTS).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studio.core import events as ev
from studio.core.jobs import CANCELLED, FINISHED_STATES
from studio.pool import protocol as p
from studio.pool.group import (
    HOLD_S,
    GroupSpec,
    SplitMode,
    cpu_groups_allowed,
    group_size,
    kinds_differ,
    mismatch,
)
from studio.pool.protocol import SENT, SlotState
from studio.pool.scheduler import job_shape
from studio.pool.spec import gpu_names

if TYPE_CHECKING:
    from studio.pool.ledger import JobEntry
    from studio.pool.supervisor import Slot

MAX_SPLIT_FAULTS = 3  # groups that broke (a split image or a group warm-up): then this pool stops splitting
GROUP_GRACE_S = 90.0  # a member of a broken group that says nothing for this long is stopped (it may wait
#                       in a collective for ever); one that reports in time keeps running (group.RENDEZVOUS_S).
#                       Never longer than the stall floor (ZAOXIANG_STALL_S shortens both in tests).
log = logging.getLogger("zaoxiang.pool")


@dataclass
class SplitRun:
    """A job split over a group: its members (slot indices, leader first) and who has not reported yet."""

    group_id: int
    members: list[int]
    pending: set[int] = field(default_factory=set)
    steps: dict[int, int] = field(default_factory=dict)  # slot index -> the last step it said


class SplitDispatch:
    """WorkerPool's split path; it uses the pool's queue, slots, supervisor and books (state set up in
    WorkerPool.__init__), and is called under the pool's lock like the rest of its dispatcher."""

    def _dispatch_split(self) -> bool:
        """Hand the only queued image to a group of idle workers, when the setting and the speeds say so."""
        if self._split_mode == SplitMode.NEVER or len(self._queue) != 1:
            return False
        js = self._jobs[self._queue.head(1)[0]]
        job_id = js.job.job_id
        if job_id in self._no_split or js.memory_profile or js.job.spec.has_inputs:
            return False
        members = self._idle_group()
        n = len(members)
        if n < 2:
            return False
        shape = job_shape(js.job)
        if not self._chooser.want(self._split_mode, shape, n, min(s.speed.estimate(shape) for s in members)):
            return False
        idx = [self._slots.index(s) for s in members]
        group_id, port = self._groups.form(tuple(idx))
        names, devices = tuple(s.spec.name for s in members), tuple(s.spec.device for s in members)
        self._queue.pop(0)
        js.state, js.worker = SENT, idx[0]
        self._split[job_id] = SplitRun(group_id, idx, set(idx))
        for rank, slot in enumerate(members):
            slot.assigned.append(job_id)
            spec = GroupSpec(group_id, port, rank, n, names, devices)
            self._sup.send(slot, p.RunJob(js.job.to_dict(), None, spec.to_dict()))
        return True

    def _idle_group(self) -> list[Slot]:
        """The group, when all its workers are ready and have nothing to do (else empty): always the
        first ones of a kind, as many as a group takes, so that one group (one compiled split) serves
        the pool's life; a group of other members would compile its own."""
        ready = [s for i, s in enumerate(self._slots) if s.state == SlotState.READY and s.control is not None
                 and i not in self._warming and i not in self._suspects and i not in self._held]
        if not ready or not self._groups_here(ready[0].spec.device):
            return []
        kind = [s for s in self._slots if s.spec.device == ready[0].spec.device and not s.gone]
        members = kind[:group_size(len(kind))]
        # idle: nothing to do but (a member's) end of a split image whose leader has already finished it
        if len(members) < 2 or not all(s in ready and all(self._jobs[j].state in FINISHED_STATES for j in s.assigned)
                                       for s in members):
            return []
        return members

    def _groups_here(self, device: str) -> bool:
        """Whether the setting lets workers of this device form a group: never with "never"; with
        "auto" not on CPU workers (they share the machine's cores) nor on GPUs that cannot pay."""
        if self._split_mode == SplitMode.NEVER:
            return False
        if self._split_mode == SplitMode.AUTO:
            return not self._no_group and (device != "cpu" or cpu_groups_allowed())
        return True

    def _start_group(self) -> list[int]:
        """The group the pool would form first (slot indices): the first workers of the first kind."""
        alive = [s for s in self._slots if not s.gone]
        if not alive:
            return []
        kind = [i for i, s in enumerate(self._slots) if s.spec.device == alive[0].spec.device and not s.gone]
        members = kind[:group_size(len(kind))]
        return members if len(members) >= 2 and self._groups_here(alive[0].spec.device) else []

    def _hold_for_group(self, i: int) -> bool:
        """At a worker's READY: keep it warming until its group has warmed too (ready means warm, the
        split included), when it is a member and no member has said ready yet (the pool's start, or
        the whole group restarted); True when held."""
        members = self._start_group()
        if i not in members or any(j in self._announced for j in members):
            return False
        if self._split_mode == SplitMode.AUTO and self._slots[i].spec.device == "cuda":
            self._no_group = kinds_differ(gpu_names([self._slots[j].spec.visible_devices for j in members]))
            if self._no_group:  # known before any of them loaded: nobody waits for a group that cannot pay
                self._split_note(f"no group: {self._no_group}")
                return False
        self._held[i] = time.monotonic() + HOLD_S
        return True

    def _warm_held(self) -> None:
        """Once every member is held, they join and warm the group together (before saying ready); a
        group that cannot form or pay, or a member not ready within HOLD_S, lets them say ready now."""
        members = self._start_group()
        why = ""
        if not members or any(j not in members for j in self._held):
            why = "the setting or the workers changed"
        elif min(self._held.values()) <= time.monotonic():
            why = f"not every member was ready within {HOLD_S:g} s of the first"
        elif any(j not in self._held for j in members):
            return  # the others are still warming up alone
        elif self._split_mode == SplitMode.AUTO:
            why = mismatch([self._slots[j].info for j in members], speeds=self._slots[members[0]].spec.device != "cpu")
            if why:
                self._no_group = why  # for this pool's life: "auto" never groups these workers
        if why:
            self._split_note(f"no group warm-up before ready: {why}")
            for j in list(self._held):
                self._announce(j)
            return
        self._send_warm(members)

    def _warm_group(self) -> None:
        """At start-up, the held group's warm-up; later (its group broken, a member restarted), with
        nothing queued, the idle workers form their group and compile the split path, so the first
        split image is not the one that waits for the compiler."""
        if self._held:
            self._warm_held()
            return
        if self._split_mode == SplitMode.NEVER or len(self._queue) or self._warming:
            return
        members = self._idle_group()
        if members:
            self._send_warm([self._slots.index(s) for s in members])

    def _send_warm(self, idx: list[int]) -> None:
        group_id, port = self._groups.form(tuple(idx))
        if group_id in self._chooser.warmed:
            for i in idx:
                self._announce(i)
            return
        names = tuple(self._slots[i].spec.name for i in idx)
        devices = tuple(self._slots[i].spec.device for i in idx)
        for rank, i in enumerate(idx):
            self._held.pop(i, None)
            self._warming[i] = group_id
            self._warm_seen[i] = time.monotonic()
            self._sup.send(self._slots[i], p.WarmGroup(GroupSpec(group_id, port, rank, len(idx), names, devices).to_dict()))

    def _on_group_warmed(self, i: int, msg: p.Helped) -> None:
        """A member compiled the split; the group's workers take jobs (and say ready, at start-up) only
        once all of them have (one freed early would take the image alone). Their timings tell "auto"
        which way is faster at the warm-up's size."""
        group_id = self._warming[i]
        if not msg.ok:
            self._warming.pop(i)
            self._split_note(f"group warm-up failed on {self._slots[i].spec.name}: {msg.message}")
            self._group_fault(group_id)
            self._announce(i)
            return
        self._warm_reported[i] = msg
        members = [j for j, gid in self._warming.items() if gid == group_id]
        if not all(j in self._warm_reported for j in members):
            return
        timings = [self._warm_reported.pop(j) for j in members]
        for j in members:
            del self._warming[j]
        self._chooser.warmed.add(group_id)
        self._warm_s[group_id] = max(t.busy_s for t in timings)
        split = [t.split_step_s for t in timings if t.split_step_s]
        single = [t.single_step_s for t in timings if t.single_step_s]
        if len(split) == len(single) == len(members):  # the group is as fast as its slowest member
            self._chooser.timed(timings[0].width, timings[0].height, len(members), max(split), min(single))
            self._split_note(f"group {group_id} warm in {self._warm_s[group_id]:.2f} s: a step at "
                             f"{timings[0].width}x{timings[0].height} takes {max(split):.4f} s split, "
                             f"{min(single):.4f} s on one worker", logging.INFO)
        for j in members:
            self._announce(j)

    def _announce(self, i: int) -> None:
        """The worker is ready (and warm): say so once per start."""
        self._held.pop(i, None)
        if i in self._announced:
            return
        slot = self._slots[i]
        self._announced.add(i)
        slot.warm_pct = None
        self._books.emit(ev.WORKER_READY, worker=slot.spec.name, **slot.info)
        if slot.restarts:
            self._books.emit(ev.WORKER_RESTARTED, worker=slot.spec.name, restarts=slot.restarts,
                             pid=slot.proc.pid if slot.proc is not None else None)

    def _group_fault(self, group_id: int) -> None:
        """A group warm-up failed or lost a member: the members still in it may wait in a collective
        for ever, so they are stopped (and restart) unless they report in time; the others say ready
        now; the group is formed anew, or never again after MAX_SPLIT_FAULTS."""
        self._chooser.warmed.add(group_id)  # not warm, but never warmed again either
        for j, gid in list(self._warming.items()):
            if gid == group_id:
                del self._warming[j]
                slot = self._slots[j]
                if self._warm_reported.pop(j, None) is None and slot.proc is not None and not slot.hung:
                    self._suspect(j)  # not done with its part: it may wait in a collective
                self._announce(j)
        self._note_split_fault(group_id)

    def _suspect(self, i: int) -> None:
        """A member of a broken group: no new work until it reports, stopped if it does not in time."""
        self._suspects.setdefault(i, time.monotonic() + min(GROUP_GRACE_S, self._sup.stall_floor_s))

    def _stalled(self, i: int, limit: float) -> None:
        """Worker i said nothing for `limit` s. Alone, it is killed (its death requeues its job, a kill
        counted). In a group (a warm-up or a split image) every member waits for the slowest at each
        collective, so all go quiet: the silent ones are those behind the others (all, when none is),
        and they are killed; the others get the grace to report a failed collective. The image is
        made again on one worker, and not charged to it (replies._on_death)."""
        members = {j: done for j, done in self._group_progress(i).items()
                   if self._slots[j].proc is not None and not self._slots[j].hung}
        if not members:
            self._sup.kill_hung(self._slots[i], limit)
            return
        top = max(members.values())
        silent = [j for j, done in members.items() if done < top] or list(members)
        names = ", ".join(self._slots[j].spec.name for j in silent)
        self._split_note(f"no word from {names} for {limit:.0f} s in a group: stopped")
        for j in members:
            if j in silent:
                self._sup.kill_hung(self._slots[j], limit, " in its group")
            else:
                self._suspect(j)

    def _group_progress(self, i: int) -> dict[int, float]:
        """How far each busy member of worker i's group got (warm-up percent, or split image step);
        empty when worker i is in no group now."""
        if i in self._warming:
            gid = self._warming[i]
            return {j: self._slots[j].warm_pct or 0.0 for j, g in self._warming.items()
                    if g == gid and j not in self._warm_reported}
        for job_id in self._slots[i].assigned:
            run = self._split.get(job_id)
            if run is not None:
                return {j: float(run.steps.get(j, 0)) for j in run.pending}
        return {}

    def _split_note(self, text: str, level: int = logging.WARNING) -> None:
        log.log(level, "one image on several GPUs: %s", text)
        self._split_log = [*self._split_log[-9:], f"{time.strftime('%H:%M:%S')} {text}"]

    def split_status(self) -> dict[str, Any]:
        """The setting in force, the group, and why recent splits failed (the bench prints it)."""
        with self._lock:
            return {"mode": self._split_mode.value, "allowed": self._split_allowed,
                    "group": list(self._groups.members), "group_id": self._groups.group_id,
                    "warmed": sorted(self._chooser.warmed), "broken_groups": sorted(self._broken_groups),
                    "split_s": {f"{w}x{h}x{s}@{n}": round(t, 4) for (w, h, s, n), t in self._chooser.split_s.items()},
                    "step_ratio": {f"{w}x{h}@{n}": round(r, 4) for (w, h, n), r in self._chooser.step_ratio.items()},
                    "warm_s": {str(g): round(t, 3) for g, t in self._warm_s.items()},
                    "no_group": self._no_group, "held": sorted(self._held),
                    "log": list(self._split_log)}

    def _note_split_fault(self, group_id: int | None) -> None:
        self._groups.broken()
        if group_id is not None:
            self._broken_groups.add(group_id)
        if len(self._broken_groups) >= MAX_SPLIT_FAULTS:
            self._split_mode = SplitMode.NEVER

    def _on_helped(self, slot: Slot, js: JobEntry, msg: p.Helped) -> None:
        """A member's part of a split image is over; one that failed takes its group down with it."""
        self._release(slot, js)
        slot.busy_s += msg.busy_s
        if not msg.ok:
            self._split_note(f"{slot.spec.name} failed its part of a split image: {msg.message}")
        if js.job.job_id in self._split:
            self._member_reported(slot, js)
            if not msg.ok:
                self._abandon_split(js)

    def _member_reported(self, slot: Slot, js: JobEntry) -> None:
        run = self._split.get(js.job.job_id)
        if run is None:
            return
        run.pending.discard(self._slots.index(slot))
        if not run.pending:
            del self._split[js.job.job_id]

    def _abandon_split(self, js: JobEntry) -> None:
        """A member other than the leader is gone or failed: its collectives would hang the leader, so
        the leader goes too (its own death or failure then requeues the image); the group is formed anew."""
        run = self._split.get(js.job.job_id)
        self._note_split_fault(None if run is None else run.group_id)
        if run is not None and run.members[0] in run.pending and js.state not in FINISHED_STATES:
            leader = self._slots[run.members[0]]
            if leader.proc is not None and not leader.hung:
                self._suspect(run.members[0])  # its own failure (or death) will requeue the image

    def _split_fault(self, js: JobEntry, leader: Slot, *, died: bool) -> None:
        """The leader of a split image failed (`died`: its process ended): the other members that have
        not finished are stopped (they may wait in a collective for ever), and the image goes back to
        the front of the queue to be made on one worker; the group is formed anew."""
        job_id = js.job.job_id
        run = self._split.pop(job_id, None)
        self._note_split_fault(None if run is None else run.group_id)
        for i in run.members if run is not None else []:
            slot = self._slots[i]
            if slot is leader:
                continue
            if job_id in slot.assigned:
                slot.assigned.remove(job_id)
            if i in run.pending and slot.proc is not None and not slot.hung:
                self._suspect(i)
        self._no_split.add(job_id)
        if died:
            return  # the death's own bookkeeping requeues it (and counts the kill)
        common = self._common(leader, js)
        if self._requests[js.job.request_id].cancelled:
            self._books.finish(js, CANCELLED, None, ev.JOB_CANCELLED, **common, reason="cancelled")
            return
        self._requeue_front(js)
        self._books.emit(ev.JOB_REQUEUED, **common, reason="split_failed")
