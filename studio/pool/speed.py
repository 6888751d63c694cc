"""Measured speed per worker: seconds per image for each (width, height, steps), learned as jobs finish.

Seeded by the worker's warm-up image, so the first dispatch (and the first ETA) already knows a fast
card from a slow one: by one steady step of it (timed by `StepClock`) and its encode + decode, not by
its whole time, which also holds what happens once (the first step's set-up, building the previewer)
and, priced by `job_cost`, made a few seconds' image look minutes long. Sizes a worker has not run
yet are estimated from its seconds per unit of `job_cost` plus that encode + decode, by pixels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

ALPHA = 0.4  # weight of the newest measurement: adapts within a few images, shrugs off one outlier


class Shape(Protocol):
    """What cost and speed depend on: an `ImageSpec`, or anything else with its size and steps."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def steps(self) -> int: ...


class Size(NamedTuple):
    """A bare shape: a worker's warm-up image, a test's fake job."""

    width: int
    height: int
    steps: int


def job_cost(spec: Shape) -> float:
    """Relative work of one image: steps × (image tokens + their attention term), per DESIGN.md."""
    tokens = (spec.width // 16) * (spec.height // 16)
    return spec.steps * (tokens + tokens * tokens / 4096.0)


def _key(spec: Shape) -> tuple[int, int, int]:
    return (spec.width, spec.height, spec.steps)


@dataclass
class SpeedModel:
    """One worker's timings; `estimate` is what the scheduler uses for expected finish times."""

    per_key: dict[tuple[int, int, int], float] = field(default_factory=dict)
    per_cost: float | None = None  # seconds per cost unit (the steps), over everything this worker ran
    last_key: tuple[int, int, int] | None = None
    jobs_seen: int = 0  # real jobs measured (the warm-up does not count)
    tail_per_px: float = 0.0  # an image's seconds outside its steps (encode + decode) per pixel

    def observe(self, spec: Shape, seconds: float, *, seed: bool = False) -> None:
        key = _key(spec)
        self.last_key = key
        if not seed:
            self.jobs_seen += 1
        unit = max(seconds - self._tail(spec), seconds / 2) / job_cost(spec)
        if seed or key not in self.per_key:
            self.per_key[key] = seconds
        else:
            self.per_key[key] += ALPHA * (seconds - self.per_key[key])
        self.per_cost = unit if self.per_cost is None or seed else self.per_cost + ALPHA * (unit - self.per_cost)

    def seed_warmup(self, spec: Shape, seconds: float, step_s: float | None = None, tail_s: float = 0.0) -> None:
        """Seed from the warm-up image: a steady step (`step_s`) prices every size through `job_cost`,
        its encode + decode (`tail_s`) every size by pixels; its whole time only when the worker
        timed no steady step."""
        if step_s is None or step_s <= 0:
            self.observe(spec, seconds, seed=True)
            return
        self.per_cost = step_s * spec.steps / job_cost(spec)
        self.tail_per_px = max(0.0, tail_s) / (spec.width * spec.height)

    def _tail(self, spec: Shape) -> float:
        return self.tail_per_px * spec.width * spec.height

    def estimate(self, spec: Shape) -> float:
        key = _key(spec)
        if key in self.per_key:
            return self.per_key[key]
        if self.per_cost is not None:
            return self.per_cost * job_cost(spec) + self._tail(spec)
        return 1.0  # never measured: any positive guess; the warm-up replaces it

    def seconds_per_image(self) -> float | None:
        """The most recently learned per-image time (for the monitor), None before any job."""
        return self.per_key.get(self.last_key) if self.last_key else None


class StepClock:
    """A step callback that times the steps of one image, the device synchronised at each (`sync`:
    the warm-up only, so the time is the step's work, not how fast it was queued); `then` still runs."""

    def __init__(self, sync: Callable[[], None] | None = None,
                 then: Callable[[int, int], None] | None = None) -> None:
        self.sync, self.then = sync, then
        self.times: list[float] = []

    def __call__(self, step: int, total: int) -> None:
        if self.sync is not None:
            self.sync()
        self.times.append(time.perf_counter())
        if self.then is not None:
            self.then(step, total)

    def steady_s(self) -> float | None:
        """The quickest step after the first (the first carries one-time set-up); None under two steps."""
        gaps = [b - a for a, b in zip(self.times, self.times[1:])]
        return min(gaps) if gaps else None
