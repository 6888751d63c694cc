"""The pool's books as `core.eta` reads them: what each worker holds (the running image with its
live step rate, then the one it prefetched), then the queue in hand-out order, each priced by that
worker's measured speed."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from studio.core.eta import Work, request_eta_s
from studio.core.jobs import QUEUED, RUNNING
from studio.pool.ledger import JobEntry
from studio.pool.supervisor import Slot


def _work(js: JobEntry, request_id: str, worker: str | None, now: float) -> Work:
    spec = js.job.spec
    step_s = None
    if js.state == RUNNING and js.first_step is not None and js.step > js.first_step[0]:
        step_s = (js.last_seen - js.first_step[1]) / (js.step - js.first_step[0])
    since = now - js.last_seen if js.state == RUNNING and js.last_seen is not None else 0.0
    return Work(spec.width, spec.height, spec.steps, step=js.step if js.state == RUNNING else 0, worker=worker,
                step_s=step_s, since_step_s=since, mine=js.job.request_id == request_id)


def pool_eta_s(slots: Sequence[Slot], jobs: dict[str, JobEntry], queue: Iterable[str], request_id: str,
               now: float | None = None) -> float | None:
    """Seconds until `request_id`'s last image is done; 0.0 when none is left, None with no measured worker."""
    now = time.monotonic() if now is None else now
    speeds = {s.spec.name: s.speed for s in slots if not s.gone and s.speed.per_cost is not None}
    work = [_work(jobs[j], request_id, s.spec.name, now) for s in slots if s.spec.name in speeds
            for j in s.assigned if jobs[j].state != QUEUED]
    work += [_work(jobs[j], request_id, None, now) for j in queue if j in jobs]
    return request_eta_s(list(speeds), work, lambda name, item: speeds[name].estimate(item))
