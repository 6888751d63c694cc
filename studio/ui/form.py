"""The Generate form as plain values: form fields to a request and a request back to form fields.

Kept free of Gradio so that "restore fills every field back" is tested as a round trip.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from studio.core.request import MAX_SEED, GenerationRequest

SIZE_PRESETS = ("1024x1024", "1152x896", "896x1152", "1344x768", "768x1344")
CUSTOM = "custom"


def preset_label(value: str) -> str:
    return value.replace("x", "×")


def preset_size(preset: str) -> tuple[int, int] | None:
    """(width, height) of a preset, or None for custom."""
    if preset in SIZE_PRESETS:
        w, h = preset.split("x")
        return int(w), int(h)
    return None


def preset_for(width: int, height: int) -> str:
    """The preset matching a size, else custom."""
    key = f"{width}x{height}"
    return key if key in SIZE_PRESETS else CUSTOM


def _seed_text(seed: Any) -> str:
    return "" if seed is None else str(seed).strip()


def build_request(prompt: str, negative: str, size: str, width: Any, height: Any, steps: Any,
                  guidance: Any, count: Any, seed: Any, seed_mode: str) -> GenerationRequest:
    """A request from the form as typed (not validated: Studio.submit does that, once)."""
    fixed = preset_size(size)
    if fixed:
        width, height = fixed
    return GenerationRequest(
        prompt=prompt or "", negative_prompt=negative or "",
        width=width if width is not None else "", height=height if height is not None else "",
        steps=steps if steps is not None else "", guidance=guidance if guidance is not None else "",
        seed=_seed_text(seed) or None, seed_mode=seed_mode or "random",
        count=count if count is not None else "",
    )


@dataclass(frozen=True)
class FormValues:
    """Every Generate field's value, in the order the form lists them."""

    prompt: str
    negative: str
    size: str
    width: int
    height: int
    steps: int
    guidance: float
    count: int
    seed: str
    seed_mode: str

    def as_list(self) -> list[Any]:
        return [self.prompt, self.negative, self.size, self.width, self.height, self.steps,
                self.guidance, self.count, self.seed, self.seed_mode]


def fields_from_request(request: GenerationRequest) -> FormValues:
    """The form values that reproduce `request`."""
    return FormValues(
        prompt=request.prompt, negative=request.negative_prompt or "",
        size=preset_for(int(request.width), int(request.height)),
        width=int(request.width), height=int(request.height), steps=int(request.steps),
        guidance=float(request.guidance), count=int(request.count), seed=_seed_text(request.seed),
        seed_mode=request.seed_mode if request.seed_mode in ("random", "fixed", "increment") else "fixed",
    )


def dice(rng: random.Random | None = None) -> str:
    """A fresh random seed, as the seed box shows it."""
    return str((rng or random.SystemRandom()).randint(0, MAX_SEED))
