"""Image-input jobs through a real worker process (issue 20): live previews like text-to-image's.

One CPU worker on the demo model, its steps stretched by 0.25 s (the test-only delay knob) so the
previewer's time budget allows a preview every step or two, as in tests/test_pool.py.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core import events as ev
from studio.core.image_inputs import InputStore
from studio.core.request import GenerationRequest
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
