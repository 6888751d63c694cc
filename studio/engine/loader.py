"""Loading a ZImagePipeline onto one device: a diffusers-format folder, or a ComfyUI single-file set.

A single-file set arrives as the manifest discovery wrote (the component files plus the folders its
configs, tokenizer and scheduler come from); `studio.models.single_file` does the key conversion.
"""

from __future__ import annotations

from pathlib import Path

import torch


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says which and why."""


def load_pipeline(path: str | Path, device: torch.device, dtype: torch.dtype):
    """Load every component from `path` (local files only) and move the pipeline to `device`."""
    from diffusers import ZImagePipeline
    from diffusers.utils import logging as dlogging

    dlogging.disable_progress_bar()
    from studio.models import single_file as sf

    if sf.is_manifest(path):
        pipe = _load_single_files(Path(path), dtype)
    else:
        folder = Path(path)
        if not (folder / "model_index.json").is_file():
            raise ModelLoadError(f"No model_index.json in {folder}: not a diffusers-format model folder.")
        try:
            pipe = ZImagePipeline.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"Could not load the model at {folder}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _load_single_files(manifest_path: Path, dtype: torch.dtype):
    from diffusers import ZImagePipeline
    from diffusers.utils import logging as dlogging

    from studio.models import single_file as sf

    manifest = sf.read_manifest(manifest_path)
    missing = [name for key, name in (("transformer", "transformer file"), ("text_encoder", "text encoder file"),
                                      ("vae", "VAE file"), ("tokenizer", "tokenizer folder"),
                                      ("transformer_config", "transformer config"), ("vae_config", "VAE config"),
                                      ("text_encoder_config", "text encoder config"))
               if not manifest.get(key)]
    if missing:
        raise ModelLoadError(
            f"The ComfyUI set {Path(manifest.get('transformer', '?')).name} is missing: {', '.join(missing)} "
            "(run `zaoxiang models list` to see what was found; `zaoxiang models download --configs-only` "
            "fetches the tokenizer and configs).")
    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()  # from_single_file warns about an empty fp32-module list on every call
    try:
        return ZImagePipeline(**sf.load_components(manifest, dtype))
    except (OSError, ValueError, KeyError, sf.SingleFileError) as exc:
        raise ModelLoadError(f"Could not load the ComfyUI files {manifest['transformer']}: {exc}") from exc
    finally:
        dlogging.set_verbosity(level)
