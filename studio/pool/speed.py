"""Measured speed per worker: seconds per image for each (width, height, steps), learned as jobs finish.

Seeded by the worker's warm-up image, so the first dispatch already knows a fast card from a slow
one. Sizes a worker has not run yet are estimated from its seconds per unit of `Job.cost()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALPHA = 0.4  # weight of the newest measurement: adapts within a few images, shrugs off one outlier


def job_cost(width: int, height: int, steps: int) -> float:
    """Relative work of one image (the same formula as `Job.cost`)."""
    tokens = (width // 16) * (height // 16)
    return steps * (tokens + tokens * tokens / 4096.0)


@dataclass
class SpeedModel:
    """One worker's timings; `estimate` is what the dispatcher uses for expected finish times."""

    per_key: dict[tuple[int, int, int], float] = field(default_factory=dict)
    per_cost: float | None = None  # seconds per cost unit, over everything this worker ran
    last_key: tuple[int, int, int] | None = None
    jobs_seen: int = 0  # real jobs measured (the warm-up does not count)

    def observe(self, width: int, height: int, steps: int, seconds: float, *, seed: bool = False) -> None:
        key = (width, height, steps)
        self.last_key = key
        if not seed:
            self.jobs_seen += 1
        unit = seconds / job_cost(width, height, steps)
        if seed or key not in self.per_key:
            self.per_key[key] = seconds
        else:
            self.per_key[key] += ALPHA * (seconds - self.per_key[key])
        self.per_cost = unit if self.per_cost is None or seed else self.per_cost + ALPHA * (unit - self.per_cost)

    def estimate(self, width: int, height: int, steps: int) -> float:
        key = (width, height, steps)
        if key in self.per_key:
            return self.per_key[key]
        if self.per_cost is not None:
            return self.per_cost * job_cost(width, height, steps)
        return 1.0  # never measured: any positive guess; the warm-up replaces it

    def seconds_per_image(self) -> float | None:
        """The most recently learned per-image time (for the monitor), None before any job."""
        return self.per_key.get(self.last_key) if self.last_key else None
