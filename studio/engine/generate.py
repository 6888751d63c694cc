"""One job in, one checked image out: the engine a worker keeps loaded between jobs.

Noise is drawn on the CPU from the job's seed, so a seed means the same image on any device of the
pool; output that is not finite is refused rather than saved as a black square.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from studio.engine.loader import load_pipeline
from studio.engine.precision import choose_dtype


class Cancelled(Exception):
    """The job was cancelled between two steps."""


class NonFiniteOutput(RuntimeError):
    """The model produced NaN or infinite values; nothing was saved."""


StepCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]


@dataclass
class Timings:
    encode_s: float = 0.0
    denoise_s: float = 0.0
    decode_s: float = 0.0
    total_s: float = 0.0


def initial_noise(seed: int, width: int, height: int, channels: int, vae_scale: int) -> torch.Tensor:
    """The starting latents for `seed`, drawn on the CPU in float32 (device-independent)."""
    h = 2 * (height // (vae_scale * 2))
    w = 2 * (width // (vae_scale * 2))
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn((1, channels, h, w), generator=gen, dtype=torch.float32)


class Engine:
    """A loaded pipeline on one device, ready to run jobs one after another."""

    def __init__(self, model_path: str | Path, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None) -> None:
        self.device = torch.device(device)
        self.dtype = dtype or choose_dtype(self.device)
        self.model_path = str(model_path)
        t0 = time.perf_counter()
        self.pipe = load_pipeline(model_path, self.device, self.dtype)
        self.load_s = time.perf_counter() - t0
        self._embeds: dict[str, Any] = {}

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return "CPU"

    def encode(self, prompt: str) -> list[torch.Tensor]:
        """Prompt embeddings, cached for the last few prompts (several seeds of a prompt encode once)."""
        if prompt in self._embeds:
            return self._embeds[prompt]
        with torch.no_grad():
            embeds = self.pipe._encode_prompt(prompt=[prompt], device=self.device, max_sequence_length=512)
        if len(self._embeds) >= 8:
            self._embeds.pop(next(iter(self._embeds)))
        self._embeds[prompt] = embeds
        return embeds

    def generate(self, *, prompt: str, negative_prompt: str = "", width: int, height: int, steps: int,
                 guidance: float, seed: int, on_step: StepCallback | None = None,
                 should_cancel: CancelCheck | None = None) -> tuple[Image.Image, Timings]:
        """Run one image; raises Cancelled or NonFiniteOutput instead of returning a bad image."""
        pipe = self.pipe
        timings = Timings()
        t0 = time.perf_counter()
        embeds = self.encode(prompt)
        negative = self.encode(negative_prompt) if guidance > 0 else None
        timings.encode_s = time.perf_counter() - t0

        latents = initial_noise(seed, width, height, pipe.transformer.config.in_channels, pipe.vae_scale_factor)

        def step_end(_pipe: Any, i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if on_step is not None:
                on_step(i + 1, steps)
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            return kwargs

        if should_cancel is not None and should_cancel():
            raise Cancelled()
        t1 = time.perf_counter()
        with torch.no_grad():
            out = pipe(
                prompt_embeds=embeds,
                negative_prompt_embeds=negative,
                height=height,
                width=width,
                num_inference_steps=steps,
                guidance_scale=guidance,
                latents=latents.to(self.device),
                output_type="latent",
                callback_on_step_end=step_end,
            ).images
        timings.denoise_s = time.perf_counter() - t1
        if not torch.isfinite(out).all():
            raise NonFiniteOutput("The model produced invalid (NaN) values; no image was saved. "
                                  "Try another seed, or float32 precision.")
        t2 = time.perf_counter()
        image = self.decode(out)
        timings.decode_s = time.perf_counter() - t2
        timings.total_s = time.perf_counter() - t0
        return image, timings

    def decode(self, latents: torch.Tensor) -> Image.Image:
        """VAE-decode one latent into a PIL image, refusing non-finite pixels."""
        vae = self.pipe.vae
        with torch.no_grad():
            lat = latents.to(vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor
            pixels = vae.decode(lat, return_dict=False)[0]
        if not torch.isfinite(pixels).all():
            raise NonFiniteOutput("The image decoder produced invalid (NaN) values; no image was saved.")
        arr = ((pixels[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return Image.fromarray(arr.permute(1, 2, 0).cpu().numpy())
