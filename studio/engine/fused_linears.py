"""Fused projections: q/k/v as one matmul, and the feed-forward's two gate inputs as one.

The same arithmetic (each fused weight is the stacked rows of the originals), in fewer and larger
matmuls: fewer launches, and in FP8 mode each activation is quantized once instead of three (q/k/v)
and two (w1/w3) times. Works on the repeated Z-Image blocks in place and can be undone, so the
attention backend can still be switched back to diffusers' own processor (which reads to_q/to_k/to_v).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

QKV = ("to_q", "to_k", "to_v")


def _stack(linears: list[torch.nn.Linear]) -> torch.nn.Linear:
    """One Linear whose output is the outputs of `linears` side by side (no bias: Z-Image has none)."""
    first = linears[0]
    out = sum(lin.out_features for lin in linears)
    fused = torch.nn.Linear(first.in_features, out, bias=False, device=first.weight.device,
                            dtype=first.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([lin.weight for lin in linears]))
    fused.requires_grad_(False)
    return fused


def _split(fused: torch.nn.Linear, parts: int) -> list[torch.nn.Linear]:
    rows = fused.out_features // parts
    out = []
    for i in range(parts):
        lin = torch.nn.Linear(fused.in_features, rows, bias=False, device=fused.weight.device,
                              dtype=fused.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(fused.weight[i * rows:(i + 1) * rows])
        lin.requires_grad_(False)
        out.append(lin)
    return out


class FusedFeedForward(torch.nn.Module):
    """Z-Image's SwiGLU feed-forward, w2(silu(w1 x) * w3 x), with w1 and w3 as one matmul."""

    def __init__(self, w13: torch.nn.Module, w2: torch.nn.Module) -> None:
        super().__init__()
        self.w13, self.w2 = w13, w2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(a) * b)


def _blocks(transformer: Any):
    return (m for m in transformer.modules() if type(m).__name__ == "ZImageTransformerBlock")


def _plain(*mods: Any) -> bool:
    return all(type(m) is torch.nn.Linear and m.bias is None for m in mods)


def fuse_projections(transformer: Any) -> int:
    """Fuse q/k/v and w1/w3 in every block still holding plain bias-free Linears; returns blocks fused."""
    count = 0
    for block in _blocks(transformer):
        attn, ff = block.attention, block.feed_forward
        if hasattr(attn, "to_qkv") or not all(hasattr(attn, n) for n in QKV) \
                or not _plain(*(getattr(attn, n) for n in QKV)) or not _plain(ff.w1, ff.w3):
            continue
        attn.to_qkv = _stack([getattr(attn, n) for n in QKV])
        for n in QKV:
            delattr(attn, n)
        block.feed_forward = FusedFeedForward(_stack([ff.w1, ff.w3]), ff.w2)
        count += 1
    if count and next(transformer.parameters()).device.type == "cuda":
        torch.cuda.empty_cache()
    return count


def unfuse_projections(transformer: Any) -> int:
    """Split the fused projections back into diffusers' modules; returns blocks restored."""
    from diffusers.models.transformers.transformer_z_image import FeedForward

    count = 0
    for block in _blocks(transformer):
        attn = block.attention
        if not hasattr(attn, "to_qkv"):
            continue
        if type(attn.to_qkv) is not torch.nn.Linear:
            raise RuntimeError("FP8-quantized projections cannot be split back; rebuild the engine instead.")
        for n, lin in zip(QKV, _split(attn.to_qkv, 3), strict=True):
            setattr(attn, n, lin)
        del attn.to_qkv
        fused = block.feed_forward
        w1, w3 = _split(fused.w13, 2)
        ff = FeedForward.__new__(FeedForward)
        torch.nn.Module.__init__(ff)
        ff.w1, ff.w2, ff.w3 = w1, fused.w2, w3
        block.feed_forward = ff
        count += 1
    return count


def is_fused(transformer: Any) -> bool:
    return any(hasattr(b.attention, "to_qkv") for b in _blocks(transformer))
