"""The VAE decode every image ends with, and the clock that times it apart from denoising.

A mixin of `Engine` (engine/generate.py), kept apart so the engine's own file stays about loading
and denoising: a batch decoded at once or sliced, tiled where the memory profile says, and output
that is not finite refused (the latents' check read with the pixels, so no extra host sync).
"""

from __future__ import annotations

import time

import torch
from PIL import Image


class NonFiniteOutput(RuntimeError):
    """The model produced NaN or infinite values; nothing was saved."""


class Decoding:
    """Engine's decode half; it uses the engine's pipe, device, profile and `vae_channels_last`."""

    def decode_many(self, latents: torch.Tensor, width: int | None = None, height: int | None = None,
                    latents_ok: torch.Tensor | None = None) -> list[Image.Image]:
        """Decode a batch: in one go under the full profile, one by one (slicing) otherwise.

        `latents_ok` (a device boolean) refuses the batch as the model's NaN, read with the first pixels."""
        if self.profile.vae_slicing or latents.shape[0] == 1:
            return [self._decode(latents[i:i + 1], width, height, latents_ok if i == 0 else None)[0]
                    for i in range(latents.shape[0])]
        return self._decode(latents, width, height, latents_ok)

    def decode(self, latents: torch.Tensor, width: int | None = None, height: int | None = None) -> Image.Image:
        """VAE-decode one latent into a PIL image, refusing non-finite pixels."""
        return self._decode(latents, width, height)[0]

    def _decode(self, latents: torch.Tensor, width: int | None, height: int | None,
                latents_ok: torch.Tensor | None = None) -> list[Image.Image]:
        from studio.engine.memory import use_tiling

        vae = self.pipe.vae
        h = height or latents.shape[-2] * self.pipe.vae_scale_factor
        w = width or latents.shape[-1] * self.pipe.vae_scale_factor
        tiled = self.device.type == "cuda" and use_tiling(self.profile, w, h)
        vae.use_tiling = tiled
        with torch.no_grad():
            lat = latents.to(self.device, vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor
            if self.vae_channels_last:
                lat = lat.contiguous(memory_format=torch.channels_last)
            pixels = vae.decode(lat, return_dict=False)[0]
        ok = torch.isfinite(pixels).all()
        flags = torch.stack([ok, ok if latents_ok is None else latents_ok])
        arr = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        pixels_fine, latents_fine = flags.tolist()  # on the host already: the copy above synchronised
        if not latents_fine:
            raise NonFiniteOutput("The model produced invalid (NaN) values; no image was saved. "
                                  "Try another seed, or float32 precision.")
        if not pixels_fine:
            raise NonFiniteOutput("The image decoder produced invalid (NaN) values; no image was saved.")
        return [Image.fromarray(a) for a in arr]


class Clock:
    """Splits denoise from decode time without a host sync between them: CUDA events on a GPU (read
    once the decode's copy to the host has synchronised), the host clock elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.t_mid = time.perf_counter()
        self.mid = self.end = None
        if self.cuda:
            self.mid, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.mid.record()

    def split(self, t_start: float) -> tuple[float, float]:
        """(denoise_s, decode_s): from `t_start` (host clock) to this clock's start, and on to now."""
        now = time.perf_counter()
        if not self.cuda:
            return self.t_mid - t_start, now - self.t_mid
        self.end.record()
        self.end.synchronize()
        decode = self.mid.elapsed_time(self.end) / 1000.0
        return max(0.0, now - t_start - decode), decode
