"""What the GPU bench scripts share: their common arguments, a device sync and an image comparison."""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
import torch


def add_common_args(p: argparse.ArgumentParser) -> None:
    """--out --cache --device --arch --size --steps --runs, with the same defaults in every script."""
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/zx-out"))
    p.add_argument("--cache", default="/tmp/zx-compile-cache")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="full")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=9)
    p.add_argument("--runs", type=int, default=5)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def img_diff(a, b) -> dict:
    """PSNR and absolute pixel differences of two images (PSNR 99 for identical ones)."""
    x, y = np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64)
    mse = float(((x - y) ** 2).mean())
    return {"psnr_db": round(99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse), 2),
            "mean_abs": round(float(np.abs(x - y).mean()), 3), "max_abs": float(np.abs(x - y).max())}
