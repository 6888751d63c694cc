"""Images in: image-to-image, inpaint and outpaint, ControlNet and hires fix on the Engine's pipe.

Every task runs through diffusers' own Z-Image pipelines built from the components of the pipeline the
Engine already holds: transformer, text encoder and VAE are the same objects (with the Engine's
compiled blocks, FP8 linears and memory profile), never a second copy. As in text-to-image, prompts
are encoded by the Engine (its cache and graphs), latents decoded by it (its finite checks and
tiling), noise drawn from CPU generators seeded by the spec, so a seed means the same image on
any device, and live previews made by the Engine's previewer (studio/engine/preview.py). After
decoding, an inpaint's pixels outside the mask are pasted back from the original: they are kept
exactly, whatever the VAE's round trip did to them.
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from studio.core.i18n import SaidError
from studio.core.image_inputs import InputStore, Note, fit_image, fit_mask, paste_back, snap
from studio.core.spec import ImageSpec
from studio.engine.control_maps import control_map
from studio.engine.generate import (
    CancelCheck,
    Cancelled,
    Clock,
    Engine,
    StepCallback,
    Timings,
    initial_noise,
)
from studio.engine.preview import Previewer
from studio.engine.steps import step_callback
from studio.models import controlnets


class Task(str, Enum):
    TEXT = "text"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    CONTROL = "control"
    CONTROL_INPAINT = "control-inpaint"


class ImagesInError(SaidError, ValueError):
    """A combination of inputs this engine cannot run; one line saying what would work, given as a key
    of studio/core/strings.py (`input.*`) and its arguments: `str()` is the English line."""


@dataclass
class ControlInput:
    """A control picture (turned into a map of `kind` in the worker) and the ControlNet to use."""

    image: Image.Image
    controlnet: str  # a folder or file path, or a name in the ControlNet folders
    kind: str = "canny"
    scale: float = 0.75
    start: float = 0.0  # the fraction of the steps where the control begins
    end: float = 1.0  # ... and where it ends


@dataclass
class Hires:
    """Hires fix: upscale the finished image, then refine it with image-to-image."""

    scale: float = 2.0
    strength: float = 0.35
    upscaler: str | None = None  # an upscaler model file (through spandrel); None: Lanczos


@dataclass
class ImageInputs:
    init_image: Image.Image | None = None
    strength: float | None = None  # image-to-image: required; inpaint: 1.0 when None
    mask: Image.Image | None = None  # white (255) = repaint
    mask_blur: int = 0
    control: ControlInput | None = None
    hires: Hires | None = None

    @property
    def task(self) -> Task:
        if self.control is not None:
            if self.init_image is not None and self.mask is None:
                raise ImagesInError("input.control_needs_mask")
            return Task.CONTROL_INPAINT if self.mask is not None else Task.CONTROL
        if self.mask is not None:
            if self.init_image is None:
                raise ImagesInError("input.mask_needs_image")
            return Task.INPAINT
        return Task.IMG2IMG if self.init_image is not None else Task.TEXT


@dataclass
class Made:
    image: Image.Image
    timings: Timings
    notes: list[Note] = field(default_factory=list)
    task: Task = Task.TEXT


def inputs_for(spec: ImageSpec, store: InputStore) -> ImageInputs:
    """The pictures a spec names by hash, read from the inputs folder (InputImageError if one is gone)."""
    c, h = spec.control, spec.hires
    return ImageInputs(
        init_image=store.open(spec.init_image) if spec.init_image else None, strength=spec.strength,
        mask=store.open(spec.mask, "L") if spec.mask else None, mask_blur=spec.mask_blur,
        control=ControlInput(image=store.open(c.image), controlnet=c.model, kind=c.kind, scale=c.scale,
                             start=c.start, end=c.end) if c is not None else None,
        hires=Hires(scale=h.scale, strength=h.strength, upscaler=h.upscaler or None) if h is not None else None)


def denoise_steps(steps: int, strength: float) -> int:
    """How many steps image-to-image runs at `strength` (diffusers' own rule: the tail of the schedule)."""
    return steps - int(max(steps - min(steps * strength, steps), 0))


def effective_strength(steps: int, strength: float) -> float:
    """`strength`, raised to one step's worth where it would leave no step at all."""
    return strength if denoise_steps(steps, strength) >= 1 else 1.0 / steps


def upscale(image: Image.Image, scale: float, upscaler: str | None = None, device: Any = "cpu") -> Image.Image:
    """`image` `scale` times larger, sides multiples of 16: Lanczos, or an upscaler model first."""
    size = (snap(image.width * scale), snap(image.height * scale))
    if upscaler:
        image = _model_upscale(image, Path(upscaler), device)
    return image.resize(size, Image.Resampling.LANCZOS)


def _model_upscale(image: Image.Image, path: Path, device: Any) -> Image.Image:
    try:
        import spandrel  # type: ignore[import-not-found]
    except ImportError:
        raise ImagesInError("input.upscaler_spandrel", name=path.name) from None
    import numpy as np

    model = spandrel.ModelLoader().load_from_file(str(path)).to(device).eval()
    x = torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1)[None].float().div(255).to(device)
    with torch.no_grad():
        y = model(x).clamp(0, 1)
    return Image.fromarray(y[0].permute(1, 2, 0).mul(255).round().byte().cpu().numpy())


class _ControlWindow:
    """Runs the ControlNet only on the steps in [start, end): outside, it is not called at all.

    There its forward returns None, which the transformer reads as no hints: those steps are
    text-to-image steps (FP8's step graphs included), not a ControlNet pass scaled by zero."""

    def __init__(self, controlnet: Any, start: float, end: float, total: int) -> None:
        self.start, self.end, self.total, self.step = start, end, max(1, total), 0
        self.controlnet = controlnet if (start > 0 or end < 1) else None
        if self.controlnet is not None:
            run = controlnet.forward

            def forward(*args: Any, **kwargs: Any) -> dict[int, torch.Tensor] | None:
                return run(*args, **kwargs) if self.active else None

            controlnet.forward = forward

    @property
    def active(self) -> bool:
        return self.start <= self.step / self.total < self.end

    def close(self) -> None:
        if self.controlnet is not None:
            self.controlnet.__dict__.pop("forward", None)  # back to the class's own forward


class ImagesIn:
    """The image-input tasks of one Engine: its derived pipelines and its one loaded ControlNet."""

    # The schedule kept in CPU memory (see _host_schedule): img2img no longer waits on the GPU each step.
    host_timesteps = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pipes: dict[tuple[Task, int], Any] = {}
        self._controlnet: tuple[str, Any] | None = None
        self.placement: Any = None  # studio.engine.memory.Placement of the loaded ControlNet

    # --- pipelines ---------------------------------------------------------------------------

    def pipeline(self, task: Task, controlnet: Any = None) -> Any:
        """The pipeline for `task`, sharing every component with the Engine's (built once, kept)."""
        if task is Task.TEXT:
            return self.engine.pipe
        # not for inpaint: its loop re-noises the init latents each step through copies that sync anyway
        host = self.host_timesteps and task is not Task.INPAINT
        key = (task, id(controlnet), host)
        if key not in self._pipes:
            import diffusers

            cls = {Task.IMG2IMG: diffusers.ZImageImg2ImgPipeline, Task.INPAINT: _lean_inpaint(),
                   Task.CONTROL: diffusers.ZImageControlNetPipeline,
                   Task.CONTROL_INPAINT: diffusers.ZImageControlNetInpaintPipeline}[task]
            extra: dict[str, Any] = {"controlnet": controlnet} if controlnet is not None else {}
            # Its own scheduler (same config): image-to-image moves the schedule's begin index.
            kind = type(self.engine.pipe.scheduler)
            if host:
                kind = _host_schedule(kind)
                for module in (self.engine.pipe.transformer, controlnet):
                    if module is not None and not getattr(module, "_zx_timestep_hook", None):
                        module._zx_timestep_hook = _timestep_to_device(module, self.engine.device)
            scheduler = kind.from_config(self.engine.pipe.scheduler.config)
            # Built from the Engine's components, not `from_pipe`: that casts the new pipeline, and so the
            # shared modules in place, to float32 unless given a dtype, and to any dtype it would upcast FP8.
            parts = {**self.engine.pipe.components, "scheduler": scheduler, **extra}
            expected, _ = cls._get_signature_keys(cls)
            with _quiet_diffusers():
                pipe = cls(**{k: v for k, v in parts.items() if k in expected})
            pipe.set_progress_bar_config(disable=True)
            self._pipes[key] = pipe
        return self._pipes[key]

    def adopt_controlnet(self, label: str, model: Any, compile: bool | None = None) -> None:
        """Use an already built ControlNet under `label` (random weights for benchmarks).

        compile: its blocks on the Engine's fast path (None: where the Engine's blocks are compiled)."""
        self._drop_controlnet()
        self._place(model, label)
        self._controlnet = (label, self._fast(model.to(self.engine.device).eval(), compile))

    def _fast(self, model: Any, compile: bool | None = None) -> Any:
        """The Engine's fast path on the ControlNet's own blocks: its attention kernel, regional compile.

        The refiners and embedders it shares with the transformer are already on it."""
        from studio.engine import fastpath, fused_attention

        engine = self.engine
        blocks = [m for m in model.modules() if type(m).__name__ == "ZImageControlTransformerBlock"]
        if engine.attention in fastpath.FUSED_ATTENTION:
            kernel = engine.attention.split("-", 1)[1]
            for block in blocks:
                block.attention.set_processor(fused_attention.FusedZImageAttnProcessor(kernel))
        if engine.compiled if compile is None else compile:
            fastpath.compile_control_blocks(model, engine._switch)
        return model

    def controlnet(self, ref: str) -> Any:
        """The ControlNet `ref` names, loaded on the Engine's device (one kept; another replaces it)."""
        if self._controlnet is not None and self._controlnet[0] == ref:
            return self._controlnet[1]
        tr = self.engine.pipe.transformer
        try:
            info = controlnets.resolve(ref, n_layers=tr.config.n_layers)
        except controlnets.ControlNetError as exc:
            raise ImagesInError("input.controlnet_unusable", detail=str(exc)) from None
        why = controlnets.misfit(info, dict(tr.config))
        if why:
            raise ImagesInError(why[0], **why[1])
        if self._controlnet is not None and self._controlnet[0] == info.path:
            return self._controlnet[1]
        from diffusers import ZImageControlNetModel

        self._drop_controlnet()  # the old one leaves the device before the new one is read
        if info.format == "diffusers":
            with _quiet_diffusers():
                model = ZImageControlNetModel.from_pretrained(info.path, torch_dtype=self.engine.dtype)
        else:
            from diffusers.loaders.single_file_utils import convert_z_image_controlnet_checkpoint_to_diffusers
            from safetensors.torch import load_file

            model = ZImageControlNetModel(**info.config)
            state = convert_z_image_controlnet_checkpoint_to_diffusers(load_file(info.weights), info.config)
            model.load_state_dict(state, strict=True)
            model.to(self.engine.dtype)
        self._place(model, info.name)
        self._fast(model.to(self.engine.device).eval())
        self._controlnet = (info.path, model)
        return model

    def _drop_controlnet(self) -> None:
        """Forget the loaded ControlNet and the pipelines holding it, before another comes in."""
        self._pipes = {k: v for k, v in self._pipes.items() if k[0] not in (Task.CONTROL, Task.CONTROL_INPAINT)}
        self._controlnet = None
        if self.engine.device.type == "cuda":
            gc.collect()  # whatever still holds it in a cycle, so its memory goes back before the next one's
            torch.cuda.empty_cache()

    def _place(self, model: Any, label: str) -> None:
        """Make room on the Engine's device for the ControlNet's own weights, before they move there."""
        from studio.engine.memory import tensor_bytes

        self.placement = self.engine.make_room(tensor_bytes(model, exclude=[self.engine.pipe.transformer]), label)

    # --- running -----------------------------------------------------------------------------

    def run_specs(self, specs: list[ImageSpec], on_step: StepCallback | None = None,
                  should_cancel: CancelCheck | None = None, store: InputStore | None = None,
                  preview: Previewer | None = None) -> tuple[list[Image.Image], Timings]:
        """Make each spec's image from its stored inputs (the Engine's `generate_batch` for such specs)."""
        store = store or InputStore()
        images, total = [], Timings(images=len(specs))
        for spec in specs:
            made = self.run(prompt=spec.prompt, negative_prompt=spec.negative_prompt, width=spec.width,
                            height=spec.height, steps=spec.steps, guidance=spec.guidance, seed=spec.seed,
                            inputs=inputs_for(spec, store), on_step=on_step, should_cancel=should_cancel,
                            preview=preview)
            images.append(made.image)
            _add(total, made.timings)
            total.total_s += made.timings.total_s
        return images, total

    def run(self, *, prompt: str, negative_prompt: str = "", width: int, height: int, steps: int,
            guidance: float, seed: int, inputs: ImageInputs, on_step: StepCallback | None = None,
            should_cancel: CancelCheck | None = None, preview: Previewer | None = None) -> Made:
        """Make one image from `inputs`; raises Cancelled, NonFiniteOutput or ImagesInError.

        `preview`: the Engine's previewer, fed each denoising pass's steps (as text-to-image feeds it)."""
        task = inputs.task
        notes: list[Note] = []
        init = mask = control = None
        if inputs.init_image is not None:
            init, note = fit_image(inputs.init_image.convert("RGB"), (width, height))
            notes += [note] if note else []
        if inputs.mask is not None:
            mask, note = fit_mask(inputs.mask, (width, height))
            notes += [note] if note else []
        if inputs.control is not None:
            control = control_map(fit_image(inputs.control.image.convert("RGB"), (width, height))[0],
                                  inputs.control.kind)
        hires = inputs.hires
        first = steps if task is not Task.IMG2IMG else denoise_steps(steps, effective_strength(steps, inputs.strength
                                                                                               or 1.0))
        second = denoise_steps(steps, effective_strength(steps, hires.strength)) if hires else 0
        progress = _Steps(on_step, first + second)
        total = Timings()
        t0 = time.perf_counter()
        if task is Task.TEXT:
            image, t = self.engine.generate(prompt=prompt, negative_prompt=negative_prompt, width=width,
                                            height=height, steps=steps, guidance=guidance, seed=seed,
                                            on_step=progress.callback(0), should_cancel=should_cancel,
                                            on_preview=preview.on_preview if preview is not None else None)
        else:
            image, t = self._denoise(task, prompt, negative_prompt, width, height, steps, guidance, seed,
                                     init=init, mask=mask, control=control, inputs=inputs,
                                     on_step=progress.callback(0), should_cancel=should_cancel, preview=preview)
        _add(total, t)
        if init is not None and mask is not None:
            image = paste_back(init, image, mask, inputs.mask_blur)
        if hires is not None:
            big = upscale(image, hires.scale, hires.upscaler, self.engine.device)
            image, t = self._denoise(Task.IMG2IMG, prompt, negative_prompt, big.width, big.height, steps, guidance,
                                     seed, init=big, strength=hires.strength, on_step=progress.callback(first),
                                     should_cancel=should_cancel, preview=preview)
            _add(total, t)
        total.total_s = time.perf_counter() - t0
        return Made(image, total, notes, task)

    def _denoise(self, task: Task, prompt: str, negative_prompt: str, width: int, height: int, steps: int,
                 guidance: float, seed: int, *, init: Image.Image | None = None, mask: Image.Image | None = None,
                 control: Image.Image | None = None, inputs: ImageInputs | None = None,
                 strength: float | None = None, on_step: StepCallback | None = None,
                 should_cancel: CancelCheck | None = None,
                 preview: Previewer | None = None) -> tuple[Image.Image, Timings]:
        """One denoising run of `task` through its derived pipeline, decoded by the Engine.

        Previews: text-like tasks start the previewer from their initial noise; image-to-image and
        inpaint noise the init image inside the pipeline, so theirs starts from the first step's
        latents (each later step then has the two points its x0 estimate needs)."""
        from studio.engine.memory import use_tiling

        engine = self.engine
        timings = Timings()
        t0 = time.perf_counter()
        embeds = engine.encode(prompt)
        negative = engine.encode(negative_prompt) if guidance > 0 else None
        timings.encode_s = time.perf_counter() - t0
        kwargs: dict[str, Any] = dict(
            prompt_embeds=embeds, negative_prompt_embeds=negative, height=height, width=width,
            num_inference_steps=steps, guidance_scale=guidance, output_type="latent")
        ctrl = inputs.control if inputs is not None else None
        cn = self.controlnet(ctrl.controlnet) if ctrl is not None else None
        if task is Task.CONTROL_INPAINT and not controlnets.takes_mask(cn.config, engine.pipe.transformer.config):
            raise ImagesInError("input.controlnet_nomask")
        if task in (Task.IMG2IMG, Task.INPAINT):
            s = strength if strength is not None else (inputs.strength if inputs and inputs.strength is not None
                                                       else 1.0)
            s = effective_strength(steps, s)
            kwargs.update(image=init, strength=s, generator=torch.Generator("cpu").manual_seed(int(seed)))
            total = denoise_steps(steps, s)
        else:
            kwargs["latents"] = initial_noise(seed, width, height, engine.pipe.transformer.config.in_channels,
                                              engine.pipe.vae_scale_factor).to(engine.device)
            total = steps
        if task is Task.INPAINT:
            kwargs["mask_image"] = mask
        if ctrl is not None:
            kwargs.update(control_image=control, controlnet_conditioning_scale=float(ctrl.scale))
            if task is Task.CONTROL_INPAINT:
                kwargs.update(image=init, mask_image=mask)
        window = _ControlWindow(cn, ctrl.start, ctrl.end, total) if ctrl is not None else None
        begun = preview is not None and "latents" in kwargs
        if begun:
            preview.begin(kwargs["latents"])

        def window_step(i: int) -> None:
            if window is not None:
                window.step = i + 1

        step_end = step_callback(total, on_step, should_cancel, preview, begun=begun, before=window_step)

        if should_cancel is not None and should_cancel():
            raise Cancelled()
        pipe = self.pipeline(task, cn)
        # The VAE encodes the init image here: tile it under the same rule as the Engine's decodes.
        engine.pipe.vae.use_tiling = engine.device.type == "cuda" and use_tiling(engine.profile, width, height)
        t1 = time.perf_counter()
        try:
            with torch.no_grad():
                out = pipe(callback_on_step_end=step_end, **kwargs).images
        finally:
            if window is not None:
                window.close()
            if preview is not None:
                preview.end()
        # split as text-to-image does (generate.Clock): on a GPU the host clock alone would count the
        # denoising still queued when the pipeline returns as decode time
        clock = Clock(engine.device)
        image = engine.decode_many(out, width, height, latents_ok=torch.isfinite(out).all())[0]
        timings.denoise_s, timings.decode_s = clock.split(t1)
        timings.total_s = time.perf_counter() - t0
        return image, timings


@functools.cache
def _host_schedule(kind: type) -> type:
    """`kind` (a diffusers scheduler) with its timesteps and sigmas in CPU memory.

    diffusers' image pipelines read `timestep[0].item()` every step (its text-to-image loop does not):
    on a GPU schedule that is a host sync a step, and the GPU then idles while Python prepares the
    next one. From a host schedule it is a plain read; the timestep moves to the device as the
    transformer (or ControlNet) is called (`_timestep_to_device`)."""

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


def _timestep_to_device(module: torch.nn.Module, device: torch.device) -> Any:
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
def _lean_inpaint() -> type:
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


class _Steps:
    """One progress count over both passes of a hires fix."""

    def __init__(self, on_step: StepCallback | None, total: int) -> None:
        self.on_step, self.total = on_step, total

    def callback(self, offset: int) -> StepCallback | None:
        if self.on_step is None:
            return None
        return lambda i, _n: self.on_step(offset + i, self.total)  # type: ignore[misc]


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)


def _add(total: Timings, part: Timings) -> None:
    for name in ("encode_s", "denoise_s", "decode_s"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
