"""`zaoxiang generate PROMPT …`: make images from the command line."""

from __future__ import annotations

import argparse
import json
import sys

from studio.commands import EXIT_OK, EXIT_USAGE
from studio.core.request import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    SEED_MODES,
    GenerationRequest,
    ValidationError,
    validate,
)

NAME = "generate"


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(NAME, help="make images from a prompt")
    g.add_argument("prompt")
    g.add_argument("--negative", default="")
    g.add_argument("--width", default=1024)
    g.add_argument("--height", default=1024)
    g.add_argument("--steps", default=DEFAULT_STEPS)
    g.add_argument("--guidance", default=DEFAULT_GUIDANCE)
    g.add_argument("--seed", default=None)
    g.add_argument("--seed-mode", default="random", help="|".join(SEED_MODES))
    g.add_argument("--count", default=1)
    g.add_argument("--out", default=None, help="output folder (default: the gallery)")
    g.add_argument("--model", default=None, help="model folder, or 'demo'")
    g.add_argument("--json", action="store_true", help="one JSON object per image")


def request_from_args(a: argparse.Namespace) -> GenerationRequest:
    return GenerationRequest(
        prompt=a.prompt, negative_prompt=a.negative, width=a.width, height=a.height, steps=a.steps,
        guidance=a.guidance, seed=a.seed, seed_mode=a.seed_mode, count=a.count,
    )


def run(a: argparse.Namespace) -> int:
    try:
        request = validate(request_from_args(a))
    except ValidationError as exc:
        print(f"zaoxiang: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    from studio.app import Studio

    studio = Studio(model=a.model)
    try:
        for result in studio.generate(request, out_dir=a.out):
            if a.json:
                print(json.dumps({k: result[k] for k in ("path", "seed", "worker", "elapsed_s")},
                                 ensure_ascii=False), flush=True)
            else:
                print(result["path"], flush=True)
    finally:
        studio.close()
    return EXIT_OK
