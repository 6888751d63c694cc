"""LoRA files: where they are, what is in them, and how people name them with a strength.

Z-Image LoRAs ship in several key layouts (diffusers, ai-toolkit, kohya/musubi, DiffSynth, some on
the fused `qkv` of the original checkpoints); this module tells them apart from the safetensors
header alone (no torch, never pickle), so listing a folder of LoRAs stays fast and a file meant
for another model is refused before anything loads. The engine (studio/engine/lora.py) does the
loading. The A1111 prompt form `<lora:name:0.8>` and `NAME_OR_PATH[:STRENGTH]` are parsed in core
(studio/core/lora_text.py) and re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

from studio.core.lora_text import PICKLE_SUFFIXES, SUFFIX, LoraError  # how people write LoRAs: core's
from studio.core.paths import Paths, get_paths
from studio.models.single_file import SingleFileError, read_header


class Layout(str, Enum):
    DIFFUSERS = "diffusers"  # transformer.layers.0.attention.to_q.lora_A.weight
    AI_TOOLKIT = "ai-toolkit"  # diffusion_model.layers.0.attention.to_q.lora_A.weight
    KOHYA = "kohya"  # lora_unet_layers_0_attention_to_q.lora_down.weight (+ .alpha)
    DIFFSYNTH = "diffsynth"  # layers.0.attention.to_q.lora_A.default.weight
    PEFT = "peft"  # layers.0.attention.to_q.lora_A.weight (no prefix)
    DOTTED = "dotted"  # layers.0.attention.to.q.lora.down.weight (some trainers)
    LOKR = "lokr"  # Kronecker factors, not a LoRA
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class LoraInfo:
    """One LoRA file as its header describes it."""

    path: str
    name: str  # the file name without .safetensors (what `<lora:name>` refers to)
    layout: Layout
    fused_qkv: bool  # trained on the original checkpoints' fused q/k/v projection
    rank: int  # the largest rank in the file
    targets: tuple[str, ...]  # module groups: attention, feed_forward, adaLN, refiners, final_layer, ...
    modules: int  # how many linears it adapts
    dim: int | None  # the model width it was made for (None where no key tells)
    n_layers: int | None  # the highest main-block index + 1 it touches
    base_model: str | None  # from the file's metadata, else guessed from its shapes
    base_model_from: str  # "metadata" | "shapes" | ""
    size_bytes: int
    keys_digest: str = ""  # sha1 of the tensor names: with `content_hash`, what makes two files the same LoRA

    def describe(self) -> str:
        qkv = ", fused qkv" if self.fused_qkv else ""
        base = self.base_model or "unknown base"
        return f"{self.name}: {self.layout.value}{qkv}, rank {self.rank}, {self.modules} linears, {base}"


# --- reading one file --------------------------------------------------------------------------

_DOWN = (".lora_A.weight", ".lora_down.weight", ".lora_A.default.weight", ".lora.down.weight")
_UP = (".lora_B.weight", ".lora_up.weight", ".lora_B.default.weight", ".lora.up.weight")
# Metadata keys trainers write the base model under (kohya/musubi, modelspec, ai-toolkit, ours).
_BASE_KEYS = ("zaoxiang.base_model", "modelspec.architecture", "ss_base_model_version", "base_model",
              "ss_sd_model_name", "base_model_name")
_GROUPS = (("noise_refiner", ("noise_refiner", "noise.refiner")),
           ("context_refiner", ("context_refiner", "context.refiner")),
           ("final_layer", ("final_layer", "final.layer")),
           ("embedders", ("embedder",)),
           ("adaLN", ("adaln",)),
           ("attention", ("attention", "attn")),
           ("feed_forward", ("feed_forward", "feed.forward", "feedforward")))
# Known Z-Image transformers by (width, main blocks): the name a guess from shapes gives.
KNOWN_BASES = {(3840, 30): "Z-Image (6B: Turbo / Base)", (128, 4): "z-image-demo-tiny"}


def detect_layout(keys: list[str] | tuple[str, ...] | set[str]) -> Layout:
    """The key layout of a LoRA state dict, from its names alone."""
    keys = list(keys)
    if any(".lokr_" in k for k in keys):
        return Layout.LOKR
    if any(k.startswith("lora_unet_") for k in keys):
        return Layout.KOHYA
    if any(".lora.down." in k for k in keys):
        return Layout.DOTTED
    if any(".default." in k and ".lora_" in k for k in keys):
        return Layout.DIFFSYNTH
    lora = [k for k in keys if ".lora_A." in k or ".lora_B." in k or ".lora_down." in k]
    if not lora:
        return Layout.UNKNOWN
    if all(k.startswith("transformer.") for k in lora):
        return Layout.DIFFUSERS
    if all(k.startswith(("diffusion_model.", "model.diffusion_model.")) for k in lora):
        return Layout.AI_TOOLKIT
    if all(re.match(r"(layers|noise_refiner|context_refiner|all_|final_layer|x_embedder|t_embedder|cap_embedder)",
                    k) for k in lora):
        return Layout.PEFT
    return Layout.UNKNOWN


def _module_of(key: str) -> str | None:
    for end in _DOWN:
        if key.endswith(end):
            return key[: -len(end)]
    return None


def _targets(modules: list[str]) -> tuple[str, ...]:
    found = []
    for group, words in _GROUPS:
        if any(any(w in m.lower() for w in words) for m in modules):
            found.append(group)
    return tuple(found)


def _dim(modules: dict[str, tuple[int, ...]]) -> int | None:
    """The model width: the input size of a q/k/v (or fused qkv) projection's down matrix."""
    for module, shape in modules.items():
        if re.search(r"(to[._]?[qkv]|qkv)$", module) and len(shape) == 2:
            return int(shape[1])
    return None


def _n_layers(modules: list[str]) -> int | None:
    idx = [int(m.group(1)) for k in modules
           if (m := re.search(r"(?:^|[._])layers[._](\d+)[._]", k)) and "refiner" not in k]
    return max(idx) + 1 if idx else None


def base_from_metadata(meta: dict[str, str]) -> str | None:
    for key in _BASE_KEYS:
        value = str(meta.get(key) or "").strip()
        if value:
            return value
    return None


def describe_header(path: str | Path, tensors: dict[str, dict[str, Any]], meta: dict[str, str]) -> LoraInfo:
    """A LoraInfo from a header already read (see `inspect`)."""
    p = Path(path)
    shapes = {k: tuple(v.get("shape", ())) for k, v in tensors.items() if isinstance(v, dict)}
    layout = detect_layout(shapes)
    downs = {m: shapes[k] for k in shapes if (m := _module_of(k)) is not None}
    rank = max((int(s[0]) for s in downs.values() if s), default=0)
    dim, n_layers = _dim(downs), _n_layers(list(downs))
    base, source = base_from_metadata(meta), "metadata"
    if base is None and (dim, n_layers) in KNOWN_BASES:
        base, source = KNOWN_BASES[(dim, n_layers)], "shapes"
    elif base is None and dim is not None:
        base, source = f"a Z-Image model of width {dim}", "shapes"
    return LoraInfo(
        path=str(p), name=p.name[: -len(SUFFIX)] if p.name.endswith(SUFFIX) else p.stem, layout=layout,
        fused_qkv=any(re.search(r"qkv$", m) for m in downs), rank=rank, targets=_targets(list(downs)),
        modules=len(downs), dim=dim, n_layers=n_layers, base_model=base,
        base_model_from=source if base else "", size_bytes=p.stat().st_size,
        keys_digest=hashlib.sha1("\n".join(sorted(shapes)).encode()).hexdigest())


def _refuse_pickle(p: Path) -> None:
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise LoraError(f"{p.name} is a pickle file ({p.suffix}); only .safetensors LoRAs are loaded "
                        "(pickle can run code): look for a .safetensors version of it.", "format", p.name)


def inspect(path: str | Path) -> LoraInfo:
    """Read a LoRA file's header and describe it; LoraError for anything that is not a LoRA safetensors."""
    p = Path(path)
    _refuse_pickle(p)
    try:
        tensors, meta = read_header(p)
    except FileNotFoundError as exc:
        raise LoraError(f"No LoRA file at {p}.", "missing", str(p)) from exc
    except (OSError, SingleFileError) as exc:
        raise LoraError(f"{p.name} is not a safetensors file; a LoRA must be a .safetensors file.", "format",
                        p.name) from exc
    info = describe_header(p, tensors, meta)
    if info.layout is Layout.LOKR:
        raise LoraError(f"{p.name} is a LoKr, not a LoRA; only LoRA files are supported.", "format", p.name)
    if info.modules == 0 or info.layout is Layout.UNKNOWN:
        sample = ", ".join(list(tensors)[:3]) or "no tensors"
        raise LoraError(f"{p.name} holds no LoRA weights in a layout we know (keys such as {sample}); "
                        "expected diffusers, ai-toolkit, kohya or DiffSynth Z-Image LoRA keys.", "format", p.name)
    return info


def fits(info: LoraInfo, transformer_config: dict[str, Any]) -> str | None:
    """None if the LoRA's shapes fit a transformer with this config, else why not (one line)."""
    dim, layers = transformer_config.get("dim"), transformer_config.get("n_layers")
    if info.dim is not None and dim is not None and info.dim != dim:
        return (f"{info.name} was made for {info.base_model or 'another model'} (width {info.dim}); "
                f"this model's width is {dim}: use a LoRA made for this model.")
    if info.n_layers is not None and layers is not None and info.n_layers > layers:
        return (f"{info.name} adapts {info.n_layers} blocks; this model has {layers}: "
                "use a LoRA made for this model.")
    return None


@lru_cache(maxsize=256)
def _hash(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        fh.seek(8 + n)
        h = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hash(path: str | Path) -> str:
    """sha256 of the tensor data (after the header): A1111's and Civitai's LoRA hash, blind to metadata edits.

    Remembered per (path, size, mtime), so asking again for the same file costs a stat.
    """
    st = os.stat(path)
    return _hash(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def short_hash(path: str | Path) -> str:
    """The first 12 hex digits of `content_hash`: what A1111 writes in `Lora hashes`."""
    return content_hash(path)[:12]


# --- where LoRAs are ---------------------------------------------------------------------------

DEMO_FOLDER = "demo-lora"  # the demo LoRAs shipped in assets/ (tools/train_demo_lora.py)


def in_folders(path: str | Path, folders: list[Path]) -> bool:
    """Whether `path`, with every symlink and `..` followed, is one of `folders` or lies inside one."""
    real = os.path.realpath(path)
    for folder in folders:
        root = os.path.realpath(folder)
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False


def demo_lora_dir() -> Path | None:
    """The demo LoRAs' folder in assets/, if present: a path into it is taken like one into `lora_dirs`."""
    from studio.core.assets import candidate_dirs

    return next((d for d in (root / DEMO_FOLDER for root in candidate_dirs()) if d.is_dir()), None)


def lora_dirs(paths: Paths | None = None, comfyui: list[Path] | None = None) -> list[Path]:
    """Folders to look in: the studio's own `loras` folder, then every ComfyUI `models/loras` found."""
    from studio.models.discovery import comfyui_roots

    out = [(paths or get_paths()).loras_dir]
    for root in comfyui if comfyui is not None else comfyui_roots():
        for cand in (root / "models" / "loras", root / "loras"):
            if cand.is_dir() and cand not in out:
                out.append(cand)
    return out


def find_loras(dirs: list[Path] | None = None) -> list[LoraInfo]:
    """Every readable LoRA .safetensors under `dirs` (subfolders too), in folder order then by name."""
    out = []
    for d in dirs if dirs is not None else lora_dirs():
        if not d.is_dir():
            continue
        for f in sorted(d.rglob(f"*{SUFFIX}")):
            try:
                out.append(inspect(f))
            except (LoraError, OSError):
                continue
    return out


def resolve(name_or_path: str, dirs: list[Path] | None = None, *, paths: bool = True) -> Path:
    """A LoRA file by name (file name without .safetensors, or sub/name) in `dirs`, or by path.

    `paths=False` is for everyone but the person at the terminal (the window, the APIs): an absolute
    path is taken only where its real path lies in `dirs` or the demo LoRAs' folder, a relative one
    is only a name, and every other path gets the very line a missing name gets, so the answer tells
    nothing about files elsewhere. (A file the person linked into a folder is found by its name.)
    The worker resolves with paths: it runs only specs the studio has checked."""
    text = name_or_path.strip()
    p = Path(text).expanduser()
    dirs = dirs if dirs is not None else lora_dirs()
    if not paths and p.is_absolute():
        demo = demo_lora_dir()
        if not (in_folders(p, [*dirs, *([demo] if demo else [])]) and p.is_file()):
            raise _missing(text, dirs, paths)
        _refuse_pickle(p)
        return p
    _refuse_pickle(p)
    if paths and p.is_file():
        return p
    want = text[: -len(SUFFIX)] if text.lower().endswith(SUFFIX) else text
    want = want.replace("\\", "/").lower()
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted(d.rglob(f"*{SUFFIX}")):
            rel = f.relative_to(d).as_posix()[: -len(SUFFIX)].lower()
            if rel == want or f.name[: -len(SUFFIX)].lower() == want:
                return f
    raise _missing(text, dirs, paths)


def _missing(text: str, dirs: list[Path], paths: bool) -> LoraError:
    where = ", ".join(str(d) for d in dirs) or "no LoRA folder"
    if not paths:
        return LoraError(f"No LoRA named '{text}' (looked in {where}): put its .safetensors file there.",
                         "missing", text)
    if os.sep in text or "/" in text:
        return LoraError(f"No LoRA file at {Path(text).expanduser()} (nor one named so in {where}): check the path.",
                         "missing", text)
    return LoraError(f"No LoRA named '{text}' (looked in {where}): put its .safetensors file there or give its path.",
                     "missing", text)


# --- checking a request's LoRAs before anything is queued ----------------------------------------


def checker(model_path: str | Path | None = None, dirs: list[Path] | None = None, *,
            paths: bool = False) -> Callable[[str], Path]:
    """A `check_lora` for `core.request.validate`: the LoRA is found (name in `dirs`; a path only
    inside them, or anywhere with `paths=True`, which only the CLI asks for: see `resolve`), is a
    LoRA .safetensors file, and fits the model at `model_path` where its transformer config can be
    read (a ComfyUI single file is checked when it loads). Raises LoraError, one line."""
    config: dict[str, Any] = {}
    if model_path is not None:
        try:
            config = json.loads((Path(model_path) / "transformer" / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}

    def check(name: str) -> Path:
        path = resolve(name, dirs, paths=paths)
        reason = fits(inspect(path), config)
        if reason:
            raise LoraError(reason, "model", path.name)
        return path

    return check
