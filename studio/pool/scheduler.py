"""Pure scheduling: the queue's order and which worker gets which job next, from measured speeds.

No processes, pipes or clocks of its own: the pool hands in its queue, each ready worker's speed
model and held jobs, and the time; tests do the same with fake speeds. Planning is a greedy
earliest-finish list schedule of the whole queue (DESIGN.md's balancing), so a slower card stays
busy with jobs that still finish sooner there, while the head of the queue waits for a fast card
that is momentarily full.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from studio.core.jobs import Job
from studio.core.spec import MemoryProfile
from studio.pool.speed import Shape, SpeedModel, job_cost

__all__ = ["PLAN_HORIZON", "PREFETCH", "Held", "JobQueue", "Queued", "WorkerView", "ahead", "job_cost",
           "job_shape", "lower_profile", "plan_next"]

PREFETCH = 1  # queued jobs a worker may hold beyond the running one
PLAN_HORIZON = 256  # queued jobs the planner looks through for the next hand-out


def job_shape(job: Job) -> Shape:
    """The one place the pool reads a Job as an image spec (size and steps)."""
    return job.spec


class JobQueue:
    """Queued job ids in hand-out order: interactive before bulk, then first come; a job given back
    (its worker died, a pause returned it, an OOM retry) goes first within its priority."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._key: dict[str, tuple[int, int]] = {}  # job id -> (priority, seq)
        self._seq = 0
        self._front = 0

    def add(self, job_id: str, *, interactive: bool) -> None:
        self._seq += 1
        self._insert(job_id, (0 if interactive else 1, self._seq))

    def push_front(self, job_id: str, *, interactive: bool) -> None:
        self._front -= 1
        self._insert(job_id, (0 if interactive else 1, self._front))

    def _insert(self, job_id: str, key: tuple[int, int]) -> None:
        self._key[job_id] = key
        pos = len(self._ids)
        while pos > 0 and self._key[self._ids[pos - 1]] > key:
            pos -= 1
        self._ids.insert(pos, job_id)

    def pop(self, index: int = 0) -> str:
        job_id = self._ids.pop(index)
        del self._key[job_id]
        return job_id

    def remove(self, job_id: str) -> None:
        self._ids.remove(job_id)
        del self._key[job_id]

    def head(self, n: int = PLAN_HORIZON) -> list[str]:
        return self._ids[:n]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._ids))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._key


@dataclass(frozen=True)
class Queued:
    """A queued job as the planner sees it; `profile`: the memory profile it must run under (an OOM
    retry), None for any."""

    shape: Shape
    profile: str | None = None


@dataclass(frozen=True)
class Held:
    """A job a worker holds: running since `started` (wall clock), or prefetched (None)."""

    shape: Shape
    started: float | None = None


@dataclass
class WorkerView:
    """A ready worker as the planner sees it."""

    speed: SpeedModel
    held: list[Held] = field(default_factory=list)
    profile: str | None = None  # the memory profile it runs now ("auto"/None: the top one)
    order: int = 0  # its place in the pool: the tie-break

    def fits(self, job: Queued) -> bool:
        """True when it already runs `job`'s profile or a lower one (else taking it means a reload)."""
        if job.profile is None:
            return True
        return _rank(self.profile) >= _rank(job.profile)


def lower_profile(profile: str | None) -> str | None:
    """The next lower memory profile after an OOM ("auto" counts as the top; None: nothing lower)."""
    if not profile or profile == "auto":
        profile = MemoryProfile.FULL.value
    if profile not in MemoryProfile.names():
        return None
    lower = MemoryProfile(profile).lower()
    return lower.value if lower is not None else None


def _rank(profile: str | None) -> int:
    names = MemoryProfile.names()
    return names.index(profile) if profile in names else 0


def ahead(worker: WorkerView, now: float) -> float:
    """Seconds of work a worker holds already: its running job's remainder plus what it prefetched."""
    total = 0.0
    for held in worker.held:
        est = worker.speed.estimate(held.shape)
        if held.started is not None:
            est = max(0.05 * est, est - (now - held.started))
        total += est
    return total


def plan_next(queue: Sequence[Queued], workers: Sequence[WorkerView], now: float) -> tuple[int, int] | None:
    """The next hand-out as (queue index, worker index), or None when every planned place is full.

    Each job, in queue order, is placed where it would finish first among the workers it fits (all
    of them when it fits none: a reload beats never running); the first job so placed on a worker
    with room is the one to send. When every planned place is full, an idle worker judged only by
    its warm-up still gets the head job: a warm-up taken while the machine was busy can make a card
    look many times slower than it is, and without a real job it would never be measured again.
    """
    if not workers:
        return None
    finish = [ahead(w, now) for w in workers]
    for q, job in enumerate(queue[:PLAN_HORIZON]):
        fitting = [i for i, w in enumerate(workers) if w.fits(job)] or list(range(len(workers)))
        best = min(fitting, key=lambda i: (finish[i] + workers[i].speed.estimate(job.shape),
                                           len(workers[i].held), workers[i].order))
        if len(workers[best].held) <= PREFETCH:
            return q, best
        finish[best] += workers[best].speed.estimate(job.shape)
    if queue:
        for i, w in enumerate(workers):
            if not w.held and w.speed.jobs_seen == 0 and w.fits(queue[0]):
                return 0, i
    return None
