"""Balancing by measured speed: one CPU worker made twice as slow per step (test-only knob), 24 images
(enough that one image more or less on a side is noise, not the verdict, on two shared cores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.app import Studio
from studio.core.request import GenerationRequest
from studio.pool.worker import DELAY_ENV
from tests.homes import make_home
from tests.pool_helpers import png_worker, wait_idle

COUNT = 24


@pytest.fixture
def slowed(tmp_path: Path, demo_model_master: Path, monkeypatch: pytest.MonkeyPatch):
    make_home(tmp_path / "home", demo_model_master, monkeypatch)
    monkeypatch.setenv(DELAY_ENV, "1:x2")  # every step of worker 1 takes twice as long
    studio = Studio(workers="cpu:2")
    try:
        studio.start()
        wait_idle(studio)
        yield studio
    finally:
        studio.close()


def test_faster_worker_takes_proportionally_more(slowed: Studio, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rid = slowed.submit(GenerationRequest(prompt="蓝色的海 blue sea", width=256, height=256, steps=8, seed=1,
                                          seed_mode="increment", count=COUNT), out_dir=out)
    results = slowed.wait(rid, timeout=600)
    assert [r["status"] for r in results] == ["done"] * COUNT
    made = [png_worker(r["path"]) for r in results]
    fast, slow = made.count("cpu:0"), made.count("cpu:1")
    stats = slowed.request_stats(rid)
    assert slow > 0, stats  # a slower card still gets work
    # measured speed ratio on this very request (the slowdown multiplies only the steps, so it is < 2)
    ratio = (stats["busy_s"]["cpu:1"] / slow) / (stats["busy_s"]["cpu:0"] / fast)
    assert ratio > 1.3, stats
    assert fast > slow
    assert abs(fast - COUNT * ratio / (1 + ratio)) <= COUNT / 8, (fast, slow, ratio, stats)  # proportional split
    assert stats["balance_efficiency"] >= 0.9, stats
