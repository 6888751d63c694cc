"""The engine on the demo model, through the real loader: determinism, seeds, cancel, NaN refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from studio.engine.generate import Cancelled, Engine, NonFiniteOutput
from studio.models.discovery import inspect_folder

ARGS = dict(prompt="a red circle on a blue background 蓝色背景上的红色圆形", width=256, height=256, steps=4,
            guidance=0.0)


@pytest.fixture(scope="module")
def engine(demo_engine) -> Engine:
    return demo_engine  # the session's (tests/conftest.py): no test here changes it


def test_demo_model_is_a_complete_diffusers_folder(demo_model_master: Path) -> None:
    info = inspect_folder(demo_model_master, "demo")
    assert info is not None and info.complete and info.size_bytes > 100_000
    for part in ("transformer", "text_encoder", "vae", "tokenizer", "scheduler"):
        assert (demo_model_master / part).is_dir()


def test_loaded_through_real_pipeline_class(engine: Engine) -> None:
    from diffusers import ZImagePipeline

    assert isinstance(engine.pipe, ZImagePipeline)
    assert engine.dtype == torch.float32  # CPU: float32, never fp16


def test_same_seed_same_pixels_and_seeds_differ(engine: Engine) -> None:
    a, _ = engine.generate(seed=42, **ARGS)
    engine._embeds.clear()
    b, _ = engine.generate(seed=42, **ARGS)
    c, _ = engine.generate(seed=43, **ARGS)
    assert a.size == (256, 256)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_steps_reported_and_cancel_between_steps(engine: Engine) -> None:
    seen: list[tuple[int, int]] = []
    engine.generate(seed=1, on_step=lambda i, n: seen.append((i, n)), **ARGS)
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    steps: list[int] = []
    with pytest.raises(Cancelled):
        engine.generate(seed=1, on_step=lambda i, n: steps.append(i), should_cancel=lambda: len(steps) >= 2,
                        **ARGS)
    assert steps == [1, 2]


def test_non_finite_output_refused(demo_model_master: Path) -> None:
    eng = Engine(demo_model_master, "cpu")
    with torch.no_grad():
        for p in eng.pipe.transformer.parameters():
            p.fill_(float("nan"))
    with pytest.raises(NonFiniteOutput, match="no image was saved"):
        eng.generate(seed=1, **ARGS)


def test_chinese_and_english_prompts_encode_differently(engine: Engine) -> None:
    zh = engine.encode("红色圆形")[0]
    en = engine.encode("red circle")[0]
    assert zh.shape[-1] == en.shape[-1] and not torch.equal(zh[: min(len(zh), len(en))], en[: min(len(zh), len(en))])
