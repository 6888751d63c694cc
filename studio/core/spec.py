"""One image, fully described: the shape that every layer passes along.

A `GenerationRequest` is what a person asked for (a count, a seed mode); `GenerationRequest.expand()`
turns it into one `ImageSpec` per image with its seed fixed. The spec is what the store records,
what travels to a worker (`to_dict`/`from_dict`, versioned), what `Engine.generate(spec)` runs and
what the PNG metadata is written from. A new feature adds a field here, to its validation in
`core/request.py`, to the engine, the metadata writer and the form, and nowhere else.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

SPEC_VERSION = 2  # 2: ControlRef.model and the hires fix (issue 20)


class MemoryProfile(str, enum.Enum):
    """How much GPU memory the engine may assume, highest first: lowering is the next member."""

    FULL = "full"
    GB24 = "24gb"
    GB16 = "16gb"
    GB12 = "12gb"

    def lower(self) -> MemoryProfile | None:
        """The next profile down after an out-of-memory error; None below the last."""
        order = list(MemoryProfile)
        i = order.index(self)
        return order[i + 1] if i + 1 < len(order) else None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(p.value for p in cls)


@dataclass(frozen=True)
class LoraRef:
    """A LoRA applied to one image: its name as listed (file stem) and its weight."""

    name: str
    weight: float = 1.0
    sha256: str = ""  # of the file, recorded for `Lora hashes`; filled in by the worker when known


@dataclass(frozen=True)
class ControlRef:
    """A control image for ControlNet: a stored input (content hash), its type and strength."""

    image: str
    kind: str = "canny"  # canny | depth | pose | hed | lineart | map (the image already is a control map)
    scale: float = 0.75
    start: float = 0.0  # fraction of the steps where the control begins
    end: float = 1.0  # ... and ends
    model: str = ""  # the ControlNet: a name in the ControlNet folders, or a path


@dataclass(frozen=True)
class HiresRef:
    """Hires fix: the finished image upscaled `scale` times, then refined by image-to-image."""

    scale: float = 2.0
    strength: float = 0.35
    upscaler: str = ""  # "" = Lanczos; else an upscaler model file (through spandrel)


def refs(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with a `control` / `hires` given as plain dicts (JSON, the worker pipe) made into refs."""
    out = dict(values)
    for name, cls in (("control", ControlRef), ("hires", HiresRef)):
        if isinstance(out.get(name), dict):
            known = {f.name for f in fields(cls)}
            out[name] = cls(**{k: v for k, v in out[name].items() if k in known})
    return out


@dataclass(frozen=True)
class ImageSpec:
    """Everything needed to make one image again, bit for bit, on the same model and card."""

    prompt: str
    negative_prompt: str = ""
    width: int = 1024
    height: int = 1024
    steps: int = 9
    guidance: float = 0.0
    seed: int = 0
    model: str = ""
    loras: tuple[LoraRef, ...] = ()
    init_image: str | None = None  # content hash of a stored input image (image-to-image, inpaint)
    strength: float | None = None  # image-to-image denoising strength, 0-1
    mask: str | None = None  # content hash of a stored mask (inpaint/outpaint)
    mask_blur: int = 0
    control: ControlRef | None = None
    hires: HiresRef | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data with the spec version, for the store, the worker pipe and PNG records."""
        out = asdict(self)
        out["loras"] = [asdict(lora) for lora in self.loras]
        out["version"] = SPEC_VERSION
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageSpec:
        """Read a spec written by this or an earlier version; keys this version does not know are ignored."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["loras"] = tuple(lora if isinstance(lora, LoraRef) else LoraRef(**lora)
                                for lora in values.get("loras") or ())
        return cls(**refs(values))

    @property
    def has_inputs(self) -> bool:
        """Whether this image starts from, or is steered by, more than a prompt."""
        return bool(self.init_image or self.control or self.hires)

    @property
    def output_size(self) -> tuple[int, int]:
        """The finished image's size: the spec's, or the hires fix's (sides multiples of 16)."""
        if self.hires is None:
            return self.width, self.height
        return (max(16, round(self.width * self.hires.scale / 16) * 16),
                max(16, round(self.height * self.hires.scale / 16) * 16))

    def with_seed(self, seed: int) -> ImageSpec:
        return replace(self, seed=seed)

    @property
    def tokens(self) -> int:
        """Image tokens the transformer attends over (16-pixel patches of the latent)."""
        return (self.width // 16) * (self.height // 16)
