"""The engine's warm-up: compile the transformer blocks for the common sizes, then capture the step
and text graphs and compile the VAE decoder, each turned off alone if it fails.

Kept apart from `generate.py` because it runs once per worker start and touches only transformer,
text-encoder and VAE calls, never the scheduler: requests may run beside it on the eager path.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from studio.engine.generate import ProgressCallback, initial_noise

if TYPE_CHECKING:
    from studio.engine.generate import Engine

Sizes = tuple[tuple[int, int], ...]


class _Progress:
    """Counts warm-up parts done and tells `callback` the fraction (never past 1, never twice the same)."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback, self.total, self.done = callback, max(1, total), 0

    def step(self, stage: str) -> None:
        self.done = min(self.total, self.done + 1)
        if self.callback is not None and self.done < self.total:
            self.callback(self.done / self.total, stage)

    def finish(self) -> None:
        if self.callback is not None:
            self.callback(1.0, "done")


def warm_up(engine: Engine, sizes: Sizes, batches: tuple[int, ...], on_progress: ProgressCallback | None) -> float:
    """Compile `engine`'s blocks for `sizes` × `batches` (transformer calls only), then its extras."""
    from studio.engine import fastpath

    if not engine.compiled:
        return 0.0
    progress = _Progress(on_progress, len(batches) * len(sizes) * (2 if engine.step_graphs is not None else 1)
                         + (1 if engine.text_graphs is not None else 0)
                         + (len(sizes) if engine.compiled_vae else 0))
    t0 = time.perf_counter()
    tr = engine.pipe.transformer
    cap = torch.zeros(64, tr.config.cap_feat_dim, device=engine.device, dtype=engine.dtype).normal_()
    try:
        with fastpath.warming(), torch.no_grad():
            for n in batches:
                for w, h in sizes:
                    lat = initial_noise(0, w, h, tr.config.in_channels, engine.pipe.vae_scale_factor)
                    lat = lat.to(engine.device, engine.dtype).unsqueeze(2)
                    t = torch.full((n,), 0.5, device=engine.device)
                    tr([lat[0]] * n, t, [cap] * n, return_dict=False)
                    progress.step("blocks")
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)
        engine._switch.ready = True
        if engine.compile_cache is not None:
            fastpath.save_mega_cache(engine.compile_cache)
        _warm_step_graphs(engine, sizes, batches, progress)
    except Exception as exc:  # noqa: BLE001 - compile is an optimisation, never a failure
        engine.notes.append(f"compile off after warm-up failed: {type(exc).__name__}: {exc}"[:300])
        engine.compiled = False
    engine.blocks_compile_s = time.perf_counter() - t0
    if engine.compiled and (engine.compiled_vae or engine.text_graphs is not None):
        _warm_extras(engine, sizes, progress)  # after the blocks' switch: requests use the compiled blocks meanwhile
        engine._extra_switch.ready = True
        if engine.compile_cache is not None:
            fastpath.save_mega_cache(engine.compile_cache)
    progress.finish()
    engine.compile_s = time.perf_counter() - t0
    return engine.compile_s


def _warm_step_graphs(engine: Engine, sizes: Sizes, batches: tuple[int, ...], progress: _Progress) -> None:
    """Capture the step graphs of the common shapes (prompts of up to 64 tokens); a failure turns them off."""
    if engine.step_graphs is None:
        return
    tr = engine.pipe.transformer
    try:
        for n in batches:
            for w, h in sizes:
                lat = initial_noise(0, w, h, tr.config.in_channels, engine.pipe.vae_scale_factor)
                lat = lat.to(engine.device, engine.dtype).unsqueeze(2)[0]
                t = torch.full((n,), 0.5, device=engine.device)
                for length in (32, 64):
                    cap = torch.zeros(length, tr.config.cap_feat_dim, device=engine.device, dtype=engine.dtype)
                    engine.step_graphs.warm([lat] * n, t, [cap] * n)
                progress.step("step graphs")
    except Exception as exc:  # noqa: BLE001
        engine.step_graphs.failed = f"{type(exc).__name__}: {exc}"[:300]
    if engine.step_graphs.failed:
        engine.drop_step_graphs()


def _warm_extras(engine: Engine, sizes: Sizes, progress: _Progress) -> None:
    """Capture the text graphs and compile the VAE decoder; a failure there turns only that part off."""
    from studio.engine import fastpath

    if engine.text_graphs is not None:
        try:
            from studio.engine.text_graphs import WARM_UP_TO

            engine.text_graphs.capture_all(up_to=WARM_UP_TO)
        except Exception as exc:  # noqa: BLE001
            engine.text_graphs = None
            engine.notes.append(f"text encoder graphs off: {type(exc).__name__}: {exc}"[:300])
        progress.step("text graphs")
    if not engine.compiled_vae:
        return
    vae = engine.pipe.vae
    if engine._vae_channels_last_compiled and not engine.vae_channels_last:
        # requests decoding meanwhile stay correct: convolutions take either layout
        vae.to(memory_format=torch.channels_last)
        engine.vae_channels_last = True
    try:
        with fastpath.warming(), torch.no_grad():
            ch = vae.config.latent_channels
            for w, h in sizes:
                z = torch.randn(1, ch, h // engine.pipe.vae_scale_factor, w // engine.pipe.vae_scale_factor,
                                device=engine.device, dtype=vae.dtype)
                if engine.vae_channels_last:
                    z = z.contiguous(memory_format=torch.channels_last)
                vae.decode(z, return_dict=False)
                progress.step("vae")
    except Exception as exc:  # noqa: BLE001
        fastpath.uncompile_blocks(vae)
        engine.compiled_vae = False
        if engine._vae_channels_last_compiled:  # eager is faster in the default layout
            vae.to(memory_format=torch.contiguous_format)
            engine.vae_channels_last = False
        engine.notes.append(f"VAE compile off: {type(exc).__name__}: {exc}"[:300])
