"""A cheap look at the image while it denoises: latents to a small JPEG, within a time budget.

Two decoders, best first: a tiny autoencoder (TAEF1, a diffusers `AutoencoderTiny` for the Flux VAE
latent space Z-Image uses) when one is already on disk, else a linear latent-to-RGB projection (the
published Flux factors, or a least-squares fit to the model's own VAE for any other latent space).
Previews are of the denoised estimate x0, not of the noisy latents, so the first ones already show
the picture. A `Throttle` keeps their cost under a share of the denoising time; on a GPU the small
result is copied to the host asynchronously and encoded on a later step, so no step waits for it.
"""

from __future__ import annotations

import enum
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

PROJECTION_FILE = "latent_rgb.json"  # beside a VAE's config.json: a fitted `LatentProjection`
TINY_VAE_REPO = "madebyollin/taef1"
MAX_SIDE = 256  # previews are at most this many pixels on their long side
BUDGET = 0.03  # previews may cost at most this share of the denoising time
MIN_INTERVAL_S = 0.25  # and come at most this often (a page shows a few a second at best)
LOAD_FIT_IMAGES, LOAD_FIT_SIDE = 12, 64  # the quick fit at load for a latent space with no stored one

# Flux (and Z-Image) VAE latent space: z_model = (z_vae - shift) * scale. The projection below maps
# z_model to RGB in -1..1; factors and bias as published in ComfyUI's comfy/latent_formats.py
# (class Flux, latent_rgb_factors / latent_rgb_factors_bias; InvokeAI uses them for Z-Image too).
FLUX_SCALE, FLUX_SHIFT = 0.3611, 0.1159
FLUX_FACTORS = (
    (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617), (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259), (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
FLUX_BIAS = (-0.0329, -0.0718, -0.0851)


class Method(str, enum.Enum):
    """How a preview was decoded (shown nowhere yet; kept in the message for measurements)."""

    TINY_VAE = "tiny_vae"
    LINEAR = "linear"


@dataclass(frozen=True)
class LatentProjection:
    """RGB (-1..1) = z_model @ factors + bias, per latent pixel: one matrix multiply."""

    factors: tuple[tuple[float, float, float], ...]
    bias: tuple[float, float, float]
    source: str = ""

    def tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(factors, bias) on `device`; a previewer keeps them, as a copy from the host would sync."""
        return (torch.tensor(self.factors, device=device, dtype=torch.float32),
                torch.tensor(self.bias, device=device, dtype=torch.float32))

    def apply(self, latents: torch.Tensor, tensors: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, C, h, w) model-space latents -> (B, 3, h, w) RGB in -1..1, on the latents' device."""
        m, b = tensors if tensors is not None else self.tensors(latents.device)
        return torch.einsum("bchw,cr->brhw", latents.float(), m) + b.view(1, 3, 1, 1)

    def to_json(self) -> str:
        rows = ",\n".join("  " + json.dumps(list(row)) for row in self.factors)
        return (f'{{"source": {json.dumps(self.source)},\n "bias": {json.dumps(list(self.bias))},\n'
                f' "factors": [\n{rows}\n ]}}')

    @classmethod
    def from_json(cls, text: str) -> LatentProjection:
        data = json.loads(text)
        return cls(tuple(tuple(float(v) for v in row) for row in data["factors"]),  # type: ignore[misc]
                   tuple(float(v) for v in data["bias"]), str(data.get("source", "")))  # type: ignore[arg-type]


FLUX_PROJECTION = LatentProjection(FLUX_FACTORS, FLUX_BIAS, "ComfyUI comfy/latent_formats.py Flux")


def is_flux_space(vae_config: Any) -> bool:
    """Whether a VAE encodes into the Flux latent space (the tiny decoder and the factors fit it)."""
    return (getattr(vae_config, "latent_channels", None) == 16
            and abs(float(getattr(vae_config, "scaling_factor", 0.0)) - FLUX_SCALE) < 1e-3
            and abs(float(getattr(vae_config, "shift_factor", 0.0) or 0.0) - FLUX_SHIFT) < 1e-3)


def calibration_images(count: int = 48, side: int = 128, seed: int = 0) -> list[Image.Image]:
    """Flat coloured rectangles and ellipses on flat backgrounds: every colour, sharp edges."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        img = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 5))):
            x0, y0 = (int(v) for v in rng.integers(0, side - 16, 2))
            x1, y1 = x0 + int(rng.integers(16, side)), y0 + int(rng.integers(16, side))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        images.append(img)
    return images


def least_squares(latents: torch.Tensor, pixels: torch.Tensor, source: str) -> LatentProjection:
    """The projection that best maps model-space `latents` (N, C, h, w) to `pixels` (N, 3, H, W, -1..1)
    averaged over each latent pixel's patch; a bias column absorbs the mean colour."""
    target = torch.nn.functional.adaptive_avg_pool2d(pixels.float().clamp(-1, 1), latents.shape[-2:])
    x = latents.double().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    sol = torch.linalg.lstsq(x, target.double().permute(0, 2, 3, 1).reshape(-1, 3)).solution
    factors = tuple(tuple(round(float(v), 6) for v in row) for row in sol[:-1])
    return LatentProjection(factors, tuple(round(float(v), 6) for v in sol[-1]), source)  # type: ignore[arg-type]


def to_model_space(vae: Any, z: torch.Tensor) -> torch.Tensor:
    cfg = vae.config
    return (z.float() - float(getattr(cfg, "shift_factor", 0.0) or 0.0)) * float(cfg.scaling_factor)


def decode_model_space(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """What the engine's decode does, up to the pixels (-1..1)."""
    cfg = vae.config
    z = latents.to(vae.dtype) / cfg.scaling_factor + float(getattr(cfg, "shift_factor", 0.0) or 0.0)
    return vae.decode(z, return_dict=False)[0]


def fit_projection(vae: Any, images: Sequence[Image.Image] | None = None, batch: int = 16) -> LatentProjection:
    """A fit from the VAE alone: calibration images encoded, then decoded (the target is the decode,
    so the preview tracks what the final image will show)."""
    images = list(images or calibration_images())
    param = next(vae.parameters())
    zs, outs = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            pixels = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32))
                                  for im in images[i:i + batch]]).permute(0, 3, 1, 2) / 127.5 - 1
            z = to_model_space(vae, vae.encode(pixels.to(param.device, param.dtype)).latent_dist.mode())
            zs.append(z.cpu())
            outs.append(decode_model_space(vae, z).float().cpu())
    return least_squares(torch.cat(zs), torch.cat(outs), f"least squares on {len(images)} calibration images")


def projection_for(vae: Any, model_path: str | Path | None = None) -> LatentProjection:
    """The model's projection: its stored fit, else the Flux factors for that space, else a fit now."""
    for stored in _stored_projections(model_path):
        try:
            return LatentProjection.from_json(stored.read_text("utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged file: the next candidate, or a fit below
    if is_flux_space(vae.config):
        return FLUX_PROJECTION
    return fit_projection(vae, calibration_images(LOAD_FIT_IMAGES, LOAD_FIT_SIDE))


def _stored_projections(model_path: str | Path | None) -> list[Path]:
    """The model's own file; for the trained demo model also the shipped one (a copy made in the
    data dir before the file existed lacks it)."""
    if model_path is None:
        return []
    from studio.models.demo import demo_assets, is_trained

    out = [Path(model_path) / "vae" / PROJECTION_FILE]
    shipped = demo_assets()
    if shipped is not None and is_trained(Path(model_path)):
        out.append(shipped / "vae" / PROJECTION_FILE)
    return [p for p in out if p.is_file()]


def tiny_vae_folders(models_dir: Path | None = None) -> list[Path]:
    """Where a TAEF1 may already be: the studio's models folder, then the Hugging Face cache."""
    from studio.models.discovery import hf_cache_dirs, hf_snapshots

    out = []
    if models_dir is not None and models_dir.is_dir():
        out += [p for p in sorted(models_dir.iterdir()) if "taef1" in p.name.lower() and p.is_dir()]
    for cache in hf_cache_dirs():
        out += hf_snapshots(cache, TINY_VAE_REPO)
    return [p for p in out if (p / "config.json").is_file()]


def load_tiny_vae(folders: Sequence[Path], device: torch.device, dtype: torch.dtype) -> Any | None:
    """The first folder that loads as a 16-channel `AutoencoderTiny` (local files only), or None."""
    from diffusers import AutoencoderTiny

    for folder in folders:
        try:
            if json.loads((folder / "config.json").read_text("utf-8")).get("_class_name") != "AutoencoderTiny":
                continue
            tiny = AutoencoderTiny.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
        except (OSError, ValueError, RuntimeError):
            continue
        if tiny.config.latent_channels == 16:
            return tiny.to(device).eval()
    return None


@dataclass(frozen=True)
class PreviewImage:
    """One preview: JPEG bytes of the first image of the batch after `step` of `steps`."""

    step: int
    steps: int
    width: int
    height: int
    jpeg: bytes
    method: Method
    cost_s: float


@dataclass
class Throttle:
    """Decides which steps get a preview: at most `every_steps` apart, `min_interval_s` apart, and
    only while the previews' measured cost stays within `budget` of the time since `start`."""

    budget: float = BUDGET
    min_interval_s: float = MIN_INTERVAL_S
    every_steps: int = 1
    clock: Callable[[], float] = time.perf_counter
    cost_s: float | None = None  # expected cost of one preview (measured; None until known)
    spent_s: float = 0.0
    started: float = 0.0
    last_at: float | None = None
    last_step: int | None = None

    def start(self) -> None:
        self.started, self.spent_s, self.last_at, self.last_step = self.clock(), 0.0, None, None

    def due(self, step: int, steps: int) -> bool:
        """Host-side only (no device work): whether `step` should get a preview."""
        if step >= steps or self.cost_s is None:
            return False  # the last step's preview would race the real image
        now = self.clock()
        if self.last_step is not None and step - self.last_step < self.every_steps:
            return False
        if self.last_at is not None and now - self.last_at < self.min_interval_s:
            return False
        return self.spent_s + self.cost_s <= self.budget * (now - self.started)

    def taken(self, step: int) -> None:
        self.last_step, self.last_at = step, self.clock()

    def spend(self, seconds: float) -> None:
        """Add host time spent on previews (a preview may be paid for in two parts)."""
        self.spent_s += seconds

    def observe(self, cost_s: float) -> None:
        """One whole preview's cost; the expectation leans towards the larger of old and new."""
        self.cost_s = cost_s if self.cost_s is None else max(cost_s, 0.5 * (self.cost_s + cost_s))

    def share(self) -> float:
        """Preview time over the time since `start` (what the budget bounds)."""
        elapsed = self.clock() - self.started
        return self.spent_s / elapsed if elapsed > 0 else 0.0


def denoised_estimate(prev: torch.Tensor, prev_sigma: float, cur: torch.Tensor, cur_sigma: float) -> torch.Tensor:
    """x0 from two points of one flow-matching (Euler) path: x = (1 - sigma) x0 + sigma noise, so
    the velocity is their slope and x0 lies at sigma 0 along it."""
    if prev is cur or prev_sigma == cur_sigma:
        return cur
    velocity = (cur - prev) / (cur_sigma - prev_sigma)
    return cur - cur_sigma * velocity


def step_sigmas(scheduler: Any) -> tuple[float, float]:
    """(sigma, prev_sigma) of the latents a flow-matching scheduler's step just made and of those it
    started from, by its own index (img2img starts part-way). `set_timesteps` leaves the table on the
    GPU, where reading two floats would wait for the GPU every step: it is copied to the host once
    per schedule."""
    index = int(scheduler.step_index)
    sigmas = scheduler.sigmas
    cached = scheduler.__dict__.get("_zx_host_sigmas")
    if cached is None or cached[0] is not sigmas:
        cached = (sigmas, sigmas.detach().float().cpu().tolist())
        scheduler.__dict__["_zx_host_sigmas"] = cached
    host = cached[1]
    return host[index], host[index - 1]


def _fit_side(h: int, w: int, max_side: int) -> tuple[int, int]:
    f = min(1.0, max_side / max(h, w))
    return max(1, round(h * f)), max(1, round(w * f))


@dataclass
class _Pending:
    step: int
    steps: int
    host: torch.Tensor
    ready: Any  # a torch.cuda.Event, or None where the pixels are on the host already
    method: Method
    cost_s: float


@dataclass
class Previewer:
    """Turns the engine's per-step latents into `PreviewImage`s for `on_preview`, within the throttle.

    Per image: `begin(latents)` with the starting noise, then after each step `offer(step, steps,
    latents, sigma, prev_sigma)` (the noise levels of the latents just made and of those before),
    then `end()`. Steps the throttle skips cost a comparison and a reference to the latents, nothing
    on the device.
    """

    projection: LatentProjection
    tiny: Any = None  # a loaded AutoencoderTiny for this latent space, or None
    max_side: int = MAX_SIDE
    quality: int = 80
    throttle: Throttle = field(default_factory=Throttle)
    on_preview: Callable[[PreviewImage], None] | None = None
    _prev: torch.Tensor | None = None
    _pending: _Pending | None = None
    _tensors: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def method(self) -> Method:
        return Method.TINY_VAE if self.tiny is not None else Method.LINEAR

    def calibrate(self, latents: torch.Tensor, runs: int = 3) -> float:
        """Time a preview of zeros shaped like `latents` (the first run warms the kernels), so the
        budget holds from the first step on; the quickest run counts, as a busy machine's pauses are
        not the preview's own cost."""
        z = torch.zeros((1, *latents.shape[1:]), device=latents.device)
        times = []
        with torch.no_grad():
            for _ in range(runs):
                t0 = time.perf_counter()
                self._encode(self._rgb(z).cpu().numpy())
                times.append(time.perf_counter() - t0)
        self.throttle.cost_s = min(times)
        return min(times)

    def begin(self, latents: torch.Tensor) -> None:
        """A new image starts from `latents` (calibrates on first use)."""
        if self.throttle.cost_s is None:
            self.calibrate(latents)
        self._prev, self._pending = latents, None
        self.throttle.start()

    def offer(self, step: int, steps: int, latents: torch.Tensor, sigma: float, prev_sigma: float) -> None:
        prev, self._prev = self._prev, latents
        if self._pending is not None and self._pending.ready.query():
            self._finish()
        if self._pending is not None or not self.throttle.due(step, steps):
            return
        t0 = time.perf_counter()
        self.throttle.taken(step)
        with torch.no_grad():
            x0 = latents if prev is None else denoised_estimate(prev, float(prev_sigma), latents, float(sigma))
            rgb = self._rgb(x0[:1])
        if latents.device.type == "cuda":
            host = torch.empty(rgb.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(rgb, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
        else:
            host, ready = rgb, None
        launched = time.perf_counter() - t0
        self.throttle.spend(launched)
        self._pending = _Pending(step, steps, host, ready, self.method, launched)
        if ready is None:
            self._finish()

    def end(self) -> None:
        """The image is done: a preview still on its way is dropped (the real image is coming)."""
        self._prev, self._pending = None, None

    def _finish(self) -> None:
        pending, self._pending = self._pending, None
        assert pending is not None
        t0 = time.perf_counter()
        array = pending.host.numpy()
        jpeg = self._encode(array)
        encoded = time.perf_counter() - t0
        self.throttle.spend(encoded)
        cost = pending.cost_s + encoded
        self.throttle.observe(cost)
        if self.on_preview is not None:
            self.on_preview(PreviewImage(pending.step, pending.steps, array.shape[1], array.shape[0], jpeg,
                                         pending.method, round(cost, 6)))

    def _rgb(self, x0: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) model-space latents -> (H, W, 3) uint8 on the device, long side <= max_side."""
        if self.tiny is not None:
            cfg = self.tiny.config
            h, w = _fit_side(x0.shape[-2], x0.shape[-1], max(1, self.max_side // 8))
            z = x0 if (h, w) == tuple(x0.shape[-2:]) else torch.nn.functional.interpolate(x0, size=(h, w), mode="area")
            z = z.to(self.tiny.dtype) / cfg.scaling_factor + (getattr(cfg, "shift_factor", 0.0) or 0.0)
            rgb = self.tiny.decode(z, return_dict=False)[0].float()
        else:
            if x0.device not in self._tensors:  # made at calibration, before any step runs
                self._tensors[x0.device] = self.projection.tensors(x0.device)
            rgb = self.projection.apply(x0, self._tensors[x0.device])
        size = _fit_side(rgb.shape[-2], rgb.shape[-1], self.max_side)
        if size != tuple(rgb.shape[-2:]):
            rgb = torch.nn.functional.interpolate(rgb, size=size, mode="area")
        return ((rgb[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).contiguous()

    def _encode(self, array: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="JPEG", quality=self.quality)
        return buf.getvalue()


def make_previewer(pipe: Any, model_path: str | Path | None, device: torch.device,
                   models_dir: Path | None = None, use_tiny: bool = True) -> Previewer:
    """The best previewer this model allows without downloading anything."""
    tiny = None
    if use_tiny and is_flux_space(pipe.vae.config):
        tiny = load_tiny_vae(tiny_vae_folders(models_dir), device, pipe.vae.dtype)
    return Previewer(projection_for(pipe.vae, model_path), tiny)
