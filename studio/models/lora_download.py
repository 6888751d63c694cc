"""Getting a LoRA repo from Hugging Face or ModelScope into the studio's `loras` folder.

The hub side (listing, resuming, checking sizes and hashes) is the model download's
(studio/models/download.py); this adds what makes it a LoRA download: only `.safetensors` files are
fetched, a repo that offers only pickle files (.bin, .pt, ...) is refused before anything is fetched,
and what arrived is read as LoRAs, so a repo that turns out to hold none is removed again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from studio.core.lora_text import PICKLE_SUFFIXES, SUFFIX
from studio.models.download import DownloadError, ProgressCallback, download_model, list_files
from studio.models.loras import LoraError, LoraInfo, inspect


def folder_for(repo: str, loras_dir: Path) -> Path:
    """Where `owner/name` goes: one folder per repo (`owner--name`), so two repos' files never collide."""
    return loras_dir / repo.strip("/").replace("/", "--")


def download_lora(source: str, repo: str, loras_dir: Path, revision: str = "main", endpoint: str | None = None,
                  progress: ProgressCallback | None = None) -> list[LoraInfo]:
    """Download the LoRA .safetensors files of `repo` into `loras_dir`; returns them as `models list` shows them.

    DownloadError (one line) for a repo without .safetensors files, one whose files are not LoRAs, or
    the hub's own failures.
    """
    files = list_files(source, repo, revision, endpoint)
    if not any(f.path.endswith(SUFFIX) for f in files):
        pickles = [f.path for f in files if f.path.lower().endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise DownloadError(f"{repo} offers only pickle files ({', '.join(pickles[:3])}); only .safetensors "
                                "LoRAs are downloaded (pickle can run code): look for a .safetensors version.")
        raise DownloadError(f"{repo} has no .safetensors file: it is not a LoRA repo.")
    target = folder_for(repo, loras_dir)
    existed = target.exists()
    folder = download_model(source, repo, target, revision, endpoint=endpoint, progress=progress,
                            allow=(f"*{SUFFIX}",))
    infos, refused = [], []
    for path in sorted(folder.rglob(f"*{SUFFIX}")):
        if ".cache" in path.relative_to(folder).parts:
            continue
        try:
            infos.append(inspect(path))
        except LoraError as exc:
            refused.append(str(exc))
    if not infos:
        if not existed:
            shutil.rmtree(target, ignore_errors=True)
        raise DownloadError(f"{repo} holds no LoRA: {refused[0] if refused else 'no .safetensors file arrived'}")
    return infos
