"""Model discovery in each cache layout, on folders the tests build by copying the demo model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from studio.models.discovery import ModelNotFoundError, find_models, resolve_model


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_demo_is_fallback(home: Path) -> None:
    info = resolve_model()
    assert info.is_demo and info.complete


def test_hf_cache_layout(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         demo_model_master: Path) -> None:
    hub = tmp_path / "hf" / "hub"
    repo = hub / "models--Tongyi-MAI--Z-Image-Turbo"
    _copy(demo_model_master, repo / "snapshots" / "abc123")
    _copy(demo_model_master, repo / "snapshots" / "old999")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    info = resolve_model()
    assert info.source == "huggingface" and info.path.endswith("abc123")
    assert info.name == "Tongyi-MAI/Z-Image-Turbo"


@pytest.mark.parametrize("layout", ["models/Tongyi-MAI/Z-Image-Turbo", "Tongyi-MAI/Z-Image-Turbo"])
def test_modelscope_layouts(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            demo_model_master: Path, layout: str) -> None:
    cache = tmp_path / "ms"
    _copy(demo_model_master, cache / layout)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    info = resolve_model()
    assert info.source == "modelscope" and info.path == str(cache / layout)


def test_explicit_beats_caches_and_incomplete_is_an_error(home: Path, tmp_path: Path,
                                                          demo_model_master: Path) -> None:
    mine = _copy(demo_model_master, tmp_path / "my-model")
    assert resolve_model(str(mine)).source == "explicit"
    shutil.rmtree(mine / "vae")
    with pytest.raises(ModelNotFoundError, match="missing vae"):
        resolve_model(str(mine))
    with pytest.raises(ModelNotFoundError, match="No Z-Image model"):
        resolve_model(str(tmp_path / "nothing-here"))
    listed = find_models(explicit=str(mine))
    assert listed[0].complete is False and "vae" in listed[0].missing
    assert listed[-1].is_demo


def test_configured_path_used(home: Path, tmp_path: Path, demo_model_master: Path) -> None:
    mine = _copy(demo_model_master, tmp_path / "configured")
    assert resolve_model(None, str(mine)).source == "settings"
