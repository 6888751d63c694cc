"""Denoising steps replayed from CUDA graphs: one graph per (batch, latent size, padded prompt length).

With compiled blocks a step's kernels are fast enough that launching them from Python becomes the
limit (the GPU waited 6-10 ms of every 75-97 ms step on H100, docs/benchmarks.md); a captured graph
launches the whole transformer call at once.

One graph must serve every prompt length within a 32-token bucket, but the transformer marks its
caption padding with Python ints. So the caption goes in already padded to the bucket (the
transformer then sees no padding of its own), and a forward hook on `cap_embedder` puts the learned
`cap_pad_token` on the padded rows from a mask tensor that is filled before each replay: the same
rows, positions and values as the transformer's own padding (tests/test_step_graphs.py checks it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

SEQ_MULTI_OF = 32  # diffusers' Z-Image pads captions and images to multiples of this
SPLIT_MARK = "_zx_split"  # set on the transformer while a split is active: its group size


def padded_length(n: int) -> int:
    return -(-n // SEQ_MULTI_OF) * SEQ_MULTI_OF


class _Static:
    """Input buffers of one shape, and its graph and outputs once captured."""

    def __init__(self, x: list[torch.Tensor], t: torch.Tensor, cap: list[torch.Tensor], length: int) -> None:
        self.x = torch.zeros((len(x), *x[0].shape), dtype=x[0].dtype, device=x[0].device)
        self.t = torch.zeros_like(t)
        self.cap = torch.zeros(len(cap), length, cap[0].shape[1], dtype=cap[0].dtype, device=cap[0].device)
        self.mask = torch.zeros(len(cap) * length, dtype=torch.bool, device=cap[0].device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: list[torch.Tensor] | None = None
        self.calls = 0

    def fill(self, x: list[torch.Tensor], t: torch.Tensor, cap: list[torch.Tensor]) -> None:
        self.x.copy_(torch.stack(x))
        self.t.copy_(t)
        self.cap.zero_()
        self.mask.fill_(True)
        length = self.cap.shape[1]
        for i, c in enumerate(cap):
            self.cap[i, :c.shape[0]].copy_(c)
            self.mask[i * length:i * length + c.shape[0]] = False


class StepGraphs:
    """Wraps a ZImageTransformer2DModel's forward; `enabled()` says when graphs may be used.

    capture=False runs the same padded route without CUDA graphs (how the CPU tests check it).
    Graphs share one memory pool: they never run at once and their outputs are copied out at once.
    """

    def __init__(self, transformer: Any, enabled: Callable[[], bool], *, capture: bool = True,
                 max_graphs: int = 24) -> None:
        self.transformer = transformer
        self.enabled = enabled
        self.capture = capture
        self.max_graphs = max_graphs
        self.statics: dict[tuple, _Static] = {}
        self._pool: Any = None
        self.failed: str | None = None  # why graphs were turned off, if they were
        self._tls = threading.local()
        self._lock = threading.Lock()
        self._eager = transformer.forward
        self._hook = transformer.cap_embedder.register_forward_hook(self._pad_rows)
        transformer.forward = self.forward

    def remove(self) -> None:
        """Back to the plain forward (the graphs and their memory are dropped)."""
        self._hook.remove()
        self.transformer.__dict__.pop("forward", None)
        self.clear()

    def clear(self) -> None:
        """Drop every graph (after the blocks were recompiled or requantized)."""
        with self._lock:
            self.statics.clear()
            self._pool = None

    def _pad_rows(self, _module: Any, _inputs: Any, out: torch.Tensor) -> torch.Tensor | None:
        mask = getattr(self._tls, "mask", None)
        if mask is None:
            return None
        return torch.where(mask[:, None], self.transformer.cap_pad_token.to(out.dtype), out)

    def _key(self, x: Any, t: Any, cap: Any, kwargs: dict) -> tuple | None:
        """The graph key, or None when this call must take the plain forward."""
        if kwargs.get("controlnet_block_samples") is not None or kwargs.get("siglip_feats") is not None \
                or kwargs.get("patch_size", 2) != 2 or kwargs.get("f_patch_size", 1) != 1 \
                or not isinstance(x, (list, tuple)) or not x or not isinstance(x[0], torch.Tensor) \
                or not isinstance(t, torch.Tensor) or len(cap) != len(x):
            return None
        lengths = {padded_length(c.shape[0]) for c in cap}
        shapes = {tuple(xi.shape) for xi in x}
        if len(lengths) != 1 or len(shapes) != 1:
            return None  # items that pad differently: the transformer builds an attention mask
        # a split step (studio/engine/split.py) holds the group's collectives: a graph of its own
        split = getattr(self.transformer, SPLIT_MARK, None)
        return (len(x), shapes.pop(), lengths.pop(), x[0].dtype, cap[0].dtype, tuple(t.shape), split)

    def forward(self, x: Any, t: Any, cap_feats: Any, return_dict: bool = True, **kwargs: Any) -> Any:
        usable = self.failed is None and self.enabled() and not torch.is_grad_enabled()
        key = self._key(x, t, cap_feats, kwargs) if usable else None
        if key is None:
            return self._eager(x, t, cap_feats, return_dict=return_dict, **kwargs)
        try:
            with self._lock:
                out = self._run(key, x, t, cap_feats, kwargs)
        except RuntimeError as exc:  # a kernel that cannot be captured: plain steps from now on
            self.failed = f"{type(exc).__name__}: {exc}"[:300]
            self.clear()
            return self._eager(x, t, cap_feats, return_dict=return_dict, **kwargs)
        return (out,) if not return_dict else _output(out)

    def _padded_call(self, s: _Static, kwargs: dict) -> list[torch.Tensor]:
        self._tls.mask = s.mask
        try:
            return self._eager(list(s.x.unbind(0)), s.t, list(s.cap.unbind(0)), return_dict=False, **kwargs)[0]
        finally:
            self._tls.mask = None

    def _run(self, key: tuple, x: list, t: torch.Tensor, cap: list, kwargs: dict) -> list[torch.Tensor]:
        s = self.statics.get(key)
        if s is None:
            if len(self.statics) >= self.max_graphs:
                self.statics.pop(next(iter(self.statics)))
            s = self.statics[key] = _Static(x, t, cap, key[2])
        s.fill(x, t, cap)
        s.calls += 1
        if not self.capture or (s.graph is None and s.calls < 2):
            return [o.clone() for o in self._padded_call(s, kwargs)]  # first call of a shape: no capture yet
        if s.graph is None:
            self._capture(s, kwargs)
        s.graph.replay()
        return [o.clone() for o in s.out]

    def _capture(self, s: _Static, kwargs: dict) -> None:
        graph = torch.cuda.CUDAGraph()
        # thread_local: a request may run in another thread while the warm-up thread captures
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            s.out = self._padded_call(s, kwargs)
        self._pool = graph.pool()
        s.graph = graph

    def warm(self, x: list[torch.Tensor], t: torch.Tensor, cap: list[torch.Tensor]) -> None:
        """Capture the graph for these shapes now (two calls: the first one runs it plainly)."""
        key = self._key(x, t, cap, {})
        if key is None or self.failed is not None:
            return
        with torch.no_grad(), self._lock:
            for _ in range(2):
                if key in self.statics and self.statics[key].graph is not None:
                    break
                self._run(key, x, t, cap, {})


def _output(out: list[torch.Tensor]) -> Any:
    from diffusers.models.modeling_outputs import Transformer2DModelOutput

    return Transformer2DModelOutput(sample=out)
