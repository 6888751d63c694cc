"""`zaoxiang bench --workers SPEC`: the same figures through the worker pool, via the Studio facade.

With `--random-weights full|tiny` each worker builds the random-weight pipeline itself (model path
`random:<kind>`), so a pool of full-size workers is measured without a 20 GB folder. Workers compile
the bench's size before they say ready, so the first single image is timed as a person would get it.
`--engine-baseline` first times the same images in this process on one Engine, one after another, and
puts the pool's seconds per image next to it. The history of these requests goes to a throw-away
studio home, never into the person's own history; a model folder is resolved from theirs.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from studio.bench.run import BenchOptions, _prompt, build_engine

BATCH_PROMPT = 99  # the request of `batch` images uses this prompt index, the engine baseline too


def _wait_ready(status: Callable[[], list[dict[str, Any]]], timeout: float = 900.0) -> list[dict[str, Any]]:
    """Block until every worker is idle (loaded and warm), printing their warm-up progress to stderr."""
    deadline = time.monotonic() + timeout
    shown = ""
    while time.monotonic() < deadline:
        rows = status()
        if rows and all(r["state"] == "idle" for r in rows):
            return rows
        bad = [r for r in rows if r["state"] in ("failed", "stopped")]
        if bad:
            raise RuntimeError(f"worker {bad[0]['name']} failed to start: {bad[0].get('last_error') or '?'}")
        line = ", ".join(f"{r['name']} {r['state']}" + (f" {r['warm_pct']:.0f}%" if r.get("warm_pct") is not None
                                                         else "") for r in rows)
        if line != shown:
            print(f"[bench] {line}", file=sys.stderr, flush=True)
            shown = line
        time.sleep(0.1)
    raise TimeoutError(f"workers not ready after {timeout:.0f} s")


def _batch_args(opts: BenchOptions) -> dict[str, Any]:
    return dict(prompt=_prompt(BATCH_PROMPT), width=opts.size, height=opts.size, steps=opts.steps, guidance=0.0)


def engine_baseline(opts: BenchOptions) -> dict[str, Any]:
    """The request's images made one after another on one in-process Engine (warm first), then freed."""
    import torch

    engine, _ = build_engine(replace(opts, profile=opts.profile.split(",")[0]))  # the first worker's
    if engine.compiled:
        engine.warm_up(sizes=((opts.size, opts.size),))
    args = _batch_args(opts)
    engine.generate(seed=0, **{**args, "prompt": "warm-up 预热"})
    times = []
    t0 = time.perf_counter()
    for i in range(opts.batch):
        t1 = time.perf_counter()
        engine.generate(seed=1 + i, **args)
        times.append(time.perf_counter() - t1)
    total = time.perf_counter() - t0
    device = engine.device_name
    del engine
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"device": device, "images": opts.batch, "total_s": round(total, 3),
            "s_per_image": round(total / opts.batch, 4), "median_s": round(statistics.median(times), 4)}


def _model(opts: BenchOptions) -> Any:
    from studio.core.paths import get_paths
    from studio.core.settings import load_settings
    from studio.models.discovery import ModelInfo, resolve_model
    from studio.pool.worker import RANDOM_PREFIX

    if opts.random_weights:
        name = RANDOM_PREFIX + opts.random_weights
        return ModelInfo(path=name, source="random", name=name, format="random", complete=True, size_bytes=0)
    real = get_paths().ensure()
    return resolve_model(opts.model, load_settings(real).model or None, real)


INLINE = "inline:"  # `--workers inline:cpu:2`: the pool's workers as threads of this process


class _InlineStudio:
    """The Studio calls the bench makes, over an InlinePool (no store: the bench's history is thrown away)."""

    def __init__(self, workers: str, info: Any, memory_profile: str | None) -> None:
        from studio.pool.inline import InlinePool
        from studio.pool.spec import parse_workers

        self.pool = InlinePool(parse_workers(workers), model_path=str(info.path), model_name=info.name,
                               memory_profile=memory_profile)
        self.pool_status, self.wait, self.request_stats = self.pool.status, self.pool.wait, self.pool.request_stats

    def start(self) -> None:
        self.pool.start()

    def submit(self, request: Any, origin: str, out_dir: Path) -> str:
        from studio.app import make_jobs

        rid = uuid.uuid4().hex
        self.pool.submit(rid, make_jobs(request, rid, out_dir), origin=origin)
        return rid

    def close(self) -> None:
        self.pool.close()


@contextmanager
def _warm_size(size: int) -> Iterator[None]:
    """The workers compile the size measured before they say ready."""
    from studio.pool.worker import WARM_SIZES_ENV

    old = os.environ.get(WARM_SIZES_ENV)
    os.environ[WARM_SIZES_ENV] = f"{size}x{size}"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(WARM_SIZES_ENV, None)
        else:
            os.environ[WARM_SIZES_ENV] = old


def run_pool(opts: BenchOptions) -> dict[str, Any]:
    """Start the pool and wait until every worker is warm, then time the first single image, more
    single images, and one request of `batch` images spread over the workers. With `--workers
    inline:SPEC` the workers are threads of this process (pool/inline.py): the pool's own cost
    without process boundaries."""
    from studio.app import Studio
    from studio.core.paths import Paths, get_paths
    from studio.core.request import GenerationRequest
    from studio.core.settings import load_settings

    info = _model(opts)
    baseline = engine_baseline(opts) if opts.engine_baseline else None
    settings = load_settings(get_paths().ensure())
    if opts.profile != "auto":
        settings = settings.with_changes(memory_profile=opts.profile)  # "full,24gb": one a worker
    args = dict(width=opts.size, height=opts.size, steps=opts.steps, guidance=0.0, seed_mode="fixed")
    inline = (opts.workers or "").startswith(INLINE)
    with _warm_size(opts.size), tempfile.TemporaryDirectory(prefix="zx-bench-") as tmp:
        root = Path(tmp)
        if inline:
            studio: Any = _InlineStudio((opts.workers or "")[len(INLINE):], info, settings.memory_profile)
        else:
            paths = Paths(root / "config", root / "data", root / "cache", root / "logs", root / "run")
            # the demo model lives in the person's data dir: pass its path so the temp home needs no copy
            studio = Studio(settings=settings, paths=paths, model=info.path, workers=opts.workers)
            studio._model = info  # resolved above (a random-weight label is no folder to look up)
        try:
            t0 = time.perf_counter()
            studio.start()
            rows = _wait_ready(studio.pool_status)
            ready_s = time.perf_counter() - t0
            out = root / "images"
            singles = []
            for i in range(opts.runs + 1):  # the first one right after ready: is the pool warm?
                t1 = time.perf_counter()
                rid = studio.submit(GenerationRequest(prompt=_prompt(i), seed=1000 + i, count=1, **args),
                                    origin="api", out_dir=out)
                res = studio.wait(rid)
                singles.append(time.perf_counter() - t1)
                if res[0].get("status") not in (None, "done"):
                    raise RuntimeError(f"image failed: {res[0].get('error')}")
            first, singles = singles[0], singles[1:]
            batch_s, stats = None, None
            if opts.batch > 1:
                batch = _batch_args(opts)
                t1 = time.perf_counter()
                rid = studio.submit(GenerationRequest(**batch, seed=1, count=opts.batch, seed_mode="increment"),
                                    origin="api", out_dir=out)
                made = studio.wait(rid)
                batch_s = time.perf_counter() - t1
                stats = studio.request_stats(rid)
                for key in ("gpu_s", "write_s", "png_s", "sync_s"):  # in the workers: the engine, the PNG
                    values = [r[key] for r in made if r.get(key) is not None]
                    stats[f"{key}_median"] = round(statistics.median(values), 4) if values else None
            rows = studio.pool_status()
        finally:
            studio.close()
    return _result(opts, info, settings.memory_profile, rows, ready_s, first, singles, batch_s, stats, baseline,
                   executor="threads" if inline else "processes")


def _result(opts: BenchOptions, info: Any, profile: str, rows: list[dict[str, Any]], ready_s: float,
            first: float, singles: list[float], batch_s: float | None, stats: dict[str, Any] | None,
            baseline: dict[str, Any] | None, executor: str = "processes") -> dict[str, Any]:
    """The pool bench's JSON, from its timings and the workers' status rows."""
    median = statistics.median(singles)
    gpus = sum(1 for r in rows if str(r["device"]).upper() != "CPU")
    pool_spi = None if batch_s is None else batch_s / opts.batch
    result = {
        "mode": "pool",
        "executor": executor,
        "device": ", ".join(sorted({str(r["device"]) for r in rows})),
        "gpus": gpus,
        "workers": [{k: r.get(k) for k in ("name", "device", "load_s", "compile_s", "memory_gb", "memory_profile",
                                           "images_done", "s_per_image")} for r in rows],
        "model": info.name,
        "dtype": "auto",
        "size": [opts.size, opts.size],
        "steps": opts.steps,
        "profile": profile,
        "fast_path": True,
        "compiled": any((r.get("compile_s") or 0) > 0 for r in rows),
        "fp8": False,
        "load_s": round(ready_s, 3),
        "compile_warmup_s": round(max((r.get("compile_s") or 0.0) for r in rows), 3),
        "first_image_s": round(first, 4),
        "first_vs_median": round(first / median, 3),
        "runs": len(singles),
        "latency_s": {"median": round(median, 4), "min": round(min(singles), 4), "max": round(max(singles), 4),
                      "stdev": round(statistics.stdev(singles), 4) if len(singles) > 1 else 0.0,
                      "all": [round(x, 4) for x in singles]},
        "batch": opts.batch,
        "batch_s": None if batch_s is None else round(batch_s, 3),
        "images_per_min": round(60.0 / median, 2),
        "images_per_min_batched": None if batch_s is None else round(60.0 * opts.batch / batch_s, 2),
        "pool_s_per_image": None if pool_spi is None else round(pool_spi, 4),
        "balance_efficiency": None if stats is None else stats.get("balance_efficiency"),
        "makespan_efficiency": None if stats is None else stats.get("makespan_efficiency"),
        "batch_stats": stats,
        "peak_vram": [{"gpu": i, "worker": r["name"], "memory_gb": r.get("memory_gb")} for i, r in enumerate(rows)
                      if r.get("memory_gb") is not None and str(r["device"]).upper() != "CPU"],
        "notes": ["pool mode: workers compile the bench size before ready (compile_warmup_s: the slowest)"],
    }
    if baseline is not None:
        result["engine"] = baseline
        if pool_spi is not None:
            # 1.0: the pool adds nothing to the engine's own time; per GPU: times the number of workers
            ratio = pool_spi / baseline["s_per_image"]
            result["pool_vs_engine"] = round(ratio, 4)
            result["pool_vs_engine_per_worker"] = round(ratio * len(rows), 4)
    return result
