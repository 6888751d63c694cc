"""The parallel PNG encoder: any reader gets the same pixels and text back, for every size and mode."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core import png_encode
from studio.core.metadata import build_record
from studio.core.pngfile import read_chunks, write_png
from studio.core.request import GenerationRequest


def _idat(data: bytes) -> bytes:
    """The concatenated IDAT payload, with every chunk's CRC checked on the way."""
    assert data[:8] == png_encode.SIGNATURE
    pos, out = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        out += body if kind == b"IDAT" else b""
        pos += 12 + length
    return out


@pytest.mark.parametrize(("mode", "size"), [("RGB", (1024, 1024)), ("RGB", (1, 1)), ("RGBA", (333, 517)),
                                            ("L", (700, 129)), ("RGB", (64, 65))])
def test_pixels_and_stream_survive(mode: str, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(size[0] * 7 + size[1])
    w, h = size
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    smooth = np.add.outer(np.arange(h), np.arange(w))[..., None] % 256  # compressible, like a real image
    pixels = ((smooth + rng.integers(0, 40, (h, w, channels))) % 256).astype(np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode)
    data = png_encode.encode(image, {"parameters": "红色的圆 a red circle"})
    raw = zlib.decompress(_idat(data))  # checks the combined Adler-32 too
    assert len(raw) == h * (1 + w * channels)
    with Image.open(io.BytesIO(data)) as back:
        back.load()
        assert back.mode == mode and back.size == size
        assert np.array_equal(np.asarray(back), np.asarray(image))
        assert back.text["parameters"] == "红色的圆 a red circle"


def test_write_png_keeps_the_record_and_other_modes(tmp_path: Path) -> None:
    req = GenerationRequest(prompt="山水画 landscape", width=64, height=48, steps=2, seed=7, seed_mode="fixed")
    record = build_record(req.expand("demo")[0], "cpu:0", 0.5)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    ours = write_png(image, tmp_path / "a.png", record)
    assert np.array_equal(np.asarray(Image.open(ours)), np.asarray(image))
    chunks = read_chunks(ours)
    assert "山水画 landscape" in chunks["parameters"] and '"seed": 7' in chunks["zaoxiang"]
    palette = write_png(image.convert("P"), tmp_path / "p.png", record)  # not ours to encode: PIL does it
    assert Image.open(palette).mode == "P" and read_chunks(palette)["zaoxiang"] == chunks["zaoxiang"]
