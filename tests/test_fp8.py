"""FP8 linears (opt-in FP8 mode): both kernels compute the same quantized product, close to bf16.

torch._scaled_mm runs on the CPU too, so the arithmetic is checked here; speed is the GPU bench's.
"""

from __future__ import annotations

import pytest
import torch

from studio.engine import fp8
from studio.engine.random_pipeline import build_random_pipeline


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@torch.no_grad()
def test_both_kernels_match_each_other_and_stay_near_bf16() -> None:
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(256, 96, bias=False).to(torch.bfloat16).requires_grad_(False)
    lin.weight.copy_(torch.randn(96, 256, generator=g) * 0.02)
    x = torch.randn(3, 7, 256, generator=g).to(torch.bfloat16)
    x[0, 0] *= 40  # one outlier token: rowwise activation scales keep the others' precision
    ref = lin(x)
    outs = {k: fp8.FP8Linear(lin, k)(x) for k in fp8.KERNELS}
    for k, y in outs.items():
        assert y.shape == ref.shape and y.dtype == torch.bfloat16
        assert _rel(y[1:], ref[1:]) < 0.06, (k, _rel(y[1:], ref[1:]))  # e4m3: ~3 % per element
    assert _rel(outs["tensor"], outs["rowwise"]) < 0.01  # one extra bf16 rounding apart at most


def test_unknown_kernel_is_refused() -> None:
    with pytest.raises(ValueError, match="rowwise"):
        fp8.quantize_transformer(torch.nn.Module(), kernel="fast")


@torch.no_grad()
def test_quantize_swaps_the_blocks_big_linears() -> None:
    tr = build_random_pipeline("tiny", torch.device("cpu"), torch.bfloat16, seed=1).transformer
    blocks = sum(1 for m in tr.modules() if type(m).__name__ == "ZImageTransformerBlock")
    x = [torch.randn(tr.config.in_channels, 1, 32, 32).to(torch.bfloat16)]
    cap = [torch.randn(20, tr.config.cap_feat_dim).to(torch.bfloat16)]
    t = torch.full((1,), 0.5)
    ref = tr(x, t, cap, return_dict=False)[0][0]
    assert fp8.quantize_transformer(tr) == 7 * blocks  # q, k, v, out, w1, w2, w3
    assert fp8.set_kernel(tr, "tensor") == 7 * blocks
    assert all(m.kernel == "tensor" for m in tr.modules() if isinstance(m, fp8.FP8Linear))
    got = tr(x, t, cap, return_dict=False)[0][0]
    assert torch.isfinite(got).all() and _rel(got, ref) < 0.15, _rel(got, ref)
