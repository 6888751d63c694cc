"""Building Z-Image pipelines from an Architecture with freshly drawn weights.

Used for the built-in demo model (tiny, saved to disk and loaded back like real weights) and for
the full-size random-weight stand-in that speed and memory work measures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from studio.core.atomic import atomic_dir
from studio.models.architecture import Architecture
from studio.models.tokenizer import save_tokenizer


def _redraw(module: torch.nn.Module, std: float, generator: torch.Generator | None) -> None:
    """Weight matrices from N(0, std): keeps activations finite in deep random stacks."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2 and "norm" not in name:
                if generator is not None and p.device.type == "cpu":
                    p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32) * std)
                else:
                    p.normal_(0.0, std)


def build_components(arch: Architecture, vocab_size: int, seed: int = 0, std: float = 0.02,
                     dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Transformer, text encoder, VAE and scheduler of `arch`, weights drawn from `seed`.

    Built on the current default device (wrap in `with torch.device("cuda")` to build on a GPU).
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        transformer = ZImageTransformer2DModel(**arch.transformer)
        te_cfg = dict(arch.text_encoder)
        te_cfg["vocab_size"] = te_cfg["vocab_size"] or vocab_size
        text_encoder = Qwen3Model(Qwen3Config(**te_cfg))
        vae = AutoencoderKL(**arch.vae)
    finally:
        torch.set_default_dtype(old)
    for m in (transformer, text_encoder, vae):
        _redraw(m, std, gen)
        m.eval()
    scheduler = FlowMatchEulerDiscreteScheduler(**arch.scheduler)
    return {"transformer": transformer, "text_encoder": text_encoder, "vae": vae, "scheduler": scheduler}


def save_pipeline_folder(arch: Architecture, target: Path, seed: int = 0, vocab_size: int = 1024,
                         note: dict[str, Any] | None = None) -> Path:
    """Write a complete diffusers-format Z-Image folder for `arch`, atomically (`atomic_dir`)."""
    from diffusers import ZImagePipeline

    target = Path(target)
    with atomic_dir(target) as tmp:
        n_vocab = save_tokenizer(tmp / "tokenizer", vocab_size)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tmp / "tokenizer"))
        parts = build_components(arch, n_vocab, seed=seed)
        pipe = ZImagePipeline(tokenizer=tokenizer, **parts)
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / "zaoxiang.json").write_text(
            json.dumps({"architecture": arch.name, "seed": seed, **(note or {})}, indent=2), "utf-8"
        )
    return target
