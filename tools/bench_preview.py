"""What live previews cost: per preview, and as a share of the denoising time under the throttle.

    python tools/bench_preview.py                          # demo model on the CPU
    python tools/bench_preview.py --device cuda --model /path/to/Z-Image-Turbo --size 1024 --steps 9

Runs the real pipeline with the previewer fed after every step, three ways: no previews, the default
throttle, and a preview after every step (the throttle's budget off) — the last shows the raw cost.
Also times each decoder alone on one image's latents of each size (the tiny autoencoder with the
TAEF1 shape and drawn weights when none is on disk: the same arithmetic, not its colours).
Prints a Markdown table and, with --json, the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any


def run(pipe: Any, embeds: Any, previewer: Any, size: int, steps: int, seed: int) -> tuple[float, list[float]]:
    """Denoise one image (no decode), the previewer offered every step; (denoise_s, step times)."""
    import torch

    from studio.engine import preview as pv
    from studio.engine.generate import initial_noise

    latents = initial_noise(seed, size, size, pipe.transformer.config.in_channels, pipe.vae_scale_factor)
    latents = latents.to(pipe.transformer.device)
    marks = [time.perf_counter()]
    if previewer is not None:
        previewer.begin(latents)

    def step_end(p: Any, i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if previewer is not None:
            previewer.offer(i + 1, steps, kwargs["latents"], *pv.step_sigmas(p.scheduler))
        marks.append(time.perf_counter())
        return kwargs

    with torch.no_grad():
        out = pipe(prompt_embeds=embeds, height=size, width=size, num_inference_steps=steps, guidance_scale=0.0,
                   latents=latents, output_type="latent", callback_on_step_end=step_end).images
    if out.device.type == "cuda":
        torch.cuda.synchronize()
    if previewer is not None:
        previewer.end()
    return time.perf_counter() - marks[0], [b - a for a, b in zip(marks, marks[1:])]


def decoder_costs(projection: Any, device: Any, sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    import torch
    from diffusers import AutoencoderTiny

    from studio.engine import preview as pv

    tiny = AutoencoderTiny(latent_channels=16).to(device).eval()  # TAEF1's shape
    rows = []
    for size in sizes:
        z = torch.randn(1, 16, size // 8, size // 8, device=device)
        for name, prv in (("linear", pv.Previewer(projection)), ("tiny autoencoder", pv.Previewer(projection, tiny))):
            prv.calibrate(z)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                prv.calibrate(z)
                times.append(time.perf_counter() - t0)
            rows.append({"decoder": name, "size": size, "median_ms": round(1000 * statistics.median(times), 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: the demo model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from studio.engine import preview as pv
    from studio.engine.generate import Engine
    from studio.models.demo import ensure_demo_model

    model = args.model or ensure_demo_model()
    engine = Engine(model, args.device)
    pipe, device = engine.pipe, torch.device(args.device)
    embeds = engine.encode("a red star on a white background")
    projection = pv.projection_for(pipe.vae, model)
    previewer = pv.make_previewer(pipe, model, device)
    run(pipe, embeds, None, args.size, args.steps, 0)  # warm
    result: dict[str, Any] = {"model": str(model), "device": engine.device_name, "size": args.size,
                              "steps": args.steps, "method": previewer.method.value}
    modes = ("none", "throttled", "every step")
    figures: dict[str, dict[str, list[float]]] = {m: {"denoise": [], "steps": [], "shares": [], "costs": []}
                                                   for m in modes}
    for n in range(args.runs):  # the modes interleaved, so a busier moment of the machine hits all three
        for mode in modes:
            prv, got = None, []
            if mode != "none":
                prv = pv.Previewer(previewer.projection, previewer.tiny, on_preview=got.append)
                if mode == "every step":
                    prv.throttle = pv.Throttle(budget=1.0, min_interval_s=0.0)
            total, times = run(pipe, embeds, prv, args.size, args.steps, n + 1)
            f = figures[mode]
            f["denoise"].append(total)
            f["steps"] += times
            if prv is not None:
                f["shares"].append(prv.throttle.share())
                f["costs"] += [p.cost_s for p in got]
    for mode, f in figures.items():
        result[mode] = {"denoise_s": round(statistics.median(f["denoise"]), 4),
                        "step_ms": round(1000 * statistics.median(f["steps"]), 3),
                        "previews_per_image": round(len(f["costs"]) / args.runs, 1),
                        "preview_ms": round(1000 * statistics.median(f["costs"]), 3) if f["costs"] else None,
                        "share": round(statistics.median(f["shares"]), 4) if f["shares"] else None}
    result["decoders"] = decoder_costs(projection, device, [256, 1024], max(5, args.runs))
    base = result["none"]["denoise_s"]
    print(f"{engine.device_name}, {args.size}x{args.size}, {args.steps} steps, {args.runs} runs, "
          f"previewer: {previewer.method.value}")
    print("| mode | denoise s (median) | step ms | previews / image | ms / preview | share (throttle) | vs none |")
    print("|---|---|---|---|---|---|---|")
    for mode in modes:
        r = result[mode]
        print(f"| {mode} | {r['denoise_s']} | {r['step_ms']} | {r['previews_per_image']} | {r['preview_ms']} | "
              f"{r['share']} | {100 * (r['denoise_s'] / base - 1):+.1f} % |")
    for row in result["decoders"]:
        print(f"decoder {row['decoder']}, {row['size']} px image: {row['median_ms']} ms per preview")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
