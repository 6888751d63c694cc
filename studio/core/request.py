"""The one description of what a person asked for, validated before anything runs.

Every field is checked here so that the UI, the CLI and scripts all show the same one-sentence
message for the same mistake, and no worker ever sees a request it cannot run.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from studio.core.spec import ImageSpec

MAX_PROMPT_CHARS = 2000
MIN_SIZE, MAX_SIZE, SIZE_STEP = 256, 2048, 16
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 1, 100, 9
MIN_GUIDANCE, MAX_GUIDANCE, DEFAULT_GUIDANCE = 0.0, 20.0, 0.0
MAX_SEED = 2**32 - 1
MIN_COUNT, MAX_COUNT = 1, 64
SEED_MODES = ("random", "fixed", "increment")


class ValidationError(ValueError):
    """A bad field: `field` names it, the message says what is allowed in one sentence.

    `kind` (range, whole, number, finite, text) and `got` (the value as given) let a window say the
    same sentence in its own language."""

    def __init__(self, field_name: str, message: str, kind: str = "range", got: Any = None) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message
        self.kind = kind
        self.got = got


@dataclass(frozen=True)
class GenerationRequest:
    """What to draw and how; `seed=None` means "pick one at random"."""

    prompt: str
    negative_prompt: str = ""
    width: int = 1024
    height: int = 1024
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    seed: int | None = None
    seed_mode: str = "random"
    count: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def expand(self, model: str = "", rng: random.Random | None = None) -> list[ImageSpec]:
        """One spec per image with the seed mode applied (call on a validated request)."""
        base = ImageSpec(prompt=self.prompt, negative_prompt=self.negative_prompt, width=self.width,
                         height=self.height, steps=self.steps, guidance=self.guidance, model=model)
        return [base.with_seed(seed) for seed in expand_seeds(self, rng)]

    @classmethod
    def from_spec(cls, spec: ImageSpec) -> GenerationRequest:
        """The request that draws exactly this one image again: its seed, fixed, count 1."""
        return cls(prompt=spec.prompt, negative_prompt=spec.negative_prompt, width=spec.width,
                   height=spec.height, steps=spec.steps, guidance=spec.guidance, seed=spec.seed,
                   seed_mode="fixed", count=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        """Build from a dict (JSON, PNG metadata, a form), ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _as_int(name: str, value: Any, label: str) -> int:
    if isinstance(value, bool):
        raise ValidationError(name, f"{label} must be a whole number.", "whole", value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValidationError(name, f"{label} must be a whole number, not {value}.", "whole", value)
        return int(value)
    if isinstance(value, str):
        value = value.strip()
    try:
        return int(value)
    except (TypeError, ValueError):
        shown = value if isinstance(value, str) and _is_number(value) else repr(value)  # 2.5 as typed, 'x' quoted
        raise ValidationError(name, f"{label} must be a whole number, not {shown}.", "whole", value) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _as_float(name: str, value: Any, label: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValidationError(name, f"{label} must be a number, not {value!r}.", "number", value) from None
    if out != out or out in (float("inf"), float("-inf")):
        raise ValidationError(name, f"{label} must be a finite number.", "finite", value)
    return out


def _check_text(name: str, label: str, text: str) -> None:
    """Text that every layer can store, encode and print: no NUL, valid Unicode (a byte that was not
    UTF-8 reaches Python as a lone surrogate, which no file or database can hold)."""
    if "\x00" in text:
        raise ValidationError(name, f"{label} contains a NUL character (at position {text.index(chr(0))}); remove it.",
                              "text", text.index(chr(0)))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            name, f"{label} is not valid text: position {exc.start} holds a byte that is not UTF-8 "
                  "(check the terminal's or file's encoding).", "text", exc.start) from None


def validate(request: GenerationRequest) -> GenerationRequest:
    """Return a normalised copy of `request`, or raise ValidationError naming the first bad field."""
    prompt = request.prompt if isinstance(request.prompt, str) else ""
    prompt = prompt.strip()
    if not prompt:
        raise ValidationError("prompt", "Prompt is required: describe the image in Chinese or English.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValidationError(
            "prompt", f"Prompt must be at most {MAX_PROMPT_CHARS} characters (it has {len(prompt)})."
        )
    _check_text("prompt", "Prompt", prompt)
    negative = request.negative_prompt if isinstance(request.negative_prompt, str) else ""
    negative = negative.strip()
    if len(negative) > MAX_PROMPT_CHARS:
        raise ValidationError(
            "negative_prompt", f"Negative prompt must be at most {MAX_PROMPT_CHARS} characters."
        )
    _check_text("negative_prompt", "Negative prompt", negative)
    sizes = {}
    for name, label in (("width", "Width"), ("height", "Height")):
        v = _as_int(name, getattr(request, name), label)
        if not (MIN_SIZE <= v <= MAX_SIZE) or v % SIZE_STEP:
            raise ValidationError(
                name, f"{label} must be a multiple of {SIZE_STEP} from {MIN_SIZE} to {MAX_SIZE} (got {v}).",
                got=v)
        sizes[name] = v
    steps = _as_int("steps", request.steps, "Steps")
    if not MIN_STEPS <= steps <= MAX_STEPS:
        raise ValidationError("steps", f"Steps must be from {MIN_STEPS} to {MAX_STEPS} (got {steps}).", got=steps)
    guidance = _as_float("guidance", request.guidance, "Guidance")
    if not MIN_GUIDANCE <= guidance <= MAX_GUIDANCE:
        raise ValidationError(
            "guidance", f"Guidance must be from {MIN_GUIDANCE:g} to {MAX_GUIDANCE:g} (got {guidance:g}).",
            got=f"{guidance:g}")
    seed = request.seed
    if seed is not None and not (isinstance(seed, str) and seed.strip() in ("", "-1", "random")):
        seed = _as_int("seed", seed, "Seed")
        if seed == -1:
            seed = None
        elif not 0 <= seed <= MAX_SEED:
            raise ValidationError("seed", f"Seed must be from 0 to {MAX_SEED}, or empty for random.", got=seed)
    else:
        seed = None
    mode = str(request.seed_mode).strip().lower()
    if mode not in SEED_MODES:
        raise ValidationError("seed_mode", f"Seed mode must be one of {', '.join(SEED_MODES)} (got {mode!r}).",
                              got=mode)
    count = _as_int("count", request.count, "Count")
    if not MIN_COUNT <= count <= MAX_COUNT:
        raise ValidationError("count", f"Count must be from {MIN_COUNT} to {MAX_COUNT} images (got {count}).",
                              got=count)
    return GenerationRequest(
        prompt=prompt,
        negative_prompt=negative,
        width=sizes["width"],
        height=sizes["height"],
        steps=steps,
        guidance=guidance,
        seed=seed,
        seed_mode=mode,
        count=count,
        extra=dict(request.extra or {}),
    )


def expand_seeds(request: GenerationRequest, rng: random.Random | None = None) -> list[int]:
    """One seed per image: `fixed` repeats the seed, `increment` counts up, `random` draws each.

    A `fixed` or `increment` request without a seed draws its first seed at random, so the result is
    still reproducible from the seeds that get recorded.
    """
    rng = rng or random.SystemRandom()
    first = request.seed if request.seed is not None else rng.randint(0, MAX_SEED)
    if request.seed_mode == "fixed":
        return [first] * request.count
    if request.seed_mode == "increment":
        return [(first + i) % (MAX_SEED + 1) for i in range(request.count)]
    if request.seed is not None:
        return [first] + [rng.randint(0, MAX_SEED) for _ in range(request.count - 1)]
    return [rng.randint(0, MAX_SEED) for _ in range(request.count)]
