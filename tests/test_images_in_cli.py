"""Images in (issue 20) through `zaoxiang generate` and real worker processes on the demo model.

Each run is a real CLI subprocess with its own CPU worker: inputs checked and stored by hash, the
worker reading them back, the PNG carrying the A1111 settings and the hashes, History rerunning an
image after its input files are gone. Bad inputs end in one line, exit code 2 and an empty history.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.pngfile import read_chunks
from tests.conftest import cli_env

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--steps", "3", "--seed", "21", "--workers", "cpu:1", "--json"]


def run(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", "generate", *args], env=cli_env(home),
                          capture_output=True, text=True, timeout=400)


def made(p: subprocess.CompletedProcess) -> tuple[Image.Image, dict, str]:
    """The one image a run made: pixels, its JSON record and its A1111 text."""
    assert p.returncode == 0, p.stderr
    path = Path(json.loads(p.stdout.strip().splitlines()[-1])["path"])
    chunks = read_chunks(path)
    return Image.open(path).convert("RGB"), json.loads(chunks["zaoxiang"]), chunks["parameters"]


def rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    """A 256×256 picture with a shape on it (a file a person could give)."""
    img = Image.new("RGB", (256, 256), (240, 240, 240))
    img.paste((200, 30, 30), (60, 80, 180, 200))
    path = tmp_path / "picture.png"
    img.save(path)
    return path


def test_inpaint_keeps_outside_records_hashes_and_history_reruns_without_the_files(
        home: Path, tmp_path: Path, picture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mask_path = tmp_path / "mask.png"
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (64, 64, 192, 192))
    mask.save(mask_path)
    p = run(home, "a blue circle on a white background", "--image", str(picture), "--mask", str(mask_path),
            "--mask-blur", "4", "--strength", "0.8", *FAST)
    image, record, text = made(p)
    inside = np.asarray(mask) > 0
    assert np.array_equal(rgb(image)[~inside], rgb(Image.open(picture))[~inside])
    assert np.abs(rgb(image)[inside] - rgb(Image.open(picture))[inside]).mean() > 3
    assert "Denoising strength: 0.8" in text and "Mask blur: 4" in text and "Size: 256x256" in text
    req = record["request"]
    assert req["init_image"] == hashlib.sha256(picture.read_bytes()).hexdigest()
    assert req["mask"] == hashlib.sha256(mask_path.read_bytes()).hexdigest()
    assert (req["strength"], req["mask_blur"]) == (0.8, 4)

    # History: the originals are gone, the stored inputs bring the image back exactly.
    picture.unlink()
    mask_path.unlink()
    monkeypatch.setenv("ZAOXIANG_HOME", str(home))
    from studio.app import Studio

    studio = Studio(model="demo", workers="cpu:1")
    try:
        row = studio.store.history()[0]
        again = studio.store.reuse(image_id=row["images"][0]["id"])
        assert (again.init_image, again.mask) == (req["init_image"], req["mask"])
        results = studio.generate(again)
        assert results[0]["status"] == "done", results
        assert np.array_equal(rgb(Image.open(results[0]["path"])), rgb(image))
    finally:
        studio.close()


def test_outpaint_keeps_the_original_region(home: Path, picture: Path) -> None:
    p = run(home, "a red square on a grey background", "--image", str(picture), "--outpaint", "32,32,0,0", *FAST)
    image, record, _ = made(p)
    assert image.size == (320, 256)
    assert np.array_equal(rgb(image.crop((32, 0, 288, 256))), rgb(Image.open(picture)))
    assert record["request"]["mask"] and record["request"]["width"] == 320


def test_controlnet_and_hires_in_one_request(home: Path, picture: Path) -> None:
    p = run(home, "a green triangle on a black background", "--control", str(picture), "--control-type", "canny",
            "--control-scale", "0.9", "--hires", "1.5", "--hires-strength", "0.4", *FAST)
    image, record, text = made(p)
    assert image.size == (384, 384)
    assert "Hires upscale: 1.5" in text and "Denoising strength: 0.4" in text
    assert 'ControlNet 0: "Module: canny, Model: demo-controlnet, Weight: 0.9' in text
    control = record["request"]["control"]
    assert control["image"] == hashlib.sha256(picture.read_bytes()).hexdigest()
    assert Path(control["model"]).name == "demo-controlnet"


@pytest.mark.parametrize("make,args,fragment", [
    ("text", ["--image", "{f}"], "is not an image"),
    ("cut", ["--image", "{f}"], "cut short or damaged"),
    ("huge", ["--image", "{f}"], "20000×20000"),
    ("ok", ["--image", "{f}", "--strength", "1.5"], "Strength must be from 0 to 1"),
    ("ok", ["--mask", "{f}"], "needs an image to work on"),
    ("ok", ["--image", "{f}", "--outpaint", "10,10"], "Outpaint must be four whole numbers"),
    ("ok", ["--control", "{f}", "--control-type", "sketchy"], "Control type must be one of"),
    ("ok", ["--control", "{f}", "--control-start", "0.8", "--control-end", "0.2"], "start must come before"),
    ("ok", ["--hires", "16"], "Hires scale must be from 1 to 4"),
])
def test_bad_image_inputs_exit_2_with_one_line_and_queue_nothing(
        home: Path, tmp_path: Path, make: str, args: list[str], fragment: str) -> None:
    f = tmp_path / f"{make}.png"
    if make == "text":
        f.write_text("a shopping list, not a picture")
    elif make == "huge":
        Image.new("1", (20000, 20000)).save(f)
    else:
        Image.new("RGB", (256, 256), (10, 20, 30)).save(f)
        if make == "cut":
            f.write_bytes(f.read_bytes()[:300])
    p = run(home, "a cat", *[a.replace("{f}", str(f)) for a in args], "--workers", "cpu:1")
    assert p.returncode == 2, p.stdout + p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in p.stderr
    assert not (home / "data" / "gallery").exists() or not any((home / "data" / "gallery").rglob("*.png"))


def test_union_1_0_controlnet_with_a_mask_is_refused_before_queueing(home: Path, tmp_path: Path,
                                                                     picture: Path) -> None:
    """The 1.0 layout has no inpaint input: the request is refused at submit, not failed in the worker."""
    cfg = json.loads((ROOT / "assets" / "demo-controlnet" / "config.json").read_text())
    old = tmp_path / "union-1.0"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({**cfg, "control_in_dim": 16}))  # the demo model's in_channels
    (old / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    mask = tmp_path / "mask.png"
    Image.new("L", (256, 256), 255).save(mask)
    p = run(home, "a cat", "--image", str(picture), "--mask", str(mask), "--control", str(picture),
            "--controlnet", str(old), "--workers", "cpu:1")
    assert p.returncode == 2, p.stdout + p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "takes no mask" in lines[0] and "Traceback" not in p.stderr
    assert not (home / "data" / "gallery").exists() or not any((home / "data" / "gallery").rglob("*.png"))


def test_controlnet_for_another_base_model_is_refused(home: Path, tmp_path: Path, picture: Path) -> None:
    cfg = json.loads((ROOT / "assets" / "demo-controlnet" / "config.json").read_text())
    big = tmp_path / "big-controlnet"
    big.mkdir()
    (big / "config.json").write_text(json.dumps({**cfg, "dim": 3840, "n_heads": 30, "n_kv_heads": 30}))
    (big / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    p = run(home, "a cat", "--control", str(picture), "--controlnet", str(big), "--workers", "cpu:1")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "width 3840" in p.stderr and "Traceback" not in p.stderr
