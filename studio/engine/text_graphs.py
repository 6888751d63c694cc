"""The text encoder replayed from CUDA graphs, one graph per prompt-length bucket.

Encoding one prompt is about a thousand small kernels (35 Qwen3 layers) for well under a millisecond
of arithmetic, so launches, not maths, set its time (40-110 ms on H100, docs/benchmarks.md); and
every new prompt length is a new shape for the attention kernel. A captured graph replays all of it
in one launch at a fixed shape. Prompts are right-padded to the bucket: the encoder is causal, so the
real tokens' hidden states never see the padding and are read unchanged from the front of the output.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from studio.engine.text_encode import encoder_hidden

BUCKET = 64
# Buckets the warm-up captures (0.3 s each on H100); a longer prompt captures its own on first use.
WARM_UP_TO = 128


def bucket_of(n: int, bucket: int = BUCKET) -> int:
    """The padded length a prompt of n tokens runs at."""
    return max(bucket, -(-n // bucket) * bucket)


def encode_padded(te: Any, inputs: torch.Tensor, length: int) -> torch.Tensor:
    """hidden_states[-2] for embedded inputs (1, n, hidden) right-padded with zeros to `length`."""
    padded = inputs.new_zeros(1, length, inputs.shape[-1])
    padded[:, :inputs.shape[1]] = inputs
    return encoder_hidden(te, padded)


def embed_ids(te: Any, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Token embeddings on `device`, looked up wherever the table lives (the CPU in the 24gb profile)."""
    table = te.get_input_embeddings()
    return table(ids.to(table.weight.device)).to(device, non_blocking=True)


class TextGraphs:
    """CUDA graphs of the text encoder's layers for lengths BUCKET, 2*BUCKET, ... up to max_len.

    The graphs start from token embeddings, so the table may stay on the CPU (24gb profile).
    """

    def __init__(self, te: Any, device: torch.device, max_len: int = 512, bucket: int = BUCKET) -> None:
        self.te, self.device, self.max_len, self.bucket = te, device, max_len, bucket
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._pool: Any = None
        self._lock = threading.Lock()

    def lengths(self) -> list[int]:
        return list(range(self.bucket, bucket_of(self.max_len, self.bucket) + 1, self.bucket))

    def capture(self, length: int) -> None:
        """Record the encoder at `length` (runs it twice first, on a side stream, as capture requires)."""
        hidden = self.te.config.hidden_size
        dtype = next(p.dtype for n, p in self.te.named_parameters() if "layers." in n)
        inputs = torch.zeros(1, length, hidden, dtype=dtype, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.no_grad():
            with torch.cuda.stream(side):
                for _ in range(2):
                    encoder_hidden(self.te, inputs)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: requests keep running in other threads while the warm-up thread captures
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                out = encoder_hidden(self.te, inputs)
        self._pool = graph.pool()  # one memory pool for all lengths: they never run at once
        self.graphs[length] = (graph, inputs, out)

    def capture_all(self, up_to: int | None = None) -> None:
        """Capture every bucket up to `up_to` tokens (all by default); longer ones wait for first use."""
        for length in self.lengths():
            if length not in self.graphs and (up_to is None or length <= up_to):
                self.capture(length)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """(n, hidden) embeddings of token ids (1, n); captures the bucket first if it is missing."""
        n = ids.shape[1]
        length = bucket_of(n, self.bucket)
        with torch.no_grad(), self._lock:
            if length not in self.graphs:
                self.capture(length)
            graph, inputs, out = self.graphs[length]
            inputs.zero_()
            inputs[:, :n].copy_(embed_ids(self.te, ids, self.device))
            graph.replay()
            return out[0, :n].clone()
