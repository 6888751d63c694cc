"""Image inputs as a person gives them (paths or bytes) turned into stored inputs and request fields.

The CLI's `--image/--mask/--outpaint/--control`, the API's multipart edits and the window's image
editor all come through here, so they store, check and size inputs the same way: every file is
checked from its header and kept by content hash before anything is queued, an outpaint becomes a
stored canvas and mask (so History reruns it as it was), and a mask of another size is noted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from studio.core.image_inputs import (
    InputImageError,
    InputStore,
    Note,
    Outpaint,
    Problem,
    decode,
    extend_canvas,
    fit_size,
    read_input,
)


@dataclass
class GivenImages:
    """What a person gave; paths (str) or bytes. Names are for messages only."""

    image: str | bytes | None = None
    mask: str | bytes | None = None
    control: str | bytes | None = None
    outpaint: str | Outpaint | None = None
    image_name: str | None = None
    mask_name: str | None = None
    control_name: str | None = None


@dataclass
class StoredImages:
    """The stored inputs' hashes and the size the image suggests, with what was changed on the way."""

    init_image: str | None = None
    mask: str | None = None
    control_image: str | None = None
    size: tuple[int, int] | None = None  # the generation size an init image (or canvas) implies
    outpaint: Outpaint | None = None  # the extension actually applied (sides rounded up to 16)
    notes: list[Note] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        """The request fields these inputs fill in (only those that are set)."""
        out: dict[str, Any] = {}
        if self.init_image:
            out["init_image"] = self.init_image
        if self.mask:
            out["mask"] = self.mask
        if self.size:
            out["width"], out["height"] = self.size
        return out


def _name(source: str | bytes, name: str | None, default: str) -> str | None:
    """The name messages use: the one given, else the file's (read_input's default), else `default`."""
    return name or (default if isinstance(source, bytes) else None)


def store_images(given: GivenImages, store: InputStore | None = None) -> StoredImages:
    """Check and store every given input; raises InputImageError (nothing queued) for a bad one."""
    store = store or InputStore()
    out = StoredImages()
    if given.image is None and (given.mask is not None or given.outpaint):
        raise InputImageError(Problem.NEEDS_IMAGE, "mask" if given.mask is not None else "outpaint")
    init = None
    if given.image is not None:
        data, info = read_input(given.image, _name(given.image, given.image_name, "image"))
        init = store.put(data, given.image_name)
        out.init_image, out.size = init.sha256, fit_size(info.width, info.height)
    outpaint = Outpaint.parse(given.outpaint) if isinstance(given.outpaint, str) else given.outpaint
    if outpaint and init is not None:
        image = decode(init.path.read_bytes(), init.path.name)
        canvas, mask, used = extend_canvas(image, outpaint)
        out.init_image = store.put_image(canvas).sha256
        if given.mask is not None:  # a painted mask of the original goes on the canvas too
            painted = decode(read_input(given.mask, given.mask_name)[0], given.mask_name or "mask", "L")
            if painted.size != image.size:
                out.notes.append(Note("mask_resized", {"got": f"{painted.width}×{painted.height}",
                                                       "want": f"{image.width}×{image.height}"}))
                painted = painted.resize(image.size)
            mask.paste(painted, (used.left, used.up))
        out.mask = store.put_image(mask).sha256
        out.outpaint, out.size = used, fit_size(*canvas.size)
    elif given.mask is not None:
        data, info = read_input(given.mask, _name(given.mask, given.mask_name, "mask"))
        out.mask = store.put(data, given.mask_name).sha256
        if init is not None and info.size != init.info.size:
            out.notes.append(Note("mask_resized", {"got": f"{info.width}×{info.height}",
                                                   "want": f"{init.info.width}×{init.info.height}"}))
    if given.control is not None:
        out.control_image = store.put(given.control, _name(given.control, given.control_name, "control")).sha256
    return out


def png_bytes(image: Any) -> bytes:
    """An image made in memory (a painted layer from the window) as PNG bytes for `store_images`."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
