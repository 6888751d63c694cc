"""Issue 19's GPU figures: seconds per image with 0, 1 and 3 LoRAs on the compiled engine, the time to
switch sets, and whether anything recompiled (dynamo's graph count and guard failures per phase).

    python3 tools/gpu/bench_lora.py --out $OUT                  # the engine's default (merged when compiled)
    python3 tools/gpu/bench_lora.py --mode adapters --out $OUT  # peft adapters in the compiled blocks
    python3 tools/gpu/bench_lora.py --mode hotswap --out $OUT   # diffusers' hotswap, for comparison
    python3 tools/gpu/bench_lora.py --arch tiny --device cpu --compile on --size 128 --steps 2  # CPU smoke

Defaults: full-size random weights, bf16, 1024x1024, 9 steps. The LoRAs are random rank-32 files in the
diffusers layout on every attention and feed-forward linear of every block and refiner (what most
published Z-Image LoRAs adapt), written to /tmp first.

Three ways of keeping compiled blocks while LoRAs change. "engine" is what the studio does by default
on a compiled engine: the active set merged into the weights (originals kept aside and copied back),
so an image costs what it costs without LoRAs and no module changes. "adapters": every loaded file is
its own peft adapter, all of them stay in the forward with their strengths in tensors, so a switch
changes data only, and each newly loaded file changes the traced code once. "hotswap" is
diffusers' `enable_lora_hotswap(target_rank=…)`: one adapter slot, filled before the blocks compile,
whose weights are overwritten in place by each next file (one LoRA at a time; no stacking).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
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


class Bench:
    """The studio's Engine on `pipe` (blocks compiled per --compile, warmed for the one size measured),
    timing images and the phases that change its LoRAs into `out`."""

    def __init__(self, args: argparse.Namespace, pipe, dev: torch.device, out: dict) -> None:
        from studio.engine.generate import Engine

        self.args, self.dev, self.out, self.n = args, dev, out, 0
        t0 = time.perf_counter()
        self.eng = Engine(f"random:{args.arch}", dev, dtype=pipe.transformer.dtype, pipe=pipe, warm="none",
                          compile={"auto": None, "on": True, "off": False}[args.compile], compile_cache=args.cache)
        if self.eng.compiled:
            self.eng.warm_up(sizes=((args.size, args.size),))
        out.update(warm_s=round(time.perf_counter() - t0, 1), compiled=self.eng.compiled, notes=self.eng.notes)
        self.rec = Recompiles()

    def image(self) -> float:
        """One image (a new prompt and seed each time); its seconds."""
        self.n += 1
        sync(self.dev)
        t = time.perf_counter()
        self.eng.generate(prompt=f"a photo of a cat number {self.n} on a red sofa", width=self.args.size,
                          height=self.args.size, steps=self.args.steps, guidance=0.0, seed=self.n)
        sync(self.dev)
        return time.perf_counter() - t

    def phase(self, tag: str, change: Callable[[], object]) -> None:
        """`change` timed (a dict it returns is kept), then the first image after it and `--runs` more;
        new graphs over all of it."""
        self.rec.take()
        t = time.perf_counter()
        extra = change()
        extra = extra if isinstance(extra, dict) else {}
        set_s = time.perf_counter() - t
        first = self.image()
        times = sorted(self.image() for _ in range(self.args.runs))
        self.out[tag] = {"set_s": round(set_s, 4), **extra, "first_image_s": round(first, 3),
                         "median_s": round(times[len(times) // 2], 4), "min_s": round(times[0], 4),
                         **self.rec.take()}
        print(tag, self.out[tag], flush=True)

    def switches(self, tag: str, changes: list[Callable[[], object]]) -> None:
        """Each change timed with one image after it; the seconds per change and the new graphs."""
        self.rec.take()
        seconds = []
        for change in changes:
            t = time.perf_counter()
            change()
            seconds.append(round(time.perf_counter() - t, 4))
            self.image()
        self.out[tag] = {"set_s": seconds, **self.rec.take()}
        print(tag, self.out[tag], flush=True)

    def finish(self) -> int:
        dev, out = self.dev, self.out
        out["peak_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == "cuda" else None
        Path(self.args.out).mkdir(parents=True, exist_ok=True)
        path = Path(self.args.out) / f"lora-{self.args.mode}.json"
        path.write_text(json.dumps(out, indent=1))
        print(json.dumps(out, indent=1))
        print("wrote", path)
        return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    add_common_args(ap)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--mode", choices=("engine", "adapters", "hotswap"), default="engine")
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
    bench = Bench(args, pipe, dev, out)
    if args.mode == "adapters":
        bench.eng.lora_merge = False
    out["lora_merge"] = bench.eng.compiled if bench.eng.lora_merge is None else bench.eng.lora_merge

    def use(loras: list) -> Callable[[], dict]:
        return lambda: {"loaded": getattr(bench.eng.set_loras(loras), "loaded", [])}

    bench.image()
    bench.phase("none", use([]))
    bench.phase("one_lora_first_load", use([(files[0], 1.0)]))
    bench.phase("one_lora", use([(files[0], 0.8)]))
    bench.phase("three_loras_load_two_more", use([(f, 0.5) for f in files]))
    bench.phase("three_loras", use([(f, 0.6) for f in files]))
    bench.phase("switch_to_one_of_three", use([(files[1], 1.0)]))
    bench.phase("switch_to_none_three_loaded", use([]))
    sets = [[(files[0], 1.0)], [(files[1], 0.5), (files[2], 0.5)], [], [(f, 0.3) for f in files]]
    bench.switches("switches", [use(sets[i % len(sets)]) for i in range(6)])
    return bench.finish()


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
    bench = Bench(args, pipe, dev, out)
    bench.image()
    bench.phase("slot_strength_0", lambda: strength(0.0))  # what the slot costs an image without a LoRA
    bench.phase("one_lora", lambda: strength(1.0))
    bench.phase("swap_in_second", lambda: load(files[1], True))
    bench.phase("swap_in_third_strength_0.6", lambda: [load(files[2], True), strength(0.6)])
    bench.switches("swaps", [lambda i=i: load(files[i % 3], True) for i in range(6)])
    return bench.finish()


if __name__ == "__main__":
    raise SystemExit(main())
