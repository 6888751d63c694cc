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

import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from studio.engine.fused_attention import apply_rope, attend, real_freqs
from studio.engine.split_decode import SplitDecode
from studio.engine.step_graphs import SPLIT_MARK


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


def _heads(proj: Any, norm: Any, hidden: torch.Tensor, heads: int, freqs: torch.Tensor | None) -> torch.Tensor:
    x = proj(hidden).unflatten(-1, (heads, -1))
    if norm is not None:
        x = norm(x)
    return x if freqs is None else apply_rope(x, freqs)


def ulysses_overlapped(attn: Any, hidden: torch.Tensor, freqs_cis: torch.Tensor | None, kernel: str,
                       cp_config: Any) -> torch.Tensor:
    """The fused processor's attention with each exchange started as soon as its tensor is projected,
    so q's all-to-all runs while k and v are computed (cache-dit's async Ulysses does the same for the
    stock processor); returns this device's share (B, S/n, H, D)."""
    from cache_dit.distributed.core import _All2AllComm

    comm = _All2AllComm(cp_config)
    freqs = None if freqs_cis is None else real_freqs(freqs_cis)
    q_wait = comm.send_q(_heads(attn.to_q, attn.norm_q, hidden, attn.heads, freqs))
    k_wait = comm.send_k(_heads(attn.to_k, attn.norm_k, hidden, attn.heads, freqs))
    v_wait = comm.send_v(_heads(attn.to_v, None, hidden, attn.heads, None))
    q, k, v = q_wait.wait(), k_wait.wait(), v_wait.wait()
    out = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), None, kernel).transpose(1, 2)
    return comm.send_o(out).wait()


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
    for name in list(logging.root.manager.loggerDict):  # it logs its plan and every choice at INFO
        if name.startswith("cache_dit"):
            logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*all_gather_tensor.*", category=FutureWarning)  # its funcol call
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


def _fp8_exchange_on_triton() -> None:
    """cache-dit chooses the FP8 exchange's kernels on every call by trying `import cutlass.cute`, an
    import torch.compile cannot trace where CuTe DSL is absent: pin its Triton kernels once instead."""
    from cache_dit.kernels import ops

    for name in ("fp8_comm_per_token_quant", "fp8_comm_per_token_dequant", "fp8_comm_qkv_permute_quant",
                 "fp8_comm_qkv_permute_dequant"):
        ops._KERNEL_BE_SELECTOR_MAP[name] = ops._select_triton_backend


class Split:
    """The split switched on per image: cache-dit's hooks and the processors' config are installed once,
    then `active()` puts them in place for one image and takes them out again, so the same engine
    makes its own images between split ones (the compiled blocks keep one graph for each way)."""

    def __init__(self, transformer: Any, size: int, overlap: bool = False, fp8_comm: bool = False,
                 vae: Any = None) -> None:
        modules = list(transformer.modules())
        plain = {id(m): m.__dict__.get("forward") for m in modules}
        # each compiled block keeps a graph per way (one device, split) and per kind of block
        cfg = torch._dynamo.config
        cfg.recompile_limit = max(cfg.recompile_limit, 16)
        self.transformer = transformer
        self.size = size
        self.config = enable(transformer, size)
        if fp8_comm:  # cache-dit's per-token FP8 all-to-all for q, v and o (k stays bf16): half the bytes
            _fp8_exchange_on_triton()
            self.config.ulysses_float8 = True
        self._forwards = [(m, plain[id(m)], m.__dict__["forward"]) for m in modules
                          if m.__dict__.get("forward") is not plain[id(m)]]
        self._procs = [proc for m in modules if getattr(getattr(m, "processor", None), "_cp_config", None) is not None
                       for proc in (m.processor,)]
        for proc in self._procs:
            if hasattr(proc, "overlap"):  # ours (studio/engine/fused_attention.py), not diffusers' own
                proc.overlap = overlap
        # with a VAE, its decode is shared too (studio/engine/split_decode.py)
        self.decode = SplitDecode(vae) if vae is not None else None
        self.on = False
        self._set(False)

    def _set(self, on: bool) -> None:
        for module, plain, hooked in self._forwards:
            if on:
                module.forward = hooked
            elif plain is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = plain
        for proc in self._procs:
            proc._cp_config = proc._parallel_config = self.config if on else None
        if on:  # step graphs (studio/engine/step_graphs.py) keep the split steps apart
            setattr(self.transformer, SPLIT_MARK, self.size)
        else:
            self.transformer.__dict__.pop(SPLIT_MARK, None)
        self.on = on

    @contextmanager
    def active(self) -> Iterator[None]:
        self._set(True)
        try:
            with self.decode.active() if self.decode is not None else nullcontext():
                yield
        finally:
            self._set(False)

    def close(self) -> None:
        """Take the hooks out for good (before the group is formed again, with another mesh)."""
        self._set(False)
        for module, _plain, _hooked in self._forwards:
            module.__dict__.pop("_cache_dit_hook", None)
        for name in ("_is_parallelized", "_parallelism_config", "_cp_config", "_parallel_config",
                     "_extra_parallel_modules"):
            self.transformer.__dict__.pop(name, None)
        self._forwards, self._procs = [], []
