"""The Generate form as plain values: form fields to a request and a request back to form fields.

Kept free of Gradio so that "restore fills every field back" is tested as a round trip.
"""

from __future__ import annotations

import random
from typing import Any

from studio.core.request import MAX_SEED, SEED_MODES, GenerationRequest

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


# The Generate form's fields in the order its components are listed, passed and filled back.
FIELDS = ("prompt", "negative", "size", "width", "height", "steps", "guidance", "count", "seed", "seed_mode")


class FormValues(dict):
    """The form's values by field name (`values.size`), and `as_list()` in FIELDS order."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def as_list(self) -> list[Any]:
        return [self[name] for name in FIELDS]


def build_request(*values: Any) -> GenerationRequest:
    """A request from the form's values as typed, in FIELDS order (not validated: Studio.submit does
    that, once)."""
    v = FormValues(zip(FIELDS, values, strict=True))
    width, height = preset_size(v.size) or (v.width, v.height)

    def typed(value: Any) -> Any:
        return value if value is not None else ""

    return GenerationRequest(
        prompt=v.prompt or "", negative_prompt=v.negative or "", width=typed(width), height=typed(height),
        steps=typed(v.steps), guidance=typed(v.guidance), seed=_seed_text(v.seed) or None,
        seed_mode=v.seed_mode or "random", count=typed(v.count))


def fields_from_request(request: GenerationRequest) -> FormValues:
    """The form values that reproduce `request`."""
    return FormValues(
        prompt=request.prompt, negative=request.negative_prompt or "",
        size=preset_for(int(request.width), int(request.height)),
        width=int(request.width), height=int(request.height), steps=int(request.steps),
        guidance=float(request.guidance), count=int(request.count), seed=_seed_text(request.seed),
        seed_mode=request.seed_mode if request.seed_mode in SEED_MODES else "fixed",
    )


def dice(rng: random.Random | None = None) -> str:
    """A fresh random seed, as the seed box shows it."""
    return str((rng or random.SystemRandom()).randint(0, MAX_SEED))
