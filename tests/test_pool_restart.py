"""Restart workers (the Settings tab's button) on real worker processes: the old pool keeps working until
the new one is ready, so a bad setting never leaves the studio unable to generate.

Steps are stretched (ZAOXIANG_TEST_WORKER_DELAY) so that a request is still running when each restart
is asked for. A worker list this machine cannot run is refused before anything starts; a model the new
workers cannot load is found out by starting them beside the old ones; a good change switches, and the
request in flight is finished once, part by the old worker and the rest by the new ones.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from studio.app import Studio
from studio.core import events as ev
from studio.core.errors import StudioError
from studio.core.request import GenerationRequest
from studio.pool.switch import PoolStartError
from studio.pool.worker import DELAY_ENV
from tests.homes import make_home
from tests.pool_helpers import Recorder, wait_idle


def req(count: int, seed: int) -> GenerationRequest:
    return GenerationRequest(prompt="绿色的三角形 a green triangle", width=256, height=256, steps=3, seed=seed,
                             seed_mode="increment", count=count)


def pids(studio: Studio) -> list[int]:
    return [w["pid"] for w in studio.pool_status()]


def assert_made_once(studio: Studio, rec: Recorder, rid: str, results: list[dict]) -> None:
    """Every image done, each by exactly one JOB_DONE, one history row and one PNG."""
    assert [r["status"] for r in results] == ["done"] * len(results), results
    # `wait` returns once the store has the request's end; delivery to subscribers follows
    rec.wait_for(lambda e: e["type"] == ev.REQUEST_DONE and e.get("request_id") == rid)
    done = [e["job_id"] for e in rec.of(ev.JOB_DONE, request_id=rid)]
    assert sorted(done) == sorted(r["job_id"] for r in results)
    assert not rec.of(ev.JOB_FAILED, request_id=rid) and not rec.of(ev.JOB_CANCELLED, request_id=rid)
    assert all(Path(r["path"]).is_file() for r in results)
    with sqlite3.connect(studio.store.path) as db:
        rows = db.execute("SELECT job_id, path FROM images WHERE request_id = ?", (rid,)).fetchall()
    assert sorted(rows) == sorted((r["job_id"], r["path"]) for r in results)


def test_restart_keeps_the_old_workers_until_the_new_ones_are_ready(tmp_path: Path, demo_model_master: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    make_home(tmp_path / "home", demo_model_master, monkeypatch)
    monkeypatch.setenv(DELAY_ENV, "0:0.4,1:0.4")
    studio = Studio(workers="cpu:1")
    rec = Recorder()
    studio.subscribe(rec)
    studio.start()
    out = tmp_path / "out"
    try:
        wait_idle(studio)
        old = pids(studio)

        # 1. a worker list this machine cannot run: refused, in one line, before any process starts
        first = studio.submit(req(3, 10), out_dir=out)
        studio.update_settings(workers="cuda:63")
        with pytest.raises(StudioError) as refused:
            studio.restart_pool()
        assert "cuda" in str(refused.value) and "\n" not in str(refused.value)
        assert pids(studio) == old

        # 2. a model the new workers cannot load: they start beside the old ones, fail, and go
        broken = tmp_path / "broken-model"
        shutil.copytree(demo_model_master, broken)
        (broken / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
        studio.update_settings(workers="cpu:1", model=str(broken))
        with pytest.raises(PoolStartError) as failed:
            studio.restart_pool()
        assert "could not start" in str(failed.value) and "\n" not in str(failed.value)
        assert pids(studio) == old and [w["state"] for w in studio.pool_status()] in (["busy"], ["idle"])
        assert_made_once(studio, rec, first, studio.wait(first, timeout=300))  # never stopped generating
        again = studio.submit(req(1, 20), out_dir=out)
        assert_made_once(studio, rec, again, studio.wait(again, timeout=300))

        # 3. a good change while a request runs (paused, so the old worker cannot finish it first): the
        # new pool takes over what the old had not made, and stays paused as the person left it
        studio.update_settings(model="", workers="cpu:2")
        running = studio.submit(req(6, 30), out_dir=out)
        rec.wait_for(lambda e: e["type"] == ev.JOB_DONE and e["request_id"] == running, 240)
        studio.pause()
        studio.restart_pool()
        rows = studio.pool_status()
        assert [w["name"] for w in rows] == ["cpu:0", "cpu:1"] and not set(pids(studio)) & set(old)
        assert studio.paused and studio.queue_length() >= 1
        studio.resume()
        results = studio.wait(running, timeout=300)
        assert_made_once(studio, rec, running, results)
        assert [r["seed"] for r in results] == list(range(30, 36))
        made_new = sum(w["images_done"] for w in studio.pool_status())
        assert 1 <= made_new <= 5  # the rest, by the new workers; the old one made the first
    finally:
        studio.close()
