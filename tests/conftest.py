"""Shared fixtures: an isolated studio home per test; the demo model, its CPU engine and the tiny
random-weight pipeline built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def demo_model_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, built once through the real code into a session folder."""
    from studio.core.paths import Paths
    from studio.models.demo import ensure_demo_model

    root = tmp_path_factory.mktemp("demo-home")
    paths = Paths(root / "config", root / "data", root / "cache", root / "logs", root / "run")
    return ensure_demo_model(paths)


@pytest.fixture(scope="session")
def demo_engine(demo_model_master: Path):
    """The demo model's CPU Engine with its defaults, built once for the tests that only draw with it
    (a test that changes an engine's weights, adapters or options builds its own)."""
    from studio.engine.generate import Engine

    return Engine(demo_model_master, "cpu")


@pytest.fixture(scope="session")
def tiny_random_pipe():
    """The tiny random-weight architecture (seed 3, float32, CPU), built once for the tests that only read
    it or put back what they change (the fused-attention test restores the native attention)."""
    import torch

    from studio.engine.random_pipeline import build_random_pipeline

    return build_random_pipeline("tiny", torch.device("cpu"), torch.float32, seed=3)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_model_master: Path) -> Path:
    """A fresh ZAOXIANG_HOME with the demo model already in place (copied, not rebuilt)."""
    from tests.homes import make_home

    return make_home(tmp_path / "home", demo_model_master, monkeypatch)


@pytest.fixture
def artifacts() -> Path:
    """A folder kept after the run for screenshots and figures a person should look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def cli_env(home: Path) -> dict[str, str]:
    """Environment for running `zaoxiang` as a subprocess inside a test's home."""
    env = dict(os.environ)
    env["ZAOXIANG_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty studio home (no demo model): for store tests that need only folders."""
    from studio.core.paths import get_paths

    monkeypatch.setenv("ZAOXIANG_HOME", str(tmp_path / "home"))
    return get_paths().ensure()


@pytest.fixture
def store(paths):
    """A real Store (SQLite file) in `paths`, closed after the test."""
    from studio.store import Store

    s = Store()
    yield s
    s.close()
