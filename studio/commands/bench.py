"""`zaoxiang bench`: time one image, a batch and the VRAM peak, as a Markdown table and JSON."""

from __future__ import annotations

import argparse
import json
import sys

from studio.commands import EXIT_OK, EXIT_USAGE
from studio.core.spec import MemoryProfile

NAME = "bench"
IN_PROCESS = ("", "1", "local", "in-process")


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(NAME, help="measure speed and VRAM (per-image latency, batch time, images/min)")
    b.add_argument("--random-weights", choices=("full", "tiny"), default=None,
                   help="build the architecture with random weights instead of loading a model")
    b.add_argument("--model", default=None, help="model folder, or 'demo' (ignored with --random-weights)")
    b.add_argument("--workers", default=None,
                   help="run through the worker pool (e.g. auto, cpu:2, cuda:0,1); default: in-process")
    b.add_argument("--size", type=int, default=1024)
    b.add_argument("--steps", type=int, default=9)
    b.add_argument("--batch", type=int, default=4)
    b.add_argument("--runs", type=int, default=5, help="timed single images (a new prompt each)")
    b.add_argument("--profile", default="auto",
                   help="memory profile: auto, full, 24gb, 16gb, 12gb; with --workers one a worker: full,24gb")
    b.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if present)")
    b.add_argument("--fp8", action="store_true", help="FP8 linear layers (Ada/Hopper GPUs)")
    b.add_argument("--stock", action="store_true", help="stock diffusers path (no TF32/compile/short encode)")
    b.add_argument("--no-compile", action="store_true")
    b.add_argument("--attention", default=None,
                   help="fused-cudnn (default on CUDA), fused-sdpa, native, _native_cudnn, _native_flash, _native_efficient")
    b.add_argument("--engine-baseline", action="store_true",
                   help="with --workers: first time the batch's images on one in-process engine, for the ratio")
    b.add_argument("--json", action="store_true", help="print only the JSON result")


def _usage(msg: str) -> int:
    print(f"zaoxiang: {msg}", file=sys.stderr)
    return EXIT_USAGE


def run(a: argparse.Namespace) -> int:
    from studio.bench.run import BenchOptions, markdown_table, run_in_process

    profiles = MemoryProfile.names()

    if a.size < 64 or a.size % 16:
        return _usage("--size must be a multiple of 16, at least 64")
    if a.steps < 1 or a.batch < 1 or a.runs < 1:
        return _usage("--steps, --batch and --runs must be at least 1")
    if any(p not in ("auto", *profiles) for p in a.profile.lower().split(",")) \
            or ("," in a.profile and (a.workers or "").strip().lower() in IN_PROCESS):
        return _usage(f"--profile must be one of: auto, {', '.join(profiles)}")
    opts = BenchOptions(random_weights=a.random_weights, model=a.model, device=a.device, size=a.size,
                        steps=a.steps, batch=a.batch, runs=a.runs, profile=a.profile.lower(),
                        fast=not a.stock, compile=False if (a.no_compile or a.stock) else None,
                        fp8=a.fp8, attention=a.attention, engine_baseline=a.engine_baseline)
    if (a.workers or "").strip().lower() in IN_PROCESS:
        result = run_in_process(opts)
    else:
        from studio.bench.pool import run_pool

        opts.workers = a.workers
        result = run_pool(opts)
    if a.json:
        print(json.dumps(result, ensure_ascii=False), flush=True)
    else:
        print(markdown_table(result))
        print()
        print(json.dumps(result, ensure_ascii=False, indent=2), flush=True)
    return EXIT_OK
