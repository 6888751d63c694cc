"""Writing PNGs atomically with their parameters, and reading the parameters back.

A PNG appears under its final name only when complete (temp file in the same folder, fsync,
rename), so a crash or a cancel never leaves half an image in the gallery.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from studio.core import png_encode
from studio.core.atomic import atomic_path
from studio.core.metadata import text_chunks

COMPRESS_LEVEL = 4


def write_png(image: Image.Image, path: str | os.PathLike[str], record: dict[str, Any],
              before_commit: Callable[[Path], None] | None = None) -> Path:
    """Save `image` to `path` with both metadata chunks, atomically; returns the final path.

    `before_commit(temp_path)` runs between writing the temp file and its fsync + rename (the pool's
    kill-while-writing test stalls there)."""
    target = Path(path)
    texts = text_chunks(record)  # written as iTXt: UTF-8, so Chinese prompts survive
    with atomic_path(target) as tmp:
        if png_encode.supported(image):  # deflated on several cores (studio/core/png_encode.py)
            tmp.write_bytes(png_encode.encode(image, texts, level=COMPRESS_LEVEL))
        else:
            info = PngImagePlugin.PngInfo()
            for key, value in texts.items():
                info.add_itxt(key, value)
            image.save(tmp, format="PNG", pnginfo=info, compress_level=COMPRESS_LEVEL)
        if before_commit is not None:
            before_commit(tmp)
    return target


def read_chunks(path: str | os.PathLike[str]) -> dict[str, str]:
    """The PNG's text chunks (tEXt, zTXt and iTXt alike)."""
    with Image.open(path) as im:
        im.load()
        text = dict(getattr(im, "text", {}) or {})
        for k, v in im.info.items():
            if isinstance(v, str) and k not in text:
                text[k] = v
    return text
