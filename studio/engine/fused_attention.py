"""Z-Image attention written for the compiler: real-valued RoPE and cuDNN attention without copies.

diffusers' `ZSingleStreamAttnProcessor` applies RoPE through complex numbers, which inductor cannot
generate code for (it falls back to eager kernels and float32 round trips for q and k in every
block), and its `_native_cudnn` backend makes contiguous copies of q/k/v before cuDNN. This
processor computes the same function: RoPE as the real 2x2 rotation (fused with the q/k RMSNorm and
the cast back to bf16 in one kernel) and attention on BHSD views of the BSHD projections, which
cuDNN reads as they are. Kernels: "cudnn" (aten's cuDNN SDPA op directly; torch's own choice where
there is a padding mask or no CUDA) and "sdpa" (torch picks, flash on H100).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

KERNELS = ("cudnn", "sdpa")


def real_freqs(freqs_cis: torch.Tensor) -> torch.Tensor:
    """Complex RoPE factors (..., D/2) as float32 (..., D/2, 2) [cos, sin]; real input passes through."""
    if freqs_cis.is_complex():
        return torch.view_as_real(freqs_cis)
    return freqs_cis


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """x (B, S, H, D) rotated pairwise by freqs (B, S, D/2, 2), in float32 like diffusers' complex path."""
    xf = x.float().unflatten(-1, (-1, 2))
    xr, xi = xf[..., 0], xf[..., 1]
    c, s = freqs[..., 0].unsqueeze(2), freqs[..., 1].unsqueeze(2)
    return torch.stack((xr * c - xi * s, xr * s + xi * c), dim=-1).flatten(3).type_as(x)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
           kernel: str) -> torch.Tensor:
    """Attention over (B, H, S, D) inputs; returns (B, H, S, D)."""
    if kernel == "cudnn" and mask is None and q.is_cuda:
        return torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, False)[0]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class FusedZImageAttnProcessor:
    """Drop-in for diffusers' ZSingleStreamAttnProcessor (same arguments, same maths)."""

    def __init__(self, kernel: str = "cudnn") -> None:
        if kernel not in KERNELS:
            raise ValueError(f"Unknown attention kernel {kernel!r}; choose one of: {', '.join(KERNELS)}.")
        self.kernel = kernel
        # Set by cache-dit's context parallelism (studio/engine/split.py): attention then exchanges the
        # sequence shares of q/k/v with the other devices of the group around our kernel. Instance
        # attributes from the start: the compiled blocks' guards then see one value switch, not a new key.
        self._cp_config: Any = None
        self._parallel_config: Any = None
        self.overlap = False  # split: start each of q/k/v's exchange as soon as it is projected

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, freqs_cis: torch.Tensor | None = None) -> torch.Tensor:
        if self._cp_config is not None and self.overlap and attention_mask is None:
            from studio.engine.split import ulysses_overlapped

            out = ulysses_overlapped(attn, hidden_states, freqs_cis, self.kernel, self._cp_config)
            out = attn.to_out[0](out.flatten(2, 3).to(hidden_states.dtype))
            return attn.to_out[1](out) if len(attn.to_out) > 1 else out
        q = attn.to_q(hidden_states).unflatten(-1, (attn.heads, -1))
        k = attn.to_k(hidden_states).unflatten(-1, (attn.heads, -1))
        v = attn.to_v(hidden_states).unflatten(-1, (attn.heads, -1))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if freqs_cis is not None:
            freqs = real_freqs(freqs_cis)
            q, k = apply_rope(q, freqs), apply_rope(k, freqs)
        mask = attention_mask
        if mask is not None and mask.ndim == 2:
            mask = mask[:, None, None, :]
        if self._cp_config is not None:
            from studio.engine.split import ulysses_attend

            out = ulysses_attend(q, k, v, mask, self.kernel, self._cp_config)
        else:
            out = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, self.kernel).transpose(1, 2)
        out = attn.to_out[0](out.flatten(2, 3).to(v.dtype))
        if len(attn.to_out) > 1:
            out = attn.to_out[1](out)
        return out


def install(transformer: Any, kernel: str) -> int:
    """Give every Z-Image block's attention the fused processor; returns how many were replaced."""
    count = 0
    for module in transformer.modules():
        proc = getattr(module, "processor", None)
        if proc is not None and type(proc).__name__ in ("ZSingleStreamAttnProcessor", "FusedZImageAttnProcessor"):
            module.set_processor(FusedZImageAttnProcessor(kernel))
            count += 1
    return count


def uses_fused(transformer: Any) -> bool:
    """Whether the transformer's attention goes through FusedZImageAttnProcessor."""
    return any(isinstance(getattr(m, "processor", None), FusedZImageAttnProcessor) for m in transformer.modules())
