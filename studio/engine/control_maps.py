"""Control maps from pictures: what a ControlNet is conditioned on, made in the worker.

Canny edges need only OpenCV. Depth, pose, HED and line art need a model of their own; they are
looked for locally (the data dir's `annotators/<kind>` folder), never downloaded, and where one is
missing the person is told in one line what to put where, or to give a ready control map instead.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from PIL import Image

from studio.core.paths import get_paths

CANNY_LOW, CANNY_HIGH = 100, 200


class ControlKind(str, Enum):
    CANNY = "canny"
    DEPTH = "depth"
    POSE = "pose"
    HED = "hed"
    LINEART = "lineart"
    MAP = "map"  # the image already is a control map: used as given

    @classmethod
    def parse(cls, text: str) -> ControlKind:
        value = (text or "").strip().lower()
        if value in ("none", "raw", "control", ""):
            return cls.MAP
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(k.value for k in cls)
            raise ControlMapError(f"Unknown control type '{text}': use one of {names}.") from None


class ControlMapError(ValueError):
    """A control map that cannot be made here; the message says what would work."""


def annotators_dir() -> Path:
    return get_paths().data_dir / "annotators"


def canny(image: Image.Image, low: int = CANNY_LOW, high: int = CANNY_HIGH) -> Image.Image:
    """White edges on black, as the Fun-Controlnet-Union canny mode was trained on."""
    import cv2
    import numpy as np

    gray = np.asarray(image.convert("L"))
    edges = cv2.Canny(gray, low, high)
    return Image.fromarray(edges).convert("RGB")


def _depth(image: Image.Image, folder: Path) -> Image.Image:
    from transformers import pipeline

    estimator = pipeline("depth-estimation", model=str(folder), device="cpu")
    depth = estimator(image)["depth"]
    return depth.convert("RGB").resize(image.size, Image.Resampling.BILINEAR)


def _aux(kind: ControlKind, image: Image.Image, folder: Path) -> Image.Image:
    try:
        import controlnet_aux  # type: ignore[import-not-found]
    except ImportError:
        raise ControlMapError(f"The {kind.value} control type needs the controlnet_aux package, which is not "
                              "installed: install it, or give a ready control map (type 'map').") from None
    detector = {ControlKind.POSE: controlnet_aux.OpenposeDetector, ControlKind.HED: controlnet_aux.HEDdetector,
                ControlKind.LINEART: controlnet_aux.LineartDetector}[kind].from_pretrained(str(folder))
    return detector(image).convert("RGB").resize(image.size, Image.Resampling.BILINEAR)


def control_map(image: Image.Image, kind: ControlKind | str, folder: Path | None = None) -> Image.Image:
    """The control map of `image` for `kind` (same size); ControlMapError when its model is not here."""
    kind = ControlKind.parse(kind) if isinstance(kind, str) else kind
    if kind is ControlKind.MAP:
        return image.convert("RGB")
    if kind is ControlKind.CANNY:
        return canny(image)
    where = (folder or annotators_dir()) / kind.value
    if not where.is_dir() or not any(where.iterdir()):
        raise ControlMapError(f"The {kind.value} control type needs its annotator model in {where} and none is "
                              f"there: put one there, use canny, or give a ready {kind.value} map (type 'map').")
    if kind is ControlKind.DEPTH:
        return _depth(image, where)
    return _aux(kind, image, where)
