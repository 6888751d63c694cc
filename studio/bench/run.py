"""`zaoxiang bench`, in process: load (or build) one Engine and time what a person waits for.

Every timed image uses a new prompt, so text encoding is paid each time, and VAE decode is included;
the figures come out both as JSON and as a Markdown table in the reference deployment's shape.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any

from studio.core.spec import ImageSpec

# Bilingual prompts of varied lengths: each timed run takes the next one, never a cached embedding.
PROMPTS = (
    "a red circle on a blue background",
    "蓝色背景上的红色圆形",
    "a cat sitting on a windowsill at sunset, warm light, photo",
    "一只小猫坐在窗台上，夕阳，暖色调，照片",
    "a mountain landscape with a lake in the foreground, early morning mist, realistic style",
    "城市夜景，霓虹灯，雨后的街道倒映着灯光，电影感",
    "portrait of a girl in a flower field, soft focus background, 35mm photo, natural colors",
    "一个男孩在海边放风筝，蓝天白云，画面明亮",
    "a small green triangle in the center of a large white square background, minimal drawing",
    "山水画风格的风景：远山、瀑布、松树和一座小桥，水墨",
    "a dog running through a field of yellow flowers under a clear blue sky, high detail",
    "黄色背景上的紫色星形",
)


@dataclass
class BenchOptions:
    random_weights: str | None = None  # "full" | "tiny" | None (load `model`)
    model: str | None = None
    device: str | None = None
    size: int = 1024
    steps: int = 9
    batch: int = 4
    runs: int = 5
    profile: str = "auto"
    fast: bool = True
    compile: bool | None = None
    fp8: bool = False
    attention: str | None = None
    workers: str | None = None
    engine_baseline: bool = False  # pool mode: time the batch's images on one in-process Engine first
    extra: dict[str, Any] = field(default_factory=dict)


def _prompt(i: int) -> str:
    base = PROMPTS[i % len(PROMPTS)]
    return base if i < len(PROMPTS) else f"{base} ({i})"


def _gib(n: float) -> float:
    return round(n / 1024**3, 2)


def build_engine(opts: BenchOptions):
    """The Engine the bench measures (random weights built on the device, or a model folder)."""
    import torch

    from studio.engine.generate import Engine
    from studio.engine.precision import choose_dtype

    device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    common = dict(fast_path=opts.fast, memory_profile=opts.profile, fp8=opts.fp8, compile=opts.compile,
                  attention=opts.attention, warm="none")
    t0 = time.perf_counter()
    if opts.random_weights:
        from studio.engine.random_pipeline import build_random_pipeline

        dtype = choose_dtype(device)
        pipe = build_random_pipeline(opts.random_weights, device, dtype)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        engine = Engine(f"random:{opts.random_weights}", device, dtype, pipe=pipe, **common)
    else:
        from studio.core.paths import get_paths
        from studio.core.settings import load_settings
        from studio.models.discovery import resolve_model

        paths = get_paths().ensure()
        info = resolve_model(opts.model, load_settings(paths).model or None, paths)
        engine = Engine(info.path, device, **common)
    return engine, time.perf_counter() - t0


def run_in_process(opts: BenchOptions) -> dict[str, Any]:
    """Load, warm, then time single images (new prompt each) and one batch; returns all figures."""
    import torch

    engine, load_s = build_engine(opts)
    cuda = engine.device.type == "cuda"
    size, steps = opts.size, opts.steps
    warm = ImageSpec(prompt="warm-up 预热", width=size, height=size, steps=steps, guidance=0.0)

    compile_s = engine.warm_up(sizes=((size, size),), batches=tuple(sorted({1, opts.batch}))) \
        if engine.compiled else 0.0
    if cuda:
        torch.cuda.reset_peak_memory_stats(engine.device)
    t0 = time.perf_counter()
    engine.generate(warm)  # first full image: kernels, allocator, cuDNN plans
    first_image_s = time.perf_counter() - t0

    singles, parts = [], []
    for i in range(opts.runs):
        t0 = time.perf_counter()
        _, tm = engine.generate(replace(warm, prompt=_prompt(i), seed=1000 + i))
        singles.append(time.perf_counter() - t0)
        parts.append(tm)

    batch_s = batch_warm_s = None
    if opts.batch > 1:
        # one untimed batch first: a new batch size compiles (the VAE decodes the batch in one go)
        t0 = time.perf_counter()
        engine.generate_batch([warm.with_seed(s) for s in range(opts.batch)])
        batch_warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        images, _ = engine.generate_batch([replace(warm, prompt=_prompt(opts.runs), seed=s)
                                           for s in range(opts.batch)])
        batch_s = time.perf_counter() - t0
        assert len(images) == opts.batch

    median = statistics.median(singles)
    result: dict[str, Any] = {
        "mode": "in-process",
        "device": engine.device_name,
        "gpus": 1 if cuda else 0,
        "model": engine.model_path,
        "dtype": str(engine.dtype).replace("torch.", ""),
        "size": [size, size],
        "steps": steps,
        "profile": engine.profile.name,
        "fast_path": engine.fast_path,
        "attention": engine.attention,
        "compiled": engine.compiled,
        "fp8": engine.fp8,
        "load_s": round(load_s, 3),
        "compile_warmup_s": round(compile_s or 0.0, 3),
        "first_image_s": round(first_image_s, 3),
        "runs": len(singles),
        "latency_s": {
            "median": round(median, 4),
            "min": round(min(singles), 4),
            "max": round(max(singles), 4),
            "stdev": round(statistics.stdev(singles), 4) if len(singles) > 1 else 0.0,
            "all": [round(x, 4) for x in singles],
        },
        "encode_s_median": round(statistics.median(t.encode_s for t in parts), 4),
        "denoise_s_median": round(statistics.median(t.denoise_s for t in parts), 4),
        "decode_s_median": round(statistics.median(t.decode_s for t in parts), 4),
        "batch": opts.batch,
        "batch_s": None if batch_s is None else round(batch_s, 3),
        "batch_warm_s": None if batch_warm_s is None else round(batch_warm_s, 3),
        "images_per_min": round(60.0 / median, 2),
        "images_per_min_batched": None if batch_s is None else round(60.0 * opts.batch / batch_s, 2),
        "notes": list(engine.notes),
    }
    if cuda:
        total = torch.cuda.get_device_properties(engine.device).total_memory
        peak_alloc = torch.cuda.max_memory_allocated(engine.device)
        peak_res = torch.cuda.max_memory_reserved(engine.device)
        result["peak_vram"] = [{"gpu": 0, "allocated_gib": _gib(peak_alloc), "reserved_gib": _gib(peak_res),
                                "total_gib": _gib(total), "use_pct": round(100 * peak_res / total, 1)}]
    else:
        result["peak_vram"] = []
    return result


def markdown_table(result: dict[str, Any]) -> str:
    """The reference deployment's table: 单卡 / 双卡 × single image, batch of 4, VRAM use.

    One bench run fills the column of its own configuration (in-process: 单卡; a pool of two
    workers: 双卡); the other column says it was not run.
    """
    lat = result["latency_s"]
    single = f"{lat['median']:.2f} s (min {lat['min']:.2f}, max {lat['max']:.2f}, n={result['runs']})"
    batch = "—" if result.get("batch_s") is None else f"{result['batch_s']:.2f} s"
    vram = "—"
    peaks = result.get("peak_vram") or []
    if peaks and "use_pct" in peaks[0]:
        v = peaks[0]
        vram = f"{v['use_pct']:.0f}% ({v['reserved_gib']:.1f} / {v['total_gib']:.0f} GiB)"
    elif peaks:
        vram = ", ".join(f"{p['worker']}: {p['memory_gb']} GB" for p in peaks)
    n_workers = len(result.get("workers") or []) or 1
    values = [single, batch, vram, f"{result['images_per_min']:.1f}"]
    if result["mode"] == "pool":
        values.append("—" if result.get("balance_efficiency") is None else f"{result['balance_efficiency']:.2f}")
    blank = ["— (not run)"] * len(values)
    one, two = (values, blank) if n_workers == 1 else (blank, values)
    labels = ["单张图像生成时间 (one image)", f"批量生成({result.get('batch', 4)}张)时间 (batch)",
              "显存使用率 (peak VRAM)", "每分钟图像数 (images/min)", "负载均衡效率 (balance)"]
    rows = ["| 指标 (metric) | 单卡 (1 worker) | " + ("双卡 (2 workers)" if n_workers <= 2 else f"{n_workers} workers")
            + " |", "| --- | --- | --- |"]
    rows += [f"| {label} | {a} | {b} |" for label, a, b in zip(labels, one, two)]
    extra = "" if result["mode"] != "pool" else f" · pool of {n_workers} ({result['device']})"
    head = (f"{result['device']} · {result['model']} · {result['size'][0]}×{result['size'][1]} · "
            f"{result['steps']} steps · {result['dtype']} · profile {result['profile']} · "
            f"{'fast path' if result['fast_path'] else 'stock path'}"
            f"{' + compile' if result['compiled'] else ''}{' + fp8' if result['fp8'] else ''} · "
            f"load {result['load_s']:.1f} s · compile warm-up {result['compile_warmup_s']:.1f} s{extra}")
    return head + "\n\n" + "\n".join(rows)
