"""Loading a ZImagePipeline from a local diffusers-format folder onto one device."""

from __future__ import annotations

from pathlib import Path

import torch


class ModelLoadError(RuntimeError):
    """The model folder could not be loaded; the message says which and why."""


def load_pipeline(path: str | Path, device: torch.device, dtype: torch.dtype):
    """Load every component from `path` (local files only) and move the pipeline to `device`."""
    from diffusers import ZImagePipeline
    from diffusers.utils import logging as dlogging

    dlogging.disable_progress_bar()

    folder = Path(path)
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"No model_index.json in {folder}: not a diffusers-format model folder.")
    try:
        pipe = ZImagePipeline.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"Could not load the model at {folder}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
