"""A job that fails in the worker is reported with its reason, and the pool keeps serving afterwards."""

from __future__ import annotations

from pathlib import Path

from studio.app import Studio
from studio.core import events as ev
from studio.core.request import GenerationRequest
from tests.pool_helpers import Recorder


def test_failed_job_reported_and_pool_still_works(home: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    studio = Studio(workers="cpu:1")
    recorder = Recorder()
    studio.subscribe(recorder)
    try:
        req = GenerationRequest(prompt="红色圆形", width=256, height=256, steps=2, seed=5, seed_mode="fixed")
        bad = studio.submit(req, out_dir=blocker)
        results = studio.wait(bad, timeout=240)
        assert len(results) == 1 and results[0]["status"] == "failed"
        assert results[0]["error"]  # the reason travels back as text
        failed = recorder.wait_for(lambda e: e["type"] == ev.JOB_FAILED and e["request_id"] == bad, 30)
        assert failed["kind"] and failed["message"]
        good = studio.submit(req)
        ok = studio.wait(good, timeout=240)
        assert ok[0]["status"] == "done" and Path(ok[0]["path"]).is_file()
    finally:
        studio.close()
