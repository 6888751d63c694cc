"""ComfyUI-style single files: a Z-Image transformer, a Qwen3 text encoder and a Flux `ae` VAE.

ComfyUI keeps each component as one `.safetensors` in the original (non-diffusers) key layout and
ships no configs or tokenizer. This module reads the files' headers without torch (so discovery
stays fast), recognises each component by its keys, matches it to a known configuration by tensor
shapes, and loads a set through diffusers' own single-file converters. The inverse conversions
(diffusers -> ComfyUI layout) live here too so a test can write such files from the demo model.

It imports only the plain-data `architecture` module, so the engine's loader may use it.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from studio.core.atomic import atomic_dir, atomic_path

FORMAT = "comfyui-single-file"
MANIFEST_SUFFIX = ".zaoxiang-set.json"

TRANSFORMER_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
VAE_PREFIXES = ("first_stage_model.", "vae.")
TEXT_ENCODER_PREFIXES = ("model.", "text_encoders.qwen3_4b.transformer.model.")


class SingleFileError(RuntimeError):
    """A single file, or a set of them, that cannot be used; the message names the missing piece."""


# --- reading headers (no torch) -------------------------------------------------------------


def read_header(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """A .safetensors header: tensor name -> {dtype, shape, data_offsets}, and its `__metadata__`.

    Reads a few KB, never the weights (nor anything pickle could run).
    """
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise SingleFileError(f"{path} is not a safetensors file (too short).")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 * 2**20:
            raise SingleFileError(f"{path} is not a safetensors file (header length {n}).")
        try:
            header = json.loads(fh.read(n))
        except ValueError as exc:
            raise SingleFileError(f"{path} is not a safetensors file: {exc}") from exc
    if not isinstance(header, dict):
        raise SingleFileError(f"{path} is not a safetensors file (its header is not a table).")
    meta = header.pop("__metadata__", None) or {}
    return header, meta if isinstance(meta, dict) else {}


def read_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a .safetensors header (reads a few KB, never the weights)."""
    tensors, _ = read_header(path)
    return {k: tuple(v["shape"]) for k, v in tensors.items()}


def _strip(shapes: dict[str, tuple[int, ...]], prefixes: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in shapes):
            return {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
    return shapes


def classify(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """'transformer', 'text_encoder', 'vae' or None, from the tensor names alone."""
    t = _strip(shapes, TRANSFORMER_PREFIXES)
    if "layers.0.adaLN_modulation.0.weight" in t and any(k.startswith("cap_embedder.") for k in t):
        return "transformer"
    v = _strip(shapes, VAE_PREFIXES)
    if "decoder.conv_in.weight" in v and "encoder.conv_in.weight" in v:
        return "vae"
    te = _strip(shapes, TEXT_ENCODER_PREFIXES)
    if "embed_tokens.weight" in te and "layers.0.self_attn.q_proj.weight" in te:
        return "text_encoder"
    return None


def _count(keys, pattern: str) -> int:
    rx = re.compile(pattern)
    idx = [int(m.group(1)) for k in keys if (m := rx.match(k))]
    return max(idx) + 1 if idx else 0


def signature(kind: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """The configuration values a file's shapes pin down (compared with a config's `config_signature`)."""
    if kind == "transformer":
        t = _strip(shapes, TRANSFORMER_PREFIXES)
        dim, cap = t["cap_embedder.1.weight"]
        head = t.get("layers.0.attention.q_norm.weight", t.get("layers.0.attention.norm_q.weight", (0,)))[0]
        return {"dim": dim, "cap_feat_dim": cap, "n_layers": _count(t, r"layers\.(\d+)\."),
                "n_refiner_layers": _count(t, r"noise_refiner\.(\d+)\."), "n_heads": dim // head if head else 0}
    if kind == "text_encoder":
        te = _strip(shapes, TEXT_ENCODER_PREFIXES)
        vocab, hidden = te["embed_tokens.weight"]
        head = te["layers.0.self_attn.q_norm.weight"][0]
        return {"vocab_size": vocab, "hidden_size": hidden,
                "num_hidden_layers": _count(te, r"layers\.(\d+)\."),
                "intermediate_size": te["layers.0.mlp.gate_proj.weight"][0],
                "num_attention_heads": te["layers.0.self_attn.q_proj.weight"][0] // head,
                "num_key_value_heads": te["layers.0.self_attn.k_proj.weight"][0] // head}
    if kind == "vae":
        v = _strip(shapes, VAE_PREFIXES)
        n = _count(v, r"encoder\.down\.(\d+)\.")
        return {"latent_channels": v["decoder.conv_in.weight"][1],
                "block_out_channels": [v[f"encoder.down.{i}.block.0.conv1.weight"][0] for i in range(n)],
                "layers_per_block": _count(v, r"encoder\.down\.0\.block\.(\d+)\.")}
    raise ValueError(kind)


def config_signature(kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The same values as `signature`, read from a diffusers/transformers config dict."""
    if kind == "transformer":
        return {k: cfg.get(k) for k in ("dim", "cap_feat_dim", "n_layers", "n_refiner_layers", "n_heads")}
    if kind == "text_encoder":
        return {k: cfg.get(k) for k in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
                                        "num_attention_heads", "num_key_value_heads")}
    if kind == "vae":
        return {"latent_channels": cfg.get("latent_channels"),
                "block_out_channels": list(cfg.get("block_out_channels") or []),
                "layers_per_block": cfg.get("layers_per_block")}
    raise ValueError(kind)


# --- configs to load single files with -------------------------------------------------------

CONFIG_FILES = {"transformer": "transformer/config.json", "text_encoder": "text_encoder/config.json",
                "vae": "vae/config.json"}


def builtin_config_root(cache_dir: Path) -> Path:
    """A diffusers-style folder of the full Z-Image-Turbo configs (no weights), written once."""
    from studio.models.architecture import FULL

    root = Path(cache_dir) / "single-file-configs" / FULL.name
    if (root / "model_index.json").is_file():
        return root
    files = {
        "transformer/config.json": {"_class_name": "ZImageTransformer2DModel", **FULL.transformer},
        "vae/config.json": {"_class_name": "AutoencoderKL", **FULL.vae},
        "text_encoder/config.json": {"architectures": ["Qwen3Model"], "model_type": "qwen3",
                                     "torch_dtype": "bfloat16", **FULL.text_encoder},
        "scheduler/scheduler_config.json": {"_class_name": "FlowMatchEulerDiscreteScheduler", **FULL.scheduler},
        "model_index.json": {"_class_name": "ZImagePipeline", "zaoxiang": "configs only, no weights"},
    }
    with atomic_dir(root, replace=False) as tmp:  # another process may be writing the same folder
        for rel, data in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(data, indent=2, default=list), "utf-8")
    return root


def read_config(root: Path, kind: str) -> dict[str, Any] | None:
    try:
        return json.loads((Path(root) / CONFIG_FILES[kind]).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def match_config(kind: str, shapes: dict[str, tuple[int, ...]], roots: list[Path]) -> Path | None:
    """The first folder whose `kind` config has the shapes of this file, or None."""
    want = signature(kind, shapes)
    for root in roots:
        cfg = read_config(root, kind)
        if cfg is not None and config_signature(kind, cfg) == want:
            return Path(root)
    return None


def has_tokenizer(root: Path) -> bool:
    tok = Path(root) / "tokenizer"
    return tok.is_dir() and any(tok.glob("tokenizer*.json"))


# --- sets and their manifest ------------------------------------------------------------------


def write_manifest(target: Path, parts: dict[str, str]) -> Path:
    """Write the resolved set (files + config/tokenizer folders) atomically; the loader reads it."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps({"format": FORMAT, **parts}, indent=2, ensure_ascii=False), "utf-8")
    return target


def read_manifest(path: str | Path) -> dict[str, str]:
    data = json.loads(Path(path).read_text("utf-8"))
    if data.get("format") != FORMAT:
        raise SingleFileError(f"{path} is not a single-file set description.")
    return data


def is_manifest(path: str | Path) -> bool:
    return str(path).endswith(MANIFEST_SUFFIX) and Path(path).is_file()


# --- loading (torch, diffusers, transformers imported lazily) ---------------------------------


def _load_text_encoder(path: str, config_root: str, dtype):
    from safetensors.torch import load_file
    from transformers import AutoConfig, Qwen3Model

    config = AutoConfig.from_pretrained(str(Path(config_root) / "text_encoder"), local_files_only=True)
    sd = load_file(path)
    for prefix in TEXT_ENCODER_PREFIXES:
        if any(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            break
    sd.pop("lm_head.weight", None)
    model = Qwen3Model._from_config(config, dtype=dtype)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise SingleFileError(
            f"The text encoder {path} does not fit a Qwen3 model of its config: missing {list(missing)[:3]}, "
            f"unexpected {list(unexpected)[:3]}."
        )
    return model.to(dtype).eval()


def load_components(manifest: dict[str, str], dtype) -> dict[str, Any]:
    """Transformer, text encoder, VAE, tokenizer and scheduler of a set, ready for ZImagePipeline."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import AutoTokenizer

    for part in ("transformer", "text_encoder", "vae", "tokenizer"):
        if not manifest.get(part):
            raise SingleFileError(f"The single-file set has no {part.replace('_', ' ')}.")
    transformer = ZImageTransformer2DModel.from_single_file(
        manifest["transformer"], config=manifest["transformer_config"], subfolder="transformer",
        torch_dtype=dtype, local_files_only=True)
    vae = AutoencoderKL.from_single_file(
        manifest["vae"], config=manifest["vae_config"], subfolder="vae", torch_dtype=dtype, local_files_only=True)
    text_encoder = _load_text_encoder(manifest["text_encoder"], manifest["text_encoder_config"], dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(Path(manifest["tokenizer"]) / "tokenizer"), local_files_only=True)
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(
        manifest["scheduler"], subfolder="scheduler", local_files_only=True)
    return {"transformer": transformer.eval(), "text_encoder": text_encoder, "vae": vae.eval(),
            "tokenizer": tokenizer, "scheduler": scheduler}


# --- diffusers -> ComfyUI layout (the inverse of diffusers' converters) -----------------------


def transformer_to_comfyui(sd: dict[str, Any]) -> dict[str, Any]:
    """A ZImageTransformer2DModel state dict in the original Z-Image key layout (fused qkv)."""
    import torch

    out: dict[str, Any] = {}
    for key, value in sd.items():
        if ".attention.to_k.weight" in key or ".attention.to_v.weight" in key:
            continue
        if ".attention.to_q.weight" in key:
            base = key.replace(".attention.to_q.weight", "")
            value = torch.cat([sd[f"{base}.attention.to_q.weight"], sd[f"{base}.attention.to_k.weight"],
                               sd[f"{base}.attention.to_v.weight"]], dim=0)
            key = f"{base}.attention.qkv.weight"
        key = re.sub(r"^all_final_layer\.[^.]+\.", "final_layer.", key)
        key = re.sub(r"^all_x_embedder\.[^.]+\.", "x_embedder.", key)
        key = (key.replace(".attention.to_out.0.", ".attention.out.")
               .replace(".attention.norm_k.", ".attention.k_norm.")
               .replace(".attention.norm_q.", ".attention.q_norm."))
        out[key] = value.contiguous()
    return out


def vae_to_comfyui(sd: dict[str, Any], n_blocks: int) -> dict[str, Any]:
    """An AutoencoderKL state dict in the original LDM/Flux `ae` key layout (1x1 conv attention)."""
    out: dict[str, Any] = {}
    for key, value in sd.items():
        k = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", k)
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", k)
        k = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.",
                   lambda m: f"decoder.up.{n_blocks - 1 - int(m.group(1))}.block.", k)
        k = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                   lambda m: f"decoder.up.{n_blocks - 1 - int(m.group(1))}.upsample.", k)
        k = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m.group(1)) + 1}.", k)
        if "mid_block.attentions.0." in k:
            k = k.replace("mid_block.attentions.0.", "mid.attn_1.")
            k = (k.replace("group_norm.", "norm.").replace("to_q.", "q.").replace("to_k.", "k.")
                 .replace("to_v.", "v.").replace("to_out.0.", "proj_out."))
            if k.endswith("weight") and value.dim() == 2:
                value = value[:, :, None, None]
        out[k] = value.contiguous()
    return out


def text_encoder_to_comfyui(sd: dict[str, Any]) -> dict[str, Any]:
    """A Qwen3Model state dict in the Qwen3ForCausalLM layout ComfyUI's text encoder files use."""
    return {f"model.{k}": v.contiguous() for k, v in sd.items()}
