"""The pool recovers what a worker cannot finish, on real processes: a hung worker, an out-of-memory job,
a worker killed while its writer thread writes a PNG.

Test-only knobs: ZAOXIANG_TEST_WORKER_HANG makes the worker stop forever at the first step of its first
job (ZAOXIANG_STALL_S lowers the pool's patience from its 120 s floor to 4 s); ZAOXIANG_TEST_WORKER_OOM
makes the first job fail as out of memory; ZAOXIANG_TEST_WRITE_HOLD (a file) stops the first PNG write
between its temp file and the rename, and leaves the worker's pid beside the knob's file.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from studio.app import Studio
from studio.core import events as ev
from studio.core.atomic import PART_PREFIX
from studio.core.metadata import request_from_chunks
from studio.core.pngfile import read_chunks
from studio.core.request import GenerationRequest
from studio.pool.worker import HANG_ENV, OOM_ENV, WRITE_HOLD_ENV
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


def test_worker_killed_while_writing_a_png_redoes_it_once(tmp_path: Path, demo_model_master: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer thread holds image 0 at its temp file while the worker already makes image 1; a
    SIGKILL then loses both: each is made again, and no half file or second history row appears."""
    with one_worker_told(WRITE_HOLD_ENV, tmp_path, demo_model_master, monkeypatch) as (studio, rec, marker):
        victim = wait_idle(studio)[0]
        out = tmp_path / "out"
        rid = studio.submit(GenerationRequest(prompt="紫色星形 a purple star", width=256, height=256, steps=2,
                                              seed=31, count=3, seed_mode="increment"), out_dir=out)
        writing = Path(f"{marker}.writing")
        deadline = time.monotonic() + 240
        while not writing.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writing.exists(), studio.pool_status()
        time.sleep(0.2)  # the pid is written before the stall, but let the file's content land
        assert int(writing.read_text()) == victim["pid"]
        # the GPU thread did not wait for the disk: the next image started while the first was written
        second = rec.wait_for(lambda e: e["type"] == ev.JOB_STARTED and e["request_id"] == rid and e["index"] == 1, 120)
        stuck = rec.of(ev.JOB_STARTED, request_id=rid, index=0)[0]
        assert not rec.of(ev.JOB_DONE, request_id=rid)
        os.kill(victim["pid"], signal.SIGKILL)
        results = studio.wait(rid, timeout=300)
        assert [r["status"] for r in results] == ["done"] * 3, results
        # subscribers hear an event after the store has it: wait for the request's end to reach them too
        rec.wait_for(lambda e: e["type"] == ev.REQUEST_DONE and e["request_id"] == rid, 60)
        died = rec.of(ev.WORKER_DIED, worker=victim["name"])
        assert len(died) == 1 and {stuck["job_id"], second["job_id"]} <= set(died[0]["job_ids"]), died
        assert {e["job_id"] for e in rec.of(ev.JOB_REQUEUED, request_id=rid, reason="worker_died")} \
            >= {stuck["job_id"], second["job_id"]}
        done = rec.of(ev.JOB_DONE, request_id=rid)
        assert sorted(e["job_id"] for e in done) == sorted(r["job_id"] for r in results)  # each once
        pngs = sorted(p for p in out.rglob("*.png") if not p.name.startswith(PART_PREFIX))
        assert sorted(str(p) for p in pngs) == sorted(r["path"] for r in results)
        for png, result in zip(sorted(pngs), sorted(results, key=lambda r: r["path"]), strict=True):
            request, _record = request_from_chunks(read_chunks(png))  # whole: read_chunks loads every pixel
            assert request.seed == result["seed"]
        with sqlite3.connect(studio.store.path) as db:
            rows = db.execute("SELECT job_id, path FROM images WHERE request_id = ?", (rid,)).fetchall()
        assert sorted(rows) == sorted((r["job_id"], r["path"]) for r in results)  # one row per image
