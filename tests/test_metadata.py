"""PNG parameters: A1111 text and our JSON chunk round-trip, Chinese included."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, PngImagePlugin

from studio.core.metadata import build_record, format_a1111, parse_a1111, request_from_chunks
from studio.core.pngfile import read_chunks, write_png
from studio.core.request import GenerationRequest, validate
from studio.core.spec import ImageSpec


def test_png_round_trip_chinese(tmp_path: Path) -> None:
    req = validate(GenerationRequest(prompt="蓝色背景上的红色圆形, \"quoted\" 100% _x_ 🎨", negative_prompt="模糊",
                                     width=512, height=768, steps=9, guidance=3.5, seed=42))
    record = build_record(req.expand("Z-Image-Turbo")[0], "cuda:0", 1.25)
    out = write_png(Image.new("RGB", (8, 8), "red"), tmp_path / "sub" / "a.png", record)
    assert out.is_file() and not list(out.parent.glob(".part-*"))
    chunks = read_chunks(out)
    back, rec = request_from_chunks(chunks)
    assert back.prompt == req.prompt and back.negative_prompt == "模糊"
    assert (back.width, back.height, back.steps, back.guidance, back.seed) == (512, 768, 9, 3.5, 42)
    assert rec["worker"] == "cuda:0" and rec["model"] == "Z-Image-Turbo"
    text = chunks["parameters"]
    assert text.startswith(req.prompt + "\nNegative prompt: 模糊\nSteps: 9, Sampler: Euler, CFG scale: 3.5, Seed: 42")
    assert "Size: 512x768, Model: Z-Image-Turbo" in text


def test_a1111_text_from_other_tools(tmp_path: Path) -> None:
    text = ("masterpiece, a castle\non a hill\nNegative prompt: lowres, bad hands\n"
            'Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567, '
            'Size: 832x1216, Model hash: abc123, Model: sdxl, Lora hashes: "a: 1, b: 2", Version: f2.0')
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    path = tmp_path / "forge.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    req, rec = request_from_chunks(read_chunks(path))
    assert req.prompt == "masterpiece, a castle\non a hill"
    assert req.negative_prompt == "lowres, bad hands"
    assert (req.steps, req.guidance, req.seed, req.width, req.height) == (28, 7.0, 1234567, 832, 1216)
    assert req.extra["Sampler"] == "DPM++ 2M" and req.extra["Lora hashes"] == "a: 1, b: 2"
    assert rec["source"] == "a1111"


def test_format_parse_inverse() -> None:
    text = format_a1111(ImageSpec("a dog", "", width=1024, height=1024, steps=9, guidance=0.0, seed=7, model="demo"))
    assert "Negative prompt" not in text
    parsed = parse_a1111(text)
    assert parsed["prompt"] == "a dog" and parsed["seed"] == 7 and parsed["guidance"] == 0.0


def test_png_without_parameters(tmp_path: Path) -> None:
    import pytest

    path = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(ValueError, match="no generation parameters"):
        request_from_chunks(read_chunks(path))
