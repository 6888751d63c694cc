"""One image over several workers (issue 16) on CPU workers with gloo: the same picture as one worker,
the record names the group, a request of several images is never split, and a member killed during
a split image costs nothing: the image arrives once, made by one worker."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core import events as ev
from studio.core.metadata import request_from_chunks
from studio.core.pngfile import read_chunks
from studio.core.request import GenerationRequest
from tests.pool_helpers import running_studio, wait_idle

pytestmark = pytest.mark.timeout(600)


def psnr(a: Path, b: Path) -> float:
    x = np.asarray(Image.open(a).convert("RGB"), dtype=np.float64)
    y = np.asarray(Image.open(b).convert("RGB"), dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def record(path: str | Path) -> dict:
    return request_from_chunks(read_chunks(path))[1]


@pytest.fixture
def split_studio(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZAOXIANG_SPLIT_IMAGE", "always")
    with running_studio("cpu:2") as pair:
        yield pair


def test_split_image_matches_one_worker(split_studio, tmp_path: Path) -> None:
    """The pair shares the denoise and (by default) the VAE decode (studio/engine/split_decode.py)."""
    studio, rec = split_studio
    req = GenerationRequest(prompt="红色圆形 on blue", width=256, height=256, steps=4, seed=11, seed_mode="fixed")
    rid = studio.submit(req, out_dir=tmp_path / "split")
    [split] = studio.wait(rid, timeout=300)
    assert split["status"] == "done", split
    made = record(split["path"])
    assert made["group"]["workers"] == ["cpu:0", "cpu:1"], made
    assert made["worker"] == "cpu:0"
    # the next single image, asked for as soon as this one is done, is split too (the group is reused)
    [next_] = studio.wait(studio.submit(replace(req, seed=12), out_dir=tmp_path / "split"), timeout=300)
    assert record(next_["path"])["group"]["workers"] == ["cpu:0", "cpu:1"]
    # the same seed twice in one request: throughput mode, each image on one worker
    both = studio.wait(studio.submit(replace(req, count=2), out_dir=tmp_path / "one"), timeout=300)
    assert [r["status"] for r in both] == ["done", "done"], both
    for r in both:
        assert "group" not in record(r["path"])
    assert psnr(Path(split["path"]), Path(both[0]["path"])) >= 40.0
    assert len(rec.of(ev.JOB_DONE, request_id=rid)) == 1


def test_member_killed_during_split_image(split_studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    studio, rec = split_studio
    rows = {r["name"]: r for r in studio.pool_status()}
    helper = rows["cpu:1"]
    req = GenerationRequest(prompt="a green triangle", width=256, height=256, steps=40, seed=3, seed_mode="fixed")
    out = tmp_path / "kill"
    rid = studio.submit(req, out_dir=out)
    rec.wait_for(lambda e: e["type"] == ev.STEP and e["request_id"] == rid and e["step"] >= 2, 240)
    os.kill(helper["pid"], signal.SIGKILL)
    [result] = studio.wait(rid, timeout=400)
    assert result["status"] == "done", result
    rec.wait_for(lambda e: e["type"] == ev.REQUEST_DONE and e["request_id"] == rid, 60)
    assert len(rec.of(ev.JOB_DONE, request_id=rid)) == 1
    assert [e["reason"] for e in rec.of(ev.JOB_REQUEUED, request_id=rid)] in (["worker_died"], ["split_failed"])
    assert "group" not in record(result["path"])  # made again by one worker
    pngs = [p for p in out.rglob("*.png")]
    assert [str(p) for p in pngs] == [result["path"]]
    with sqlite3.connect(studio.store.path) as db:
        rows_db = db.execute("SELECT job_id, path FROM images WHERE request_id = ?", (rid,)).fetchall()
    assert rows_db == [(result["job_id"], result["path"])]  # one row
    # the group is formed again: once both workers are back, the next single image is split once more
    wait_idle(studio)
    again = studio.wait(studio.submit(replace(req, steps=3), out_dir=out), timeout=400)
    assert again[0]["status"] == "done" and record(again[0]["path"])["group"]["workers"] == ["cpu:0", "cpu:1"]


def test_a_group_that_cannot_form_costs_no_worker(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What GPU call 2 hit (every join failed): the image is made by one worker, nobody is killed, the
    reason is kept, and after three broken groups the pool stops trying."""
    import socket

    from studio.pool import group

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))  # bound, not listening: rank 0 cannot host the rendezvous, rank 1 is refused
    monkeypatch.setattr(group, "free_port", lambda: taken.getsockname()[1])
    monkeypatch.setenv("ZAOXIANG_SPLIT_RENDEZVOUS_S", "3")
    monkeypatch.setenv("ZAOXIANG_SPLIT_IMAGE", "always")
    try:
        with running_studio("cpu:2") as (studio, rec):
            req = GenerationRequest(prompt="a blue square", width=256, height=256, steps=3, seed=4, seed_mode="fixed")
            [made] = studio.wait(studio.submit(req, out_dir=tmp_path), timeout=300)
            assert made["status"] == "done" and "group" not in record(made["path"])
            deadline = time.monotonic() + 120  # idle, the pool tries to warm a group again, then gives up
            while studio._pool.split_status()["mode"] != "never" and time.monotonic() < deadline:
                time.sleep(0.5)
            status = studio._pool.split_status()
            assert status["mode"] == "never" and len(status["broken_groups"]) == 3, status
            assert status["log"] and all("EADDRINUSE" in line or "failed" in line for line in status["log"]), status
            time.sleep(4)  # the last member's rendezvous ends: it reports, it is not killed
            assert not rec.of(ev.WORKER_DIED)
            assert [r["restarts"] for r in studio.pool_status()] == [0, 0]
    finally:
        taken.close()
