"""One image over several devices: Ulysses sequence parallelism from cache-dit, on our fast path.

cache-dit (pinned 1.5.3) registers a context-parallel plan for `ZImageTransformer2DModel`: hooks
split the token sequence before the first block of each stage, split the RoPE table for every
block, and gather the sequence again before the final layer. Between them each attention call
exchanges q/k/v by all-to-all (every device then holds the whole sequence for a share of the
heads), attends, and exchanges the output back. cache-dit does that exchange inside its own
attention backends; our processor (studio/engine/fused_attention.py) is not one of them, so the
small adapter here hands cache-dit's Ulysses template our attention op instead. The hooks wrap the
compiled blocks from the outside, so the blocks compile once for the split shapes (sequence
length dynamic) and the all-to-all (functional collectives) is traced into the same graph.

Which devices made an image is the group's business: every member runs the same job with the same
seed and ends with the whole image; the first member saves it.
"""

from __future__ import annotations

from typing import Any

import torch

from studio.engine.fused_attention import attend


def _cudnn_op(ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Any,
              dropout_p: float, is_causal: bool, scale: Any, enable_gqa: bool, return_lse: bool,
              _save_ctx: bool = True, _cp_config: Any = None) -> torch.Tensor:
    """cache-dit's forward-op signature over our attention (BSHD in and out, BHSD views inside)."""
    return attend(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), None, "cudnn").transpose(1, 2)


def _sdpa_op(ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Any,
             dropout_p: float, is_causal: bool, scale: Any, enable_gqa: bool, return_lse: bool,
             _save_ctx: bool = True, _cp_config: Any = None) -> torch.Tensor:
    return attend(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), None, "sdpa").transpose(1, 2)


def _no_backward(*_args: Any, **_kwargs: Any) -> None:
    raise NotImplementedError("split attention is inference only")


_OPS = {"cudnn": _cudnn_op, "sdpa": _sdpa_op}


def ulysses_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, kernel: str,
                   cp_config: Any) -> torch.Tensor:
    """Attention over this device's share of the sequence (B, S/n, H, D) -> (B, S/n, H, D).

    A padding mask only comes with a batch of unequal prompts, which one split image never is."""
    if mask is not None:
        raise ValueError("split attention takes no padding mask (one image, one prompt)")
    from cache_dit.attention.backends.register import _context_parallel_attention

    return _context_parallel_attention(q, k, v, None, 0.0, False, None, False, False, None,
                                       forward_op=_OPS[kernel], backward_op=_no_backward, _cp_config=cp_config)


def enable(transformer: Any, size: int) -> Any:
    """Run `transformer` Ulysses-split over the `size` ranks of the default process group.

    Install the fused processor and compile the blocks first: the hooks must wrap the compiled
    forwards, and cache-dit hands its config to the processors it finds. Returns the config.
    """
    import logging

    from cache_dit import ParallelismConfig
    from cache_dit.distributed import enable_parallelism

    if not torch.distributed.is_initialized():
        raise RuntimeError("split needs torch.distributed initialised (one rank per device)")
    if size != torch.distributed.get_world_size():
        raise ValueError(f"split size {size} != process group size {torch.distributed.get_world_size()}")
    for name in ("cache_dit", "cache-dit"):  # it logs every hook at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    config = ParallelismConfig(ulysses_size=size)
    config.cp_plan = _plan(transformer, config)
    enable_parallelism(transformer, config)
    return getattr(transformer, "_cp_config", None)


def _plan(transformer: Any, config: Any) -> dict[str, Any]:
    """cache-dit's registered Z-Image plan, fixed for one-layer refiners (the tiny test architecture).

    The plan keys the refiner's first block for its input split and its last block for the output
    gather; with one layer both are "noise_refiner.0" and the gather overwrites the split, so the
    refiner would attend over the whole sequence with half a RoPE table. There the split moves to
    the "noise_refiner.*" entry (which matches only that one block).
    """
    from cache_dit.distributed.core import _ContextParallelInput
    from cache_dit.distributed.transformers.dispatch import _ensure_cp_planners_activated
    from cache_dit.distributed.transformers.register import ContextParallelismPlannerRegister

    _ensure_cp_planners_activated()
    plan = ContextParallelismPlannerRegister.get_planner(transformer)().apply(
        transformer=transformer, parallelism_config=config)
    for stage in ("noise_refiner", "context_refiner"):
        if len(getattr(transformer, stage)) == 1:
            plan[f"{stage}.*"] = {**plan.get(f"{stage}.*", {}),
                                  "x": _ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)}
    return plan
