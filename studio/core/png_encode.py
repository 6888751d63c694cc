"""PNG bytes from an 8-bit image, deflated in parallel: the PNG write is the studio's last step before
an image counts as done, and with one zlib stream on one core it was about a fifth of a 1024x1024
image's time on a fast GPU (docs/benchmarks.md).

The rows are split into bands; each band is Paeth-filtered (numpy) and deflated on its own thread
(zlib and numpy release the GIL), ending on a sync flush so the pieces join into one valid zlib
stream whose Adler-32 is combined from the bands' (the way pigz does it). Any PNG reader decodes it.
"""

from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}  # mode: (PNG color type, bytes a pixel)
BAND_ROWS = 64  # the fewest rows worth a thread of their own
MAX_THREADS = 8  # 16 measured no faster on 1024² (docs/benchmarks.md); ZAOXIANG_PNG_THREADS overrides
ADLER_BASE = 65521
_executor: ThreadPoolExecutor | None = None


def supported(image: Image.Image) -> bool:
    return image.mode in COLOR_TYPES


def _threads() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        wanted = int(os.environ.get("ZAOXIANG_PNG_THREADS") or MAX_THREADS)
        _executor = ThreadPoolExecutor(max_workers=max(1, min(wanted, os.cpu_count() or 1)),
                                       thread_name_prefix="png-deflate")
    return _executor


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def itxt(key: str, text: str) -> bytes:
    """An uncompressed iTXt chunk (UTF-8 text, no language tag), as PIL's `add_itxt` writes it."""
    return chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8"))


def paeth(rows: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """Filter type 4 of each row of `rows` (h, width*bpp bytes); `above` is the row before the first."""
    x = rows.astype(np.int16)
    up = np.vstack([above[None].astype(np.int16), x[:-1]])
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    up_left = np.zeros_like(x)
    up_left[:, bpp:] = up[:, :-bpp]
    p = left + up - up_left
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    return ((x - pred) & 0xFF).astype(np.uint8)


def adler32_combine(first: int, second: int, second_len: int) -> int:
    """The Adler-32 of A+B from those of A and B and B's length (zlib's adler32_combine)."""
    rem = second_len % ADLER_BASE
    s1 = ((first & 0xFFFF) + (second & 0xFFFF) + ADLER_BASE - 1) % ADLER_BASE
    s2 = (rem * (first & 0xFFFF) + (first >> 16) + (second >> 16) + ADLER_BASE - rem) % ADLER_BASE
    return (s2 << 16) | s1


def encode(image: Image.Image, text: dict[str, str] | None = None, level: int = 4) -> bytes:
    """The whole PNG file for `image` (mode L, RGB or RGBA) with `text` as iTXt chunks."""
    color, bpp = COLOR_TYPES[image.mode]
    width, height = image.size
    rows = np.asarray(image, dtype=np.uint8).reshape(height, width * bpp)
    step = max(BAND_ROWS, -(-height // _threads()._max_workers))
    starts = list(range(0, height, step))
    blank = np.zeros(width * bpp, np.uint8)

    def band(start: int) -> tuple[bytes, int, int]:
        end = min(height, start + step)
        filtered = paeth(rows[start:end], rows[start - 1] if start else blank, bpp)
        raw = np.hstack([np.full((end - start, 1), 4, np.uint8), filtered]).tobytes()
        deflate = zlib.compressobj(level, zlib.DEFLATED, -15)  # raw deflate: one header for all bands
        body = deflate.compress(raw) + deflate.flush(zlib.Z_FINISH if end == height else zlib.Z_SYNC_FLUSH)
        return body, zlib.adler32(raw), len(raw)

    parts = list(_threads().map(band, starts)) if len(starts) > 1 else [band(0)]
    adler = 1
    for _body, value, length in parts:
        adler = adler32_combine(adler, value, length)
    stream = b"\x78\x5e" + b"".join(p[0] for p in parts) + struct.pack(">I", adler)  # 78 5e: deflate, 32K
    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    texts = b"".join(itxt(k, v) for k, v in (text or {}).items())
    return SIGNATURE + chunk(b"IHDR", header) + texts + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
