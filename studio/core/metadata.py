"""Parameters embedded in PNGs: the AUTOMATIC1111/Forge `parameters` text and our JSON record.

The A1111 text is what Civitai and other tools read; the JSON chunk carries everything needed to
reproduce the image exactly. Reading either back gives a request again.
"""

from __future__ import annotations

import json
import re
from typing import Any

from studio.core.request import GenerationRequest
from studio.core.spec import ImageSpec

A1111_KEY = "parameters"
JSON_KEY = "zaoxiang"
SAMPLER = "Euler"


def _one_line(text: str) -> str:
    return text.replace("\r\n", "\n")


def format_a1111(spec: ImageSpec) -> str:
    """The `parameters` text exactly as AUTOMATIC1111 writes it."""
    lines = [_one_line(spec.prompt)]
    if spec.negative_prompt:
        lines.append(f"Negative prompt: {_one_line(spec.negative_prompt)}")
    lines.append(
        f"Steps: {spec.steps}, Sampler: {SAMPLER}, CFG scale: {spec.guidance:g}, Seed: {spec.seed}, "
        f"Size: {spec.width}x{spec.height}, Model: {spec.model}"
    )
    return "\n".join(lines)


_SETTING = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^"\\])*"|[^,]*)(?:,|$)')


def parse_a1111(text: str) -> dict[str, Any]:
    """Parse A1111/Forge `parameters` text into request fields (unknown settings kept under extra)."""
    lines = text.strip().split("\n")
    settings_line = ""
    if lines and re.match(r"^\s*Steps:\s*\d+", lines[-1]):
        settings_line = lines.pop()
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].lstrip()
        (negative_lines if in_negative else prompt_lines).append(line)
    out: dict[str, Any] = {"prompt": "\n".join(prompt_lines).strip(),
                           "negative_prompt": "\n".join(negative_lines).strip()}
    extra: dict[str, str] = {}
    for key, value in _SETTING.findall(settings_line):
        key, value = key.strip(), value.strip().strip('"')
        if key == "Steps":
            out["steps"] = int(value)
        elif key == "CFG scale":
            out["guidance"] = float(value)
        elif key == "Seed":
            out["seed"] = int(value)
            out["seed_mode"] = "fixed"
        elif key == "Size" and "x" in value:
            w, h = value.split("x", 1)
            out["width"], out["height"] = int(w), int(h)
        elif key:
            extra[key] = value
    if extra:
        out["extra"] = extra
    return out


def build_record(spec: ImageSpec, worker: str, elapsed_s: float, **more: Any) -> dict[str, Any]:
    """The JSON record stored in the PNG: the request that draws this one image again, and how it ran."""
    return {"version": 1, "request": GenerationRequest.from_spec(spec).to_dict(), "model": spec.model,
            "worker": worker, "elapsed_s": round(elapsed_s, 4), **more}


def record_spec(record: dict[str, Any]) -> ImageSpec:
    """The one image a record describes (its request at its seed, on its model; seed 0 if it has none)."""
    fields_ = {k: v for k, v in record["request"].items() if v is not None}
    return ImageSpec.from_dict({**fields_, "model": record.get("model") or ""})


def text_chunks(record: dict[str, Any]) -> dict[str, str]:
    """Both text chunks for one image record."""
    return {A1111_KEY: format_a1111(record_spec(record)),
            JSON_KEY: json.dumps(record, ensure_ascii=False, sort_keys=True)}


def request_from_chunks(chunks: dict[str, str]) -> tuple[GenerationRequest, dict[str, Any]]:
    """A request back from a PNG's text chunks: ours if present, else A1111's. Raises ValueError if neither."""
    if JSON_KEY in chunks:
        record = json.loads(chunks[JSON_KEY])
        return GenerationRequest.from_dict(record["request"]), record
    if A1111_KEY in chunks:
        fields_ = parse_a1111(chunks[A1111_KEY])
        return GenerationRequest.from_dict(fields_), {"source": "a1111", "request": fields_}
    raise ValueError("This PNG carries no generation parameters.")
