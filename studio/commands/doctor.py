"""`zaoxiang doctor`: what this machine has, and which model the studio would use."""

from __future__ import annotations

import argparse
import platform
import sys

from studio.commands import EXIT_ERROR, EXIT_OK

NAME = "doctor"


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser(NAME, help="report Python, torch, CUDA, GPUs and the model in use")
    d.add_argument("--model", default=None)


def run(a: argparse.Namespace) -> int:
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
    from studio.app import ModelNotFoundError, Studio

    with Studio(model=a.model) as studio:
        try:
            m = studio.model
        except ModelNotFoundError as exc:
            print(f"model    {exc}")
            return EXIT_ERROR
    print(f"model    {m.name} ({m.source}) at {m.path}")
    return EXIT_OK
