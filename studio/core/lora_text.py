"""How people write LoRAs: `NAME_OR_PATH[:STRENGTH]` (the CLI's --lora), A1111's `<lora:name:0.8>` in a
prompt, and the strength range; pure text, so validation (core/request.py) can check a request's
LoRAs with the same one-line messages everywhere. Files are found and read in studio/models/loras.py.
"""

from __future__ import annotations

import re

from studio.core.spec import LoraRef

STRENGTH_MIN, STRENGTH_MAX = -2.0, 2.0
SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")


class LoraError(ValueError):
    """A LoRA that cannot be used as asked; the message is one line naming what was wrong and what works.

    `kind` (name, strength, missing, format, model) and `got` (the name or value) let a window say the
    same sentence in its own language."""

    def __init__(self, message: str, kind: str = "format", got: object = None) -> None:
        super().__init__(message)
        self.kind, self.got = kind, got


def check_strength(value: float, name: str) -> float:
    if not (STRENGTH_MIN <= value <= STRENGTH_MAX) or value != value:
        raise LoraError(f"LoRA strength {value:g} for '{name}' is out of range: use a number from "
                        f"{STRENGTH_MIN:g} to {STRENGTH_MAX:g} (1 is full strength, 0 turns it off).", "strength", f"{value:g}")
    return float(value)


def _strength(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LoraError(f"LoRA strength '{text}' for '{name}' is not a number: write NAME:0.8 "
                        f"(a number from {STRENGTH_MIN:g} to {STRENGTH_MAX:g}).", "strength", text) from None
    return check_strength(value, name)


def parse_lora_arg(text: str) -> LoraRef:
    """`NAME_OR_PATH[:STRENGTH]` (the CLI's --lora): the last colon splits off a strength, except a drive letter's."""
    text = text.strip()
    if not text:
        raise LoraError("Empty LoRA: write NAME_OR_PATH or NAME_OR_PATH:STRENGTH, e.g. my-style:0.8.", "name")
    name, sep, tail = text.rpartition(":")
    if not sep or tail.startswith(("\\", "/")):
        return LoraRef(text, 1.0)  # no strength, or a Windows drive letter (C:\...)
    if not name:
        raise LoraError(f"LoRA '{text}' has no name: write NAME_OR_PATH:STRENGTH, e.g. my-style:0.8.", "name", text)
    return LoraRef(name, _strength(tail, name))


_PROMPT_LORA = re.compile(r"<lora:([^:>]*)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)


def parse_prompt(prompt: str) -> tuple[str, list[LoraRef]]:
    """Take A1111's `<lora:name:0.8>` tags out of a prompt: (the prompt without them, the LoRAs named).

    `<lora:name>` means strength 1; a third field (A1111's separate text-encoder weight) is ignored:
    Z-Image LoRAs adapt the transformer only.
    """
    refs = []
    for m in _PROMPT_LORA.finditer(prompt):
        name = m.group(1).strip()
        if not name:
            raise LoraError(f"'{m.group(0)}' names no LoRA: write <lora:name:0.8>.", "name", m.group(0))
        strength = 1.0 if m.group(2) is None or not m.group(2).strip() else _strength(m.group(2).strip(), name)
        refs.append(LoraRef(name, strength))
    clean = _PROMPT_LORA.sub(" ", prompt)
    clean = re.sub(r"[ \t]{2,}", " ", clean)
    clean = re.sub(r"\s+([,，。.])", r"\1", clean).strip(" \t,，")
    return clean, refs


def prompt_tag(name: str, strength: float) -> str:
    """The A1111 tag for one LoRA, as the PNG metadata writes it."""
    return f"<lora:{name}:{strength:g}>"
