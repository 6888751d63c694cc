"""ComfyUI-style single files written from the demo model: found, listed, loaded, and drawing the same image.

The files are made by the inverse of diffusers' converters (fused qkv, LDM/Flux `ae` keys, the
Qwen3ForCausalLM `model.` prefix), so loading them exercises diffusers' real single-file code paths.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from studio.core.paths import get_paths
from studio.engine.generate import Engine
from studio.engine.loader import ModelLoadError, load_pipeline
from studio.models import single_file as sf
from studio.models.discovery import ModelNotFoundError, find_models, resolve_model
from tests.conftest import cli_env

ARGS = dict(prompt="a red star on a white background 白色背景上的红色星星", width=256, height=256, steps=3,
            guidance=0.0)


def write_comfyui_files(demo: Path, root: Path) -> Path:
    """A ComfyUI install's models folder holding the demo model as three single files."""
    models = root / "models"
    for d in ("diffusion_models", "text_encoders", "vae", "checkpoints"):
        (models / d).mkdir(parents=True, exist_ok=True)
    n_blocks = len(json.loads((demo / "vae" / "config.json").read_text())["block_out_channels"])
    save_file(sf.transformer_to_comfyui(load_file(demo / "transformer" / "diffusion_pytorch_model.safetensors")),
              models / "diffusion_models" / "z_image_demo_bf16.safetensors")
    save_file(sf.text_encoder_to_comfyui(load_file(demo / "text_encoder" / "model.safetensors")),
              models / "text_encoders" / "qwen_3_demo.safetensors")
    save_file(sf.vae_to_comfyui(load_file(demo / "vae" / "diffusion_pytorch_model.safetensors"), n_blocks),
              models / "vae" / "ae.safetensors")
    # Unrelated files a real ComfyUI folder has: must be skipped, not break discovery.
    save_file({"conv.weight": torch.zeros(2, 2)}, models / "vae" / "sdxl_other.safetensors")
    (models / "checkpoints" / "broken.safetensors").write_bytes(b"not a safetensors file")
    return root


@pytest.fixture
def comfy(home: Path, tmp_path: Path, demo_model_master: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_comfyui_files(demo_model_master, tmp_path / "ComfyUI")
    monkeypatch.setenv("ZAOXIANG_COMFYUI", str(root))
    return root


def test_files_are_in_the_original_layout_and_classified(comfy: Path) -> None:
    t = sf.read_shapes(comfy / "models" / "diffusion_models" / "z_image_demo_bf16.safetensors")
    assert any(k.endswith(".attention.qkv.weight") for k in t) and not any(".to_q." in k for k in t)
    assert "x_embedder.weight" in t and "final_layer.linear.weight" in t
    v = sf.read_shapes(comfy / "models" / "vae" / "ae.safetensors")
    assert "decoder.up.0.block.0.conv1.weight" in v and len(v["encoder.mid.attn_1.q.weight"]) == 4
    te = sf.read_shapes(comfy / "models" / "text_encoders" / "qwen_3_demo.safetensors")
    assert "model.embed_tokens.weight" in te
    assert [sf.classify(x) for x in (t, v, te)] == ["transformer", "vae", "text_encoder"]


def test_discovery_reports_a_complete_comfyui_set(comfy: Path) -> None:
    sets = [m for m in find_models() if m.format == "comfyui-single-file"]
    assert len(sets) == 1
    info = sets[0]
    assert info.complete and info.source == "comfyui" and info.name == "z_image_demo_bf16"
    assert [Path(p).name for p in info.parts] == ["z_image_demo_bf16.safetensors", "qwen_3_demo.safetensors",
                                                  "ae.safetensors"]
    assert info.size_bytes == sum(Path(p).stat().st_size for p in info.parts)
    assert resolve_model().format == "comfyui-single-file"  # a complete set beats the demo model


def test_same_image_as_the_diffusers_folder(comfy: Path, demo_engine: Engine) -> None:
    info = resolve_model(str(comfy / "models" / "diffusion_models" / "z_image_demo_bf16.safetensors"))
    assert info.source == "explicit" and info.complete
    single = Engine(info.path, "cpu")
    folder = demo_engine  # the diffusers folder's engine (tests/conftest.py)
    a, _ = single.generate(seed=1234, **ARGS)
    b, _ = folder.generate(seed=1234, **ARGS)
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == (256, 256, 3) and a.std() > 1.0
    assert np.array_equal(a, b)


def test_missing_pieces_are_named(home: Path, tmp_path: Path, demo_model_master: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_comfyui_files(demo_model_master, tmp_path / "c2")
    (root / "models" / "vae" / "ae.safetensors").unlink()
    monkeypatch.setenv("ZAOXIANG_COMFYUI", str(root))
    (info,) = [m for m in find_models() if m.format == "comfyui-single-file"]
    assert not info.complete and info.missing == ("VAE (the Flux ae.safetensors in models/vae)",)
    with pytest.raises(ModelLoadError, match="VAE file"):
        load_pipeline(info.path, torch.device("cpu"), torch.float32)
    with pytest.raises(ModelNotFoundError, match="incomplete: missing VAE"):
        resolve_model(str(root))

    # Configs found (a configs-only folder) but no tokenizer anywhere: the one gap, and how to fill it.
    write_comfyui_files(demo_model_master, root)
    models_dir = get_paths().models_dir
    for d in models_dir.iterdir():
        shutil.rmtree(d)
    shutil.copytree(demo_model_master, models_dir / "z-image-configs", ignore=shutil.ignore_patterns("tokenizer"))
    (info,) = [m for m in find_models(include_demo=False) if m.format == "comfyui-single-file"]
    assert len(info.missing) == 1 and "tokenizer" in info.missing[0] and "--configs-only" in info.missing[0]

    # No config of these shapes at all (only the full-size Z-Image-Turbo one is built in).
    shutil.rmtree(models_dir / "z-image-configs")
    (info,) = [m for m in find_models(include_demo=False) if m.format == "comfyui-single-file"]
    assert "a config for z_image_demo_bf16.safetensors" in info.missing[0]


def test_models_list_shows_the_set(comfy: Path, home: Path) -> None:
    env = cli_env(home)
    out = subprocess.run([sys.executable, "-m", "studio", "models", "list", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    (entry,) = [m for m in json.loads(out.stdout) if m["format"] == "comfyui-single-file"]
    assert entry["complete"] and len(entry["parts"]) == 3
    text = subprocess.run([sys.executable, "-m", "studio", "models", "list"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "comfyui-single-file" in text.stdout and "ae.safetensors" in text.stdout
