"""The VAE decode alone, whole on each device against shared row by row (studio/engine/split_decode.py).

Full-size Flux VAE layout with random weights, bf16, under torchrun (one process per device):
    torchrun --nproc-per-node 2 tools/gpu/bench_split_decode.py --sizes 2048,1024 --runs 5
Prints, per size: the whole decode eager and compiled, the shared decode eager and compiled (seconds,
median), the PSNR of the shared picture against the whole one, and rank 0's top kernels of the shared
compiled decode (`--profile SIZE`). Writes bench_split_decode.json under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from studio.engine.split_decode import Bands, decode_rows  # noqa: E402
from studio.models.architecture import ARCHITECTURES  # noqa: E402
from tools.gpu.common import img_diff, sync  # noqa: E402


def _pixels(x: torch.Tensor):
    return ((x[0].float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _time(fn, z: torch.Tensor, runs: int, dev: torch.device) -> tuple[float, torch.Tensor]:
    out = None
    for _ in range(2):
        out = fn(z)
    seconds = []
    for _ in range(runs):
        dist.barrier()
        sync(dev)
        t = time.perf_counter()
        out = fn(z)
        sync(dev)
        seconds.append(time.perf_counter() - t)
    return round(statistics.median(seconds), 4), out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="2048,1024")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--profile", type=int, default=2048)
    p.add_argument("--arch", default="full")
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/zx-out"))
    args = p.parse_args()
    cuda = torch.cuda.is_available()  # without: gloo on the CPU, a dry run of the script (--arch tiny)
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    from diffusers import AutoencoderKL

    with torch.device(dev):
        vae = AutoencoderKL(**ARCHITECTURES[args.arch].vae).to(torch.bfloat16).eval()
    for param in vae.parameters():
        dist.broadcast(param.data, 0)
    decoder = vae.decoder
    eager = decoder.forward
    compiled = torch.compile(eager, fullgraph=False, dynamic=None)
    eager_bands = Bands(decoder, rank, world, dist.group.WORLD)
    compiled_bands = Bands(decoder, rank, world, dist.group.WORLD, compiled=True)

    def whole_compiled(z: torch.Tensor) -> torch.Tensor:
        torch._dynamo.maybe_mark_dynamic(z, 2)
        torch._dynamo.maybe_mark_dynamic(z, 3)
        return compiled(z)

    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        z = torch.randn(1, 16, size // 8, size // 8, device=dev, dtype=torch.bfloat16,
                        generator=torch.Generator(dev).manual_seed(size))
        dist.broadcast(z, 0)
        row: dict = {"size": size, "min_rows": compiled_bands.min_rows}
        with torch.no_grad():
            t = time.perf_counter()
            whole_compiled(z)
            sync(dev)
            row["whole_compiled_first_s"] = round(time.perf_counter() - t, 2)
            row["whole_eager_s"], _ = _time(eager, z, args.runs, dev)
            row["whole_compiled_s"], whole = _time(whole_compiled, z, args.runs, dev)
            row["shared_eager_s"], shared = _time(lambda x: decode_rows(decoder, x, bands=eager_bands), z, args.runs, dev)
            row["shared_eager"] = img_diff(_pixels(shared), _pixels(whole))
            t = time.perf_counter()
            decode_rows(decoder, z, bands=compiled_bands)
            sync(dev)
            row["shared_compiled_first_s"] = round(time.perf_counter() - t, 2)
            row["shared_compiled_s"], shared = _time(lambda x: decode_rows(decoder, x, bands=compiled_bands),
                                                     z, args.runs, dev)
            row["shared_compiled"] = img_diff(_pixels(shared), _pixels(whole))
            row["ratio"] = round(row["shared_compiled_s"] / row["whole_compiled_s"], 3)
            if size == args.profile:
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda) as prof:
                    decode_rows(decoder, z, bands=compiled_bands)
                    sync(dev)
                if rank == 0:
                    print(prof.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=14, max_name_column_width=60),
                          flush=True)
        rows.append(row)
        if rank == 0:
            print(json.dumps(row), flush=True)
    if rank == 0:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"world": world, "device": torch.cuda.get_device_name(dev) if cuda else "cpu", "torch": torch.__version__}
        (out / "bench_split_decode.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
