"""The hires fix's upscale: Lanczos, or an upscaler model from the person's folder through spandrel first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from studio.core.image_inputs import snap
from studio.engine.image_tasks import ImagesInError


def upscale(image: Image.Image, scale: float, upscaler: str | None = None, device: Any = "cpu") -> Image.Image:
    """`image` `scale` times larger, sides multiples of 16: Lanczos, or an upscaler model first."""
    size = (snap(image.width * scale), snap(image.height * scale))
    if upscaler:
        image = _model_upscale(image, Path(upscaler), device)
    return image.resize(size, Image.Resampling.LANCZOS)


def _model_upscale(image: Image.Image, path: Path, device: Any) -> Image.Image:
    try:
        import spandrel  # type: ignore[import-not-found]
    except ImportError:
        raise ImagesInError("input.upscaler_spandrel", name=path.name) from None
    import numpy as np

    model = spandrel.ModelLoader().load_from_file(str(path)).to(device).eval()
    x = torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1)[None].float().div(255).to(device)
    with torch.no_grad():
        y = model(x).clamp(0, 1)
    return Image.fromarray(y[0].permute(1, 2, 0).mul(255).round().byte().cpu().numpy())
