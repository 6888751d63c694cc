"""Image-input jobs through a real worker process (issue 20): live previews like text-to-image's, and
a worker's refusal of an input said in the window's language.

One CPU worker on the demo model, its steps stretched by 0.25 s (the test-only delay knob) so the
previewer's time budget allows a preview every step or two, as in tests/test_pool.py.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core import events as ev
from studio.core.image_inputs import InputStore
from studio.core.request import GenerationRequest
from studio.core.spec import HiresRef
from studio.pool.worker import DELAY_ENV
from tests.homes import make_home
from tests.pool_helpers import running_studio

SIZE = 256  # the smallest size a request may ask for


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, demo_model_master: Path):
    with pytest.MonkeyPatch.context() as mp:
        make_home(tmp_path_factory.mktemp("images-in-worker"), demo_model_master, mp)
        mp.setenv(DELAY_ENV, "0:0.25")
        with running_studio("cpu:1") as started:
            yield started


def halves() -> Image.Image:
    """Red left, blue right: a picture whose mirror image is far from it."""
    image = Image.new("RGB", (SIZE, SIZE), (30, 40, 220))
    image.paste((220, 40, 30), (0, 0, SIZE // 2, SIZE))
    return image


def test_img2img_job_sends_previews_of_the_image_it_makes(worker) -> None:
    studio, recorder = worker
    init = InputStore().put_image(halves()).sha256
    rid = studio.submit(GenerationRequest(prompt="a red circle on a blue background", width=SIZE, height=SIZE,
                                          steps=8, seed=5, init_image=init, strength=0.75))
    (result,) = studio.wait(rid, timeout=300)
    assert result["status"] == "done", result
    recorder.wait_for(lambda e: e["type"] == ev.REQUEST_DONE and e["request_id"] == rid)
    job = result["job_id"]
    kinds = [e["type"] for e in recorder.events if e.get("job_id") == job]
    previews = [e for e in recorder.events if e.get("job_id") == job and e["type"] == ev.PREVIEW]
    assert previews, kinds
    assert kinds.index(ev.JOB_STARTED) < kinds.index(ev.PREVIEW)
    assert max(i for i, k in enumerate(kinds) if k == ev.PREVIEW) < kinds.index(ev.JOB_DONE)
    assert all(0 < p["step"] < p["steps"] == 6 for p in previews)  # 0.75 of 8 steps: the schedule's last 6
    last = Image.open(io.BytesIO(base64.b64decode(previews[-1]["image"].split(",", 1)[1])))
    assert last.format == "JPEG" and last.size == (previews[-1]["width"], previews[-1]["height"]) == (32, 32)
    final = np.asarray(Image.open(result["path"]).convert("RGB").resize(last.size, Image.Resampling.BOX), float)
    shown = np.asarray(last.convert("RGB"), float)
    near, mirrored = np.abs(shown - final).mean(), np.abs(shown - final[:, ::-1]).mean()
    print(f"last preview (step {previews[-1]['step']}): mean |Δ| {near:.1f} to the image, {mirrored:.1f} to its mirror")
    assert near < mirrored  # the preview shows this picture's layout, not just its colours


@pytest.mark.skipif(importlib.util.find_spec("spandrel") is not None, reason="needs spandrel absent, as setup.sh has it")
def test_an_images_in_error_in_the_worker_reaches_a_chinese_window_in_chinese(worker) -> None:
    """The submit-time checks pass an upscaler model by name; only the worker finds it cannot load one.
    Its ImagesInError travels as a strings key: the job's failure carries it, English stays the API's
    and the CLI's text, and the window renders the same reason in zh (not the generic 生成失败)."""
    from studio.ui.progress import RequestView, render_progress

    studio, recorder = worker
    rid = studio.submit(GenerationRequest(prompt="a red circle", width=SIZE, height=SIZE, steps=2, seed=3,
                                          hires=HiresRef(scale=1.5, strength=0.3, upscaler="4x-upscaler.pth")))
    (result,) = studio.wait(rid, timeout=300)
    assert result["status"] == "failed", result
    assert result["error_kind"] == "error"
    assert result["error_key"] == "input.upscaler_spandrel" and result["error_args"] == {"name": "4x-upscaler.pth"}
    assert result["error"].startswith("The upscaler 4x-upscaler.pth needs the spandrel package"), result
    recorder.wait_for(lambda e: e["type"] == ev.REQUEST_DONE and e["request_id"] == rid)
    view = RequestView(rid, 1)
    for event in recorder.events:
        view.apply(event)
    english = re.sub(r"<[^>]+>", " ", render_progress(view, "en"))
    chinese = re.sub(r"<[^>]+>", " ", render_progress(view, "zh"))
    assert result["error"] in english
    assert "spandrel" in chinese and "放大模型 4x-upscaler.pth" in chinese and "详见日志" not in chinese, chinese
    assert not re.search(r"[A-Za-z]{4,}", chinese.replace("spandrel", "").replace("upscaler", "")
                         .replace("Lanczos", "").replace("cpu", "")), chinese
