"""The preview's CUDA path: the pixels come back by an async copy and are sent on a later step, and
they are the pixels the CPU path makes. Skips without CUDA (runs on a lent GPU machine)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

from studio.engine import preview as pv  # noqa: E402


def test_cuda_preview_arrives_on_a_later_step_and_matches_the_cpu() -> None:
    gen = torch.Generator().manual_seed(0)
    steps = [torch.randn(1, 16, 128, 128, generator=gen) for _ in range(4)]
    sigmas = [1.0, 0.75, 0.5, 0.25]
    out: dict[str, list[pv.PreviewImage]] = {"cpu": [], "cuda": []}
    for device in ("cpu", "cuda"):
        now = [0.0]
        prv = pv.Previewer(pv.FLUX_PROJECTION, on_preview=out[device].append, quality=100,
                           throttle=pv.Throttle(budget=1.0, min_interval_s=0.0, clock=lambda now=now: now[0]))
        prv.begin(steps[0].to(device))
        for i in (1, 2, 3):
            now[0] += 10.0
            prv.offer(i, 10, steps[i].to(device), sigmas[i], sigmas[i - 1])
            if device == "cuda":
                torch.cuda.synchronize()  # let the copy land before the next offer looks
        prv.end()
    assert [p.step for p in out["cpu"]] == [1, 2, 3]
    assert [p.step for p in out["cuda"]] == [1, 2]  # each sent on the next step; the last one dropped
    for a, b in zip(out["cpu"], out["cuda"]):
        pa = np.asarray(Image.open(io.BytesIO(a.jpeg)), dtype=float)
        pb = np.asarray(Image.open(io.BytesIO(b.jpeg)), dtype=float)
        assert pa.shape == pb.shape == (128, 128, 3)
        assert np.abs(pa - pb).mean() < 2.0
