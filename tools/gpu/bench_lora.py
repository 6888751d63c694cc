"""Issue 19's GPU figures: seconds per image with 0, 1 and 3 LoRAs on the compiled engine, the time to
switch sets, and whether anything recompiled (dynamo's graph count before and after each phase).

    python3 tools/gpu/bench_lora.py --out $OUT        # full-size random weights, bf16, 1024x1024, 9 steps

The LoRAs are random rank-32 files in the diffusers layout on every attention and feed-forward linear
of every block and refiner (what most published Z-Image LoRAs adapt), written to /tmp first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_common_args, sync  # noqa: E402

LINEARS = ("attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0",
           "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")


def random_lora(transformer, rank: int, seed: int, path: Path) -> Path:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    modules = dict(transformer.named_modules())
    sd = {}
    for name, mod in modules.items():
        if isinstance(mod, torch.nn.Linear) and any(name.endswith(x) for x in LINEARS):
            sd[f"transformer.{name}.lora_A.weight"] = (torch.randn(rank, mod.in_features, generator=g) * 0.01).bfloat16()
            sd[f"transformer.{name}.lora_B.weight"] = (torch.randn(mod.out_features, rank, generator=g) * 0.01).bfloat16()
    save_file(sd, str(path))
    return path


def main() -> int:
    ap = argparse.ArgumentParser()
    add_common_args(ap)
    ap.add_argument("--rank", type=int, default=32)
    args = ap.parse_args()
    from torch._dynamo.utils import counters

    from studio.engine.generate import Engine
    from studio.engine.random_pipeline import build_random_pipeline

    dev = torch.device(args.device)
    out: dict = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                 "size": args.size, "steps": args.steps, "rank": args.rank}
    pipe = build_random_pipeline(args.arch, dev, torch.bfloat16)
    t0 = time.perf_counter()
    eng = Engine(f"random:{args.arch}", dev, pipe=pipe, warm="sync", compile_cache=args.cache)
    out["warm_s"] = round(time.perf_counter() - t0, 1)
    out["notes"] = eng.notes
    files = [random_lora(pipe.transformer, args.rank, i, Path(f"/tmp/zx-lora-{i}.safetensors")) for i in range(3)]
    out["lora_mb"] = round(files[0].stat().st_size / 2**20, 1)
    n = [0]

    def graphs() -> int:
        return int(counters["stats"]["unique_graphs"])

    def image() -> float:
        n[0] += 1
        sync(dev)
        t = time.perf_counter()
        eng.generate(prompt=f"a photo of a cat number {n[0]} on a red sofa", width=args.size, height=args.size,
                     steps=args.steps, guidance=0.0, seed=n[0])
        sync(dev)
        return time.perf_counter() - t

    def phase(tag: str, loras: list) -> None:
        g0 = graphs()
        t = time.perf_counter()
        report = eng.set_loras(loras)
        set_s = time.perf_counter() - t
        first = image()
        times = [image() for _ in range(args.runs)]
        times.sort()
        out[tag] = {"set_loras_s": round(set_s, 4), "loaded": report.loaded if report else [],
                    "first_image_s": round(first, 3), "median_s": round(times[len(times) // 2], 4),
                    "min_s": round(times[0], 4), "new_graphs": graphs() - g0}
        print(tag, out[tag], flush=True)

    image()
    phase("none", [])
    phase("one_lora_first_load", [(files[0], 1.0)])
    phase("one_lora", [(files[0], 0.8)])
    phase("three_loras_load_two_more", [(f, 0.5) for f in files])
    phase("three_loras", [(f, 0.6) for f in files])
    phase("switch_to_one_of_three", [(files[1], 1.0)])
    phase("switch_to_none_three_loaded", [])
    switches = []
    g0 = graphs()
    for i in range(6):
        sets = [[(files[0], 1.0)], [(files[1], 0.5), (files[2], 0.5)], [], [(f, 0.3) for f in files]]
        t = time.perf_counter()
        eng.set_loras(sets[i % len(sets)])
        switches.append(time.perf_counter() - t)
        image()
    out["switch_s"] = [round(s, 4) for s in switches]
    out["switch_new_graphs"] = graphs() - g0
    out["peak_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == "cuda" else None
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "lora.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
