"""Measured speed per worker: seconds per image for each (width, height, steps), learned as jobs finish.

Seeded by the worker's warm-up image, so the first dispatch already knows a fast card from a slow
one. Sizes a worker has not run yet are estimated from its seconds per unit of `job_cost`.
"""

from __future__ import annotations

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
    per_cost: float | None = None  # seconds per cost unit, over everything this worker ran
    last_key: tuple[int, int, int] | None = None
    jobs_seen: int = 0  # real jobs measured (the warm-up does not count)

    def observe(self, spec: Shape, seconds: float, *, seed: bool = False) -> None:
        key = _key(spec)
        self.last_key = key
        if not seed:
            self.jobs_seen += 1
        unit = seconds / job_cost(spec)
        if seed or key not in self.per_key:
            self.per_key[key] = seconds
        else:
            self.per_key[key] += ALPHA * (seconds - self.per_key[key])
        self.per_cost = unit if self.per_cost is None or seed else self.per_cost + ALPHA * (unit - self.per_cost)

    def estimate(self, spec: Shape) -> float:
        key = _key(spec)
        if key in self.per_key:
            return self.per_key[key]
        if self.per_cost is not None:
            return self.per_cost * job_cost(spec)
        return 1.0  # never measured: any positive guess; the warm-up replaces it

    def seconds_per_image(self) -> float | None:
        """The most recently learned per-image time (for the monitor), None before any job."""
        return self.per_key.get(self.last_key) if self.last_key else None
