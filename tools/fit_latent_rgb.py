"""Fit a model's latent-to-RGB preview projection and store it beside its VAE (`vae/latent_rgb.json`).

    python tools/fit_latent_rgb.py assets/demo-model                 # the demo model's shipped fit
    python tools/fit_latent_rgb.py /path/to/model --prompts p.txt    # any model, its own prompts
    python tools/fit_latent_rgb.py /path/to/model --vae-only         # from the VAE alone

By default the fit is on the model's own images (final latents and their decodes), which matches
what previews show far better than calibration images through the VAE (docs/benchmarks.md).
Models in the Flux latent space (Z-Image) need none: the published factors apply. Without the file
the previewer fits from the VAE alone at load.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

# The demo model draws one flat shape on a flat background; its prompts span every colour pair.
COLORS = ("red", "green", "blue", "yellow", "white", "black", "purple", "orange", "pink", "gray")
SHAPES = ("circle", "square", "triangle", "star", "heart", "ring", "cross", "diamond")


def demo_prompts(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        shape_color, background = rng.sample(COLORS, 2)
        out.append(f"a {shape_color} {rng.choice(SHAPES)} on a {background} background")
    return out


def fit_on_generations(model: Path, prompts: list[str], size: int, steps: int):
    import torch

    from studio.engine.generate import initial_noise
    from studio.engine.loader import load_pipeline
    from studio.engine.preview import decode_model_space, least_squares

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_pipeline(model, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    latents, pixels = [], []
    with torch.no_grad():
        for n, prompt in enumerate(prompts):
            noise = initial_noise(1000 + n, size, size, pipe.transformer.config.in_channels, pipe.vae_scale_factor)
            out = pipe(prompt=prompt, height=size, width=size, num_inference_steps=steps, guidance_scale=0.0,
                       latents=noise.to(device), output_type="latent").images
            latents.append(out.float().cpu())
            pixels.append(decode_model_space(pipe.vae, out).float().cpu())
    return least_squares(torch.cat(latents), torch.cat(pixels),
                         f"least squares on {len(prompts)} of the model's own {size}px images")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a diffusers model folder with a vae/ subfolder")
    parser.add_argument("--prompts", type=Path, help="one prompt a line (default: the demo model's kind)")
    parser.add_argument("--images", type=int, default=40, help="images to generate or draw (default 40)")
    parser.add_argument("--size", type=int, default=256, help="their side in pixels (default 256)")
    parser.add_argument("--steps", type=int, default=8, help="denoising steps (default 8)")
    parser.add_argument("--vae-only", action="store_true", help="fit on calibration images through the VAE")
    args = parser.parse_args()

    from studio.core.atomic import atomic_path
    from studio.engine.preview import PROJECTION_FILE, calibration_images, fit_projection

    t0 = time.perf_counter()
    if args.vae_only:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(args.model / "vae", local_files_only=True).eval()
        projection = fit_projection(vae, calibration_images(args.images, args.size))
    else:
        prompts = (args.prompts.read_text("utf-8").split("\n") if args.prompts else demo_prompts(args.images))
        projection = fit_on_generations(args.model, [p for p in prompts if p.strip()][:args.images],
                                        args.size, args.steps)
    target = args.model / "vae" / PROJECTION_FILE
    with atomic_path(target) as tmp:
        Path(tmp).write_text(projection.to_json() + "\n", "utf-8")
        Path(tmp).chmod(0o644)  # shipped with the model: readable like its other files
    print(f"{target}: fitted in {time.perf_counter() - t0:.1f} s ({projection.source})")


if __name__ == "__main__":
    main()
