"""The pool recovers what a worker cannot finish, on real processes: a hung worker, an out-of-memory job.

Test-only knobs: ZAOXIANG_TEST_WORKER_HANG makes the worker stop forever at the first step of its first
job (ZAOXIANG_STALL_S lowers the pool's patience from its 120 s floor to 4 s); ZAOXIANG_TEST_WORKER_OOM
makes the first job fail as out of memory.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from studio.app import Studio
from studio.core import events as ev
from studio.core.request import GenerationRequest
from studio.pool.worker import HANG_ENV, OOM_ENV
from tests.homes import make_home
from tests.pool_helpers import Recorder, wait_idle


@contextmanager
def one_worker_told(knob: str, tmp_path: Path, demo_model_master: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Studio, Recorder, Path]]:
    """A studio with one CPU worker and the test knob `knob` armed (its marker file), started and idle."""
    make_home(tmp_path / "home", demo_model_master, monkeypatch)
    marker = tmp_path / "knob-once"
    marker.write_text("")
    monkeypatch.setenv(knob, str(marker))
    studio = Studio(workers="cpu:1")
    rec = Recorder()
    studio.subscribe(rec)
    studio.start()
    try:
        yield studio, rec, marker
    finally:
        studio.close()


def test_hung_worker_is_killed_and_its_image_made_again(tmp_path: Path, demo_model_master: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZAOXIANG_STALL_S", "4")
    with one_worker_told(HANG_ENV, tmp_path, demo_model_master, monkeypatch) as (studio, rec, marker):
        victim = wait_idle(studio)[0]
        out = tmp_path / "out"
        rid = studio.submit(GenerationRequest(prompt="蓝色的圆环 a blue ring", width=256, height=256, steps=3,
                                              seed=9), out_dir=out)
        results = studio.wait(rid, timeout=300)
        assert [r["status"] for r in results] == ["done"], results
        assert not marker.exists()  # the worker did hang, once
        died = rec.of(ev.WORKER_DIED, worker=victim["name"])
        assert len(died) == 1 and died[0]["exitcode"] == -signal.SIGKILL, died
        assert re.search(r"hung \(no progress for \d+ s\); restarting", died[0]["message"]), died[0]["message"]
        assert rec.of(ev.JOB_REQUEUED, request_id=rid, reason="worker_died")
        assert len(list(out.rglob("*.png"))) == 1
        back = wait_idle(studio)[0]
        assert back["pid"] != victim["pid"] and back["restarts"] == 1


def test_out_of_memory_job_is_retried_once_one_profile_lower(tmp_path: Path, demo_model_master: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with one_worker_told(OOM_ENV, tmp_path, demo_model_master, monkeypatch) as (studio, rec, marker):
        worker = wait_idle(studio)[0]
        ran = worker["memory_profile"]
        assert ran == "full"  # what the engine resolved on a CPU, not "auto"
        rid = studio.submit(GenerationRequest(prompt="a green square 绿色方块", width=256, height=256, steps=2,
                                              seed=4), out_dir=tmp_path / "out")
        results = studio.wait(rid, timeout=300)
        assert [r["status"] for r in results] == ["done"], results
        assert not marker.exists()
        again = rec.of(ev.JOB_REQUEUED, request_id=rid, reason="out_of_memory")
        assert len(again) == 1 and again[0]["memory_profile"] == "24gb"  # one below what ran
        assert not rec.of(ev.JOB_FAILED, request_id=rid) and not rec.of(ev.WORKER_DIED)
        assert len(list((tmp_path / "out").rglob("*.png"))) == 1
