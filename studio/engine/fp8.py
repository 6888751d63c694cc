"""Opt-in FP8 (e4m3) linear layers for the transformer blocks, through torch._scaled_mm.

Weights are quantized once per output channel; activations per token at run time (rowwise scales),
so one outlier token does not flatten the others. Only the big matmuls of the repeated blocks are
converted (attention q/k/v/out and the feed-forward); embedders, modulation and the final layer
stay in bf16. Needs a GPU with FP8 tensor cores (compute capability 8.9+: Ada, Hopper).
"""

from __future__ import annotations

from typing import Any

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
# "rowwise": torch._scaled_mm with the row and column scales (CUTLASS's rowwise kernel on H100);
# "tensor": cuBLAS's per-tensor FP8 kernel at unit scales, both scales applied after in one multiply
# that inductor fuses into the next op; the same quantization, measured faster when compiled
# (docs/benchmarks.md); uncompiled, that multiply would be extra kernels, so rowwise stays the default.
KERNELS = ("rowwise", "tensor")
DEFAULT_KERNEL = "rowwise"


def fp8_supported(device: torch.device) -> bool:
    """True on CUDA devices with FP8 tensor cores and a torch that exposes _scaled_mm."""
    if device.type != "cuda" or not hasattr(torch, "_scaled_mm"):
        return False
    return torch.cuda.get_device_capability(device) >= (8, 9)


def quantize_rowwise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (rows, k) to e4m3 with one float32 scale per row (x ≈ q * scale)."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / FP8_MAX
    q = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q, scale


class FP8Linear(torch.nn.Module):
    """A bias-free or biased linear layer computing in FP8 with bf16 output."""

    def __init__(self, linear: torch.nn.Linear, kernel: str = DEFAULT_KERNEL) -> None:
        super().__init__()
        self.kernel = kernel
        w = linear.weight.detach()
        q, scale = quantize_rowwise(w)  # (out, in), (out, 1)
        self.register_buffer("weight_fp8", q)
        self.register_buffer("weight_scale", scale.reshape(1, -1).contiguous())
        self.register_buffer("unit", torch.ones((), device=w.device), persistent=False)
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach(), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.out_dtype = w.dtype if w.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        xq, xs = quantize_rowwise(x2)
        if self.kernel == "tensor":
            out = torch._scaled_mm(xq, self.weight_fp8.t(), scale_a=self.unit, scale_b=self.unit,
                                   out_dtype=self.out_dtype)  # at most 448² * in_features: no overflow
            out = (out.float() * xs * self.weight_scale).to(self.out_dtype)
        else:
            out = torch._scaled_mm(xq, self.weight_fp8.t(), scale_a=xs, scale_b=self.weight_scale,
                                   out_dtype=self.out_dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*shape[:-1], self.out_features)


def _swap(root: torch.nn.Module, dotted: str, kernel: str) -> bool:
    parent = root
    *path, last = dotted.split(".")
    for p in path:
        parent = getattr(parent, p, None)
        if parent is None:
            return False
    mod = parent[int(last)] if last.isdigit() else getattr(parent, last, None)
    if not isinstance(mod, torch.nn.Linear):
        return False
    new = FP8Linear(mod, kernel)
    if last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)
    return True


def quantize_transformer(transformer: Any, kernel: str = DEFAULT_KERNEL) -> int:
    """Replace the repeated blocks' big linears with FP8Linear in place; returns how many."""
    if kernel not in KERNELS:
        raise ValueError(f"Unknown FP8 kernel {kernel!r}; choose one of: {', '.join(KERNELS)}.")
    count = 0
    with torch.no_grad():
        for block in transformer.modules():
            if type(block).__name__ != "ZImageTransformerBlock":
                continue
            for name in ("attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0",
                         "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"):
                count += _swap(block, name, kernel)
    if transformer.device.type == "cuda":
        torch.cuda.empty_cache()
    return count


def set_kernel(transformer: Any, kernel: str) -> int:
    """Switch every FP8Linear to `kernel` (same weights and scales); returns how many."""
    if kernel not in KERNELS:
        raise ValueError(f"Unknown FP8 kernel {kernel!r}; choose one of: {', '.join(KERNELS)}.")
    mods = [m for m in transformer.modules() if isinstance(m, FP8Linear)]
    for m in mods:
        m.kernel = kernel
    return len(mods)
