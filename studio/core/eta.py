"""Seconds until a request's images are done: the work ahead of it and its own, at measured speeds.

The estimate follows the pool's own rule: each worker first finishes the image it runs (its steps
left at that worker's seconds per step, less the time since its last step), then queued images, in
queue order, go to whichever worker would finish them first. `EtaClock` is what a person sees:
it follows the estimate down and rises only for a setback the caller names (a requeue).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Work:
    """One image not finished yet, as the estimate sees it."""

    width: int
    height: int
    steps: int
    step: int = 0  # steps done
    worker: str | None = None  # the worker running it; None while it waits in the queue
    step_s: float | None = None  # its worker's measured seconds per step on it, once two steps were seen
    since_step_s: float = 0.0  # seconds since its last step (or its start)
    mine: bool = True  # part of the request asked about (False: queued ahead of it)


ImageSeconds = Callable[[str, Work], float]  # (worker, work) -> seconds for the whole image there


def finish_times(workers: Sequence[str], work: Sequence[Work], seconds: ImageSeconds) -> list[float]:
    """Seconds from now until each piece of `work` is done (same order); queued work in list order.

    A worker's measured rate on the image it runs also prices queued images of that size there."""
    free = {name: 0.0 for name in workers}
    live = {(item.worker, item.width, item.height): item.step_s for item in work
            if item.worker in free and item.step_s is not None}

    def cost(name: str, item: Work) -> float:
        per_step = live.get((name, item.width, item.height))
        return seconds(name, item) if per_step is None else per_step * item.steps

    finish = [0.0] * len(work)
    queued = []
    for i, item in enumerate(work):
        if item.worker in free:
            per_step = item.step_s if item.step_s is not None else seconds(item.worker, item) / max(1, item.steps)
            left = max(0, item.steps - item.step) * per_step - item.since_step_s
            free[item.worker] += max(0.0, left)
            finish[i] = free[item.worker]
        else:
            queued.append(i)
    for i in queued:
        if not free:
            break
        costs = {name: cost(name, work[i]) for name in free}
        best = min(free, key=lambda name: free[name] + costs[name])
        free[best] += costs[best]
        finish[i] = free[best]
    return finish


def request_eta_s(workers: Sequence[str], work: Sequence[Work], seconds: ImageSeconds) -> float | None:
    """Seconds until the last of the request's own images is done; None with no worker to run it."""
    if not workers:
        return None
    mine = [end for end, item in zip(finish_times(workers, work, seconds), work) if item.mine]
    return max(mine, default=0.0)


@dataclass
class EtaClock:
    """The ETA shown: the lowest estimate so far, so it only counts down; a slower stretch holds it
    rather than pushing it up. Only a setback the caller names (an image requeued, work added)
    resets it to the new estimate."""

    shown: float | None = None

    def show(self, estimate: float | None, setback: bool = False) -> float | None:
        if estimate is None:
            return self.shown
        if self.shown is None or setback:
            self.shown = estimate
        else:
            self.shown = min(self.shown, estimate)
        return self.shown
