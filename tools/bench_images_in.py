"""GPU figures for images in (issue 20): img2img, inpaint, ControlNet and hires fix against text-to-image.

    python tools/bench_images_in.py --profile 24gb --out /tmp/zx-out            # full size, random weights
    python tools/bench_images_in.py --arch tiny --device cpu --size 256 --steps 4 --runs 1   # smoke run

Everything runs in one process on one Engine (random full-size Z-Image-Turbo weights built on the
device, the engine's default fast path and the chosen memory profile) and ControlNets with random
weights of the published Fun-Controlnet-Union layouts (`--controlnet-layout 2.1,1.0,lite`, scaled
down with `--arch tiny`), drawn before the Engine and kept in CPU memory until their rows, when the
Engine makes room for them (studio/engine/memory.py) and moves them to the device.
Per task: seconds per image (median of `--runs` after one warm run, new seed each) and the peak
memory allocated in the first run and in the timed ones; the ratio to text-to-image is what issue 20
sets targets for (img2img ≈ strength × text-to-image, ControlNet ≤ 1.3×). Per task also its
encode/denoise/decode split and the graphs dynamo traced during it (0 once warm: nothing
recompiles). ControlNet rows run with control end 1.0 and each of `--control-ends`, eager and/or
compiled (`--controlnet-compile`). `--cap-gib` caps the process's CUDA allocator (a smaller card):
a row over it reports "out of memory" and the meta's `fits_cap` says whether every row ran within
it; the meta also holds where the text encoder went for each ControlNet (`placements`) and the FLOP
floor (ControlNet work per step against the transformer's, from the configs). `--host-timesteps`
times the image pipelines with their schedule in CPU memory. Writes `images_in.json` and a
Markdown table under `--out`; without CUDA everything runs, with no memory figures.

    python tools/bench_images_in.py --profile 24gb --cap-gib 22 --runs 2 --controlnet-layout 2.1,1.0 \
        --control-ends 0.5 --host-timesteps both --out $OUT/imgin-cap22
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from studio.models.controlnets import places_for  # noqa: E402

PROMPT = "a lighthouse on a rocky coast at dusk, waves, warm light 黄昏时礁石海岸上的灯塔"


# Published Fun-Controlnet-Union layouts at full size: control layers, control input channels, and how
# its noise refiner works (diffusers' `add_control_noise_refiner`): 2.x (and lite) run their own refiner
# blocks whose hints land on the transformer's noise refiners and take 33 input channels (control,
# mask, masked image); 1.0 takes the 16 latent channels and runs plain refiner blocks on its own input.
LAYOUTS: dict[str, tuple[int, str, str | None]] = {
    "2.1": (15, "33", "control_noise_refiner"),
    "1.0": (6, "latent", None),
    "lite": (3, "33", "control_noise_refiner"),
}


def published_config(transformer_config: dict[str, Any], layout: str = "2.1") -> dict[str, Any]:
    """A Fun-Controlnet-Union layout on the given transformer (scaled down with its depth for --arch tiny);
    hints evenly from block 0, the rule studio/models/controlnets.py reads single files with."""
    n_layers = transformer_config["n_layers"]
    n_control, in_dim, mode = LAYOUTS[layout]
    n_control = max(1, round(n_control * min(1.0, n_layers / 30)))
    return {
        "control_layers_places": places_for(n_control, n_layers),
        "control_refiner_layers_places": list(range(transformer_config["n_refiner_layers"]))
        if mode == "control_noise_refiner" else [],
        "control_in_dim": 33 if in_dim == "33" else transformer_config["in_channels"],
        "add_control_noise_refiner": mode,
        "all_patch_size": list(transformer_config["all_patch_size"]),
        "all_f_patch_size": list(transformer_config["all_f_patch_size"]),
        "dim": transformer_config["dim"], "n_refiner_layers": transformer_config["n_refiner_layers"],
        "n_heads": transformer_config["n_heads"], "n_kv_heads": transformer_config["n_kv_heads"],
        "norm_eps": transformer_config["norm_eps"], "qk_norm": transformer_config["qk_norm"],
    }


def random_controlnet(transformer_config: dict[str, Any], device: torch.device, dtype: torch.dtype,
                      layout: str = "2.1") -> Any:
    """Random weights of `layout`, drawn on `device` (fast on a GPU) and returned in CPU memory: the
    Engine moves it to the device when it is adopted, after making room for it."""
    from diffusers import ZImageControlNetModel

    torch.manual_seed(0)
    with torch.device(device):
        model = ZImageControlNetModel(**published_config(transformer_config, layout)).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "norm" not in name:
                p.normal_(0.0, 0.02)
    model = model.to("cpu").eval()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return model


def block_flops(tokens: int, dim: int, hidden: int, extra_linears: int = 0) -> float:
    """One Z-Image block's multiply-adds ×2 on `tokens` tokens: q/k/v/out, the SwiGLU feed-forward,
    `extra_linears` dim×dim projections (a control block's hint), and attention's two matmuls."""
    return 2 * tokens * ((4 + extra_linears) * dim * dim + 3 * dim * hidden) + 4 * tokens * tokens * dim


def control_flop_ratio(tr: dict[str, Any], cn: dict[str, Any], image_tokens: int, cap_tokens: int) -> float:
    """ControlNet FLOPs per step over the transformer's (both without the small embedders).

    The ControlNet reruns the transformer's noise and context refiners (its hints may change the
    first), its own refiner stage on the image tokens (diffusers' `add_control_noise_refiner`:
    control blocks whose hints reach the noise refiners, the control layers themselves, or plain
    blocks on the control input), and one block per control layer on image + caption."""
    dim = tr["dim"]
    hidden = int(dim / 3 * 8)
    unified = image_tokens + cap_tokens
    refiners = tr["n_refiner_layers"] * (block_flops(image_tokens, dim, hidden) + block_flops(cap_tokens, dim, hidden))
    transformer = refiners + tr["n_layers"] * block_flops(unified, dim, hidden)
    n_control = len(cn["control_layers_places"])
    mode = cn.get("add_control_noise_refiner")
    if mode == "control_layers":
        own_refiners = n_control * block_flops(image_tokens, dim, hidden, 1)
    elif mode == "control_noise_refiner":
        own_refiners = cn["n_refiner_layers"] * block_flops(image_tokens, dim, hidden, 1)
    else:
        own_refiners = cn["n_refiner_layers"] * block_flops(image_tokens, dim, hidden)
    control = refiners + own_refiners + n_control * block_flops(unified, dim, hidden, 1)
    return control / transformer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, runs: int, fn: Any) -> dict[str, Any]:
    """One warm run, then `runs` timed ones (seeds 1..runs); seconds, their split, peak memory, and the
    graphs dynamo traced in the warm run and in the timed ones (the latter should be 0)."""
    from torch._dynamo.utils import counters

    cuda = device.type == "cuda"
    graphs0 = counters["stats"]["unique_graphs"]
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    fn(0)
    sync(device)
    warm_s = time.perf_counter() - t0  # a first image's cost, compiles included
    graphs1 = counters["stats"]["unique_graphs"]
    first = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times, parts = [], []
    for seed in range(1, runs + 1):
        sync(device)
        t0 = time.perf_counter()
        got = fn(seed)
        sync(device)
        times.append(time.perf_counter() - t0)
        t = got.timings if hasattr(got, "timings") else got[1]
        parts.append((t.encode_s, t.denoise_s, t.decode_s))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    reserved = torch.cuda.max_memory_reserved(device) / 2**30 if cuda else None
    split = {name: round(statistics.median(p[i] for p in parts), 4) for i, name in enumerate(("encode_s", "denoise_s",
                                                                                              "decode_s"))}
    return {"s_per_image": round(statistics.median(times), 4), "runs": [round(t, 4) for t in times],
            "peak_gib": round(peak, 2) if peak is not None else None,
            "peak_first_run_gib": round(first, 2) if first is not None else None,
            "reserved_gib": round(reserved, 2) if reserved is not None else None, **split,
            "warm_run_s": round(warm_s, 2), "graphs_warm_run": graphs1 - graphs0, "graphs_timed": counters["stats"]["unique_graphs"] - graphs1}


def vae_encode_s(engine: Any, size: int, runs: int) -> float:
    """Seconds of one VAE encode of a size x size image (the fixed cost image-to-image adds), median."""
    from studio.engine.memory import use_tiling

    vae, device = engine.pipe.vae, engine.device
    vae.use_tiling = device.type == "cuda" and use_tiling(engine.profile, size, size)
    x = torch.empty(1, 3, size, size, device=device, dtype=vae.dtype).uniform_(-1, 1)
    times = []
    with torch.no_grad():
        for _ in range(runs + 1):
            sync(device)
            t0 = time.perf_counter()
            vae.encode(x)
            sync(device)
            times.append(time.perf_counter() - t0)
    return round(statistics.median(times[1:]), 4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/zx-out")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="full")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=9)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--profile", default="auto", help="memory profile: auto, full, 24gb, 16gb, 12gb")
    p.add_argument("--cap-gib", type=float, default=None, help="cap the process's GPU memory (emulate a card)")
    p.add_argument("--hires-scale", type=float, default=2.0)
    p.add_argument("--controlnet-compile", default="on", choices=("on", "off", "both"),
                   help="the ControlNet's blocks compiled (on), eager (off), or both in turn (eager rows first)")
    p.add_argument("--control-ends", default="0.5", help="comma list of control ends timed besides 1.0")
    p.add_argument("--tasks", default="", help="comma list of task-name prefixes to run (default: all)")
    p.add_argument("--controlnet-layout", default="2.1",
                   help=f"comma list of Fun-Controlnet-Union layouts to time in turn: {', '.join(LAYOUTS)}")
    p.add_argument("--host-timesteps", default="on", choices=("off", "on", "both"),
                   help="the image pipelines' schedule in CPU memory (ImagesIn.host_timesteps): off, on, or both "
                        "(extra 'host' rows for img2img s=1.0, each ControlNet at end 1.0 and the hires fix)")
    args = p.parse_args(argv)
    layouts = [x.strip() for x in args.controlnet_layout.split(",") if x.strip()]
    if unknown := [x for x in layouts if x not in LAYOUTS]:
        p.error(f"unknown ControlNet layout {', '.join(unknown)}; choose from {', '.join(LAYOUTS)}")

    from studio.engine.generate import Engine
    from studio.engine.images_in import ControlInput, Hires, ImageInputs, ImagesIn
    from studio.engine.memory import GiB, cap_process_memory
    from studio.engine.precision import choose_dtype
    from studio.engine.random_pipeline import build_random_pipeline
    from studio.models.architecture import ARCHITECTURES

    device = torch.device(args.device)
    dtype = choose_dtype(device)
    # The ControlNets are drawn first (on the device, kept in CPU memory), so that the device holds
    # only the Engine until one is adopted: peak memory and the cap then see what a user's card would.
    if args.arch not in ARCHITECTURES:
        p.error(f"unknown --arch {args.arch}; choose from {', '.join(ARCHITECTURES)}")
    tr_config = dict(ARCHITECTURES[args.arch].transformer)
    spare = {layout: random_controlnet(tr_config, device, dtype, layout) for layout in layouts}
    fraction = cap_process_memory(device, args.cap_gib)
    pipe = build_random_pipeline(args.arch, device, dtype)
    engine = Engine(f"random:{args.arch}", device, dtype, pipe=pipe, memory_profile=args.profile, warm="none")
    engine.warm_up(sizes=((args.size, args.size),))  # the one size timed here (each task's warm run does the rest)
    images_in = ImagesIn(engine)
    images_in.host_timesteps = args.host_timesteps == "on"
    size, steps = args.size, args.steps
    base = dict(prompt=PROMPT, width=size, height=size, steps=steps, guidance=0.0)
    picture, _ = engine.generate(seed=123, **base)
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))

    def run(inputs: ImageInputs) -> Any:
        return lambda seed: images_in.run(seed=seed, inputs=inputs, **base)

    def hosted(fn: Any) -> Any:
        """`fn` with the host schedule (the rows --host-timesteps both adds)."""
        def go(seed: int) -> Any:
            images_in.host_timesteps = True
            try:
                return fn(seed)
            finally:
                images_in.host_timesteps = False
        return go

    both = args.host_timesteps == "both"
    held: dict[str, Any] = {}
    placements: dict[str, Any] = {}

    def adopt(layout: str, compiled: bool) -> None:
        """The layout's ControlNet onto the device (the one before it dropped first), blocks compiled or not."""
        if held.get("layout") != layout:
            held.clear()  # with ImagesIn dropping it too, the previous one leaves the device
            held.update(layout=layout, model=spare.pop(layout))
        images_in.adopt_controlnet(f"random-union-{layout}", held["model"], compiled)
        plan = images_in.placement
        placements[layout] = {"text_encoder": plan.text_encoder, "controlnet_gib": round(plan.extra_gib, 3),
                              "planned_gib": round(plan.planned_gib, 2), "budget_gib": plan.budget_gib}

    tasks: dict[str, Any] = {"text2img": lambda seed: engine.generate(seed=seed, **base)}
    for s in (0.3, 0.6, 1.0):
        tasks[f"img2img s={s}"] = run(ImageInputs(init_image=picture, strength=s))
    if both:
        tasks["img2img s=1.0 host"] = hosted(tasks["img2img s=1.0"])
    tasks["inpaint"] = run(ImageInputs(init_image=picture, mask=mask, mask_blur=8))
    ends = [1.0] + [float(e) for e in args.control_ends.split(",") if e.strip()]
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.controlnet_compile]
    for layout in layouts:
        label = f"random-union-{layout}"
        named = "" if layouts == ["2.1"] else f" {layout}"  # the 2.1 rows keep last session's names
        for compiled in modes:
            tag = "compiled" if compiled else "eager"
            # adopted at the task's turn: eager rows first, then the same ControlNet with compiled blocks
            tasks[f"adopt{named} {tag}"] = lambda _l=layout, _c=compiled: adopt(_l, _c)
            for end in ends:
                ctl = ControlInput(image=picture, controlnet=label, kind="canny", end=end)
                tasks[f"controlnet{named} {tag} end={end}"] = run(ImageInputs(control=ctl))
                if both and end == 1.0:
                    tasks[f"controlnet{named} {tag} end={end} host"] = hosted(tasks[f"controlnet{named} {tag} end={end}"])
            if LAYOUTS[layout][1] == "33":  # 1.0 has no inpaint channels: diffusers refuses it there
                ctl = ControlInput(image=picture, controlnet=label, kind="canny")
                tasks[f"controlnet{named} inpaint {tag}"] = run(ImageInputs(init_image=picture, mask=mask, control=ctl))
    hires = f"hires {size}->{int(size * args.hires_scale)} s=0.35"
    tasks[hires] = run(ImageInputs(hires=Hires(scale=args.hires_scale, strength=0.35)))
    if both:
        tasks[f"{hires} host"] = hosted(tasks[hires])
    wanted = [w.strip() for w in args.tasks.split(",") if w.strip()]
    results: dict[str, Any] = {}
    for name, fn in tasks.items():
        if name.startswith("adopt"):
            fn()
            continue
        if wanted and name != "text2img" and not any(name.startswith(w) for w in wanted):
            continue
        try:
            results[name] = timed(device, args.runs, fn)
        except torch.OutOfMemoryError as exc:
            results[name] = {"error": f"out of memory: {str(exc)[:200]}"}
            torch.cuda.empty_cache()
        except Exception as exc:  # noqa: BLE001 - one broken row must not cost the other figures
            results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        print(name, results[name], flush=True)
    t2i = results["text2img"].get("s_per_image")
    lines = ["| task | s/image | × text-to-image | encode / denoise / decode s | first run s | graphs first / timed "
             "| peak GiB (first run) |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | {r['error'][:60]} | | | | | |")
            continue
        ratio = f"{r['s_per_image'] / t2i:.2f}" if t2i else ""
        peak = f"{r['peak_gib']} ({r['peak_first_run_gib']})" if r["peak_gib"] is not None else ""
        lines.append(f"| {name} | {r['s_per_image']:.3f} | {ratio} | {r['encode_s']:.3f} / {r['denoise_s']:.3f} / "
                     f"{r['decode_s']:.3f} | {r['warm_run_s']} | {r['graphs_warm_run']} / {r['graphs_timed']} | "
                     f"{peak} |")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    cap = args.cap_gib
    peaks = [max(r["peak_gib"], r["peak_first_run_gib"]) for r in results.values() if r.get("peak_gib") is not None]
    fits = None if cap is None or device.type != "cuda" else \
        not any("error" in r for r in results.values()) and max(peaks, default=0.0) <= cap
    tr = dict(pipe.transformer.config)
    meta = {"device": device_name, "arch": args.arch, "size": size, "steps": steps, "profile": engine.profile.name,
            "host_timesteps": args.host_timesteps, "cap_gib": cap, "cap_fraction": fraction, "fits_cap": fits,
            "total_gib": round(torch.cuda.get_device_properties(device).total_memory / GiB, 2)
            if device.type == "cuda" else None,
            "compiled": engine.compiled, "notes": engine.notes, "placements": placements,
            "vae_encode_s": vae_encode_s(engine, size, max(args.runs, 3)),
            "controlnet_flops_per_step_vs_transformer": {
                layout: round(control_flop_ratio(tr, published_config(tr, layout), (size // 16) ** 2, 64), 3)
                for layout in layouts}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "images_in.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2), "utf-8")
    (out / "images_in.md").write_text(f"{meta}\n\n" + "\n".join(lines) + "\n", "utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
