"""Issue 19's GPU figures: seconds per image with 0, 1 and 3 LoRAs on the compiled engine, the time to
switch sets, and whether anything recompiled (dynamo's graph count and guard failures per phase).

    python3 tools/gpu/bench_lora.py --out $OUT                  # the engine's own way (LoraCache)
    python3 tools/gpu/bench_lora.py --mode hotswap --out $OUT   # diffusers' hotswap, for comparison
    python3 tools/gpu/bench_lora.py --arch tiny --device cpu --compile on --size 128 --steps 2  # CPU smoke

Defaults: full-size random weights, bf16, 1024x1024, 9 steps. The LoRAs are random rank-32 files in the
diffusers layout on every attention and feed-forward linear of every block and refiner (what most
published Z-Image LoRAs adapt), written to /tmp first.

Two ways of keeping compiled blocks while LoRAs change. "engine" is what the studio does: every
loaded file is its own peft adapter, all of them stay in the forward with their strengths in tensors,
so a switch changes data only, and each newly loaded file changes the traced code once. "hotswap" is
diffusers' `enable_lora_hotswap(target_rank=…)`: one adapter slot, filled before the blocks compile,
whose weights are overwritten in place by each next file (one LoRA at a time; no stacking).
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


class Recompiles:
    """Dynamo's graphs traced and guard failures (the reasons it recompiled) since the last `take`."""

    def __init__(self) -> None:
        self.graphs, self.failures = self._now()

    @staticmethod
    def _now() -> tuple[int, int]:
        from torch._dynamo.utils import counters, guard_failures

        return int(counters["stats"]["unique_graphs"]), sum(len(v) for v in guard_failures.values())

    def take(self) -> dict:
        from torch._dynamo.utils import guard_failures

        graphs, failures = self._now()
        got = {"new_graphs": graphs - self.graphs, "guard_failures": failures - self.failures}
        if got["guard_failures"]:
            reasons = [str(r) for v in guard_failures.values() for r in v][-got["guard_failures"]:]
            got["why"] = [r.splitlines()[0][:160] for r in reasons[:3]]
        self.graphs, self.failures = graphs, failures
        return got


def build_engine(args: argparse.Namespace, pipe, dev: torch.device):
    """The studio's Engine on `pipe`, its blocks compiled (per --compile) and warmed for the one size measured."""
    from studio.engine.generate import Engine

    compile_flag = {"auto": None, "on": True, "off": False}[args.compile]
    eng = Engine(f"random:{args.arch}", dev, dtype=pipe.transformer.dtype, pipe=pipe, warm="none", compile=compile_flag,
                 compile_cache=args.cache)
    if eng.compiled:
        eng.warm_up(sizes=((args.size, args.size),))
    return eng


def timer(eng, args: argparse.Namespace, dev: torch.device):
    """A function that makes one image (a new prompt and seed each time) and returns its seconds."""
    n = [0]

    def image() -> float:
        n[0] += 1
        sync(dev)
        t = time.perf_counter()
        eng.generate(prompt=f"a photo of a cat number {n[0]} on a red sofa", width=args.size, height=args.size,
                     steps=args.steps, guidance=0.0, seed=n[0])
        sync(dev)
        return time.perf_counter() - t

    return image


def main() -> int:
    ap = argparse.ArgumentParser()
    add_common_args(ap)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--mode", choices=("engine", "hotswap"), default="engine")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                    help="auto: compiled on CUDA only (the engine's default); on: also on a CPU (smoke tests "
                         "may set ZAOXIANG_COMPILE_BACKEND=eager to skip code generation)")
    args = ap.parse_args()
    from studio.engine.random_pipeline import build_random_pipeline

    dev = torch.device(args.device)
    out: dict = {"mode": args.mode, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                 "arch": args.arch, "size": args.size, "steps": args.steps, "rank": args.rank}
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32  # the CPU's bf16 matmuls are slow and partial
    out["dtype"] = str(dtype).removeprefix("torch.")
    pipe = build_random_pipeline(args.arch, dev, dtype)
    files = [random_lora(pipe.transformer, args.rank, i, Path(f"/tmp/zx-lora-{args.arch}-{i}.safetensors"))
             for i in range(3)]
    out["lora_mb"] = round(files[0].stat().st_size / 2**20, 1)
    if args.mode == "hotswap":
        return hotswap(args, pipe, dev, files, out)
    t0 = time.perf_counter()
    eng = build_engine(args, pipe, dev)
    out["warm_s"] = round(time.perf_counter() - t0, 1)
    out["compiled"] = eng.compiled
    out["notes"] = eng.notes
    image = timer(eng, args, dev)
    rec = Recompiles()

    def phase(tag: str, loras: list) -> None:
        rec.take()
        t = time.perf_counter()
        report = eng.set_loras(loras)
        set_s = time.perf_counter() - t
        first = image()
        times = [image() for _ in range(args.runs)]
        times.sort()
        out[tag] = {"set_loras_s": round(set_s, 4), "loaded": report.loaded if report else [],
                    "first_image_s": round(first, 3), "median_s": round(times[len(times) // 2], 4),
                    "min_s": round(times[0], 4), **rec.take()}
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
    rec.take()
    for i in range(6):
        sets = [[(files[0], 1.0)], [(files[1], 0.5), (files[2], 0.5)], [], [(f, 0.3) for f in files]]
        t = time.perf_counter()
        eng.set_loras(sets[i % len(sets)])
        switches.append(time.perf_counter() - t)
        image()
    out["switch_s"] = [round(s, 4) for s in switches]
    out["switches"] = rec.take()
    return finish(args, dev, out)


def finish(args: argparse.Namespace, dev: torch.device, out: dict) -> int:
    out["peak_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == "cuda" else None
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"lora-{args.mode}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    print("wrote", path)
    return 0


def hotswap(args: argparse.Namespace, pipe, dev: torch.device, files: list[Path], out: dict) -> int:
    """diffusers' hotswap on the same compiled engine: the first file loaded into slot "slot" before the
    blocks compile, later files overwritten into it (`hotswap=True`), the strength a tensor written in place."""
    from peft.tuners.lora import LoraLayer
    from safetensors.torch import load_file

    def load(path: Path, swap: bool) -> float:
        t = time.perf_counter()
        sd = {k: v.to(pipe.transformer.dtype) for k, v in load_file(str(path), device=str(dev)).items()}
        pipe.load_lora_weights(sd, adapter_name="slot", hotswap=swap)
        return time.perf_counter() - t

    def strength(value: float) -> None:
        for mod in pipe.transformer.modules():
            if isinstance(mod, LoraLayer) and "slot" in mod.scaling:
                cur = mod.scaling["slot"]
                scale = value * mod.lora_alpha["slot"] / mod.r["slot"]
                cur.fill_(scale) if isinstance(cur, torch.Tensor) else mod.scaling.__setitem__("slot", scale)

    pipe.enable_lora_hotswap(target_rank=args.rank)
    out["first_load_s"] = round(load(files[0], False), 4)
    t0 = time.perf_counter()
    eng = build_engine(args, pipe, dev)
    out["warm_s"] = round(time.perf_counter() - t0, 1)
    out["compiled"] = eng.compiled
    out["notes"] = eng.notes
    image = timer(eng, args, dev)
    rec = Recompiles()

    def phase(tag: str, change) -> None:
        rec.take()
        t = time.perf_counter()
        change()
        set_s = time.perf_counter() - t
        first = image()
        times = sorted(image() for _ in range(args.runs))
        out[tag] = {"set_s": round(set_s, 4), "first_image_s": round(first, 3),
                    "median_s": round(times[len(times) // 2], 4), "min_s": round(times[0], 4), **rec.take()}
        print(tag, out[tag], flush=True)

    image()
    phase("slot_strength_0", lambda: strength(0.0))  # what the slot costs an image without a LoRA
    phase("one_lora", lambda: strength(1.0))
    phase("swap_in_second", lambda: load(files[1], True))
    phase("swap_in_third_strength_0.6", lambda: (load(files[2], True), strength(0.6)))
    switches = []
    rec.take()
    for i in range(6):
        t = time.perf_counter()
        load(files[i % 3], True)
        switches.append(time.perf_counter() - t)
        image()
    out["swap_s"] = [round(s, 4) for s in switches]
    out["swaps"] = rec.take()
    return finish(args, dev, out)


if __name__ == "__main__":
    raise SystemExit(main())
