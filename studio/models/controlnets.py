"""ControlNet weights for Z-Image (the Fun-Controlnet-Union format): where they are, what they fit.

Read from headers only (no torch, never pickle), like studio/models/loras.py: a diffusers folder
(`config.json` + safetensors), or a single file as alibaba-pai publishes it and ComfyUI keeps it in
`models/controlnet` or `models/model_patches`. A single file carries no config, so it is rebuilt
from the tensor shapes; the transformer layers the hints land on follow the one rule every
published variant uses (evenly spaced from block 0: 6 → every 5th, 15 → every 2nd). A ControlNet
made for another base model is refused before anything loads. The engine does the loading.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.i18n import t
from studio.core.paths import Paths, get_paths
from studio.models.loras import in_folders
from studio.models.single_file import SingleFileError, read_header

SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
CLASS_NAME = "ZImageControlNetModel"
DEMO_FOLDER = "demo-controlnet"
_EMBED = re.compile(r"^control_all_x_embedder\.(\d+)-(\d+)\.weight$")
_LAYER = re.compile(r"^control_layers\.(\d+)\.")
_REFINER = re.compile(r"^control_noise_refiner\.(\d+)\.")
# Published Z-Image-Turbo-Fun-Controlnet-Union releases: control layers -> the name people know.
KNOWN = {6: "Fun-Controlnet-Union 1.0", 15: "Fun-Controlnet-Union 2.x", 3: "Fun-Controlnet-Union lite"}


class ControlNetError(ValueError):
    """A ControlNet that cannot be used as asked; the message is one line naming what would work."""


@dataclass(frozen=True)
class ControlNetInfo:
    path: str  # the folder (diffusers) or the .safetensors file
    name: str
    format: str  # "diffusers" | "single-file"
    config: dict[str, Any]  # ZImageControlNetModel's constructor arguments
    weights: str  # the safetensors file holding the weights
    size_bytes: int

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    def describe(self) -> str:
        n = len(self.config["control_layers_places"])
        known = KNOWN.get(n, f"{n} control layers")
        return f"{self.name}: {known}, width {self.dim}, control input {self.config['control_in_dim']} channels"


def places_for(n_control: int, n_layers: int) -> list[int]:
    """The transformer blocks that receive the hints of `n_control` control layers (evenly from 0)."""
    step = max(1, n_layers // max(1, n_control))
    return [i * step for i in range(n_control)]


def config_from_header(tensors: dict[str, dict[str, Any]], name: str, n_layers: int = 30) -> dict[str, Any]:
    """ZImageControlNetModel arguments rebuilt from a single file's tensor shapes."""
    embed = [(k, m) for k in tensors if (m := _EMBED.match(k))]
    layers = {int(m.group(1)) for k in tensors if (m := _LAYER.match(k))}
    if not embed or not layers:
        sample = ", ".join(list(tensors)[:3]) or "no tensors"
        raise ControlNetError(f"{name} is not a Z-Image ControlNet (keys such as {sample}); expected "
                              "Fun-Controlnet-Union weights (control_layers.*, control_all_x_embedder.*).")
    key, m = embed[0]
    patch, f_patch = int(m.group(1)), int(m.group(2))
    dim, fan_in = tensors[key]["shape"]
    head_dim = tensors.get("control_layers.0.attention.norm_q.weight", {}).get("shape", [128])[0]
    kv = tensors.get("control_layers.0.attention.to_k.weight", {}).get("shape", [dim])[0]
    refiners = {int(m.group(1)) for k in tensors if (m := _REFINER.match(k))}
    if not refiners:
        mode: str | None = "control_layers"
    elif any(k.startswith("control_noise_refiner.") and ".after_proj." in k for k in tensors):
        mode = "control_noise_refiner"
    else:
        mode = None
    return {
        "control_layers_places": places_for(len(layers), n_layers),
        "control_refiner_layers_places": sorted(refiners) if mode == "control_noise_refiner" else [],
        "control_in_dim": fan_in // (patch * patch * f_patch),
        "add_control_noise_refiner": mode,
        "all_patch_size": [patch], "all_f_patch_size": [f_patch], "dim": dim,
        "n_refiner_layers": len(refiners) or 2, "n_heads": dim // head_dim, "n_kv_heads": kv // head_dim,
        "norm_eps": 1e-5, "qk_norm": True,
    }


def inspect(path: str | Path, n_layers: int = 30) -> ControlNetInfo:
    """Describe a ControlNet folder or file; ControlNetError for anything else.

    `n_layers` (the base transformer's blocks) places a single file's hints; a folder's config says."""
    p = Path(path).expanduser()
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise ControlNetError(f"{p.name} is a pickle file ({p.suffix}); only .safetensors ControlNets are "
                              "loaded (pickle can run code): look for a .safetensors version of it.")
    if p.is_dir():
        cfg_file = p / "config.json"
        try:
            config = json.loads(cfg_file.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ControlNetError(f"{p} has no readable config.json; a ControlNet folder needs one.") from exc
        if config.get("_class_name") not in (None, CLASS_NAME):
            raise ControlNetError(f"{p.name} holds a {config.get('_class_name')}, not a Z-Image ControlNet.")
        weights = sorted(p.glob(f"*{SUFFIX}"))
        if not weights:
            raise ControlNetError(f"{p} has no .safetensors weights.")
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        return ControlNetInfo(str(p), p.name, "diffusers", config, str(weights[0]),
                              sum(w.stat().st_size for w in weights))
    try:
        tensors, _meta = read_header(p)
    except FileNotFoundError as exc:
        raise ControlNetError(f"No ControlNet at {p}.") from exc
    except (OSError, SingleFileError) as exc:
        raise ControlNetError(f"{p.name} is not a safetensors file; a ControlNet must be one.") from exc
    config = config_from_header(tensors, p.name, n_layers)
    name = p.name[: -len(SUFFIX)] if p.name.endswith(SUFFIX) else p.stem
    return ControlNetInfo(str(p), name, "single-file", config, str(p), p.stat().st_size)


def misfit(info: ControlNetInfo, transformer_config: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """None if the ControlNet can drive a transformer with this config, else why not: a strings key
    (`input.controlnet_*`) and its arguments, so the engine can raise it as a `SaidError`."""
    dim = transformer_config.get("dim")
    layers = transformer_config.get("n_layers", 0)
    refiners = transformer_config.get("n_refiner_layers", 0)
    cfg = info.config
    if dim is not None and info.dim != dim:
        return "input.controlnet_width", {"name": info.name, "dim": info.dim, "model_dim": dim}
    if max(cfg["control_layers_places"], default=0) >= layers or \
            max(cfg.get("control_refiner_layers_places") or [0], default=0) >= max(refiners, 1):
        return "input.controlnet_blocks", {"name": info.name, "block": max(cfg["control_layers_places"]),
                                           "layers": layers}
    if cfg.get("n_heads") != transformer_config.get("n_heads", cfg.get("n_heads")):
        return "input.controlnet_heads", {"name": info.name, "heads": cfg.get("n_heads")}
    return None


def fits(info: ControlNetInfo, transformer_config: dict[str, Any]) -> str | None:
    """None if the ControlNet can drive a transformer with this config, else why not (one English line)."""
    why = misfit(info, transformer_config)
    return t(why[0], "en", **why[1]) if why else None


def takes_mask(controlnet_config: Any, transformer_config: Any) -> bool:
    """Whether a ControlNet (its config) has an inpaint input: the 1.0 layout's control input is only
    the control latents (as wide as the transformer's input), the later ones add the masked image and
    mask. Either config a dict or a diffusers FrozenDict."""
    return int(controlnet_config["control_in_dim"]) != int(transformer_config.get("in_channels", 16))


# --- where ControlNets are ---------------------------------------------------------------------


def controlnet_dirs(paths: Paths | None = None, comfyui: list[Path] | None = None) -> list[Path]:
    """The studio's `models/controlnet`, then ComfyUI's `models/controlnet` and `models/model_patches`."""
    from studio.models.discovery import comfyui_roots

    out = [(paths or get_paths()).controlnets_dir]
    for root in comfyui if comfyui is not None else comfyui_roots():
        for cand in (root / "models" / "controlnet", root / "models" / "model_patches",
                     root / "controlnet", root / "model_patches"):
            if cand.is_dir() and cand not in out:
                out.append(cand)
    return out


def demo_controlnet() -> Path | None:
    """The tiny ControlNet shipped for the demo model (tools/make_demo_controlnet.py), if present."""
    from studio.core.assets import candidate_dirs

    for folder in (root / DEMO_FOLDER for root in candidate_dirs()):
        if (folder / "config.json").is_file():
            return folder
    return None


def _candidates(folder: Path) -> list[Path]:
    """Diffusers folders (a config.json naming the class) and single .safetensors files under `folder`."""
    out: list[Path] = []
    dirs = {c.parent for c in folder.rglob("config.json")}
    for d in sorted(dirs):
        try:
            if json.loads((d / "config.json").read_text("utf-8")).get("_class_name") == CLASS_NAME:
                out.append(d)
        except (OSError, ValueError):
            continue
    out += [f for f in sorted(folder.rglob(f"*{SUFFIX}")) if f.parent not in dirs]
    return out


def find_controlnets(dirs: list[Path] | None = None, n_layers: int = 30) -> list[ControlNetInfo]:
    """Every readable Z-Image ControlNet under `dirs` (default: its folders, then the demo one)."""
    if dirs is None:
        demo = demo_controlnet()
        dirs = controlnet_dirs() + ([demo.parent] if demo else [])
    out = []
    for d in dirs:
        if not d.is_dir():
            continue
        for cand in _candidates(d):
            try:
                out.append(inspect(cand, n_layers))
            except (ControlNetError, OSError, KeyError, ValueError):
                continue
    return out


def resolve(name_or_path: str, dirs: list[Path] | None = None, n_layers: int = 30, *,
            paths: bool = True) -> ControlNetInfo:
    """A ControlNet by name (folder or file name without .safetensors) in its folders, or by path.

    `paths=False` is for everyone but the person at the terminal, as for LoRAs (models/loras.py
    `resolve`): an absolute path is taken only where its real path lies in a ControlNet folder or is
    the demo one, a relative one is only a name, and any other path gets the line a missing name gets,
    so nothing is read from it and the answer tells nothing about it. The worker resolves with paths."""
    text = name_or_path.strip()
    p = Path(text).expanduser()
    if not paths and p.is_absolute():
        demo = demo_controlnet()
        roots = [*(dirs if dirs is not None else controlnet_dirs()), *([demo] if demo else [])]
        if in_folders(p, roots) and p.exists():
            return inspect(p, n_layers)
        raise _missing(text, dirs, paths)
    if paths and (p.exists() or p.suffix.lower() in PICKLE_SUFFIXES):
        return inspect(p, n_layers)
    want = text[: -len(SUFFIX)] if text.lower().endswith(SUFFIX) else text
    for info in find_controlnets(dirs, n_layers):
        if info.name.lower() == want.lower():
            return info
    raise _missing(text, dirs, paths)


def _missing(text: str, dirs: list[Path] | None, paths: bool) -> ControlNetError:
    where = ", ".join(str(d) for d in (dirs if dirs is not None else controlnet_dirs())) or "no folder"
    return ControlNetError(f"No ControlNet named '{text}' (looked in {where}): put it there"
                           f"{' or give its path' if paths else ''}.")


def transformer_config(model_path: str | Path) -> dict[str, Any] | None:
    """The transformer config of a diffusers model folder, or None where there is none to read."""
    try:
        return json.loads((Path(model_path) / "transformer" / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None


def for_model(ref: str, model_path: str | Path, is_demo: bool = False, *, paths: bool = False) -> ControlNetInfo:
    """The ControlNet `ref` names ("" = the default: the demo one on the demo model, else the only one
    found), checked against the model's transformer where its config can be read. `paths`: a path
    outside the ControlNet folders is taken too (the CLI only; see `resolve`)."""
    config = transformer_config(model_path) or {}
    n_layers = int(config.get("n_layers", 30))
    if ref.strip():
        info = resolve(ref, n_layers=n_layers, paths=paths)
    else:
        demo = demo_controlnet() if is_demo else None
        found = [inspect(demo, n_layers)] if demo else find_controlnets(controlnet_dirs(), n_layers)
        if len(found) != 1:
            where = controlnet_dirs()[0]
            raise ControlNetError(
                f"No ControlNet was named and {len(found) or 'none'} {'is' if not found else 'are'} installed: "
                f"give one (--controlnet NAME or a path) or put one in {where}.")
        info = found[0]
    why = fits(info, config) if config else None
    if why:
        raise ControlNetError(why)
    return info
