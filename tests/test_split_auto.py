""""One image on several GPUs" at its default, auto (issue 16), on two CPU workers with gloo (a test knob
lets auto group CPU workers, which it never does for a person): the group joins, compiles its split
and times both ways before the workers say ready, so the first image asked for after ready is made
as fast as a steady one."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from studio.core import events as ev
from studio.core.metadata import request_from_chunks
from studio.core.pngfile import read_chunks
from studio.core.request import GenerationRequest
from studio.pool.group import CPU_AUTO_ENV
from tests.homes import make_home
from tests.pool_helpers import running_studio

pytestmark = pytest.mark.timeout(600)
STEPS = 6


@pytest.fixture(scope="module")
def auto_studio(tmp_path_factory: pytest.TempPathFactory, demo_model_master: Path):
    with pytest.MonkeyPatch.context() as mp:
        make_home(tmp_path_factory.mktemp("split-auto-home"), demo_model_master, mp)
        mp.setenv(CPU_AUTO_ENV, "1")
        mp.setenv("ZAOXIANG_SPLIT_IMAGE", "auto")
        with running_studio("cpu:2") as pair:
            yield pair


def made_by_group(path: str) -> bool:
    return "group" in request_from_chunks(read_chunks(path))[1]


def test_ready_comes_after_the_group_warmed(auto_studio) -> None:
    studio, rec = auto_studio
    assert studio.settings.split_image == "auto"
    status = studio._pool.split_status()
    assert status["mode"] == "auto" and status["group"] == [0, 1] and status["warmed"] == [1], status
    assert list(status["step_ratio"]) == ["256x256@2"], status  # the warm-up's size, timed both ways
    assert not status["broken_groups"] and not status["held"], status
    for name in ("cpu:0", "cpu:1"):
        seen = [(e["type"], e.get("stage"), e.get("pct")) for e in rec.events if e.get("worker") == name
                and e["type"] in (ev.WORKER_WARMING, ev.WORKER_READY)]
        ready = [i for i, (kind, _stage, _pct) in enumerate(seen) if kind == ev.WORKER_READY]
        assert len(ready) == 1, seen
        group = [pct for kind, stage, pct in seen if stage == "group"]
        # the group's stages (waiting for the other member, joined, compiled, timed alone) all before ready
        assert group[-1] == 85.0 and len(group) >= 4, seen
        assert all(stage != "group" for _kind, stage, _pct in seen[ready[0]:]), seen


def test_first_image_after_ready_is_as_fast_as_a_steady_one(auto_studio, tmp_path: Path) -> None:
    studio, rec = auto_studio

    def timed(seed: int) -> tuple[float, dict]:
        req = GenerationRequest(prompt="一个蓝色的方块 a blue square", width=256, height=256, steps=STEPS, seed=seed,
                                seed_mode="fixed")
        t0 = time.perf_counter()
        [made] = studio.wait(studio.submit(req, out_dir=tmp_path), timeout=300)
        assert made["status"] == "done", made
        return time.perf_counter() - t0, made

    first_s, first = timed(1)
    split = made_by_group(first["path"])
    # the steady images go the way auto chose for the first (its choice may change as it measures)
    studio._pool.set_split("always" if split else "never")
    steady = []
    for seed in (2, 3, 4):
        took, made = timed(seed)
        assert made_by_group(made["path"]) == split
        steady.append(took)
    studio._pool.set_split("auto")
    median = statistics.median(steady)
    status = studio._pool.split_status()
    # issue 15's 1.1x (the GPU bench's figure), plus a margin for a machine whose other tests load its
    # two cores (one image in three may take twice as long). The margin stays under what the group's
    # warm-up would add inside the first image, or the first image waiting for it: joining and compiling
    # alone are over a third of the warm-up, whose time this run measured (an image that waited for it
    # took 5.3 s against 0.84 s)
    slack = max(0.25, 0.5 * median)
    assert status["warm_s"]["1"] / 3 > 0.1 * median + slack, status
    assert first_s <= 1.1 * median + slack, (first_s, steady, split, status)
