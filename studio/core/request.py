"""The one description of what a person asked for, validated before anything runs.

Every field is checked here so that the UI, the CLI and scripts all show the same one-sentence
message for the same mistake, and no worker ever sees a request it cannot run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError
from studio.core.image_inputs import InputStore
from studio.core.lora_text import LoraError, check_strength, parse_lora_arg, parse_prompt
from studio.core.spec import ControlRef, HiresRef, ImageSpec, LoraRef, refs

# Checks one LoRA's file where the caller can see them (the studio: its LoRA folders and the model);
# returns the file it found, or raises LoraError with one line (missing file, not safetensors...).
LoraCheck = Callable[[str], Path]

MAX_PROMPT_CHARS = 2000
MIN_SIZE, MAX_SIZE, SIZE_STEP = 256, 2048, 16
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 1, 100, 9
MIN_GUIDANCE, MAX_GUIDANCE, DEFAULT_GUIDANCE = 0.0, 20.0, 0.0
MAX_SEED = 2**32 - 1
MIN_COUNT, MAX_COUNT = 1, 64
SEED_MODES = ("random", "fixed", "increment")
DEFAULT_STRENGTH = 0.75  # image-to-image without a mask; an inpaint repaints fully (1.0) unless told
MAX_MASK_BLUR = 64
CONTROL_KINDS = ("canny", "depth", "pose", "hed", "lineart", "map")
MIN_CONTROL_SCALE, MAX_CONTROL_SCALE = 0.0, 2.0
MIN_HIRES_SCALE, MAX_HIRES_SCALE, DEFAULT_HIRES_STRENGTH = 1.0, 4.0, 0.35
# The request fields that carry images in (issue 20), as ImageSpec names them.
IMAGE_FIELDS = ("init_image", "strength", "mask", "mask_blur", "control", "hires")


class ValidationError(StudioError, ValueError):
    """A bad field: `field` names it, the message says what is allowed in one sentence.

    `kind` (range, whole, number, finite, text) and `got` (the value as given) let a window say the
    same sentence in its own language."""

    def __init__(self, field_name: str, message: str, kind: str = "range", got: Any = None) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message
        self.kind = kind
        self.got = got

    usage = True  # the person's input was wrong: the CLI exits with usage status


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
    loras: tuple[LoraRef, ...] = ()  # validated: name (or absolute path) and weight −2..2
    init_image: str | None = None  # content hash of a stored input (core/image_inputs.InputStore)
    strength: float | None = None  # image-to-image denoising strength 0-1
    mask: str | None = None  # content hash of a stored mask (white = repaint)
    mask_blur: int = 0
    control: ControlRef | None = None
    hires: HiresRef | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (the LoRAs as a list of dicts), equal to itself after a JSON round trip."""
        return {**asdict(self), "loras": [asdict(lora) for lora in self.loras]}

    def expand(self, model: str = "", rng: random.Random | None = None) -> list[ImageSpec]:
        """One spec per image with the seed mode applied (call on a validated request)."""
        base = ImageSpec(prompt=self.prompt, negative_prompt=self.negative_prompt, width=self.width,
                         height=self.height, steps=self.steps, guidance=self.guidance, model=model,
                         loras=tuple(self.loras), **{name: getattr(self, name) for name in IMAGE_FIELDS})
        return [base.with_seed(seed) for seed in expand_seeds(self, rng)]

    @classmethod
    def from_spec(cls, spec: ImageSpec) -> GenerationRequest:
        """The request that draws exactly this one image again: its seed, fixed, count 1."""
        return cls(prompt=spec.prompt, negative_prompt=spec.negative_prompt, width=spec.width,
                   height=spec.height, steps=spec.steps, guidance=spec.guidance, seed=spec.seed,
                   seed_mode="fixed", count=1, loras=spec.loras,
                   **{name: getattr(spec, name) for name in IMAGE_FIELDS})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        """Build from a dict (JSON, PNG metadata, a form), ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)}
        values = refs({k: v for k, v in data.items() if k in names})
        if isinstance(values.get("loras"), (list, tuple)):  # as JSON writes them (dicts); checked by validate
            values["loras"] = tuple(_lora_ref(x) for x in values["loras"])
        return cls(**values)


def _lora_ref(value: Any) -> Any:
    """A LoRA as JSON writes it (a dict, `strength` accepted for `weight`), keys of later versions ignored."""
    if not isinstance(value, dict):
        return value
    known = {f.name for f in fields(LoraRef)}
    data = {("weight" if k == "strength" else k): v for k, v in value.items()}
    if "name" not in data:
        raise ValidationError("loras", "Each LoRA needs a name.", "text", value)
    return LoraRef(**{k: v for k, v in data.items() if k in known})


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


def validate(request: GenerationRequest, check_lora: LoraCheck | None = None) -> GenerationRequest:
    """Return a normalised copy of `request`, or raise ValidationError naming the first bad field.

    LoRAs named in the prompt (`<lora:name:0.8>`) move out of it into `loras`; with `check_lora`,
    each LoRA's file is checked too (without it, only names and strengths are).
    """
    prompt = request.prompt if isinstance(request.prompt, str) else ""
    prompt, loras = _check_loras(prompt, request.loras, check_lora)
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
        loras=loras,
        **_validate_inputs(request, sizes["width"], sizes["height"]),
    )


def _as_lora(value: Any) -> LoraRef:
    """One LoRA as a caller may give it: a LoraRef, {"name", "weight"}, (name, weight) or "NAME[:STRENGTH]"."""
    if isinstance(value, LoraRef):
        ref = value
    elif isinstance(value, str):
        return parse_lora_arg(value)
    elif isinstance(value, dict):
        ref = LoraRef(str(value.get("name") or ""), value.get("weight", value.get("strength", 1.0)),
                      str(value.get("sha256") or ""))
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        ref = LoraRef(str(value[0] or ""), value[1])
    else:
        raise LoraError(f"LoRA {value!r} is not NAME_OR_PATH:STRENGTH (e.g. my-style:0.8).", "name", value)
    name = ref.name.strip()
    if not name:
        raise LoraError("A LoRA has no name: choose one, or write NAME_OR_PATH:STRENGTH.", "name")
    try:
        weight = float(ref.weight)
    except (TypeError, ValueError):
        raise LoraError(f"LoRA strength {ref.weight!r} for '{name}' is not a number.", "strength", ref.weight) from None
    return LoraRef(name, check_strength(weight, name), ref.sha256)


def _check_loras(prompt: str, given: Any, check_lora: LoraCheck | None) -> tuple[str, tuple[LoraRef, ...]]:
    """The prompt without its `<lora:…>` tags, and every LoRA checked; a name given twice keeps its last strength."""
    if isinstance(given, (str, dict, LoraRef)):  # one LoRA given alone
        given = [given]
    try:
        prompt, tagged = parse_prompt(prompt)
        chosen: dict[str, LoraRef] = {}
        for ref in [*(_as_lora(x) for x in (given or ())), *tagged]:
            if check_lora is not None:
                found = check_lora(ref.name)
                if Path(ref.name).expanduser().is_file():  # a path: absolute, so a worker finds it too
                    ref = LoraRef(str(found.resolve()), ref.weight, ref.sha256)
            chosen.pop(ref.name, None)
            chosen[ref.name] = ref
    except LoraError as exc:
        raise ValidationError("loras", str(exc), exc.kind, exc.got) from None
    return prompt, tuple(chosen.values())


def _stored(name: str, value: Any, label: str) -> str | None:
    """A stored input's hash, checked to be in the inputs folder (None when not given)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or InputStore().path(value) is None:
        shown = str(value)[:12]
        raise ValidationError(name, f"{label} {shown} is no longer in the studio's inputs folder: give it again.",
                              "input", shown)
    return value


def check_inputs_stored(request: GenerationRequest) -> None:
    """The request's stored inputs are all still there (ValidationError for the first one gone).

    `Store.record_request` asks again inside its transaction: the inputs sweep removes files only
    inside one of its own (studio/store/input_sweep.py), so a recorded request's inputs are held."""
    _stored("init_image", request.init_image, "The init image")
    _stored("mask", request.mask, "The mask")
    _stored("control", getattr(request.control, "image", None), "The control image")


def _in_range(name: str, value: Any, label: str, low: float, high: float) -> float:
    out = _as_float(name, value, label)
    if not low <= out <= high:
        raise ValidationError(name, f"{label} must be from {low:g} to {high:g} (got {out:g}).", got=f"{out:g}")
    return out


def image_numbers(strength: Any, mask_blur: Any, init: bool, mask: bool) -> tuple[float | None, int]:
    """The strength (None without an init image) and the mask blur, checked; the API's edits check them
    before their images are stored."""
    out = None
    if init:
        out = 1.0 if mask else DEFAULT_STRENGTH
        if strength not in (None, ""):
            out = _in_range("strength", strength, "Strength", 0.0, 1.0)
    blur = _as_int("mask_blur", mask_blur or 0, "Mask blur")
    if not 0 <= blur <= MAX_MASK_BLUR:
        raise ValidationError("mask_blur", f"Mask blur must be from 0 to {MAX_MASK_BLUR} pixels (got {blur}).",
                              got=blur)
    return out, blur


def _validate_inputs(request: GenerationRequest, width: int, height: int) -> dict[str, Any]:
    """The image-input fields checked and normalised (issue 20): stored inputs exist, numbers in range."""
    init = _stored("init_image", request.init_image, "The init image")
    mask = _stored("mask", request.mask, "The mask")
    if mask and not init:
        raise ValidationError("mask", "A mask needs an init image to paint into: give the image too.")
    strength, blur = image_numbers(request.strength, request.mask_blur, bool(init), bool(mask))
    control = refs({"control": request.control})["control"]
    if control is not None:
        if not isinstance(control, ControlRef):
            raise ValidationError("control", f"ControlNet input must be a control image and its settings, "
                                             f"not {control!r}.", got=control)
        image = _stored("control", control.image, "The control image")
        if image is None:
            raise ValidationError("control", "ControlNet needs a control image.")
        kind = str(control.kind).strip().lower() or "canny"
        kind = "map" if kind in ("none", "raw") else kind
        if kind not in CONTROL_KINDS:
            raise ValidationError("control_kind", f"Control type must be one of {', '.join(CONTROL_KINDS)} "
                                                  f"(got {control.kind!r}).", got=control.kind)
        scale = _in_range("control_scale", control.scale, "Control scale", MIN_CONTROL_SCALE, MAX_CONTROL_SCALE)
        start = _in_range("control_range", control.start, "Control start", 0.0, 1.0)
        end = _in_range("control_range", control.end, "Control end", 0.0, 1.0)
        if start >= end:
            raise ValidationError("control_range", f"Control start must come before its end (got {start:g} to "
                                                   f"{end:g}).", got=f"{start:g}–{end:g}")
        model = str(control.model or "").strip()  # "" = the studio's default ControlNet (Studio.submit)
        if init and not mask:
            raise ValidationError("control", "ControlNet with an init image needs a mask (inpaint): paint a mask "
                                             "or leave the init image out.")
        control = ControlRef(image=image, kind=kind, scale=scale, start=start, end=end, model=model)
    hires = refs({"hires": request.hires})["hires"]
    if hires is not None:
        if not isinstance(hires, HiresRef):
            raise ValidationError("hires", f"Hires fix must be a scale and a strength, not {hires!r}.", got=hires)
        scale = _in_range("hires_scale", hires.scale, "Hires scale", MIN_HIRES_SCALE, MAX_HIRES_SCALE)
        hstrength = _in_range("hires_strength", hires.strength, "Hires strength", 0.0, 1.0)
        hires = HiresRef(scale=scale, strength=hstrength, upscaler=str(hires.upscaler or "").strip())
        w, h = ImageSpec(prompt="", width=width, height=height, hires=hires).output_size
        if max(w, h) > MAX_SIZE:
            raise ValidationError("hires_scale", f"Hires fix would make {w}×{h}; at most {MAX_SIZE} pixels a side: "
                                                 "lower the scale or the size.", got=f"{scale:g}")
    return {"init_image": init, "strength": strength, "mask": mask, "mask_blur": blur, "control": control,
            "hires": hires}


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
