"""`zaoxiang models list|download`: what is on disk, and getting the real weights once."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from studio.commands import EXIT_ERROR, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from studio.models.download import Progress
    from studio.models.loras import LoraInfo

NAME = "models"


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(NAME, help="find and download models")
    msub = m.add_subparsers(dest="models_command", parser_class=type(m))
    ml = msub.add_parser("list", help="show every model found, its format, size and whether it is complete")
    ml.add_argument("--model", default=None)
    ml.add_argument("--json", action="store_true")
    md = msub.add_parser("download", help="download Z-Image weights or a LoRA repo once (resumable, checked "
                                          "against the hub)")
    md.add_argument("--source", choices=("hf", "modelscope"), default="hf",
                    help="hf: Hugging Face (HF_ENDPOINT picks a mirror); modelscope: for mainland China")
    md.add_argument("--repo", default=None, help="owner/name (default Tongyi-MAI/Z-Image-Turbo; with --lora: required)")
    md.add_argument("--lora", action="store_true",
                    help="the repo is a LoRA: its .safetensors files go into the data dir's loras folder")
    md.add_argument("--revision", default="main")
    md.add_argument("--dir", default=None, help="a folder to download into instead of the hub's cache")
    md.add_argument("--configs-only", action="store_true",
                    help="only configs, tokenizer and scheduler (a few MB): what ComfyUI single files lack")


def run(a: argparse.Namespace) -> int:
    cmd = getattr(a, "models_command", None)
    if cmd in (None, "list"):
        return list_models(getattr(a, "model", None), getattr(a, "json", False))
    if cmd == "download":
        return download(a)
    raise AssertionError(f"unknown models command {cmd}")


def _size(n: int) -> str:
    return f"{n / 2**30:7.2f} GiB" if n >= 2**30 else f"{n / 2**20:7.1f} MiB"


def list_models(model: str | None, as_json: bool) -> int:
    from studio.app import Studio

    with Studio(model=model) as studio:
        models = studio.available_models(include_demo=True)
        loras = studio.available_loras()
    if as_json:
        print(json.dumps([m.to_dict() for m in models], ensure_ascii=False, indent=2))
        return EXIT_OK
    first_complete = next((i for i, m in enumerate(models) if m.complete), None)
    for i, m in enumerate(models):
        state = "complete" if m.complete else "incomplete: missing " + ", ".join(m.missing)
        mark = "*" if i == first_complete else " "
        print(f"{mark} {m.name:28} {m.source:12} {m.format:20} {_size(m.size_bytes)}  {state}")
        for part in m.parts or (m.path,):
            print(f"    {part}")
    if first_complete is not None and models[first_complete].is_demo:
        print("No Z-Image weights found: the built-in demo model is used. "
              "`zaoxiang models download` fetches the real one (see README: 'Getting the real model').")
    print(f"LoRAs ({len(loras)}):")  # name, layout, rank, base model
    for info in loras:
        _print_lora(info)
    return EXIT_OK


def _print_lora(info: LoraInfo) -> None:
    """Name, layout, rank, base model and size on one line, the path on the next."""
    qkv = " fused-qkv" if info.fused_qkv else ""
    print(f"  {info.name:28} {info.layout.value + qkv:20} rank {info.rank:<4} "
          f"{info.base_model or 'unknown base'}  {_size(info.size_bytes)}")
    print(f"    {info.path}")


def download(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from studio.app import Studio, StudioError

    bars: list = []  # made on the first byte count, so an early error prints one line only

    def show(p: Progress) -> None:
        if p.phase == "listing":
            return
        if not bars:
            bars.append(tqdm(total=p.total_bytes, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                             dynamic_ncols=True, mininterval=0.5))
        bar = bars[0]
        if p.total_bytes and bar.total != p.total_bytes:
            bar.total = p.total_bytes
        bar.set_description(p.phase, refresh=False)
        bar.n = p.done_bytes
        bar.refresh()

    if a.lora and (not a.repo or a.dir or a.configs_only):
        print("zaoxiang: models download --lora needs --repo OWNER/NAME (a LoRA repo) and takes neither --dir "
              "nor --configs-only: LoRAs go into the data dir's loras folder.", file=sys.stderr)
        return EXIT_USAGE
    try:
        if a.lora:
            loras = Studio.download_lora(a.source, a.repo, a.revision, progress=show)
        else:
            folder = Studio.download_model(a.source, a.repo, a.dir, a.revision, a.configs_only,
                                           progress=show)
    except StudioError as exc:  # DownloadError: what to do next, in one sentence
        for bar in bars:
            bar.close()
        print(f"zaoxiang: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for bar in bars:
        bar.close()
    if a.lora:
        for info in loras:
            _print_lora(info)
        return EXIT_OK
    print(folder)
    if a.dir:
        print(f"Use it with --model {folder} (or set `model` in settings).", file=sys.stderr)
    return EXIT_OK
