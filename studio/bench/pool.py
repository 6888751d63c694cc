"""`zaoxiang bench --workers SPEC`: the same figures through the worker pool, via the Studio facade.

Workers load a model folder, so random weights are not available here: `--random-weights tiny`
means the demo model (the same tiny architecture). The history of these requests goes to a
throw-away studio home, never into the person's own history; the model is resolved from theirs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from studio.bench.run import BenchOptions, _prompt


class PoolBenchError(ValueError):
    """The options can't run through the pool (the message says why)."""


def _wait_ready(studio: Any, timeout: float = 900.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = studio.pool_status()
        if rows and all(r["state"] == "idle" for r in rows):
            return rows
        bad = [r for r in rows if r["state"] in ("failed", "stopped")]
        if bad:
            raise RuntimeError(f"worker {bad[0]['name']} failed to start: {bad[0].get('last_error') or '?'}")
        time.sleep(0.1)
    raise TimeoutError(f"workers not ready after {timeout:.0f} s")


def run_pool(opts: BenchOptions) -> dict[str, Any]:
    """Start the pool, warm every worker, then time single images and one batch across it."""
    from studio.app import Studio
    from studio.core.paths import Paths, get_paths
    from studio.core.request import GenerationRequest
    from studio.core.settings import load_settings
    from studio.models.discovery import resolve_model

    if opts.random_weights == "full":
        raise PoolBenchError("--random-weights full runs in-process only (workers load a model folder); "
                             "use --model PATH with --workers")
    real = get_paths().ensure()
    settings = load_settings(real)
    model = "demo" if opts.random_weights == "tiny" else opts.model
    info = resolve_model(model, settings.model or None, real)
    if opts.profile != "auto":
        settings.memory_profile = opts.profile
    args = dict(width=opts.size, height=opts.size, steps=opts.steps, guidance=0.0, seed_mode="fixed")
    with tempfile.TemporaryDirectory(prefix="zx-bench-") as tmp:
        root = Path(tmp)
        paths = Paths(root / "config", root / "data", root / "cache", root / "logs", root / "run")
        # the demo model lives in the person's data dir: pass its path so the temp home needs no copy
        studio = Studio(settings=settings, paths=paths, model=info.path, workers=opts.workers)
        try:
            t0 = time.perf_counter()
            studio.start()
            rows = _wait_ready(studio)
            ready_s = time.perf_counter() - t0
            n = len(rows)
            out = root / "images"
            warm = studio.submit(GenerationRequest(prompt="warm-up 预热", seed=0, count=n, **args),
                                 origin="api", out_dir=out)
            studio.wait(warm)
            singles = []
            for i in range(opts.runs):
                t1 = time.perf_counter()
                rid = studio.submit(GenerationRequest(prompt=_prompt(i), seed=1000 + i, count=1, **args),
                                    origin="api", out_dir=out)
                res = studio.wait(rid)
                singles.append(time.perf_counter() - t1)
                if res[0].get("status") not in (None, "done"):
                    raise RuntimeError(f"image failed: {res[0].get('error')}")
            batch_s, stats = None, None
            if opts.batch > 1:
                t1 = time.perf_counter()
                rid = studio.submit(GenerationRequest(prompt=_prompt(opts.runs), seed=1, count=opts.batch,
                                                      **args), origin="api", out_dir=out)
                studio.wait(rid)
                batch_s = time.perf_counter() - t1
                stats = studio.request_stats(rid)
            rows = studio.pool_status()
        finally:
            studio.close()
    median = statistics.median(singles)
    gpus = sum(1 for r in rows if str(r["device"]).upper() != "CPU")
    return {
        "mode": "pool",
        "device": ", ".join(sorted({str(r["device"]) for r in rows})),
        "gpus": gpus,
        "workers": [{k: r.get(k) for k in ("name", "device", "load_s", "memory_gb", "images_done", "s_per_image")}
                    for r in rows],
        "model": info.name,
        "dtype": "auto",
        "size": [opts.size, opts.size],
        "steps": opts.steps,
        "profile": settings.memory_profile,
        "fast_path": True,
        "compiled": False,
        "fp8": False,
        "load_s": round(ready_s, 3),
        "compile_warmup_s": 0.0,
        "runs": len(singles),
        "latency_s": {"median": round(median, 4), "min": round(min(singles), 4), "max": round(max(singles), 4),
                      "stdev": round(statistics.stdev(singles), 4) if len(singles) > 1 else 0.0,
                      "all": [round(x, 4) for x in singles]},
        "batch": opts.batch,
        "batch_s": None if batch_s is None else round(batch_s, 3),
        "images_per_min": round(60.0 / median, 2),
        "images_per_min_batched": None if batch_s is None else round(60.0 * opts.batch / batch_s, 2),
        "balance_efficiency": None if stats is None else stats.get("balance_efficiency"),
        "makespan_efficiency": None if stats is None else stats.get("makespan_efficiency"),
        "peak_vram": [{"gpu": i, "worker": r["name"], "memory_gb": r.get("memory_gb")} for i, r in enumerate(rows)
                      if r.get("memory_gb") is not None and str(r["device"]).upper() != "CPU"],
        "notes": ["pool mode: compile warm-up happens inside the workers (not timed separately)"],
    }
