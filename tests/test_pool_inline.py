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


def inline_pool(model: Path, workers: str, rec: Recorder) -> InlinePool:
    return InlinePool(parse_workers(workers), model_path=str(model), model_name="demo", on_event=rec)


def four_images(prompt: str, seed: int, steps: int) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, width=256, height=256, steps=steps, seed=seed, seed_mode="increment",
                             count=4)


def test_thread_workers_make_every_image_once(demo_model_master: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(DELAY_ENV, "0:0.05,1:0.05")  # both have work before the first is free again
    rec = Recorder()
    pool = inline_pool(demo_model_master, "cpu:2", rec)
    pool.start()
    try:
        request = four_images("一只红色的星星 a red star", 7, steps=2)
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


def test_hand_over_moves_unfinished_requests_to_a_new_pool(demo_model_master: Path, tmp_path: Path,
                                                           monkeypatch) -> None:
    """A restart's core: the old pool lets its running image finish, hands the rest of the request
    (done results included) to the new pool, and says nothing more about it; each image is made once."""
    monkeypatch.setenv(DELAY_ENV, "0:0.2")
    old_events, new_events = Recorder(), Recorder()
    old, new = inline_pool(demo_model_master, "cpu:1", old_events), inline_pool(demo_model_master, "cpu:1", new_events)
    old.start()
    try:
        request = four_images("蓝色的圆环 a blue ring", 40, steps=3)
        jobs = make_jobs(request, "r", tmp_path / "out")
        old.submit("r", jobs)
        old_events.wait_for(lambda e: e["type"] == ev.JOB_DONE, 180)  # one done before the switch
        new.start()
        new_events.wait_for(lambda e: e["type"] == ev.WORKER_READY, 180)
        old.hand_over(new)
        seen_old = len(old_events.events)
        old.close()
        assert not any(e.get("request_id") == "r" for e in old_events.events[seen_old:])  # nothing after
        assert not old_events.of(ev.QUEUE_PAUSED)  # a hand-over is no pause a person should see
        results = new.wait("r", timeout=300)
        assert old.results("r") == results  # a waiter that held the old pool still gets its answer
        assert [r["status"] for r in results] == ["done"] * 4, results
        assert [r["seed"] for r in results] == [40, 41, 42, 43] and {r["worker"] for r in results} == {"cpu:0"}
        assert new.request_stats("r")["done"] == 4
        done = [e["job_id"] for e in old_events.of(ev.JOB_DONE) + new_events.of(ev.JOB_DONE)]
        assert sorted(done) == sorted(j.job_id for j in jobs)  # each image once, by one pool or the other
        assert old_events.of(ev.JOB_DONE) and new_events.of(ev.JOB_DONE)
        assert len(new_events.of(ev.REQUEST_DONE, request_id="r")) == 1
        assert not old_events.of(ev.JOB_CANCELLED) and not new_events.of(ev.JOB_CANCELLED)
    finally:
        old.close()
        new.close()
