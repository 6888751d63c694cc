"""What an image-input request asks the engine for: its pictures, the task they make, its step counts.

Plain data and pure rules, kept apart from the pipelines (studio/engine/images_in.py) so the worker,
the benchmarks and the tests can build inputs without loading diffusers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from PIL import Image

from studio.core.i18n import SaidError
from studio.core.image_inputs import InputStore, Note
from studio.core.spec import ImageSpec
from studio.engine.generate import StepCallback, Timings


class Task(str, Enum):
    TEXT = "text"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    CONTROL = "control"
    CONTROL_INPAINT = "control-inpaint"


class ImagesInError(SaidError, ValueError):
    """A combination of inputs this engine cannot run; one line saying what would work, given as a key
    of studio/core/strings.py (`input.*`) and its arguments: `str()` is the English line."""


@dataclass
class ControlInput:
    """A control picture (turned into a map of `kind` in the worker) and the ControlNet to use."""

    image: Image.Image
    controlnet: str  # a folder or file path, or a name in the ControlNet folders
    kind: str = "canny"
    scale: float = 0.75
    start: float = 0.0  # the fraction of the steps where the control begins
    end: float = 1.0  # ... and where it ends


@dataclass
class Hires:
    """Hires fix: upscale the finished image, then refine it with image-to-image."""

    scale: float = 2.0
    strength: float = 0.35
    upscaler: str | None = None  # an upscaler model file (through spandrel); None: Lanczos


@dataclass
class ImageInputs:
    init_image: Image.Image | None = None
    strength: float | None = None  # image-to-image: required; inpaint: 1.0 when None
    mask: Image.Image | None = None  # white (255) = repaint
    mask_blur: int = 0
    control: ControlInput | None = None
    hires: Hires | None = None

    @property
    def task(self) -> Task:
        if self.control is not None:
            if self.init_image is not None and self.mask is None:
                raise ImagesInError("input.control_needs_mask")
            return Task.CONTROL_INPAINT if self.mask is not None else Task.CONTROL
        if self.mask is not None:
            if self.init_image is None:
                raise ImagesInError("input.mask_needs_image")
            return Task.INPAINT
        return Task.IMG2IMG if self.init_image is not None else Task.TEXT


@dataclass
class Made:
    image: Image.Image
    timings: Timings
    notes: list[Note] = field(default_factory=list)
    task: Task = Task.TEXT


def inputs_for(spec: ImageSpec, store: InputStore) -> ImageInputs:
    """The pictures a spec names by hash, read from the inputs folder (InputImageError if one is gone)."""
    c, h = spec.control, spec.hires
    return ImageInputs(
        init_image=store.open(spec.init_image) if spec.init_image else None, strength=spec.strength,
        mask=store.open(spec.mask, "L") if spec.mask else None, mask_blur=spec.mask_blur,
        control=ControlInput(image=store.open(c.image), controlnet=c.model, kind=c.kind, scale=c.scale,
                             start=c.start, end=c.end) if c is not None else None,
        hires=Hires(scale=h.scale, strength=h.strength, upscaler=h.upscaler or None) if h is not None else None)


def denoise_steps(steps: int, strength: float) -> int:
    """How many steps image-to-image runs at `strength` (diffusers' own rule: the tail of the schedule)."""
    return steps - int(max(steps - min(steps * strength, steps), 0))


def effective_strength(steps: int, strength: float) -> float:
    """`strength`, raised to one step's worth where it would leave no step at all."""
    return strength if denoise_steps(steps, strength) >= 1 else 1.0 / steps


class StepCount:
    """One progress count over both passes of a hires fix."""

    def __init__(self, on_step: StepCallback | None, total: int) -> None:
        self.on_step, self.total = on_step, total

    def callback(self, offset: int) -> StepCallback | None:
        if self.on_step is None:
            return None
        return lambda i, _n: self.on_step(offset + i, self.total)  # type: ignore[misc]


def add_timings(total: Timings, part: Timings) -> None:
    """Add `part`'s encode, denoise and decode seconds into `total` (its total_s is the caller's)."""
    for name in ("encode_s", "denoise_s", "decode_s"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
