"""Process environment that must be in place before torch initialises CUDA.

Call `prepare_process_env` before the first `import torch` of a process (the CLI and each worker
do): the CUDA caching allocator reads PYTORCH_CUDA_ALLOC_CONF once, at CUDA initialisation.
"""

from __future__ import annotations

import os

# expandable_segments avoids the fragmentation that made 1024x1024 batches OOM near the 24 GB line.
DEFAULT_ALLOC_CONF = "expandable_segments:True"


def prepare_process_env(alloc_conf: str | None = None, threads: int | None = None,
                        offline: bool = True) -> None:
    """Set the allocator config, thread counts and hub-offline flags (user settings win)."""
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", alloc_conf or DEFAULT_ALLOC_CONF)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
