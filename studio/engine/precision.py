"""Which dtype a device runs in: bf16 where supported, float32 otherwise, never fp16 by default.

Z-Image in fp16 overflows and decodes to black images, so fp16 is only used when asked for by name.
"""

from __future__ import annotations

import os

import torch


def choose_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that support it, float32 on CPUs and older GPUs; ZAOXIANG_DTYPE overrides."""
    forced = os.environ.get("ZAOXIANG_DTYPE", "").strip().lower()
    if forced in ("fp32", "float32"):
        return torch.float32
    if forced in ("bf16", "bfloat16"):
        return torch.bfloat16
    if forced in ("fp16", "float16"):
        return torch.float16
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return torch.float32
