"""Finding Z-Image weights on disk, in the order a person expects.

Order: an explicit `--model PATH`, the configured path, the Hugging Face cache, the ModelScope cache,
models in the studio's own models folder, and last the built-in demo model.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from studio.core.paths import Paths, get_paths

REPO_IDS = ("Tongyi-MAI/Z-Image-Turbo", "Tongyi-MAI/Z-Image")
REQUIRED = ("transformer", "text_encoder", "vae", "tokenizer", "scheduler")


class ModelNotFoundError(RuntimeError):
    """No usable model where one was asked for; the message says where it looked and what to do."""


@dataclass(frozen=True)
class ModelInfo:
    path: str
    source: str  # explicit | settings | huggingface | modelscope | studio | demo
    name: str
    format: str  # diffusers
    complete: bool
    size_bytes: int
    missing: tuple[str, ...] = ()

    @property
    def is_demo(self) -> bool:
        return self.source == "demo"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["is_demo"] = self.is_demo
        return d


def _size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size  # follows HF cache symlinks to blobs
            except OSError:
                pass
    return total


def inspect_folder(folder: Path, source: str, name: str | None = None) -> ModelInfo | None:
    """A ModelInfo for a diffusers-format Z-Image folder, or None if it is not one at all."""
    index = folder / "model_index.json"
    if not index.is_file():
        return None
    try:
        data = json.loads(index.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if "ZImage" not in str(data.get("_class_name", "")):
        return None
    missing = []
    for part in REQUIRED:
        sub = folder / part
        if not sub.is_dir() or not any(sub.iterdir()):
            missing.append(part)
        elif part in ("transformer", "text_encoder", "vae") and not (
            any(sub.glob("*.safetensors")) or any(sub.glob("*.bin"))
        ):
            missing.append(f"{part} weights")
    return ModelInfo(
        path=str(folder), source=source, name=name or folder.name, format="diffusers",
        complete=not missing, size_bytes=_size(folder), missing=tuple(missing),
    )


def hf_cache_dirs() -> list[Path]:
    """Hugging Face hub cache folders, honouring HF_HUB_CACHE and HF_HOME."""
    out = []
    if os.environ.get("HF_HUB_CACHE"):
        out.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        out.append(Path(os.environ["HF_HOME"]) / "hub")
    out.append(Path.home() / ".cache" / "huggingface" / "hub")
    return out


def modelscope_cache_dirs() -> list[Path]:
    """ModelScope cache folders, honouring MODELSCOPE_CACHE."""
    out = []
    if os.environ.get("MODELSCOPE_CACHE"):
        out.append(Path(os.environ["MODELSCOPE_CACHE"]))
    out.append(Path.home() / ".cache" / "modelscope" / "hub")
    return out


def _hf_snapshots(cache: Path, repo_id: str) -> list[Path]:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return []
    ref = repo / "refs" / "main"
    preferred = []
    if ref.is_file():
        preferred = [snaps / ref.read_text().strip()]
    others = sorted((p for p in snaps.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    return preferred + [p for p in others if p not in preferred]


def _modelscope_folders(cache: Path, repo_id: str) -> list[Path]:
    org, name = repo_id.split("/")
    # Newer ModelScope writes hub/models/Org/Name; older versions hub/Org/Name (dots become ___).
    cands = [cache / "models" / org / name, cache / org / name, cache / "models" / org / name.replace(".", "___")]
    return [c for c in cands if c.is_dir()]


def find_models(explicit: str | None = None, configured: str | None = None,
                paths: Paths | None = None, include_demo: bool = True) -> list[ModelInfo]:
    """Every model found, in priority order (first complete one is what the studio uses)."""
    paths = paths or get_paths()
    found: list[ModelInfo] = []
    seen: set[str] = set()

    def add(info: ModelInfo | None) -> None:
        if info and os.path.realpath(info.path) not in seen:
            seen.add(os.path.realpath(info.path))
            found.append(info)

    for value, source in ((explicit, "explicit"), (configured, "settings")):
        if value and value != "demo":
            add(inspect_folder(Path(value).expanduser(), source))
    for repo_id in REPO_IDS:
        for cache in hf_cache_dirs():
            for snap in _hf_snapshots(cache, repo_id):
                add(inspect_folder(snap, "huggingface", repo_id))
        for cache in modelscope_cache_dirs():
            for folder in _modelscope_folders(cache, repo_id):
                add(inspect_folder(folder, "modelscope", repo_id))
    if paths.models_dir.is_dir():
        for folder in sorted(paths.models_dir.iterdir()):
            if folder.is_dir() and not folder.name.startswith(("zaoxiang-demo-", ".")):
                add(inspect_folder(folder, "studio"))
    if include_demo:
        from studio.models.demo import demo_model_dir

        demo = demo_model_dir(paths)
        add(inspect_folder(demo, "demo", "demo") or ModelInfo(
            path=str(demo), source="demo", name="demo", format="diffusers", complete=True, size_bytes=0))
    return found


def resolve_model(explicit: str | None = None, configured: str | None = None,
                  paths: Paths | None = None) -> ModelInfo:
    """The model to use. An explicit path that is not a complete model is an error, never a fallback."""
    paths = paths or get_paths()
    if explicit == "demo" or (not explicit and configured == "demo"):
        return _demo(paths)
    for value, source in ((explicit, "explicit"), (configured, "settings")):
        if value:
            info = inspect_folder(Path(value).expanduser(), source)
            if info is None:
                raise ModelNotFoundError(
                    f"No Z-Image model at {value}: expected a diffusers folder with model_index.json."
                )
            if not info.complete:
                raise ModelNotFoundError(f"The model at {value} is incomplete: missing {', '.join(info.missing)}.")
            return info
    for info in find_models(paths=paths, include_demo=False):
        if info.complete:
            return info
    return _demo(paths)


def _demo(paths: Paths) -> ModelInfo:
    from studio.models.demo import ensure_demo_model

    folder = ensure_demo_model(paths)
    info = inspect_folder(folder, "demo", "demo")
    assert info is not None and info.complete, f"demo model at {folder} is broken"
    return info
