"""The one ControlNet an Engine keeps loaded: read, checked against the model, given room, let go.

Room: before a ControlNet moves to the device, the Engine plans it under its memory profile and moves
the text encoder's layers to pinned CPU memory where the plan needs that (studio/engine/memory.py).
When the ControlNet goes (replaced, or let go by a job that does not use it) the plan is made again,
and the layers come back, with the text graphs they had, where the room exists once more: later
text-to-image jobs do not keep paying for a ControlNet they no longer use."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch

from studio.engine.image_pipelines import quiet_diffusers
from studio.engine.image_tasks import ImagesInError
from studio.models import controlnets

LET_GO_AFTER = 3  # jobs without a ControlNet in a row before one that moved the text encoder out goes


class ControlWindow:
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


class ControlNetSlot:
    """An Engine's loaded ControlNet (at most one) and the room made for it.

    forget: called as the ControlNet goes, so whatever holds it (the pipelines built on it) lets go too."""

    def __init__(self, engine: Any, forget: Callable[[], None] = lambda: None) -> None:
        self.engine, self.forget = engine, forget
        self.loaded: tuple[str, Any] | None = None  # (its path or label, the model on the device)
        self.placement: Any = None  # studio.engine.memory.Placement: the last plan (extra 0 once let go)
        self._graphs_dropped = False  # the text graphs went with the layers, to come back with them
        self._plain = 0  # jobs without a ControlNet since the last one with

    def load(self, ref: str) -> Any:
        """The ControlNet `ref` names, loaded on the Engine's device (one kept; another replaces it)."""
        self._plain = 0
        if self.loaded is not None and self.loaded[0] == ref:
            return self.loaded[1]
        tr = self.engine.pipe.transformer
        try:
            info = controlnets.resolve(ref, n_layers=tr.config.n_layers)
        except controlnets.ControlNetError as exc:
            raise ImagesInError("input.controlnet_unusable", detail=str(exc)) from None
        why = controlnets.misfit(info, dict(tr.config))
        if why:
            raise ImagesInError(why[0], **why[1])
        if self.loaded is not None and self.loaded[0] == info.path:
            return self.loaded[1]
        from diffusers import ZImageControlNetModel

        self.drop()  # the old one leaves the device before the new one is read
        if info.format == "diffusers":
            with quiet_diffusers():
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
        self.loaded = (info.path, model)
        return model

    def adopt(self, label: str, model: Any, compile: bool | None = None) -> None:
        """Use an already built ControlNet under `label` (random weights for benchmarks).

        compile: its blocks on the Engine's fast path (None: where the Engine's blocks are compiled)."""
        self._plain = 0
        self.drop()
        self._place(model, label)
        self.loaded = (label, self._fast(model.to(self.engine.device).eval(), compile))

    def drop(self) -> None:
        """Forget the loaded ControlNet (and, through `forget`, the pipelines holding it)."""
        self.forget()
        self.loaded = None
        if self.engine.device.type == "cuda":
            gc.collect()  # whatever still holds it in a cycle, so its memory goes back before the next one's
            torch.cuda.empty_cache()

    def let_go(self) -> bool:
        """A job without a ControlNet: after `LET_GO_AFTER` in a row, drop a loaded ControlNet that moved
        the text encoder's layers out, and bring them back; True if it went. Before that it stays (a
        person going back and forth would reload it, and move the layers, at every switch), as does
        one that cost text-to-image nothing, or one whose going would leave the layers out anyway."""
        engine = self.engine
        if self.loaded is None or self.placement is None or self.placement.text_encoder != "swap" \
                or engine._memory.get("layers") is None or engine.profile.text_encoder == "swap":
            return False  # nothing to give back (16gb and 12gb keep the layers out whatever is loaded)
        self._plain += 1
        if self._plain < LET_GO_AFTER:
            return False
        from studio.engine.memory import plan_for

        if plan_for(engine.pipe, engine.profile, engine.device, 0).text_encoder != "resident":
            return False  # even without it the layers would not fit (another program holds the card)
        label = self.loaded[0]
        self.drop()
        try:
            self._place(None, label)
        except torch.cuda.OutOfMemoryError:  # the job about to run must not fail for it: the layers stay out
            self._plain = 0
            engine.notes.append("text encoder stays in CPU memory: no room to bring its layers back")
        return True

    def _place(self, model: Any, label: str) -> None:
        """Plan the device with `model`'s own weights (None: with no ControlNet) before it moves there:
        the Engine moves the text encoder's layers out, or back, as the plan says."""
        from studio.engine.memory import tensor_bytes

        engine = self.engine
        had_graphs, had_layers = engine.text_graphs is not None, engine._memory.get("layers") is not None
        nbytes = tensor_bytes(model, exclude=[engine.pipe.transformer]) if model is not None else 0
        placement = engine.make_room(nbytes, label)
        if had_graphs and engine.text_graphs is None:
            self._graphs_dropped = True
        if had_layers and engine._memory.get("layers") is None:
            name = label.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]  # a folder's name, not its path
            engine.notes.append(f"text encoder back on the device: {name} no longer needs its room")
            if self._graphs_dropped:
                from studio.engine.text_graphs import TextGraphs

                engine.text_graphs = TextGraphs(engine.pipe.text_encoder, engine.device)  # captured on use
                self._graphs_dropped = False
        self.placement = placement

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
