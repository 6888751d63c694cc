"""The ETA: finish times from per-worker speeds and the queue ahead, and the shown clock over a real run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from studio.core.eta import EtaClock, Work, finish_times, request_eta_s


def speeds(per_step: dict[str, float]):
    return lambda worker, work: per_step[worker] * work.steps


def test_running_image_finishes_after_its_steps_left() -> None:
    work = [Work(256, 256, 10, step=4, worker="gpu0", since_step_s=0.5)]
    assert finish_times(["gpu0"], work, speeds({"gpu0": 1.0})) == [5.5]
    measured = [Work(256, 256, 10, step=4, worker="gpu0", step_s=2.0)]
    assert finish_times(["gpu0"], measured, speeds({"gpu0": 1.0})) == [12.0]  # the live rate wins


def test_queue_ahead_delays_and_a_faster_card_takes_more() -> None:
    mine = [Work(256, 256, 10), Work(256, 256, 10)]
    alone = request_eta_s(["fast", "slow"], mine, speeds({"fast": 1.0, "slow": 3.0}))
    ahead = [Work(256, 256, 10, mine=False) for _ in range(3)]
    behind = request_eta_s(["fast", "slow"], ahead + mine, speeds({"fast": 1.0, "slow": 3.0}))
    assert alone == 20.0  # both on the fast card (10 + 10) beat one on the slow card (30)
    assert behind is not None and behind > alone
    assert request_eta_s([], mine, speeds({})) is None


def test_clock_only_counts_down_unless_told_of_a_setback() -> None:
    clock = EtaClock()
    assert clock.show(None) is None
    assert clock.show(10.0) == 10.0
    assert clock.show(14.0) == 10.0  # a slower stretch: held
    assert clock.show(7.0) == 7.0
    assert clock.show(None) == 7.0
    assert clock.show(30.0, setback=True) == 30.0  # an image requeued: shown


def test_eta_decreases_over_a_real_run(demo_model_master: Path) -> None:
    """The demo model on the CPU: the speed measured on a first image (as a worker's warm-up does),
    then the ETA of a 3-image request sampled at every step event: it only goes down and ends near
    zero only at the last step (a loaded machine makes steps uneven; the clock must hide that)."""
    from studio.engine.generate import Engine

    engine = Engine(demo_model_master, "cpu")
    args = dict(prompt="a red star on a white background", width=256, height=256, guidance=0.0)
    t0 = time.perf_counter()
    engine.generate(steps=12, seed=0, **args)
    per_step = (time.perf_counter() - t0) / 12  # a first image: slower than the rest, as a warm-up is

    clock, shown = EtaClock(), []
    count, steps = 3, 12
    rate: list[float | None] = [None]  # the worker's latest measured seconds per step at this size
    for n in range(count):
        first: list[tuple[int, float]] = []

        def on_step(i: int, total: int, n: int = n, first=first) -> None:
            now = time.perf_counter()
            if not first:
                first.append((i, now))
            if i > first[0][0]:
                rate[0] = (now - first[0][1]) / (i - first[0][0])
            work = [Work(256, 256, steps, step=i, worker="cpu", step_s=rate[0])]
            work += [Work(256, 256, steps) for _ in range(count - n - 1)]
            shown.append(clock.show(request_eta_s(["cpu"], work, lambda _w, w: per_step * w.steps)))

        engine.generate(steps=steps, seed=n + 1, on_step=on_step, **args)
    assert len(shown) == count * steps
    rises = [(k, round(a, 3), round(b, 3)) for k, (a, b) in enumerate(zip(shown, shown[1:])) if b > a]
    assert not rises, (rises, [round(v, 3) for v in shown])
    assert all(v > 0 for v in shown[:-1]), shown  # never "done" while steps remain
    assert shown[-1] == 0.0


def test_the_warm_up_seeds_speed_by_a_steady_step_not_its_one_time_costs() -> None:
    """The warm-up's whole time holds the first step's set-up and the previewer's build: priced by
    cost it made a bigger image look minutes long. A steady step scales with size, encode + decode
    with pixels; the first real image then counts as measured."""
    from studio.pool.speed import Size, SpeedModel, StepClock, job_cost

    warm, big = Size(256, 256, 2), Size(512, 512, 9)
    speed = SpeedModel()
    speed.seed_warmup(warm, seconds=6.0, step_s=0.5, tail_s=1.0)
    assert speed.estimate(warm) == 2.0  # two steps and the tail, not the 6 s
    per_step_big = 0.5 * (job_cost(big) / big.steps) / (job_cost(warm) / warm.steps)  # by tokens
    assert speed.estimate(big) == pytest.approx(9 * per_step_big + 4.0)  # 4x the pixels: 4x the tail
    assert speed.jobs_seen == 0 and speed.seconds_per_image() is None  # a seed is not a measured image
    speed.observe(big, 20.0)
    assert speed.jobs_seen == 1 and speed.estimate(big) == 20.0
    old = SpeedModel()
    old.seed_warmup(warm, seconds=6.0)  # a worker that timed no steady step: its whole time, as before
    assert old.estimate(warm) == 6.0

    synced: list[int] = []
    clock = StepClock(sync=lambda: synced.append(1))
    for i in range(3):
        time.sleep(0.3 if i == 1 else 0.05)  # the first step's gap from the second is the slow one here
        clock(i + 1, 3)
    steady = clock.steady_s()
    assert synced == [1, 1, 1] and steady is not None and 0.04 <= steady < 0.3
    assert StepClock().steady_s() is None


def test_the_first_eta_of_a_fresh_worker_is_near_the_real_time(home: Path) -> None:
    """A fresh CPU worker on the demo model, its first request at the demo's own size with 20 steps:
    the ETA given before any step is within 2x of how long the image really takes. Seeded from the
    warm-up's whole time (its first step's set-up, the previewer's build) it was 4-20x."""
    from studio.core.request import GenerationRequest
    from tests.pool_helpers import running_studio

    with running_studio("cpu:1") as (studio, _recorder):
        rid = studio.submit(GenerationRequest("a red star on a white background", width=256, height=256, steps=20,
                                              seed=1), origin="ui", interactive=True)
        t0 = time.monotonic()
        eta = studio.eta_s(rid)
        [result] = studio.wait(rid, timeout=300)
        real = time.monotonic() - t0
    assert result["status"] == "done"
    assert eta is not None and real / 2 <= eta <= real * 2, (round(eta, 2), round(real, 2))
