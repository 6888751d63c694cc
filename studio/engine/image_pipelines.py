"""diffusers' Z-Image image pipelines built on the Engine's own components, and what they need changed.

The pipelines share the Engine's transformer, text encoder and VAE (its compiled blocks, FP8 linears and
memory profile), never a copy. Two adjustments to diffusers: a schedule kept in CPU memory, so the image
pipelines' per-step `.item()` does not wait on the GPU, and an inpaint pipeline without its unused encode."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def build_pipeline(engine: Any, cls: type, controlnet: Any = None, host_timesteps: bool = False) -> Any:
    """A `cls` pipeline on `engine`'s components (and `controlnet`), with a scheduler of its own.

    host_timesteps: the schedule in CPU memory, the timestep moved to the device as each model is called."""
    extra: dict[str, Any] = {"controlnet": controlnet} if controlnet is not None else {}
    # Its own scheduler (same config): image-to-image moves the schedule's begin index.
    kind = type(engine.pipe.scheduler)
    if host_timesteps:
        kind = host_schedule(kind)
        for module in (engine.pipe.transformer, controlnet):
            if module is not None and not getattr(module, "_zx_timestep_hook", None):
                module._zx_timestep_hook = timestep_to_device(module, engine.device)
    scheduler = kind.from_config(engine.pipe.scheduler.config)
    # Built from the Engine's components, not `from_pipe`: that casts the new pipeline, and so the
    # shared modules in place, to float32 unless given a dtype, and to any dtype it would upcast FP8.
    parts = {**engine.pipe.components, "scheduler": scheduler, **extra}
    expected, _ = cls._get_signature_keys(cls)
    with quiet_diffusers():
        pipe = cls(**{k: v for k, v in parts.items() if k in expected})
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def host_schedule(kind: type) -> type:
    """`kind` (a diffusers scheduler) with its timesteps and sigmas in CPU memory.

    diffusers' image pipelines read `timestep[0].item()` every step (its text-to-image loop does not):
    on a GPU schedule that is a host sync a step, and the GPU then idles while Python prepares the
    next one. From a host schedule it is a plain read; the timestep moves to the device as the
    transformer (or ControlNet) is called (`timestep_to_device`)."""

    class HostSchedule(kind):  # type: ignore[misc, valid-type]
        @functools.wraps(kind.set_timesteps)  # its signature: pipelines ask it which arguments it takes
        def set_timesteps(self, *args: Any, **kwargs: Any) -> Any:
            if len(args) > 1:
                args = (args[0], "cpu", *args[2:])
            else:
                kwargs["device"] = "cpu"
            return super().set_timesteps(*args, **kwargs)

    HostSchedule.__name__ = HostSchedule.__qualname__ = kind.__name__  # its config stays the original's
    return HostSchedule


def timestep_to_device(module: torch.nn.Module, device: torch.device) -> Any:
    """A pre-hook moving the timestep (the second argument) of `module`'s calls to `device` when it
    comes from a host schedule: through pinned memory, so the copy queues without a sync."""

    def hook(_m: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        t = args[1] if len(args) > 1 else None
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or device.type == "cpu":
            return None
        t = t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)
        return (args[0], t, *args[2:]), kwargs

    return module.register_forward_pre_hook(hook, with_kwargs=True)


@functools.cache
def lean_inpaint() -> type:
    """diffusers' inpaint pipeline without the VAE encode of the masked image, which it makes and never
    reads (only a step callback could ask for it): one full-size encode less per inpaint. Drawn after
    the init image's latents and noise, it takes nothing from the seed's random stream they use."""
    import diffusers

    class LeanZImageInpaintPipeline(diffusers.ZImageInpaintPipeline):
        def prepare_mask_latents(self, mask: torch.Tensor, masked_image: Any, batch_size: int, height: int,
                                 width: int, dtype: torch.dtype, device: Any, generator: Any) -> tuple[Any, None]:
            size = (2 * (int(height) // (self.vae_scale_factor * 2)), 2 * (int(width) // (self.vae_scale_factor * 2)))
            mask = torch.nn.functional.interpolate(mask, size=size, mode="nearest").to(device=device, dtype=dtype)
            if mask.shape[0] < batch_size:
                mask = mask.repeat(batch_size // mask.shape[0], 1, 1, 1)
            return mask, None

    return LeanZImageInpaintPipeline


@contextmanager
def quiet_diffusers() -> Iterator[None]:
    """diffusers' warnings off while it builds our pipelines and models (they would repeat per task)."""
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)
