"""The step graphs' padded route computes what the transformer computes (CPU, tiny architecture).

A graph serves every prompt length of a 32-token bucket: the caption goes in pre-padded and a hook
on `cap_embedder` puts `cap_pad_token` on the padded rows. That route (without the CUDA capture,
which needs a GPU: tests/test_gpu_fastpath.py) must give the stock transformer's output.
"""

from __future__ import annotations

import pytest
import torch

from studio.engine.random_pipeline import build_random_pipeline
from studio.engine.step_graphs import StepGraphs, padded_length


@pytest.fixture(scope="module")
def transformer():
    return build_random_pipeline("tiny", torch.device("cpu"), torch.float32, seed=5).transformer


def _inputs(tr, lengths: list[int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(tr.config.in_channels, 1, 32, 32, generator=g) for _ in lengths]
    cap = [torch.randn(n, tr.config.cap_feat_dim, generator=g) for n in lengths]
    return x, torch.full((len(lengths),), 0.4), cap


@torch.no_grad()
@pytest.mark.parametrize("lengths", [[19], [32], [45], [19, 25]])
def test_padded_route_matches_stock(transformer, lengths: list[int]) -> None:
    x, t, cap = _inputs(transformer, lengths)
    ref = transformer(x, t, cap, return_dict=False)[0]
    on = {"v": True}
    graphs = StepGraphs(transformer, lambda: on["v"], capture=False)
    try:
        got = transformer(x, t, cap, return_dict=False)[0]
        assert len(graphs.statics) == 1  # the padded route ran, not the plain forward
        key = next(iter(graphs.statics))
        assert key[2] == padded_length(max(lengths))
        for a, b in zip(got, ref, strict=True):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-4), (a - b).abs().max()
        on["v"] = False  # switched off: the plain forward, and the hook leaves it alone
        plain = transformer(x, t, cap, return_dict=False)[0]
        assert all(torch.equal(a, b) for a, b in zip(plain, ref, strict=True))
    finally:
        graphs.remove()
    assert "forward" not in transformer.__dict__


@torch.no_grad()
def test_items_padding_differently_take_the_plain_forward(transformer) -> None:
    x, t, cap = _inputs(transformer, [10, 40], seed=1)  # pad to 32 and 64: the transformer masks them
    ref = transformer(x, t, cap, return_dict=False)[0]
    graphs = StepGraphs(transformer, lambda: True, capture=False)
    try:
        got = transformer(x, t, cap, return_dict=False)[0]
    finally:
        graphs.remove()
    assert not graphs.statics
    assert all(torch.equal(a, b) for a, b in zip(got, ref, strict=True))
