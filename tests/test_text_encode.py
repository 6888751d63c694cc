"""Prompt encoding without the stock padding gives the stock pipeline's embeddings (CPU, tiny model).

The stock pipeline pads to 512 tokens; the engine encodes the real tokens only, and the text graphs
(studio/engine/text_graphs.py, CUDA) pad them to a 64-token bucket instead. Causal attention keeps
the real tokens' rows the same in all three; the graph capture itself is a GPU test.
"""

from __future__ import annotations

import pytest
import torch

from studio.engine import text_encode, text_graphs

PROMPTS = ("a red circle", "一个蓝色的正方形，在白色背景上，很大，很清楚")


@pytest.fixture(scope="module")
def pipe(tiny_random_pipe):
    return tiny_random_pipe  # the session's (tests/conftest.py)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_short_encoding_matches_the_stock_pipeline(pipe, prompt: str) -> None:
    dev = torch.device("cpu")
    with torch.no_grad():
        stock = pipe._encode_prompt(prompt=[prompt], device=dev, max_sequence_length=512)[0]
    short = text_encode.encode_prompt_short(pipe, prompt, dev)[0]
    assert short.shape == stock.shape
    assert torch.allclose(short, stock, atol=1e-5, rtol=1e-4), (short - stock).abs().max()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_padded_encoding_gives_the_real_tokens_embeddings(pipe, prompt: str) -> None:
    dev = torch.device("cpu")
    te = pipe.text_encoder
    ref = text_encode.encode_prompt_short(pipe, prompt, dev)[0]
    ids = text_encode.prompt_ids(pipe.tokenizer, prompt)
    n = ids.shape[1]
    length = text_graphs.bucket_of(n)
    assert length % text_graphs.BUCKET == 0 and n <= length < n + text_graphs.BUCKET
    with torch.no_grad():
        out = text_graphs.encode_padded(te, text_graphs.embed_ids(te, ids, dev), length)
    assert out.shape[1] == length
    assert torch.allclose(out[0, :n], ref, atol=1e-5, rtol=1e-4), (out[0, :n] - ref).abs().max()


def test_buckets() -> None:
    assert [text_graphs.bucket_of(n) for n in (1, 64, 65, 128, 500)] == [64, 64, 128, 128, 512]
    graphs = text_graphs.TextGraphs(None, torch.device("cpu"))
    assert graphs.lengths() == list(range(64, 513, 64))


def test_only_attention_that_is_causal_without_a_mask_runs_the_short_path(pipe) -> None:
    """encoder_hidden hands no mask: right under SDPA, bidirectional (wrong) under transformers' eager."""
    te = pipe.text_encoder
    assert text_encode.runs_without_mask(te)  # the tiny model, like the real one, loads with SDPA
    ids = text_encode.prompt_ids(pipe.tokenizer, PROMPTS[0])
    saved = te.config._attn_implementation
    te.config._attn_implementation = "eager"
    try:
        assert not text_encode.runs_without_mask(te)
        with torch.no_grad():
            wrong = text_encode.encoder_hidden(te, text_graphs.embed_ids(te, ids, torch.device("cpu")))[0]
    finally:
        te.config._attn_implementation = saved
    ref = text_encode.encode_prompt_short(pipe, PROMPTS[0], torch.device("cpu"))[0]
    assert not torch.allclose(wrong, ref, atol=1e-4)  # why the guard exists
