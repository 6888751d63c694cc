"""Images a person gives the studio (init image, mask, control image): checked, stored, fitted.

Everything here happens before a job is queued and needs no torch: a file that is not an image, is
cut short or would take gigabytes to decode is refused from its header with one line (in 中文 and
English), so nothing bad ever reaches a worker. Accepted inputs are kept under their SHA-256 in the
data dir, which lets History restore and rerun them after the originals moved. The pixel helpers
(mask fitting, outpaint canvas, feathered paste-back) are plain Pillow so the engine and the tests
share one definition of "pixels outside the mask are kept".
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from PIL import Image, ImageChops, ImageFilter, ImageOps, UnidentifiedImageError

from studio.core.atomic import atomic_path
from studio.core.i18n import t
from studio.core.paths import Paths, get_paths

MAX_SIDE = 8192  # pixels on a side: larger inputs are refused from the header, before decoding
MAX_PIXELS = 8192 * 8192
MIN_SIDE = 16
MAX_FILE_BYTES = 256 * 2**20
SIZE_STEP = 16  # Z-Image latents are 8x down and patched 2x2: image sides are multiples of 16
FORMATS = {"PNG": "png", "JPEG": "jpg", "MPO": "jpg", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff", "GIF": "gif"}
MAX_OUTPAINT = 2048  # pixels added on one side
_HASH = re.compile(r"^[0-9a-f]{64}$")


class Problem(str, Enum):
    """Why an input is refused: each has its zh/en line as `input.<value>` in core/strings.py."""

    MISSING = "missing"
    NOT_IMAGE = "not_image"
    FORMAT = "format"
    TRUNCATED = "truncated"
    TOO_LARGE = "too_large"
    TOO_SMALL = "too_small"
    FILE_TOO_BIG = "file_too_big"
    NOT_STORED = "not_stored"
    OUTPAINT = "outpaint"
    NEEDS_IMAGE = "needs_image"


class InputImageError(ValueError):
    """An input image that cannot be used; `message(lang)` says why in one line."""

    def __init__(self, problem: Problem, name: str, **details: object) -> None:
        self.problem = problem
        self.name = name
        self.details = details
        super().__init__(self.message("en"))

    def message(self, lang: str = "en") -> str:
        return t(f"input.{self.problem.value}", lang, name=self.name, **self.details)


@dataclass(frozen=True)
class Note:
    """Something the studio changed in an input and says so (a mask resized to its image); its line is
    `input.note.<key>` in core/strings.py."""

    key: str
    details: dict[str, object] = field(default_factory=dict)

    def message(self, lang: str = "en") -> str:
        return t(f"input.note.{self.key}", lang, **self.details)


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: the format, the size and the colour mode."""

    format: str
    width: int
    height: int
    mode: str

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def _truncated(data: bytes, fmt: str) -> bool:
    """Whether the bytes end before the image's own end marker (cheap: no pixel is decoded)."""
    if fmt == "PNG":
        return data.rfind(b"IEND") == -1
    if fmt in ("JPEG", "MPO"):
        return data.rfind(b"\xff\xd9") == -1
    if fmt == "WEBP" and data[:4] == b"RIFF":
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    return False


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation `ImageOps.exif_transpose` will apply (1: none; a damaged EXIF block: none)."""
    try:
        return int(img.getexif().get(0x0112) or 1)
    except Exception:  # noqa: BLE001 - Pillow raises several kinds for a damaged EXIF block
        return 1


def check_image(data: bytes, name: str = "image") -> ImageInfo:
    """Read the header of `data` and refuse it (InputImageError) when it is no usable image."""
    if len(data) > MAX_FILE_BYTES:
        raise InputImageError(Problem.FILE_TOO_BIG, name, mb=len(data) // 2**20, max_mb=MAX_FILE_BYTES // 2**20)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours: say the size where we can
        size = _png_size(data)
        raise InputImageError(Problem.TOO_LARGE, name, size=f"{size[0]}×{size[1]}" if size else "too large",
                              max_side=MAX_SIDE) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputImageError(Problem.NOT_IMAGE, name) from None
    fmt = img.format or ""
    w, h = img.size
    if fmt not in FORMATS:
        raise InputImageError(Problem.FORMAT, name, format=fmt or "?")
    if _orientation(img) in (5, 6, 7, 8):  # decode() turns these a quarter: say the size it will have
        w, h = h, w
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise InputImageError(Problem.TOO_LARGE, name, size=f"{w}×{h}", max_side=MAX_SIDE)
    if w < MIN_SIDE or h < MIN_SIDE:
        raise InputImageError(Problem.TOO_SMALL, name, width=w, height=h, min_side=MIN_SIDE)
    if _truncated(data, fmt):
        raise InputImageError(Problem.TRUNCATED, name)
    if fmt == "PNG":
        try:  # chunk lengths and CRCs, not the pixels
            Image.open(io.BytesIO(data)).verify()
        except Exception:  # noqa: BLE001 - Pillow raises several kinds for a damaged chunk
            raise InputImageError(Problem.TRUNCATED, name) from None
    return ImageInfo(fmt, w, h, img.mode)


def read_input(source: str | os.PathLike[str] | bytes, name: str | None = None) -> tuple[bytes, ImageInfo]:
    """The bytes of an input (a path or bytes already read) and its checked header."""
    if isinstance(source, bytes):
        data = source
        name = name or "image"
    else:
        path = Path(source).expanduser()
        name = name or path.name
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise InputImageError(Problem.FILE_TOO_BIG, name, mb=path.stat().st_size // 2**20,
                                      max_mb=MAX_FILE_BYTES // 2**20)
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise InputImageError(Problem.MISSING, name) from None
    return data, check_image(data, name)


def decode(data: bytes, name: str = "image", mode: str = "RGB") -> Image.Image:
    """Decode checked bytes into `mode` ("RGB" for images, "L" for masks), upright per EXIF.

    A mask with transparency uses its alpha (painted = repaint); otherwise its grey level (white = repaint).
    Transparent areas of an RGB image become white."""
    check_image(data, name)
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, ValueError, SyntaxError):
        raise InputImageError(Problem.TRUNCATED, name) from None
    try:
        return _converted(ImageOps.exif_transpose(img) or img, mode)
    except (OSError, ValueError):  # a mode Pillow opens but cannot convert (a LAB TIFF)
        raise InputImageError(Problem.FORMAT, name, format=f"{img.format or '?'} {img.mode}") from None


def _converted(img: Image.Image, mode: str) -> Image.Image:
    if mode == "L":
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            alpha = img.convert("RGBA").getchannel("A")
            if alpha.getextrema() != (255, 255):
                return alpha
        return img.convert("L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class StoredInput:
    sha256: str
    path: Path
    info: ImageInfo


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file at `path` is exactly `data` (sizes first; then compared a MiB at a time)."""
    try:
        if path.stat().st_size != len(data):
            return False
        view = memoryview(data)
        with open(path, "rb") as fh:
            for start in range(0, len(data), 1 << 20):
                if fh.read(1 << 20) != view[start:start + (1 << 20)]:
                    return False
        return True
    except OSError:
        return False


def _touch(path: Path) -> bool:
    """A stored input given again: new to the inputs sweep's grace period (studio/store/input_sweep.py).
    False when the sweep took it between the check and now (it is written again)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except OSError:
        pass
    return True


class InputStore:
    """Inputs kept by content: `<data>/inputs/ab/abcdef….png`, the bytes exactly as given.

    The same image given twice is stored once; a spec names an input by its hash only."""

    def __init__(self, root: Path | None = None, paths: Paths | None = None) -> None:
        self.root = Path(root) if root is not None else (paths or get_paths()).inputs_dir

    def put(self, source: str | os.PathLike[str] | bytes, name: str | None = None) -> StoredInput:
        """Check and store an input; raises InputImageError (nothing stored) when it is no usable image."""
        data, info = read_input(source, name)
        digest = sha256_of(data)
        target = self.root / digest[:2] / f"{digest}.{FORMATS[info.format]}"
        if not (_holds(target, data) and _touch(target)):  # absent, cut short or changed: written again, whole
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
        return StoredInput(digest, target, info)

    def put_image(self, image: Image.Image) -> StoredInput:
        """Store an image made in the studio (a painted mask, an outpaint canvas) as PNG."""
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return self.put(buf.getvalue(), "image.png")

    def path(self, digest: str) -> Path | None:
        """The stored file of `digest`, or None."""
        if not _HASH.match(digest or ""):
            return None
        folder = self.root / digest[:2]
        for ext in dict.fromkeys(FORMATS.values()):
            cand = folder / f"{digest}.{ext}"
            if cand.is_file():
                return cand
        return None

    def open(self, digest: str, mode: str = "RGB") -> Image.Image:
        """The stored input decoded in `mode`; InputImageError(NOT_STORED) when it is gone."""
        path = self.path(digest)
        if path is None:
            raise InputImageError(Problem.NOT_STORED, (digest or "?")[:12])
        return decode(path.read_bytes(), path.name, mode)


# --- sizes -------------------------------------------------------------------------------------


def snap(value: int, step: int = SIZE_STEP) -> int:
    """The nearest multiple of `step` (at least `step`)."""
    return max(step, int(round(value / step)) * step)


def fit_size(width: int, height: int, max_side: int = 2048, min_side: int = 256) -> tuple[int, int]:
    """A generation size for an input of `width`×`height`: same aspect, sides multiples of 16 within limits."""
    scale = min(1.0, max_side / max(width, height))
    scale = max(scale, min_side / min(width, height)) if min(width, height) * scale < min_side else scale
    w, h = snap(width * scale), snap(height * scale)
    return min(max(w, min_side), max_side), min(max(h, min_side), max_side)


def fit_image(image: Image.Image, size: tuple[int, int]) -> tuple[Image.Image, Note | None]:
    """`image` at `size` (Lanczos), with a note when it had to change."""
    if image.size == tuple(size):
        return image, None
    got = f"{image.width}×{image.height}"
    return image.resize(size, Image.Resampling.LANCZOS), Note("image_resized", {"got": got,
                                                                                 "want": f"{size[0]}×{size[1]}"})


def fit_mask(mask: Image.Image, size: tuple[int, int]) -> tuple[Image.Image, Note | None]:
    """A greyscale mask at the image's `size`; a mask of another size is resized, and the note says so."""
    mask = mask.convert("L")
    if mask.size == tuple(size):
        return mask, None
    note = Note("mask_resized", {"got": f"{mask.width}×{mask.height}", "want": f"{size[0]}×{size[1]}"})
    return mask.resize(size, Image.Resampling.BILINEAR), note


# --- outpaint and paste-back -------------------------------------------------------------------


@dataclass(frozen=True)
class Outpaint:
    """Pixels added on each side of the canvas."""

    left: int = 0
    right: int = 0
    up: int = 0
    down: int = 0

    @classmethod
    def parse(cls, text: str) -> Outpaint:
        """`L,R,U,D` in pixels, each 0-2048; InputImageError(OUTPAINT) otherwise."""
        parts = [p.strip() for p in str(text).split(",")]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 4 or any(not 0 <= v <= MAX_OUTPAINT for v in values):
            raise InputImageError(Problem.OUTPAINT, str(text), max=MAX_OUTPAINT)
        return cls(*values)

    def __bool__(self) -> bool:
        return any((self.left, self.right, self.up, self.down))

    def text(self) -> str:
        return f"{self.left},{self.right},{self.up},{self.down}"


def extend_canvas(image: Image.Image, out: Outpaint) -> tuple[Image.Image, Image.Image, Outpaint]:
    """The image on a larger canvas and the mask of the new area (white), sides rounded up to 16.

    The new area starts as the image's edge pixels stretched outwards (the model repaints it; a
    start close in colour blends better than grey). Returns the extension actually used."""
    w, h = image.size
    right = out.right + (-(w + out.left + out.right)) % SIZE_STEP
    down = out.down + (-(h + out.up + out.down)) % SIZE_STEP
    used = Outpaint(out.left, right, out.up, down)
    cw, ch = w + used.left + used.right, h + used.up + used.down
    image = image.convert("RGB")
    canvas = image.resize((cw, ch), Image.Resampling.NEAREST)  # a neutral start for the corners
    row = image.resize((cw, h), Image.Resampling.NEAREST)
    row.paste(image, (used.left, 0))
    if used.left:
        row.paste(image.crop((0, 0, 1, h)).resize((used.left, h)), (0, 0))
    if used.right:
        row.paste(image.crop((w - 1, 0, w, h)).resize((used.right, h)), (used.left + w, 0))
    canvas.paste(row, (0, used.up))
    if used.up:
        canvas.paste(row.crop((0, 0, cw, 1)).resize((cw, used.up)), (0, 0))
    if used.down:
        canvas.paste(row.crop((0, h - 1, cw, h)).resize((cw, used.down)), (0, used.up + h))
    mask = Image.new("L", (cw, ch), 255)
    mask.paste(0, (used.left, used.up, used.left + w, used.up + h))
    return canvas, mask, used


def feather(mask: Image.Image, blur: int) -> Image.Image:
    """The mask softened inwards by `blur` pixels: 0 wherever the mask was 0, so outside stays exact."""
    mask = mask.convert("L")
    if blur <= 0:
        return mask
    soft = mask.filter(ImageFilter.GaussianBlur(blur))
    # 2·blur − 1: the edge (blurred to about half) goes to 0, the inside stays 1 beyond the radius.
    inward = soft.point(lambda v: max(0, 2 * v - 255))
    return ImageChops.darker(inward, mask)


def paste_back(original: Image.Image, generated: Image.Image, mask: Image.Image, blur: int = 0) -> Image.Image:
    """`generated` where the mask is painted, `original` exactly elsewhere, blended over `blur` pixels."""
    if generated.size != original.size:
        generated = generated.resize(original.size, Image.Resampling.LANCZOS)
    mask, _ = fit_mask(mask, original.size)
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), feather(mask, blur))
