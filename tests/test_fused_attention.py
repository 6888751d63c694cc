"""The fused Z-Image attention computes what diffusers' processor computes (CPU, tiny architecture).

Real-valued RoPE instead of complex multiplication, BHSD views instead of copies: the transformer's
output must match the stock processor's to float32 rounding, eagerly and through the compiled-block
wrapper (which hands the blocks real RoPE factors).
"""

from __future__ import annotations

import pytest
import torch

from studio.engine import fastpath, fused_attention


@pytest.fixture(scope="module")
def pipe(tiny_random_pipe):
    return tiny_random_pipe  # the session's (tests/conftest.py)


def _forward(pipe, seed: int) -> torch.Tensor:
    tr = pipe.transformer
    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(16, 1, 32, 32, generator=g)
    cap = torch.randn(19, tr.config.cap_feat_dim, generator=g)  # not a multiple of 32: padding inside
    with torch.no_grad():
        return tr([lat], torch.tensor([0.3]), [cap], return_dict=False)[0][0]


def test_apply_rope_matches_complex_multiplication() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 3, 8, generator=g)
    freqs = torch.polar(torch.ones(2, 7, 4), torch.randn(2, 7, 4, generator=g))
    ref = torch.view_as_real(torch.view_as_complex(x.reshape(2, 7, 3, 4, 2)) * freqs.unsqueeze(2)).flatten(3)
    got = fused_attention.apply_rope(x, fused_attention.real_freqs(freqs))
    assert torch.allclose(got, ref, atol=1e-6), (got - ref).abs().max()


@pytest.mark.parametrize("name", fastpath.FUSED_ATTENTION)
def test_fused_processor_matches_stock(pipe, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tr = pipe.transformer
    fastpath.set_attention_backend(tr, "native")
    assert not fused_attention.uses_fused(tr)
    ref = _forward(pipe, 1)
    assert fastpath.set_attention_backend(tr, name) == name and fused_attention.uses_fused(tr)
    eager = _forward(pipe, 1)
    assert torch.allclose(eager, ref, atol=1e-5, rtol=1e-4), (eager - ref).abs().max()
    # through the compiled-block wrapper (eager backend: the same Python, dynamo's guards and real RoPE)
    monkeypatch.setenv("ZAOXIANG_COMPILE_BACKEND", "eager")
    switch = fastpath.CompileSwitch()
    switch.ready = True
    torch._dynamo.reset()
    try:
        assert fastpath.compile_blocks(tr, switch) > 0
        wrapped = _forward(pipe, 1)
    finally:
        fastpath.uncompile_blocks(tr)
        fastpath.set_attention_backend(tr, "native")
    assert torch.allclose(wrapped, ref, atol=1e-5, rtol=1e-4), (wrapped - ref).abs().max()
    assert not fused_attention.uses_fused(tr)


def test_unknown_kernel_is_refused() -> None:
    with pytest.raises(ValueError, match="cudnn"):
        fused_attention.FusedZImageAttnProcessor("nope")

