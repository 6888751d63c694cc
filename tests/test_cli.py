"""`zaoxiang generate`, `models list` and `doctor` as a person runs them (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.metadata import request_from_chunks
from studio.core.pngfile import read_chunks
from tests.conftest import cli_env


def run(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *args], env=cli_env(home), capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("args,fragment", [
    (["", "--width", "512"], "Prompt is required"),
    (["cat", "--width", "100"], "Width must be a multiple of 16"),
    (["cat", "--steps", "0"], "Steps must be from 1 to 100"),
    (["cat", "--guidance", "30"], "Guidance must be from 0 to 20"),
    (["cat", "--seed", "-5"], "Seed must be from 0"),
    (["cat", "--seed-mode", "wild"], "Seed mode must be one of"),
    (["cat", "--count", "100"], "Count must be from 1 to 64"),
    (["cat", "--workers", "bogus"], "'bogus' is not a worker list"),
])
def test_bad_input_exits_2_with_one_line(home: Path, args: list[str], fragment: str) -> None:
    p = run(home, "generate", *args)
    assert p.returncode == 2
    assert fragment in p.stderr and "Traceback" not in p.stderr
    assert len([line for line in p.stderr.splitlines() if line.strip()]) == 1


def test_generate_increment_json_and_metadata(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = run(home, "generate", "一只红色的星星 a red star", "--width", "256", "--height", "256", "--seed", "7",
            "--seed-mode", "increment", "--count", "3", "--out", str(out), "--json")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["seed"] for r in rows] == [7, 8, 9]
    for r in rows:
        assert set(r) == {"path", "seed", "worker", "elapsed_s"}
        path = Path(r["path"])
        assert path.is_file() and path.is_relative_to(out)
        req, rec = request_from_chunks(read_chunks(path))
        assert req.prompt == "一只红色的星星 a red star" and req.seed == r["seed"]
        assert rec["model"] == "demo"
    # same seed again, default (gallery) output and default size (256 on the demo model): identical pixels
    p2 = run(home, "generate", "一只红色的星星 a red star", "--seed", "7", "--seed-mode", "fixed")
    assert p2.returncode == 0, p2.stderr
    again = Path(p2.stdout.strip())
    assert again.is_relative_to(home)
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(rows[0]["path"])))


def test_models_list_and_doctor(home: Path) -> None:
    p = run(home, "models", "list", "--json")
    assert p.returncode == 0, p.stderr
    models = json.loads(p.stdout)
    assert models[-1]["is_demo"] and models[-1]["complete"]
    d = run(home, "doctor")
    assert d.returncode == 0, d.stderr
    assert "torch" in d.stdout and "model    demo" in d.stdout


def test_missing_explicit_model_is_one_line(home: Path, tmp_path: Path) -> None:
    p = run(home, "generate", "cat", "--model", str(tmp_path / "nope"))
    assert p.returncode == 2 and "No Z-Image model at" in p.stderr and "Traceback" not in p.stderr
