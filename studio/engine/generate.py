"""One job in, one checked image out: the engine a worker keeps loaded between jobs.

Noise is drawn on the CPU from the job's seed, so a seed means the same image on any device of the
pool; output that is not finite is refused rather than saved as a black square.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from studio.core.spec import ImageSpec
from studio.engine.decode import Clock, Decoding, NonFiniteOutput  # noqa: F401  (NonFiniteOutput: importers' old home)
from studio.engine.loader import load_pipeline
from studio.engine.precision import choose_dtype
from studio.engine.steps import Cancelled, step_callback

StepCallback = Callable[[int, int], None]
PreviewCallback = Callable[[Any], None]  # hears studio.engine.preview.PreviewImage
ProgressCallback = Callable[[float, str], None]  # warm-up: fraction done (0..1), the stage it finished
# Sizes compiled at start: the square default and the two common 4:3 orientations.
WARM_SIZES = ((1024, 1024), (1152, 896), (896, 1152))
CancelCheck = Callable[[], bool]


@dataclass
class Timings:
    images: int = 1
    encode_s: float = 0.0
    denoise_s: float = 0.0
    decode_s: float = 0.0
    total_s: float = 0.0


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def initial_noise(seed: int, width: int, height: int, channels: int, vae_scale: int) -> torch.Tensor:
    """The starting latents for `seed`, drawn on the CPU in float32 (device-independent)."""
    h = 2 * (height // (vae_scale * 2))
    w = 2 * (width // (vae_scale * 2))
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn((1, channels, h, w), generator=gen, dtype=torch.float32)


class Engine(Decoding):
    """A loaded pipeline on one device, ready to run jobs one after another.

    On CUDA the fast path (TF32, chosen attention kernel, regional compile warmed in the background,
    the text encoder from CUDA graphs, a compiled VAE decoder; in FP8 mode the steps from CUDA graphs
    too) and a memory profile (chosen from free VRAM unless named) apply;
    every option has a default so `Engine(model_path, device)` keeps working. `pipe` lets a caller
    hand in an already-built pipeline (the random-weight stand-in); `model_path` is then a label.
    """

    def __init__(self, model_path: str | Path, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None, *, pipe: Any = None, fast_path: bool | None = None,
                 memory_profile: str | None = "auto", fp8: bool = False, compile: bool | None = None,
                 attention: str | None = None, warm: str = "background",
                 compile_cache: str | Path | None = None,
                 vae_channels_last: bool | None = None, compile_vae: bool | None = None,
                 graph_text_encoder: bool | None = None, graph_steps: bool | None = None) -> None:
        from studio.engine import fastpath, memory

        self.device = torch.device(device)
        self.dtype = dtype or choose_dtype(self.device)
        self.model_path = str(model_path)
        self.notes: list[str] = []
        cuda = self.device.type == "cuda"
        self.fast_path = cuda if fast_path is None else (bool(fast_path) and cuda)
        self.profile = memory.resolve_profile(memory_profile, self.device)
        # compile=True is honoured on a CPU too (inductor's C++ backend), which keeps it testable there.
        want_compile = self.fast_path if compile is None else bool(compile)
        if want_compile and self.profile.transformer != "resident":
            want_compile = False
            self.notes.append(f"compile off: profile {self.profile.name} streams the transformer")
        if want_compile and cuda and not _triton_available():
            want_compile = False
            self.notes.append("compile off: Triton is not installed")
        self.compile_cache: Path | None = None
        if want_compile:
            self.compile_cache = fastpath.use_compile_cache(fastpath.compile_cache_dir(
                Path(compile_cache) if compile_cache else None))
            fastpath.load_mega_cache(self.compile_cache)
        t0 = time.perf_counter()
        self.pipe = pipe if pipe is not None else load_pipeline(model_path, self.device, self.dtype)
        self.load_s = time.perf_counter() - t0
        self._embeds: dict[str, Any] = {}
        self.attention = "native"
        if self.fast_path:
            fastpath.enable_tf32()
            self.attention = fastpath.set_attention_backend(self.pipe.transformer,
                                                            attention or fastpath.DEFAULT_ATTENTION)
        # Channels-last VAE convolutions: compiled they decode faster (H100: 63 -> 52 ms), eager slower
        # (102 -> 146 ms; tiled 2048x2048 0.75 -> 1.14 s), so by default (None) the VAE turns channels-last
        # as its decoder compiles, and only under the full profile, which never tiles up to 2048x2048.
        self.vae_channels_last = bool(vae_channels_last) and cuda
        self._vae_channels_last_compiled = vae_channels_last is None and cuda and self.profile.name == "full"
        if self.vae_channels_last:
            self.pipe.vae.to(memory_format=torch.channels_last)
        self.fp8 = False
        if fp8:
            from studio.engine import fp8 as fp8mod

            if fp8mod.fp8_supported(self.device):
                fp8mod.quantize_transformer(self.pipe.transformer, "tensor" if want_compile else "rowwise")
                self.fp8 = True
            else:
                self.notes.append("fp8 off: this device has no FP8 tensor cores")
        self._memory = memory.apply_profile(self.pipe, self.profile, self.device)
        # The text encoder replayed from CUDA graphs (studio/engine/text_graphs.py) where its layers stay
        # on the GPU; captured in the warm-up, or per prompt-length bucket on first use.
        self.text_graphs: Any = None
        if (self.fast_path if graph_text_encoder is None else bool(graph_text_encoder)) and cuda \
                and self.profile.text_encoder != "swap":
            from studio.engine.text_encode import runs_without_mask
            from studio.engine.text_graphs import TextGraphs

            if runs_without_mask(self.pipe.text_encoder):
                self.text_graphs = TextGraphs(self.pipe.text_encoder, self.device)
            else:
                self.notes.append("text encoder graphs off: its attention is not causal without a mask")
        self._switch = fastpath.CompileSwitch()
        # The text graphs and the VAE warm after the blocks, on their own switch, so the blocks' compiled
        # forward is in use while the VAE still compiles.
        self._extra_switch = fastpath.CompileSwitch()
        self.compiled = False
        self.compile_s: float | None = None
        self._warm_thread: threading.Thread | None = None
        # Compiled VAE decoder: on by default on the CUDA fast path under the full and 24gb profiles
        # (H100: 102 -> 52 ms a 1024x1024 decode uncapped; docs/benchmarks.md for 24gb).
        want_vae = (self.fast_path and self.profile.name in ("full", "24gb")) if compile_vae is None \
            else bool(compile_vae)
        self.compiled_vae = want_vae and want_compile and fastpath.compile_vae_decoder(self.pipe.vae,
                                                                                        self._extra_switch)
        if want_compile:
            fastpath.compile_blocks(self.pipe.transformer, self._switch)
            self.compiled = True
        # Denoising steps from CUDA graphs (studio/engine/step_graphs.py): by default only in FP8 mode, whose
        # shorter steps left the GPU waiting on Python (-11 ms an image; bf16 -6 ms for +3.8 GiB reserved);
        # only where nothing caps the memory their pool keeps; with compile, once the compiled blocks run.
        self.step_graphs: Any = None
        if (self.fp8 and self.fast_path if graph_steps is None else bool(graph_steps)) and cuda \
                and self.profile.budget_gib is None:
            from studio.engine.step_graphs import StepGraphs

            self.step_graphs = StepGraphs(self.pipe.transformer, lambda: self._switch.ready or not self.compiled)
        if want_compile:
            if warm == "background" and self.profile.budget_gib is not None:
                warm = "sync"  # a second forward's activations at once could cross a tight budget
            if warm == "sync":
                self.warm_up()
            elif warm == "background":
                self._warm_thread = threading.Thread(target=self.warm_up, name="zx-compile-warmup", daemon=True)
                self._warm_thread.start()

    def warm_up(self, sizes: tuple[tuple[int, int], ...] = WARM_SIZES, batches: tuple[int, ...] = (1,),
                on_progress: ProgressCallback | None = None) -> float:
        """Compile the blocks for the common sizes (studio/engine/warmup.py); returns the seconds it took.

        Until it finishes, requests run the eager blocks; a compile failure leaves them eager.
        `on_progress` hears the fraction done after each compiled shape, so a worker can show the wait.
        """
        from studio.engine.warmup import warm_up

        return warm_up(self, sizes, batches, on_progress)

    def drop_step_graphs(self) -> None:
        self.notes.append(f"step graphs off: {self.step_graphs.failed}")
        self.step_graphs.remove()
        self.step_graphs = None

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Block until background warm-up ends; True if the compiled blocks are in use."""
        if self._warm_thread is not None:
            self._warm_thread.join(timeout)
        return self._switch.ready

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return "CPU"

    def encode(self, prompt: str) -> list[torch.Tensor]:
        """Prompt embeddings, cached for the last few prompts (several seeds of a prompt encode once)."""
        if prompt in self._embeds:
            return self._embeds[prompt]
        embeds = self._encode_graphed(prompt)
        if embeds is None:
            embeds = self._encode_eager(prompt)
        if len(self._embeds) >= 8:
            self._embeds.pop(next(iter(self._embeds)))
        self._embeds[prompt] = embeds
        return embeds

    def _encode_eager(self, prompt: str) -> list[torch.Tensor]:
        swap = self._memory.get("swap")
        if swap is not None:
            swap.onload()
        try:
            with torch.no_grad():
                embed = self.pipe.text_encoder.get_input_embeddings().weight
                if self.fast_path or embed.device.type != self.device.type:
                    from studio.engine.text_encode import encode_prompt_short

                    return encode_prompt_short(self.pipe, prompt, self.device)
                return self.pipe._encode_prompt(prompt=[prompt], device=self.device, max_sequence_length=512)
        finally:
            if swap is not None:
                swap.offload()

    def _encode_graphed(self, prompt: str) -> list[torch.Tensor] | None:
        """Embeddings from the text encoder's CUDA graphs, or None where they are not (yet) in use."""
        graphs = self.text_graphs
        if graphs is None or (self.compiled and not self._extra_switch.ready):
            return None  # while the warm-up captures them, requests encode eagerly
        from studio.engine.text_encode import prompt_ids

        try:
            return [graphs.encode(prompt_ids(self.pipe.tokenizer, prompt))]
        except RuntimeError as exc:  # a capture that fails turns the graphs off, not the request
            self.text_graphs = None
            self.notes.append(f"text encoder graphs off: {exc}"[:300])
            return None

    _loras: Any = None  # studio.engine.lora.LoraCache, made on the first set_loras with a LoRA in it
    # LoRAs merged into the weights (no per-image cost, no recompile; studio/engine/lora.py) or as peft
    # adapters; None: merged where the blocks are compiled. Set before the first set_loras.
    lora_merge: bool | None = None

    def set_loras(self, loras: Sequence[tuple[str | Path, float]]) -> Any:
        """Make these (LoRA file, strength) pairs the ones the next images use; [] turns LoRAs off.

        Files stay loaded between calls (by content hash), so the same set again costs nothing and
        a changed one only switches adapters. A file that cannot be used raises `LoraError` (one
        line) and leaves the set in use unchanged. Returns the cache's `ApplyReport`, or None.
        """
        if self._loras is None:
            if not loras:
                return None
            from studio.engine.lora import LoraCache

            merge = self.compiled if self.lora_merge is None else bool(self.lora_merge)
            self._loras = LoraCache(self.pipe, stable_graphs=self.compiled and not merge, merge=merge)
        report = self._loras.apply(loras)
        if self.step_graphs is not None and self._loras.loaded and not self._loras.merge:
            # captured kernels would skip the adapters (merged weights are read in place: they stay)
            self.step_graphs.failed = "LoRAs in use"
            self.drop_step_graphs()
        return report

    def make_room(self, nbytes: int, label: str) -> Any:
        """Plan `nbytes` more on the device (a ControlNet, before it moves there) under the memory profile
        and what the device has free, moving the text encoder's layers to CPU memory where the plan needs
        it (studio/engine/memory.py).

        Returns the `Placement`; a plan that still crosses the budget is noted, not refused."""
        from studio.engine import memory

        had_swap = self._memory.get("layers") is not None
        placement = memory.make_room(self.pipe, self._memory, self.profile, self.device, nbytes)
        if self._memory.get("layers") is not None and not had_swap:
            # its graphs read the layers' old device memory; new prompts now stream the layers in
            self.text_graphs = None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # their memory pool too
            self.notes.append(f"text encoder to CPU memory: {label} (+{placement.extra_gib:.2f} GiB) would cross "
                              f"the {placement.budget_gib:.1f} GiB profile {self.profile.name} may use here")
        if not placement.fits and nbytes:  # with nothing to place, the label names what just went
            self.notes.append(f"{label}: {placement.planned_gib:.2f} GiB planned, over the "
                              f"{placement.budget_gib:.1f} GiB profile {self.profile.name} may use here")
        return placement

    _images_in: Any = None

    @property
    def images_in(self) -> Any:
        """Image-to-image, inpaint, ControlNet and hires fix on this engine's pipe (studio/engine/images_in.py)."""
        if self._images_in is None:
            from studio.engine.images_in import ImagesIn

            self._images_in = ImagesIn(self)
        return self._images_in

    def generate(self, spec: ImageSpec | None = None, *, on_step: StepCallback | None = None,
                 should_cancel: CancelCheck | None = None, on_preview: PreviewCallback | None = None,
                 **fields: Any) -> tuple[Image.Image, Timings]:
        """Run one image; raises Cancelled or NonFiniteOutput instead of returning a bad image.

        Scripts may name the spec's fields instead (`prompt=..., seed=...`)."""
        spec = spec if spec is not None else ImageSpec(**fields)
        images, timings = self.generate_batch([spec], on_step=on_step, should_cancel=should_cancel,
                                              on_preview=on_preview)
        return images[0], timings

    def generate_batch(self, specs: Sequence[ImageSpec] | None = None, *, on_step: StepCallback | None = None,
                       should_cancel: CancelCheck | None = None, seeds: Sequence[int] = (),
                       on_preview: PreviewCallback | None = None, **fields: Any) -> tuple[list[Image.Image], Timings]:
        """Several images that differ only in their seed, in one denoising batch (each the same as alone).

        Scripts may give one spec's fields and `seeds` instead. Tight memory profiles cap how many
        images denoise together; larger batches run in chunks.
        """
        if specs is None:
            base = ImageSpec(**fields)
            specs = [base.with_seed(s) for s in seeds]
        first = specs[0]
        if any(s.with_seed(first.seed) != first for s in specs[1:]):
            raise ValueError("a batch's images must differ only in their seed")
        if first.has_inputs:  # init image, mask, control or hires: their own pipelines, one image at a time
            return self.images_in.run_specs(specs, on_step, should_cancel, preview=self._previewer(on_preview))
        limit = self.profile.max_batch
        if limit and len(specs) > limit:
            images: list[Image.Image] = []
            total = Timings(images=len(specs))
            for i in range(0, len(specs), limit):
                part, t = self.generate_batch(specs[i:i + limit], on_step=on_step, should_cancel=should_cancel,
                                              on_preview=on_preview)
                images += part
                for name in ("encode_s", "denoise_s", "decode_s", "total_s"):
                    setattr(total, name, getattr(total, name) + getattr(t, name))
            return images, total
        return self._denoise(first, [s.seed for s in specs], on_step, should_cancel, self._previewer(on_preview))

    _preview: Any = None  # studio.engine.preview.Previewer, made on the first image that asks for previews

    def _previewer(self, on_preview: PreviewCallback | None) -> Any:
        """The previewer (built once: tiny autoencoder or projection, calibrated), listening to `on_preview`."""
        if on_preview is None:
            return None
        if self._preview is None:
            from studio.core.paths import get_paths
            from studio.engine.preview import make_previewer

            self._preview = make_previewer(self.pipe, self.model_path, self.device, get_paths().models_dir)
        self._preview.on_preview = on_preview
        return self._preview

    def _denoise(self, spec: ImageSpec, seeds: list[int], on_step: StepCallback | None,
                 should_cancel: CancelCheck | None, preview: Any = None) -> tuple[list[Image.Image], Timings]:
        prompt, negative_prompt, guidance, steps = spec.prompt, spec.negative_prompt, spec.guidance, spec.steps
        width, height = spec.width, spec.height
        pipe = self.pipe
        timings = Timings(images=len(seeds))
        t0 = time.perf_counter()
        embeds = self.encode(prompt)
        negative = self.encode(negative_prompt) if guidance > 0 else None
        timings.encode_s = time.perf_counter() - t0

        latents = torch.cat([initial_noise(s, width, height, pipe.transformer.config.in_channels,
                                           pipe.vae_scale_factor) for s in seeds]).to(self.device)
        if preview is not None:
            preview.begin(latents)
        step_end = step_callback(steps, on_step, should_cancel, preview)

        if should_cancel is not None and should_cancel():
            raise Cancelled()
        t1 = time.perf_counter()
        try:
            with torch.no_grad():
                out = pipe(
                    prompt_embeds=embeds * len(seeds),
                    negative_prompt_embeds=None if negative is None else negative * len(seeds),
                    height=height,
                    width=width,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    latents=latents,
                    output_type="latent",
                    callback_on_step_end=step_end,
                ).images
        finally:
            if preview is not None:
                preview.end()
        if self.step_graphs is not None and self.step_graphs.failed:
            self.drop_step_graphs()
        # No host sync between denoising and decoding (the decode queues right behind the last step):
        # the finite check of the latents is read with the pixels, and the split is timed by CUDA events.
        clock = Clock(self.device)
        latents_ok = torch.isfinite(out).all()
        images = self.decode_many(out, width, height, latents_ok=latents_ok)
        timings.denoise_s, timings.decode_s = clock.split(t1)
        timings.total_s = time.perf_counter() - t0
        return images, timings
