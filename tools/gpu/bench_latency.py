"""Latency mode (issue 16): one image split over the GPUs of this host against one GPU alone.

    torchrun --nproc-per-node 2 tools/gpu/bench_latency.py --out $OUT [--sizes 1024,2048] [--variants ...]
    torchrun --nproc-per-node 2 tools/gpu/bench_latency.py --device cpu --arch tiny --sizes 128   # gloo check

Every rank builds the same random-weight pipeline (same seed). Per variant and size: rank 0 alone
times the one-device path (the other ranks wait), then all ranks time the split path on the same
seed; rank 0 compares the two images (PSNR) and counts graphs compiled during the timed runs.
Variants:
  ours+cachedit   our engine (fused attention, compiled blocks) with cache-dit's Ulysses hooks and
                  our attention op inside its all-to-all (studio/engine/split.py)
  stock+cachedit  stock diffusers pipeline, cache-dit Ulysses, cache-dit's native attention
                  (what issue 16 measured: 0.644x at 1024², 0.583x at 2048²)
  ours-fp8+cachedit  as ours+cachedit with the FP8 transformer (where the GPU has FP8)
  ...+overlap     q's all-to-all starts before k and v are projected (studio/engine/split.py)
  ...+fp8comm     cache-dit's FP8 all-to-all (per-token scales) for q, v and o
  ...+vaesplit    the VAE decode shared by the devices, row by row (studio/engine/split_decode.py)
  ...+reorder     inductor reorders the blocks' compute around the collectives to overlap them
  ...+graphs      denoising steps replayed from CUDA graphs (studio/engine/step_graphs.py), the split
                  steps (with their collectives) in graphs of their own: no Python launch cost per step
--profile SIZE: after a variant's timed runs, torch.profiler over one split image (rank 0) and one
one-device image: top CUDA kernels, NCCL time, GPU busy against wall, and tokens each rank attended.
A --limit-s guard skips what would start after the limit, so the JSON is always written.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

warnings.filterwarnings("ignore", category=FutureWarning)  # cache-dit calls a deprecated funcol name per block

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.gpu.common import img_diff, sync  # noqa: E402

VARIANTS = ("ours+cachedit", "stock+cachedit", "ours-fp8+cachedit", "ours+cachedit+graphs",
            "ours-fp8+cachedit+graphs", "ours+cachedit+overlap", "ours+cachedit+graphs+overlap",
            "ours-fp8+cachedit+graphs+overlap", "ours+cachedit+fp8comm", "ours+cachedit+graphs+overlap+fp8comm",
            "ours+cachedit+reorder", "ours+cachedit+vaesplit", "ours+cachedit+graphs+overlap+vaesplit")
PROMPT = "a lighthouse on a cliff at dawn, oil painting"
SEED = 7


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/zx-out"))
    p.add_argument("--cache", default="/tmp/zx-compile-cache")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="full")
    p.add_argument("--sizes", default="1024,2048")
    p.add_argument("--steps", type=int, default=9)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--variants", default="ours+cachedit,stock+cachedit")
    p.add_argument("--limit-s", type=float, default=390.0, help="start nothing new after this many seconds")
    p.add_argument("--profile", type=int, default=0, metavar="SIZE",
                   help="profile one split and one one-device image of this size per variant")
    p.add_argument("--compile-backend", default=None,
                   help="torch.compile backend for the blocks (default inductor on CUDA, eager on CPU)")
    return p.parse_args()


class Ctx:
    """Rank, device and the clock every rank agrees on."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.perf_counter()
        cuda = args.device.startswith("cuda")
        local = int(os.environ.get("LOCAL_RANK", 0))
        self.device = torch.device("cuda", local) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=20),
                                device_id=self.device if cuda else None)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.dtype = torch.bfloat16 if cuda else torch.float32

    def log(self, msg: str) -> None:
        if self.rank == 0:
            print(f"[{time.perf_counter() - self.t0:7.1f}s] {msg}", flush=True)

    def all_agree(self, flag: bool) -> bool:
        """True only if every rank says True (ranks may see the clock differently)."""
        t = torch.tensor([0 if flag else 1], device=self.device)
        dist.all_reduce(t)
        return int(t.item()) == 0

    def time_left(self, need: float = 0.0) -> bool:
        return self.all_agree(time.perf_counter() - self.t0 + need < self.args.limit_s)


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def build_pipe(ctx: Ctx) -> Any:
    from studio.engine.random_pipeline import build_random_pipeline

    return build_random_pipeline(ctx.args.arch, ctx.device, ctx.dtype, seed=0)


def timed(ctx: Ctx, fn: Any, runs: int) -> tuple[float, Any]:
    """Mean seconds of `runs` calls (after one untimed call), and the last result."""
    out = fn()
    sync(ctx.device)
    t0 = time.perf_counter()
    for _ in range(runs):
        out = fn()
    sync(ctx.device)
    return (time.perf_counter() - t0) / runs, out


class OursVariant:
    """Our engine: fused attention and compiled blocks, then cache-dit's hooks around them."""

    def __init__(self, ctx: Ctx, fp8: bool, graphs: bool, reorder: bool = False) -> None:
        import torch._inductor.config

        from studio.engine import fastpath, fused_attention
        from studio.engine.generate import Engine

        self.ctx = ctx
        cuda = ctx.device.type == "cuda"
        torch._inductor.config.reorder_for_compute_comm_overlap = reorder
        if ctx.args.compile_backend or not cuda:
            os.environ["ZAOXIANG_COMPILE_BACKEND"] = ctx.args.compile_backend or "eager"
        pipe = build_pipe(ctx)
        if not cuda:  # the engine keeps the fast path for CUDA; install the same processor here by hand
            fused_attention.install(pipe.transformer, "sdpa")
        self.engine = Engine(f"random-{ctx.args.arch}", ctx.device, ctx.dtype, pipe=pipe, fp8=fp8, compile=True,
                             warm="none", compile_cache=ctx.args.cache, graph_steps=graphs)
        self.fastpath = fastpath
        self.transformer = pipe.transformer

    def warm(self, sizes: list[int]) -> None:
        self.engine.warm_up(tuple((s, s) for s in sizes))
        if not self.engine.compiled:
            raise RuntimeError(f"compile failed: {self.engine.notes}")


    def image(self, size: int) -> Any:
        from studio.core.spec import ImageSpec

        spec = ImageSpec(prompt=PROMPT, seed=SEED, width=size, height=size, steps=self.ctx.args.steps)
        image, self.last = self.engine.generate(spec)
        return image

    def phases(self) -> dict[str, float]:
        """The last image's encode / denoise / decode seconds by the Engine's own clock."""
        t = getattr(self, "last", None)
        return {} if t is None else {k: round(getattr(t, k), 4) for k in ("encode_s", "denoise_s", "decode_s")}

    def info(self) -> dict[str, Any]:
        e = self.engine
        return {"attention": "fused-sdpa" if e.device.type != "cuda" else e.attention, "compiled": e.compiled,
                "fp8": e.fp8, "notes": e.notes, "step_graphs": e.step_graphs is not None,
                "step_graphs_failed": e.step_graphs.failed if e.step_graphs is not None else None}


class StockVariant:
    """Stock diffusers pipeline (its own attention processor), cache-dit Ulysses: the issue's reference."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.pipe = build_pipe(ctx)
        self.transformer = self.pipe.transformer

    def warm(self, sizes: list[int]) -> None:
        pass

    def image(self, size: int) -> Any:
        from studio.engine.generate import initial_noise

        pipe = self.pipe
        lat = initial_noise(SEED, size, size, pipe.transformer.config.in_channels, pipe.vae_scale_factor)
        with torch.no_grad():
            return pipe(prompt=PROMPT, height=size, width=size, num_inference_steps=self.ctx.args.steps,
                        guidance_scale=0.0, latents=lat.to(self.ctx.device), max_sequence_length=512).images[0]

    def info(self) -> dict[str, Any]:
        return {"attention": "diffusers native (cache-dit)"}


def run_variant(ctx: Ctx, name: str, sizes: list[int]) -> list[dict[str, Any]]:
    args = ctx.args
    ctx.log(f"{name}: building")
    if name.startswith("ours"):
        v: Any = OursVariant(ctx, fp8="-fp8" in name, graphs="+graphs" in name, reorder="+reorder" in name)
    else:
        v = StockVariant(ctx)
    rows = [{"variant": name, "size": s} for s in sizes]
    t_build = time.perf_counter()
    v.warm(sizes)  # every rank compiles its own one-device graphs at once (no traffic)
    ctx.log(f"{name}: one-device warm-up {time.perf_counter() - t_build:.1f}s")
    from studio.engine.split import Split

    splitter = Split(v.transformer, ctx.world, overlap="+overlap" in name, fp8_comm="+fp8comm" in name,
                     vae=v.engine.pipe.vae if "+vaesplit" in name else None)  # off: one-device runs go around it
    dist.barrier()
    single: dict[int, Any] = {}
    for row in rows:
        s = row["size"]
        if not ctx.time_left():
            row["skipped"] = "limit"
            continue
        if ctx.rank == 0:
            before = graphs_compiled()
            secs, img = timed(ctx, lambda s=s, v=v: v.image(s), args.runs)
            row["one_s"] = round(secs, 4)
            row["one_recompiled"] = graphs_compiled() - before
            row["one_phases"] = getattr(v, "phases", dict)()
            single[s] = img
            ctx.log(f"{name} {s}²: one device {secs:.3f} s/image")
        dist.barrier()
    split_on = splitter.active()
    split_on.__enter__()
    for row in rows:
        s = row["size"]
        if "skipped" in row or not ctx.time_left():
            row.setdefault("skipped", "limit")
            continue
        t0, before_first = time.perf_counter(), graphs_compiled()
        v.image(s)  # the split graphs compile here
        sync(ctx.device)
        row["split_first_s"] = round(time.perf_counter() - t0, 2)
        row["split_first_graphs"] = graphs_compiled() - before_first
        before = graphs_compiled()
        secs, img = timed(ctx, lambda s=s, v=v: v.image(s), args.runs)
        row["split_s"] = round(secs, 4)
        row["split_recompiled"] = graphs_compiled() - before
        row["split_phases"] = getattr(v, "phases", dict)()
        if ctx.rank == 0:
            row["ratio"] = round(secs / row["one_s"], 3) if row.get("one_s") else None
            if s in single:
                row.update(img_diff(img, single[s]))
            ctx.log(f"{name} {s}²: split over {ctx.world} {secs:.3f} s/image, ratio {row['ratio']}, "
                    f"PSNR {row.get('psnr_db')} dB, recompiled in timed runs: {row['split_recompiled']}, "
                    f"phases one {row.get('one_phases')} split {row['split_phases']}")
    profiled: dict[str, Any] | None = None
    if args.profile and ctx.time_left(60):
        profiled = {"variant": name, "profile_size": args.profile,
                    "split": profile_image(ctx, lambda v=v: v.image(args.profile), v.transformer)}
    split_on.__exit__(None, None, None)
    if profiled is not None:
        if ctx.rank == 0:
            profiled["one_device"] = profile_image(ctx, lambda v=v: v.image(args.profile), v.transformer)
        dist.barrier()
        if ctx.rank == 0:
            print(profile_text(profiled), flush=True)
        rows.append(profiled)
    for row in rows:
        if "profile_size" not in row:
            row.update(v.info())
    del v
    gc.collect()
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def profile_image(ctx: Ctx, make: Any, transformer: Any) -> dict[str, Any]:
    """torch.profiler over one image on this rank: kernel totals, NCCL share, GPU busy against wall,
    and the sequence length the main blocks saw (after the split's hook, before the all-to-all)."""
    from torch.profiler import ProfilerActivity, profile

    seen: list[int] = []
    hook = transformer.layers[1].register_forward_pre_hook(lambda _m, a: seen.append(int(a[0].shape[1])))
    make()  # not profiled: any lazy capture happens here
    sync(ctx.device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.device.type == "cuda" else [])
    t0 = time.perf_counter()
    try:
        with profile(activities=acts) as prof:
            make()
            sync(ctx.device)
    finally:
        hook.remove()
    wall = time.perf_counter() - t0
    rows, host = [], []
    for e in prof.key_averages():
        dev = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0
        if dev > 0:
            rows.append((e.key, dev / 1e6, e.count))
        host.append((e.key, e.self_cpu_time_total / 1e6, e.count))
    host.sort(key=lambda r: -r[1])
    rows.sort(key=lambda r: -r[1])
    nccl = sum(t for k, t, _ in rows if "nccl" in k.lower())
    busy = sum(t for k, t, _ in rows if "nccl" not in k.lower())
    steps = ctx.args.steps
    return {"wall_s": round(wall, 4), "kernels_s": round(busy, 4), "nccl_s": round(nccl, 4),
            "gpu_busy_share": round(busy / wall, 3) if wall else None,
            "wall_per_step_ms": round(1000 * wall / steps, 1), "kernels_per_step_ms": round(1000 * busy / steps, 1),
            "tokens_seen": sorted(set(seen)), "calls_with_tokens": len(seen),
            "top": [{"kernel": k[:120], "s": round(t, 4), "calls": c} for k, t, c in rows[:15]],
            "host_top": [{"op": k[:120], "s": round(t, 4), "calls": c} for k, t, c in host[:10]]}


def profile_text(p: dict[str, Any]) -> str:
    out = [f"## profile {p['variant']} {p['profile_size']}²"]
    for mode in ("split", "one_device"):
        r = p.get(mode)
        if not r:
            continue
        out.append(f"### {mode}: wall {r['wall_s']} s ({r['wall_per_step_ms']} ms/step), kernels {r['kernels_s']} s "
                   f"({r['kernels_per_step_ms']} ms/step, busy {r['gpu_busy_share']}), NCCL {r['nccl_s']} s, "
                   f"tokens per main block {r['tokens_seen']}")
        out += [f"  {t['s']:8.4f} s  {t['calls']:6d}  {t['kernel']}" for t in r["top"]]
        out += ["  host (self CPU time):"] + [f"  {t['s']:8.4f} s  {t['calls']:6d}  {t['op']}" for t in r["host_top"]]
    return "\n".join(out)


def table(rows: list[dict[str, Any]], world: int) -> str:
    lines = [f"| variant | size | one device s/img | split over {world} s/img | ratio | PSNR dB | "
             "recompiled (timed) | first split image s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "profile_size" in r:
            continue
        if "error" in r or "skipped" in r:
            lines.append(f"| {r['variant']} | {r.get('size', '')} | {r.get('error') or 'skipped: ' + r['skipped']} "
                         "| | | | | |")
            continue
        lines.append(f"| {r['variant']} | {r['size']}² | {r.get('one_s')} | {r.get('split_s')} | {r.get('ratio')} | "
                     f"{r.get('psnr_db')} | {r.get('one_recompiled')}/{r.get('split_recompiled')} | "
                     f"{r.get('split_first_s')} |")
    return "\n".join(lines)


def meta(ctx: Ctx) -> dict[str, Any]:
    args = ctx.args
    return {"world": ctx.world, "device": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda"
            else "cpu", "torch": torch.__version__, "arch": args.arch, "steps": args.steps, "runs": args.runs,
            "nccl_p2p_disable": os.environ.get("NCCL_P2P_DISABLE"), "wall_s": round(time.perf_counter() - ctx.t0, 1)}


def write(ctx: Ctx, rows: list[dict[str, Any]]) -> None:
    if ctx.rank != 0:
        return
    out = Path(ctx.args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_latency.json").write_text(json.dumps({"meta": meta(ctx), "rows": rows}, indent=2))


def main() -> int:
    args = parse()
    ctx = Ctx(args)
    from studio.engine import fastpath

    fastpath.use_compile_cache(Path(args.cache))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows: list[dict[str, Any]] = []
    for name in [v for v in args.variants.split(",") if v]:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        if not ctx.time_left(30):
            rows.append({"variant": name, "skipped": "limit"})
            continue
        try:
            rows += run_variant(ctx, name, sizes)
        except Exception as exc:  # noqa: BLE001 - one variant failing must not lose the others' rows
            ctx.log(f"{name}: failed: {type(exc).__name__}: {exc}")
            rows.append({"variant": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
            if ctx.world > 1:  # a rank may be stuck in a collective: nothing more can be trusted
                break
        finally:
            write(ctx, rows)  # after every variant: a later one that hangs loses nothing before it
    if ctx.rank == 0:
        print(table(rows, ctx.world))
        print(json.dumps(meta(ctx)))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
