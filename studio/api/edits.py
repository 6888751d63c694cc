"""`POST /v1/images/edits`: an image (and optionally a mask) in, edited images out.

Both of OpenAI's forms: multipart, as the `openai` package's `images.edit` sends it (files `image` or
`image[]` and `mask`, read by studio/api/multipart.py), and JSON, as gpt-image clients send it:
`images` as `[{"image_url": "data:image/png;base64,…"}]` or a plain `image` data URL / base64 string,
an optional `mask` the same way, plus the generation fields. The mask follows OpenAI's rule: where it
is transparent is what gets repainted (a mask without transparency: white repaints). Without a mask
the call is image-to-image at `strength` (studio extension, default 0.75).
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image, ImageOps

from studio.api.errors import ApiError
from studio.api.service import build_request, invalid
from studio.core.image_args import GivenImages, store_images
from studio.core.image_inputs import InputImageError, check_image, decode, fit_size
from studio.core.request import GenerationRequest, LoraCheck, ValidationError, image_numbers, validate


def _data(value: Any, param: str) -> bytes | None:
    """The bytes of an uploaded file, a data URL, a base64 string or `{"image_url": …}`; None when absent."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bytes):
        return value or None
    if isinstance(value, dict):
        value = value.get("image_url") or value.get("b64_json")
        if isinstance(value, dict):
            value = value.get("url")
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{param}: give the image as a data URL or base64 text.", param=param)
    text = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{param}: not valid base64 image data (URLs to fetch are not taken: send the "
                            "image itself).", param=param) from None


def _openai_mask(data: bytes) -> bytes:
    """OpenAI's mask (transparent = edit) as the studio's (white = repaint), as PNG bytes."""
    mask = Image.open(io.BytesIO(data))
    if mask.mode in ("RGBA", "LA", "PA") or "transparency" in mask.info:
        alpha = mask.convert("RGBA").getchannel("A")
        if alpha.getextrema() != (255, 255):
            out = io.BytesIO()
            ImageOps.invert(alpha).save(out, format="PNG")
            return out.getvalue()
    return data


def _refused(exc: InputImageError) -> ApiError:
    return ApiError(400, exc.message("en"), param="mask" if exc.name == "mask" else "image")


@dataclass(frozen=True)
class Edit:
    """An edits call checked in full, its images not stored yet: `store` runs once the call is admitted
    (queue, readiness), so a refused call leaves nothing in the inputs folder."""

    request: GenerationRequest  # validated, without its images
    image: bytes
    mask: bytes | None  # the studio's mask (white = repaint)
    strength: Any
    mask_blur: Any

    def store(self) -> GenerationRequest:
        """Store the images; the request with their hashes (ApiError 400 should one be refused now)."""
        try:
            stored = store_images(GivenImages(image=self.image, mask=self.mask, image_name="image", mask_name="mask"))
            return validate(replace(self.request, init_image=stored.init_image, mask=stored.mask,
                                    strength=self.strength, mask_blur=self.mask_blur))
        except InputImageError as exc:
            raise _refused(exc) from None
        except ValidationError as exc:
            raise invalid(exc) from None


def edit_request(body: dict[str, Any], check_lora: LoraCheck | None = None) -> Edit:
    """An edits body checked in full (ApiError 400 naming the field for anything wrong), nothing stored;
    the size defaults to the image's."""
    image = _data(body.get("images", body.get("image")), "image")
    if image is None:
        raise ApiError(400, "image is required: the picture to edit, as a data URL or base64.", param="image")
    mask = _data(body.get("mask"), "mask")
    try:
        info = check_image(image, "image")
        if mask is not None:
            decode(mask, "mask", "L")  # checked before its alpha is read
            mask = _openai_mask(mask)
    except InputImageError as exc:
        raise _refused(exc) from None
    request = build_request(body, fit_size(info.width, info.height), check_lora)
    strength, mask_blur = body.get("strength"), body.get("mask_blur") or 0
    try:
        image_numbers(strength, mask_blur, True, mask is not None)
    except ValidationError as exc:
        raise invalid(exc) from None
    return Edit(request, image, mask, strength, mask_blur)
