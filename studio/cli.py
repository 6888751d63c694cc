"""`zaoxiang`: the command line. Thin: it parses, calls Studio, and prints.

Bad input exits with status 2 and one readable line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from studio.core.request import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    SEED_MODES,
    GenerationRequest,
    ValidationError,
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2
        self.exit(EXIT_USAGE, f"zaoxiang: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zaoxiang", description="造相 Z-Image Studio: local text-to-image on your GPUs.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    g = sub.add_parser("generate", help="make images from a prompt")
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

    m = sub.add_parser("models", help="find and manage models")
    msub = m.add_subparsers(dest="models_command", parser_class=_Parser)
    ml = msub.add_parser("list", help="show every model found and where")
    ml.add_argument("--model", default=None)
    ml.add_argument("--json", action="store_true")

    d = sub.add_parser("doctor", help="report Python, torch, CUDA, GPUs and the model in use")
    d.add_argument("--model", default=None)
    return p


def _request_from_args(a: argparse.Namespace) -> GenerationRequest:
    return GenerationRequest(
        prompt=a.prompt, negative_prompt=a.negative, width=a.width, height=a.height, steps=a.steps,
        guidance=a.guidance, seed=a.seed, seed_mode=a.seed_mode, count=a.count,
    )


def cmd_generate(a: argparse.Namespace) -> int:
    from studio.core.request import validate

    try:
        request = validate(_request_from_args(a))
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


def cmd_models(a: argparse.Namespace) -> int:
    from studio.models.discovery import find_models

    models = find_models(explicit=a.model)
    if a.json:
        print(json.dumps([m.to_dict() for m in models], ensure_ascii=False, indent=2))
        return EXIT_OK
    for i, m in enumerate(models):
        state = "complete" if m.complete else "incomplete: missing " + ", ".join(m.missing)
        mark = "*" if i == 0 else " "
        print(f"{mark} {m.name:28} {m.source:12} {m.format:10} {m.size_bytes / 2**30:7.2f} GiB  {state}")
        print(f"    {m.path}")
    if models and models[0].is_demo:
        print("No Z-Image weights found: the built-in demo model is used. See README: 'Getting the real model'.")
    return EXIT_OK


def cmd_doctor(a: argparse.Namespace) -> int:
    import platform

    import torch

    print(f"Python   {platform.python_version()} ({sys.executable})")
    print(f"torch    {torch.__version__}  CUDA build: {torch.version.cuda or 'none'}")
    try:
        import diffusers

        print(f"diffusers {diffusers.__version__}")
    except ImportError:
        print("diffusers not installed")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            bf16 = props.major >= 8
            print(f"GPU {i}    {props.name}, {props.total_memory / 2**30:.1f} GiB, bf16: {'yes' if bf16 else 'no'}")
    else:
        print("GPU      none usable by torch: CPU workers will be used")
    from studio.models.discovery import ModelNotFoundError, resolve_model

    try:
        m = resolve_model(a.model)
        print(f"model    {m.name} ({m.source}) at {m.path}")
    except ModelNotFoundError as exc:
        print(f"model    {exc}")
        return EXIT_ERROR
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    from studio.engine.cuda_env import prepare_process_env

    prepare_process_env()
    parser = build_parser()
    a = parser.parse_args(argv)
    handlers = {"generate": cmd_generate, "models": cmd_models, "doctor": cmd_doctor}
    if a.command is None:
        parser.print_help()
        return EXIT_OK
    if a.command == "models" and a.models_command is None:
        a.models_command, a.model, a.json = "list", None, False
    try:
        return handlers[a.command](a)
    except KeyboardInterrupt:
        print("zaoxiang: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one place a surprise becomes a readable line
        from studio.models.discovery import ModelNotFoundError

        if isinstance(exc, ModelNotFoundError):
            print(f"zaoxiang: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"zaoxiang: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
