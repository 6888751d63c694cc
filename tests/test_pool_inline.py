"""The in-process executor: the pool's interface with worker threads, on the real demo model.

Two thread workers share one request: every image is made once, written with its metadata, and
the events and results read as they do from the process pool. A cancel stops a running image.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from studio.app import make_jobs
from studio.core import events as ev
from studio.core.request import GenerationRequest
from studio.pool.inline import InlinePool
from studio.pool.spec import parse_workers
from studio.pool.worker import DELAY_ENV
from tests.pool_helpers import Recorder, png_worker


def test_thread_workers_make_every_image_once(demo_model_master: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(DELAY_ENV, "0:0.05,1:0.05")  # both have work before the first is free again
    rec = Recorder()
    pool = InlinePool(parse_workers("cpu:2"), model_path=str(demo_model_master), model_name="demo",
                      on_event=rec)
    pool.start()
    try:
        request = GenerationRequest(prompt="一只红色的星星 a red star", width=256, height=256, steps=2, seed=7,
                                    seed_mode="increment", count=4)
        jobs = make_jobs(request, "r1", tmp_path / "out")
        pool.submit("r1", jobs)
        results = pool.wait("r1", timeout=300)
        assert [r["status"] for r in results] == ["done"] * 4, [r.get("error") for r in results]
        assert [r["seed"] for r in results] == [7, 8, 9, 10]
        assert sorted(r["path"] for r in results) == sorted(j.output_path for j in jobs)
        assert {png_worker(r["path"]) for r in results} <= {"cpu:0", "cpu:1"}
        assert len(rec.of(ev.JOB_DONE, request_id="r1")) == 4
        assert len(rec.of(ev.WORKER_READY)) == 2
        rows = pool.status()
        assert [r["state"] for r in rows] == ["idle", "idle"] and sum(r["images_done"] for r in rows) == 4
        assert pool.request_stats("r1")["done"] == 4

        slow = make_jobs(replace(request, steps=40, count=1), "r2", tmp_path / "out")
        pool.submit("r2", slow)
        rec.wait_for(lambda e: e["type"] == ev.STEP and e["request_id"] == "r2", 120)
        assert pool.cancel("r2")
        assert [r["status"] for r in pool.wait("r2", timeout=120)] == ["cancelled"]
        assert not Path(slow[0].output_path).exists()
    finally:
        pool.close()
    assert not any(t.name.startswith("zaoxiang-worker") for t in threading.enumerate())
