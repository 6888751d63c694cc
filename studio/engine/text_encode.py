"""Prompt encoding without the stock pipeline's padding: the same embeddings for a fraction of the work.

ZImagePipeline pads every prompt to 512 tokens before its causal Qwen3 encoder and keeps the real
tokens' rows of hidden_states[-2]. Those rows never see the right-padding, so encoding only the
real tokens (or padding them to a short bucket, studio/engine/text_graphs.py) gives the same values.
"""

from __future__ import annotations

from typing import Any

import torch


def prompt_ids(tok: Any, prompt: str, max_sequence_length: int = 512) -> torch.Tensor:
    """The (1, n) token ids ZImagePipeline._encode_prompt feeds the encoder, without its padding."""
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                   add_generation_prompt=True, enable_thinking=True)
    return tok([text], truncation=True, max_length=max_sequence_length, return_tensors="pt").input_ids


# Attention implementations that attend causally when handed no mask (what encoder_hidden relies on);
# transformers' "eager" one would attend both ways, so it keeps transformers' own forward.
CAUSAL_WITHOUT_MASK = ("sdpa", "flash_attention_2", "flash_attention_3")


def runs_without_mask(te: Any) -> bool:
    """Whether `encoder_hidden` computes what transformers' forward does for this encoder."""
    impl = getattr(getattr(te, "config", None), "_attn_implementation", None)
    return impl in CAUSAL_WITHOUT_MASK and hasattr(te, "rotary_emb") and hasattr(te, "layers")


def decoder_layer(layer: Any, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """One Qwen3 decoder layer, no cache, causal: what transformers' layer computes, minus its hooks.

    Calling the attention's `forward` directly skips transformers' output-capturing hooks (Python
    work in every layer that a CUDA graph would not replay anyway). No mask means causal under SDPA.
    """
    x = layer.self_attn.forward(hidden_states=layer.input_layernorm(h), position_embeddings=(cos, sin),
                                attention_mask=None)[0]
    h = h + x
    return h + layer.mlp(layer.post_attention_layernorm(h))


def encoder_hidden(te: Any, inputs: torch.Tensor) -> torch.Tensor:
    """hidden_states[-2] of the causal encoder (its second-to-last layer's output) for embedded inputs.

    Stops there instead of running the last layer for nothing.
    """
    h = inputs
    pos = torch.arange(h.shape[1], device=h.device).unsqueeze(0)
    cos, sin = te.rotary_emb(h, pos)
    for layer in te.layers[:-1]:
        h = decoder_layer(layer, h, cos, sin)
    return h


def encode_prompt_short(pipe: Any, prompt: str, device: torch.device,
                        max_sequence_length: int = 512) -> list[torch.Tensor]:
    """Prompt embeddings from the real tokens only, through transformers' own forward.

    Matches ZImagePipeline._encode_prompt (chat template, hidden_states[-2]) for one prompt.
    """
    ids = prompt_ids(pipe.tokenizer, prompt, max_sequence_length)
    te = pipe.text_encoder
    embed = te.get_input_embeddings()
    with torch.no_grad():
        if embed.weight.device.type != device.type:
            # The embedding table stays on the CPU in tight memory profiles: look rows up there.
            inputs = embed(ids).to(device, non_blocking=True)
            out = te(inputs_embeds=inputs, output_hidden_states=True, use_cache=False)
        else:
            out = te(input_ids=ids.to(device), output_hidden_states=True, use_cache=False)
    return [out.hidden_states[-2][0]]
