"""What happens between two denoising steps, the same for every pipeline the engine runs.

diffusers calls `callback_on_step_end` after each step; text-to-image (engine/generate.py) and the
image-input pipelines (engine/images_in.py) hand it the callback made here, so progress, previews and
cancel behave alike whichever pipeline runs.
"""

from __future__ import annotations

from typing import Any


class Cancelled(Exception):
    """The job was cancelled between two steps."""


def step_callback(total: int, on_step: Any = None, should_cancel: Any = None, preview: Any = None, *,
                  begun: bool = True, before: Any = None) -> Any:
    """diffusers' `callback_on_step_end` for one image of `total` steps: `before(i)` first, then the
    preview (begun here with the first step's latents when the caller had none), progress, cancel."""
    from studio.engine.preview import step_sigmas

    state = {"begun": begun}

    def step_end(pipe: Any, i: int, _t: Any, kw: dict[str, Any]) -> dict[str, Any]:
        if before is not None:
            before(i)
        if preview is not None:  # host-side unless this step previews (no sync even then on a GPU)
            if state["begun"]:
                preview.offer(i + 1, total, kw["latents"], *step_sigmas(pipe.scheduler))
            else:
                preview.begin(kw["latents"])
                state["begun"] = True
        if on_step is not None:
            on_step(i + 1, total)
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        return kw

    return step_end

