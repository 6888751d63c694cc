"""Images in: image-to-image, inpaint and outpaint, ControlNet and hires fix on the Engine's pipe.

Every task runs through diffusers' own Z-Image pipelines built from the components of the pipeline the
Engine already holds (studio/engine/image_pipelines.py): transformer, text encoder and VAE are the same
objects (with the Engine's compiled blocks, FP8 linears and memory profile), never a second copy. As in
text-to-image, prompts are encoded by the Engine (its cache and graphs), latents decoded by it (its
finite checks and tiling), noise drawn from CPU generators seeded by the spec, so a seed means the same
image on any device, and live previews made by the Engine's previewer (studio/engine/preview.py). After
decoding, an inpaint's pixels outside the mask are pasted back from the original: they are kept
exactly, whatever the VAE's round trip did to them.

The inputs and tasks are in image_tasks.py, the loaded ControlNet and its room in controlnet_slot.py,
the hires fix's upscale in upscale.py; their names are importable from here as before.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from PIL import Image

from studio.core.image_inputs import InputStore, Note, fit_image, fit_mask, paste_back
from studio.core.spec import ImageSpec
from studio.engine.control_maps import control_map
from studio.engine.controlnet_slot import ControlNetSlot, ControlWindow
from studio.engine.generate import CancelCheck, Cancelled, Clock, Engine, StepCallback, Timings, initial_noise
from studio.engine.image_pipelines import build_pipeline, host_schedule, lean_inpaint, timestep_to_device
from studio.engine.image_tasks import (
    ControlInput,
    Hires,
    ImageInputs,
    ImagesInError,
    Made,
    StepCount,
    Task,
    add_timings,
    denoise_steps,
    effective_strength,
    inputs_for,
)
from studio.engine.preview import Previewer
from studio.engine.steps import step_callback
from studio.engine.upscale import upscale
from studio.models import controlnets

__all__ = ["ControlInput", "Hires", "ImageInputs", "ImagesIn", "ImagesInError", "Made", "Task", "denoise_steps",
           "effective_strength", "inputs_for", "upscale"]

# the names these had when they lived here (tests patch `_lean_inpaint` on this module)
_host_schedule, _lean_inpaint, _timestep_to_device, _ControlWindow = (
    host_schedule, lean_inpaint, timestep_to_device, ControlWindow)


class ImagesIn:
    """The image-input tasks of one Engine: its derived pipelines and its one loaded ControlNet."""

    # The schedule kept in CPU memory (image_pipelines.host_schedule): img2img no longer waits on the GPU each step.
    host_timesteps = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pipes: dict[tuple[Task, int, bool], Any] = {}
        self.slot = ControlNetSlot(engine, forget=self._forget_control_pipes)

    @property
    def placement(self) -> Any:
        """studio.engine.memory.Placement: the plan made for the loaded ControlNet (or for none, once let go)."""
        return self.slot.placement

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
            self._pipes[key] = build_pipeline(self.engine, cls, controlnet, host)
        return self._pipes[key]

    def _forget_control_pipes(self) -> None:
        self._pipes = {k: v for k, v in self._pipes.items() if k[0] not in (Task.CONTROL, Task.CONTROL_INPAINT)}

    # --- the ControlNet ----------------------------------------------------------------------

    def controlnet(self, ref: str) -> Any:
        """The ControlNet `ref` names, loaded on the Engine's device (one kept; another replaces it)."""
        return self.slot.load(ref)

    def adopt_controlnet(self, label: str, model: Any, compile: bool | None = None) -> None:
        """Use an already built ControlNet under `label` (random weights for benchmarks).

        compile: its blocks on the Engine's fast path (None: where the Engine's blocks are compiled)."""
        self.slot.adopt(label, model, compile)

    def before_job(self, spec: ImageSpec) -> None:
        """A job about to run: if it uses no ControlNet, one loaded that moved the text encoder out goes,
        and the layers come back (studio/engine/controlnet_slot.py)."""
        if spec.control is None:
            self.slot.let_go()

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
            add_timings(total, made.timings)
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
        progress = StepCount(on_step, first + second)
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
        add_timings(total, t)
        if init is not None and mask is not None:
            image = paste_back(init, image, mask, inputs.mask_blur)
        if hires is not None:
            big = upscale(image, hires.scale, hires.upscaler, self.engine.device)
            image, t = self._denoise(Task.IMG2IMG, prompt, negative_prompt, big.width, big.height, steps, guidance,
                                     seed, init=big, strength=hires.strength, on_step=progress.callback(first),
                                     should_cancel=should_cancel, preview=preview)
            add_timings(total, t)
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
        window = ControlWindow(cn, ctrl.start, ctrl.end, total) if ctrl is not None else None
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
