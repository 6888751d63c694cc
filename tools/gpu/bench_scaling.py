"""Pool scaling on 1, 2, 4 and 8 GPUs (issue 22): one command for whatever machine this is.

    python tools/gpu/bench_scaling.py                         # every GPU count up to what this host has
    python tools/gpu/bench_scaling.py --counts 1,2 --mixed    # and half the cards under the 24gb profile
    python tools/gpu/bench_scaling.py --cpu --counts 1,2      # the same script on CPU workers (demo model)

Each row is one `zaoxiang bench --workers … --json` run in a fresh process: a request of
`per_gpu × N` images, 1024², 9 steps, full-size random weights built by each worker. The first
count is the reference: scaling efficiency = (images/min at N) / (N × images/min at the reference
count / reference N). Startup is measured twice per count, with an empty and with a filled
compile cache (TORCHINDUCTOR_CACHE_DIR and Triton's cache under one folder per run), because N
workers loading and compiling from one disk is the risk this table watches. Latency mode (one
image over several GPUs) is issue 16 and is reported as "not built" until it exists.
The JSON of every run goes to `--out` (default docs/benchmarks-data/scaling_<host>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def gpu_count() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def workers_spec(n: int, cpu: bool) -> str:
    return f"cpu:{n}" if cpu else "cuda:" + ",".join(str(i) for i in range(n))


def run_bench(args: argparse.Namespace, n: int, cache: Path, profile: str | None) -> dict[str, Any]:
    """One `zaoxiang bench` in a fresh interpreter with `cache` as its compile cache."""
    cmd = [sys.executable, "-m", "studio", "bench", "--workers", workers_spec(n, args.cpu),
           "--size", str(args.size), "--steps", str(args.steps), "--batch", str(args.per_gpu * n),
           "--runs", str(args.runs), "--json"]
    cmd += ["--model", "demo"] if args.cpu else ["--random-weights", "full"]
    if profile:
        cmd += ["--profile", profile]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"), "TRITON_CACHE_DIR": str(cache / "triton"),
           "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=args.timeout)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"workers": n, "profile": profile, "error": " | ".join(tail), "wall_s": round(wall, 1)}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(wall, 1)
    return result


def mixed_profile(n: int) -> str:
    """Half the workers under the 24gb profile: the measured-speed split against equal chunks."""
    return ",".join("full" if i < (n + 1) // 2 else "24gb" for i in range(n))


def row(label: str, n: int, r: dict[str, Any], ref_ipm_per_gpu: float | None) -> str:
    if "error" in r:
        return f"| {label} | {n} | failed: {r['error'][:120]} | | | | | |"
    ipm = r.get("images_per_min_batched") or 0.0
    eff = ipm / (n * ref_ipm_per_gpu) if ref_ipm_per_gpu else None
    return (f"| {label} | {n} | {ipm:.1f} | {'' if eff is None else f'{eff:.3f}'} | "
            f"{r.get('balance_efficiency')} | {r.get('makespan_efficiency')} | {r.get('load_s')} | "
            f"{r.get('warm_load_s', '')} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", default="", help="worker counts, e.g. 1,2,4,8 (default: 1,2,4,8 up to this host)")
    ap.add_argument("--cpu", action="store_true", help="CPU workers on the demo model (the script's own check)")
    ap.add_argument("--mixed", action="store_true", help="also half the workers under the 24gb profile")
    ap.add_argument("--per-gpu", type=int, default=8, help="images per worker in the timed request")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=9)
    ap.add_argument("--runs", type=int, default=2, help="single images timed before the request")
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.cpu and args.size == 1024:
        args.size, args.steps = 256, 4
    have = (os.cpu_count() or 1) if args.cpu else gpu_count()
    counts = [int(c) for c in args.counts.split(",") if c] or [c for c in (1, 2, 4, 8) if c <= have]
    if not counts:
        print("no GPU found: run with --cpu to check the script on CPU workers", file=sys.stderr)
        return 2
    results: list[dict[str, Any]] = []
    lines = ["| setup | workers | images/min | scaling eff. | balance eff. | makespan eff. | ready, cold cache (s) |"
             " ready, warm cache (s) |", "|---|---|---|---|---|---|---|---|"]
    ref: float | None = None
    for n in counts:
        cache = Path(tempfile.mkdtemp(prefix="zx-scaling-cache-"))
        try:
            cold = run_bench(args, n, cache, None)
            warm = run_bench(args, n, cache, None)  # the same cache, now filled
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        if "error" not in cold and "error" not in warm:
            warm["warm_load_s"] = warm.get("load_s")
            warm["load_s"] = cold.get("load_s")
        best = warm if "error" not in warm else cold
        if ref is None and "error" not in best:
            ref = (best.get("images_per_min_batched") or 0.0) / n
        results.append({"setup": "equal", "workers": n, "cold": cold, "warm": warm})
        lines.append(row("equal", n, best, ref))
        print(lines[-1], flush=True)
        if args.mixed and n > 1 and not args.cpu:
            cache = Path(tempfile.mkdtemp(prefix="zx-scaling-cache-"))
            try:
                mixed = run_bench(args, n, cache, mixed_profile(n))
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            results.append({"setup": "mixed", "workers": n, "profile": mixed_profile(n), "run": mixed})
            lines.append(row(f"mixed ({mixed_profile(n)})", n, mixed, ref))
            print(lines[-1], flush=True)
    lines.append("")
    lines.append("Latency mode (one image over several GPUs, issue 16): not built yet; no rows.")
    print("\n".join(lines))
    out = args.out or ROOT / "docs" / "benchmarks-data" / f"scaling_{'cpu' if args.cpu else 'gpu'}_{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args) | {"out": str(out)}, "results": results, "table": lines},
                              indent=1, ensure_ascii=False))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
