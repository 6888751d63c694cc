"""Finding Z-Image weights on disk, in the order a person expects.

Order: an explicit `--model PATH`, the configured path, the Hugging Face cache, the ModelScope cache,
models in the studio's own models folder, ComfyUI single files, and last the built-in demo model.

A ComfyUI set (transformer + text encoder + VAE as single files, no tokenizer) is described by a small
JSON manifest in the cache dir; its path is the model's `path`, which the engine's loader reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from studio.core.errors import StudioError
from studio.core.paths import Paths, get_paths

REPO_IDS = ("Tongyi-MAI/Z-Image-Turbo", "Tongyi-MAI/Z-Image")
REQUIRED = ("transformer", "text_encoder", "vae", "tokenizer", "scheduler")


class ModelNotFoundError(StudioError, RuntimeError):
    """No usable model where one was asked for; the message says where it looked and what to do."""

    usage = True


@dataclass(frozen=True)
class ModelInfo:
    path: str
    source: str  # explicit | settings | huggingface | modelscope | studio | comfyui | demo
    name: str
    format: str  # diffusers | comfyui-single-file
    complete: bool
    size_bytes: int
    missing: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()  # the component files of a single-file set

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


def hf_snapshots(cache: Path, repo_id: str) -> list[Path]:
    """Snapshot folders of `repo_id` in one Hugging Face cache, the one `refs/main` names first."""
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


COMFYUI_ENV = "ZAOXIANG_COMFYUI"
TRANSFORMER_DIRS = ("diffusion_models", "unet")
TEXT_ENCODER_DIRS = ("text_encoders", "clip")
VAE_DIRS = ("vae",)
TOKENIZER_HINT = ("tokenizer (ComfyUI files carry none; `zaoxiang models download --configs-only` "
                  "fetches it and the configs, a few MB)")


def comfyui_roots(configured: str | None = None) -> list[Path]:
    """ComfyUI folders to look in: the configured path, $ZAOXIANG_COMFYUI (os.pathsep list), common places."""
    out = []
    if configured:
        out.append(Path(configured).expanduser())
    for value in os.environ.get(COMFYUI_ENV, "").split(os.pathsep):
        if value:
            out.append(Path(value).expanduser())
    home = Path.home()
    out += [home / "ComfyUI", home / "comfyui", home / "Documents" / "ComfyUI",
            home / "ComfyUI_windows_portable" / "ComfyUI"]
    return out


def comfyui_models_dir(folder: Path) -> Path | None:
    """The folder holding diffusion_models/, text_encoders/, vae/ (a ComfyUI root or its models/)."""
    for cand in (folder / "models", folder):
        if any((cand / d).is_dir() for d in TRANSFORMER_DIRS):
            return cand
    return None


def _safetensors(models_dir: Path, subdirs: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for d in subdirs:
        if (models_dir / d).is_dir():
            files += sorted(p for p in (models_dir / d).rglob("*.safetensors") if p.is_file())
    return files


def _classified(files: list[Path], kind: str) -> list[tuple[Path, dict]]:
    from studio.models.single_file import SingleFileError, classify, read_shapes

    out = []
    for f in files:
        try:
            shapes = read_shapes(f)
        except (OSError, SingleFileError):
            continue
        if classify(shapes) == kind:
            out.append((f, shapes))
    return out


def _prefer(items: list[tuple[Path, dict]], words: tuple[str, ...]) -> list[tuple[Path, dict]]:
    return sorted(items, key=lambda it: not any(w in it[0].name.lower() for w in words))


def single_file_sets(models_dir: Path, source: str, references: list[Path], paths: Paths,
                     only: Path | None = None) -> list[ModelInfo]:
    """One ModelInfo per Z-Image transformer file under `models_dir`, with its companions resolved.

    `references` are diffusers folders (complete or configs-only) whose configs and tokenizer a set may
    borrow; the full Z-Image-Turbo configs are always a candidate. `only` restricts to one transformer file.
    """
    from studio.models import single_file as sf

    roots = [*references, sf.builtin_config_root(paths.cache_dir)]
    transformers = _classified([only] if only else _safetensors(models_dir, TRANSFORMER_DIRS), "transformer")
    encoders = _prefer(_classified(_safetensors(models_dir, TEXT_ENCODER_DIRS), "text_encoder"), ("qwen",))
    vaes = _prefer(_classified(_safetensors(models_dir, VAE_DIRS), "vae"), ("ae", "flux"))
    out = []
    for tfile, tshapes in transformers:
        missing: list[str] = []
        tsig = sf.signature("transformer", tshapes)
        tcfg = sf.match_config("transformer", tshapes, roots)
        if tcfg is None:
            missing.append(f"a config for {tfile.name} (its shapes match no known Z-Image transformer)")
        te = next(((f, sh, c) for f, sh in encoders
                   if sf.signature("text_encoder", sh)["hidden_size"] == tsig["cap_feat_dim"]
                   and (c := sf.match_config("text_encoder", sh, roots)) is not None), None)
        if te is None:
            missing.append("text encoder (a Qwen3-4B .safetensors in models/text_encoders)")
        vae = next(((f, sh, c) for f, sh in vaes if (c := sf.match_config("vae", sh, roots)) is not None), None)
        if vae is None:
            missing.append("VAE (the Flux ae.safetensors in models/vae)")
        tok = None
        if te is not None:
            tok = next((r for r in references if sf.has_tokenizer(r)
                        and sf.match_config("text_encoder", te[1], [r]) is not None), None)
            if tok is None:
                missing.append(TOKENIZER_HINT)
        sched = next((r for r in (tok, tcfg) if r is not None and (r / "scheduler").is_dir()), roots[-1])
        files = [tfile] + [x[0] for x in (te, vae) if x is not None]
        key = hashlib.sha1(str(tfile.resolve()).encode()).hexdigest()[:16]
        manifest = sf.write_manifest(
            paths.cache_dir / "single-file-sets" / f"{tfile.stem}-{key}{sf.MANIFEST_SUFFIX}",
            {"transformer": str(tfile), "text_encoder": str(te[0]) if te else "",
             "vae": str(vae[0]) if vae else "", "transformer_config": str(tcfg or ""),
             "text_encoder_config": str(te[2]) if te else "", "vae_config": str(vae[2]) if vae else "",
             "tokenizer": str(tok or ""), "scheduler": str(sched)})
        out.append(ModelInfo(
            path=str(manifest), source=source, name=tfile.stem, format=sf.FORMAT, complete=not missing,
            size_bytes=sum(f.stat().st_size for f in files), missing=tuple(missing),
            parts=tuple(str(f) for f in files)))
    return out


def _inspect_any(value: str, source: str, references: list[Path], paths: Paths) -> list[ModelInfo]:
    """A path a person gave: a diffusers folder, a ComfyUI folder, a transformer file or a set manifest."""
    from studio.models import single_file as sf

    target = Path(value).expanduser()
    if sf.is_manifest(target):
        target = Path(sf.read_manifest(target)["transformer"])
    if target.is_file() and target.suffix == ".safetensors":
        return single_file_sets(target.parent.parent, source, references, paths, only=target)
    info = inspect_folder(target, source)
    if info is not None:
        return [info]
    models_dir = comfyui_models_dir(target) if target.is_dir() else None
    return single_file_sets(models_dir, source, references, paths) if models_dir else []


def _diffusers_found(paths: Paths) -> list[ModelInfo]:
    found = []
    for repo_id in REPO_IDS:
        for cache in hf_cache_dirs():
            for snap in hf_snapshots(cache, repo_id):
                found.append(inspect_folder(snap, "huggingface", repo_id))
        for cache in modelscope_cache_dirs():
            for folder in _modelscope_folders(cache, repo_id):
                found.append(inspect_folder(folder, "modelscope", repo_id))
    if paths.models_dir.is_dir():
        for folder in sorted(paths.models_dir.iterdir()):
            if folder.is_dir() and not folder.name.startswith(("zaoxiang-demo-", ".")):
                found.append(inspect_folder(folder, "studio"))
    return [f for f in found if f is not None]


def _references(paths: Paths, found: list[ModelInfo] | None = None) -> list[Path]:
    """Diffusers folders whose configs/tokenizer single files may borrow (the demo's last)."""
    from studio.models.demo import demo_model_dir

    refs = [Path(i.path) for i in (found if found is not None else _diffusers_found(paths))]
    demo = demo_model_dir(paths)
    return refs + ([demo] if (demo / "model_index.json").is_file() else [])


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

    diffusers = _diffusers_found(paths)
    refs = _references(paths, diffusers)
    for value, source in ((explicit, "explicit"), (configured, "settings")):
        if value and value != "demo":
            for info in _inspect_any(value, source, refs, paths):
                add(info)
    for info in diffusers:
        add(info)
    comfy_seen: set[str] = set()
    for root in comfyui_roots():
        models_dir = comfyui_models_dir(root) if root.is_dir() else None
        if models_dir and os.path.realpath(models_dir) not in comfy_seen:
            comfy_seen.add(os.path.realpath(models_dir))
            for info in single_file_sets(models_dir, "comfyui", refs, paths):
                add(info)
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
            infos = _inspect_any(value, source, _references(paths), paths)
            if not infos:
                raise ModelNotFoundError(
                    f"No Z-Image model at {value}: expected a diffusers folder with model_index.json, "
                    "a ComfyUI folder (models/diffusion_models, text_encoders, vae) or a Z-Image transformer "
                    ".safetensors."
                )
            complete = [i for i in infos if i.complete]
            if not complete:
                raise ModelNotFoundError(
                    f"The model at {value} is incomplete: missing {', '.join(infos[0].missing)}.")
            return complete[0]
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
