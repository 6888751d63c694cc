"""A Z-Image pipeline with random weights, built straight on the target device (`--random-weights`).

Model weights can't be downloaded everywhere, so speed and memory work measures the real
architecture with weights drawn from N(0, 0.02) (finite activations through 30 layers). Building the
full-size one directly on a GPU in bf16 takes about a second; "tiny" is the demo architecture and
runs on a CPU, which keeps `zaoxiang bench` testable without a GPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from studio.models.architecture import ARCHITECTURES


class RandomWeightsError(ValueError):
    """Unknown architecture name."""


def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    from studio.models.tokenizer import save_tokenizer

    with tempfile.TemporaryDirectory(prefix="zx-tok-") as tmp:
        save_tokenizer(Path(tmp) / "tokenizer")
        return AutoTokenizer.from_pretrained(str(Path(tmp) / "tokenizer"))


def build_random_pipeline(kind: str, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Any:
    """A ZImagePipeline of architecture `kind` ("full" | "tiny") with drawn weights on `device`."""
    from diffusers import ZImagePipeline

    from studio.models.build import build_components

    if kind not in ARCHITECTURES:
        raise RandomWeightsError(f"Unknown architecture {kind!r}; choose one of: {', '.join(ARCHITECTURES)}.")
    tokenizer = _tokenizer()
    with torch.device(device):
        parts = build_components(ARCHITECTURES[kind], len(tokenizer), seed=seed, dtype=dtype)
    pipe = ZImagePipeline(tokenizer=tokenizer, **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
