"""The worker pool with real processes on the demo model: two CPU workers share one studio.

Each step is stretched by 0.25 s (the test-only ZAOXIANG_TEST_WORKER_DELAY knob) so that a cancel or a
kill lands mid-image. The worker-kill test runs last: it changes the pool.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core import events as ev
from studio.core.request import GenerationRequest
from studio.pool.worker import DELAY_ENV
from tests.homes import make_home
from tests.pool_helpers import png_worker, running_studio, wait_idle

STEP_DELAY = 0.25


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory, demo_model_master: Path):
    with pytest.MonkeyPatch.context() as mp:
        make_home(tmp_path_factory.mktemp("pool-home"), demo_model_master, mp)
        mp.setenv(DELAY_ENV, f"0:{STEP_DELAY},1:{STEP_DELAY}")
        with running_studio("cpu:2") as both:
            yield both


def req(count: int, steps: int = 2, seed: int = 100, mode: str = "increment") -> GenerationRequest:
    return GenerationRequest(prompt="一只红色的星星 a red star", width=256, height=256, steps=steps, seed=seed,
                             seed_mode=mode, count=count)


def test_eight_images_on_two_workers_both_work(pool, tmp_path: Path) -> None:
    studio, _rec = pool
    rid = studio.submit(req(8), out_dir=tmp_path)
    results = studio.wait(rid, timeout=300)
    assert [r["status"] for r in results] == ["done"] * 8
    assert [r["seed"] for r in results] == list(range(100, 108))
    files = sorted(tmp_path.rglob("*.png"))
    assert len(files) == 8 and {Path(r["path"]) for r in results} == set(files)
    makers = {Path(r["path"]): r["worker"] for r in results}
    assert {png_worker(f) for f in files} == {"cpu:0", "cpu:1"}
    assert all(png_worker(f) == makers[f] for f in files)
    stats = studio.request_stats(rid)
    assert stats["done"] == 8 and sum(stats["images"].values()) == 8 and stats["makespan_s"] > 0


def test_fixed_seed_same_pixels_whichever_worker(pool, tmp_path: Path) -> None:
    studio, _rec = pool
    results = studio.wait(studio.submit(req(4, seed=4242, mode="fixed"), out_dir=tmp_path), timeout=300)
    assert [r["status"] for r in results] == ["done"] * 4
    assert {png_worker(r["path"]) for r in results} == {"cpu:0", "cpu:1"}
    pixels = [np.asarray(Image.open(r["path"])) for r in results]
    assert all(np.array_equal(pixels[0], p) for p in pixels[1:])
    assert pixels[0].std() > 0  # a real picture, not a flat square


def test_cancel_stops_within_one_step_and_leaves_nothing(pool, tmp_path: Path) -> None:
    studio, rec = pool
    rid = studio.submit(req(4, steps=20), out_dir=tmp_path)
    rec.wait_for(lambda e: e["type"] == ev.STEP and e["request_id"] == rid and e["step"] >= 3)
    running = {e["job_id"] for e in rec.of(ev.JOB_STARTED, request_id=rid)}
    t_cancel = time.time()
    assert studio.cancel(rid)
    results = studio.wait(rid, timeout=60)
    rec.wait_for(lambda e: e["type"] == ev.REQUEST_DONE and e["request_id"] == rid)  # events trail `wait`
    assert [r["status"] for r in results] == ["cancelled"] * 4
    for job_id in running:
        after = [e for e in rec.of(ev.STEP, job_id=job_id) if e["time"] > t_cancel]
        assert len(after) <= 1, f"{len(after)} steps after the cancel"
        stopped = rec.of(ev.JOB_CANCELLED, job_id=job_id)[0]["time"]
        assert stopped - t_cancel < 2 * STEP_DELAY + 2.0  # one step plus slack for a loaded machine
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no image, no .part-* temp file
    assert studio.queue_length() == 0
    assert all(r["state"] == "idle" for r in wait_idle(studio, 30))


def test_previews_and_an_eta_that_counts_down(pool) -> None:
    """Previews of each image arrive between its start and its PNG; the pool's ETA is known at
    submit (measured speeds), comes near the real time, and falls to zero as the images finish."""
    import base64
    import io

    from studio.core.eta import EtaClock

    studio, recorder = pool
    t0 = time.monotonic()
    rid = studio.submit(req(3, steps=8, seed=300))
    raw = [studio.eta_s(rid)]
    while not recorder.of(ev.REQUEST_DONE, request_id=rid):
        time.sleep(0.1)
        raw.append(studio.eta_s(rid))
    took = time.monotonic() - t0
    assert raw[0] is not None and took / 3 <= raw[0] <= took * 3, (raw[0], took)
    assert raw[-1] == 0.0 and max(raw[len(raw) // 2:]) < raw[0]
    clock = EtaClock()
    shown = [clock.show(v) for v in raw]
    assert all(b <= a for a, b in zip(shown, shown[1:]))
    events = [e for e in recorder.events if e.get("request_id") == rid]
    for job_id in {e["job_id"] for e in events if e["type"] == ev.JOB_DONE}:
        kinds = [e["type"] for e in events if e.get("job_id") == job_id]
        previews = [e for e in events if e.get("job_id") == job_id and e["type"] == ev.PREVIEW]
        assert previews, kinds  # 0.25 s steps: the throttle allows one every step or two
        assert kinds.index(ev.JOB_STARTED) < kinds.index(ev.PREVIEW) and max(
            i for i, k in enumerate(kinds) if k == ev.PREVIEW) < kinds.index(ev.JOB_DONE)
        assert all(0 < p["step"] < p["steps"] == 8 for p in previews)
        image = Image.open(io.BytesIO(base64.b64decode(previews[-1]["image"].split(",", 1)[1])))
        assert image.format == "JPEG" and image.size == (previews[-1]["width"], previews[-1]["height"]) == (32, 32)


def test_worker_sigkill_mid_request_every_image_once(pool, tmp_path: Path) -> None:
    studio, rec = pool
    victim = next(r for r in studio.pool_status() if r["name"] == "cpu:1")
    rid = studio.submit(req(8, steps=4, seed=500), out_dir=tmp_path)
    step = rec.wait_for(lambda e: e["type"] == ev.STEP and e["request_id"] == rid and e["worker"] == "cpu:1")
    os.kill(victim["pid"], signal.SIGKILL)
    results = studio.wait(rid, timeout=300)
    rec.wait_for(lambda e: e["type"] == ev.REQUEST_DONE and e["request_id"] == rid)
    assert [r["status"] for r in results] == ["done"] * 8
    assert sorted(r["seed"] for r in results) == list(range(500, 508))
    assert len(list(tmp_path.rglob("*.png"))) == 8
    done = rec.of(ev.JOB_DONE, request_id=rid)
    assert sorted(e["job_id"] for e in done) == sorted(r["job_id"] for r in results)  # each exactly once
    died = rec.of(ev.WORKER_DIED, worker="cpu:1")
    assert died and died[-1]["exitcode"] == -signal.SIGKILL and step["job_id"] in died[-1]["job_ids"]
    assert rec.of(ev.JOB_REQUEUED, job_id=step["job_id"], reason="worker_died")
    rec.wait_for(lambda e: e["type"] == ev.WORKER_RESTARTED and e["worker"] == "cpu:1", timeout=240)
    back = next(r for r in wait_idle(studio) if r["name"] == "cpu:1")
    assert back["restarts"] == 1 and back["pid"] != victim["pid"]
