"""The first ETA of a fresh worker against the real time of its first image (issue 17's "561 s").

    python tools/gpu/check_first_eta.py --out $OUT                          # cuda:0: demo, random full
    python tools/gpu/check_first_eta.py --workers cpu:1 --cases demo:256    # the same on the CPU

Each case is a fresh studio (throw-away home) whose one worker warms up and says ready; then one
image of the case's size (9 steps) is submitted and `Studio.eta_s` is read before its first step.
A case is `MODEL:SIZE`, MODEL `demo` or `random:full` (full-size random weights built in the
worker). The speed model is seeded by one steady warm-up step (pool/speed.py); the target is an
ETA within 2x of the real time. Prints a table and writes first_eta.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def one_case(model: str, size: int, workers: str, steps: int) -> dict[str, Any]:
    from studio.app import Studio
    from studio.core.paths import Paths
    from studio.core.request import GenerationRequest
    from studio.models.discovery import ModelInfo

    with tempfile.TemporaryDirectory(prefix="zx-eta-") as tmp:
        root = Path(tmp)
        paths = Paths(root / "config", root / "data", root / "cache", root / "logs", root / "run")
        studio = Studio(paths=paths, model=model, workers=workers)
        if model != "demo":  # a random-weight label is no folder to look up
            studio._model = ModelInfo(path=model, source="random", name=model, format="random", complete=True,
                                      size_bytes=0)
        try:
            t0 = time.monotonic()
            studio.start()
            while not all(r["state"] == "idle" for r in studio.pool_status()):
                if time.monotonic() - t0 > 900:
                    raise RuntimeError(f"workers not ready: {studio.pool_status()}")
                time.sleep(0.2)
            ready_s = time.monotonic() - t0
            info = studio._pool._slots[0].info or {}
            rid = studio.submit(GenerationRequest("a red star on a white background", width=size, height=size,
                                                  steps=steps, seed=1), origin="ui", interactive=True)
            t1 = time.monotonic()
            eta = studio.eta_s(rid)
            [result] = studio.wait(rid, timeout=900)
            real = time.monotonic() - t1
        finally:
            studio.close()
    return {"model": model, "size": size, "steps": steps, "workers": workers, "ready_s": round(ready_s, 2),
            "first_eta_s": None if eta is None else round(eta, 3), "real_s": round(real, 3),
            "ratio": None if eta is None else round(eta / real, 3), "status": result["status"],
            "warmup": info.get("warmup"), "warmup_s": info.get("warmup_s"),
            "warmup_step_s": info.get("warmup_step_s"), "warmup_tail_s": info.get("warmup_tail_s")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", default="cuda:0")
    ap.add_argument("--cases", default="demo:256,demo:1024,random:full:1024",
                    help="comma-separated MODEL:SIZE (MODEL demo or random:full)")
    ap.add_argument("--steps", type=int, default=9)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("ZAOXIANG_NO_OPEN", "1")
    rows = []
    for case in args.cases.split(","):
        model, _, size = case.strip().rpartition(":")
        row = one_case(model, int(size), args.workers, args.steps)
        rows.append(row)
        print(f"{row['model']:>12} {row['size']:>5}² {row['steps']} steps: first ETA {row['first_eta_s']} s, "
              f"real {row['real_s']} s, ratio {row['ratio']} (warm-up {row['warmup_s']} s, steady step "
              f"{row['warmup_step_s']} s, encode+decode {row['warmup_tail_s']} s)", flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "first_eta.json").write_text(json.dumps(rows, indent=2), "utf-8")
    return 0 if all(r["ratio"] is not None and 0.5 <= r["ratio"] <= 2 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
