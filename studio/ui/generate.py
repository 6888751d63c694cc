"""The Generate tab: the form, Generate/Cancel, live progress per image, and results as they finish."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.core.assets import assets_dir
from studio.core.metadata import request_from_chunks
from studio.core.pngfile import read_chunks
from studio.core.request import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    MAX_GUIDANCE,
    MAX_STEPS,
    MIN_GUIDANCE,
    MIN_STEPS,
    GenerationRequest,
    ValidationError,
)
from studio.ui import form
from studio.ui.context import Context, guard
from studio.ui.i18n import field_error, t
from studio.ui.progress import Follower, RequestView, captions, render_progress

ASSETS_DIR = assets_dir("examples.json")
# Validation fields -> the error slot shown under them (width and height share the size slot).
ERROR_SLOTS = ("prompt", "negative_prompt", "size", "steps", "guidance", "count", "seed")
SLOT_OF = {"width": "size", "height": "size", "seed_mode": "seed"}

# Requests running in this process, so Cancel (a separate event) can reach the generator's view.
_views: dict[str, RequestView] = {}


def load_examples(path: Path | None = None) -> list[str]:
    """Example prompts, Chinese first then English (none if the file is missing or broken)."""
    try:
        data = json.loads((path or ASSETS_DIR / "examples.json").read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return [str(p) for lang in ("zh", "en") for p in data.get(lang, [])]


def read_png_request(path: str) -> GenerationRequest:
    """The request stored in a PNG (ours or AUTOMATIC1111/Forge); ValueError when there is none."""
    request, _record = request_from_chunks(read_chunks(path))
    return request


@dataclass
class GenerateTab:
    """The Generate tab's components, so other tabs can restore into it and run it."""

    prompt: Any
    negative: Any
    negative_box: Any
    size: Any
    custom_row: Any
    width: Any
    height: Any
    steps: Any
    guidance: Any
    count: Any
    seed: Any
    seed_mode: Any
    errors: dict[str, Any]
    progress: Any
    results: Any
    result_paths: Any
    request_id: Any
    last_seed: Any
    notice: Any
    run: Any = None  # the generator handler
    run_inputs: list | None = None
    run_outputs: list | None = None

    @property
    def fields(self) -> list[Any]:
        return [self.prompt, self.negative, self.size, self.width, self.height, self.steps,
                self.guidance, self.count, self.seed, self.seed_mode]

    @property
    def fill_outputs(self) -> list[Any]:
        """What `fill_values` updates: every field, plus the boxes whose visibility depends on them."""
        return [*self.fields, self.negative_box, self.custom_row]


def fill_values(request: GenerationRequest) -> list[Any]:
    """Updates for `GenerateTab.fill_outputs` that put `request` back into the form."""
    values = form.fields_from_request(request)
    return [*values.as_list(), gr.update(visible=values.guidance > 0),
            gr.update(visible=values.size == form.CUSTOM)]


def _size_choices(lang: str) -> list[tuple[str, str]]:
    return [(form.preset_label(p), p) for p in form.SIZE_PRESETS] + [(t("gen.size.custom", lang), form.CUSTOM)]


def _seed_choices(lang: str) -> list[tuple[str, str]]:
    return [(t(f"seed.{m}", lang), m) for m in ("random", "fixed", "increment")]


def build(ctx: Context) -> GenerateTab:
    lang = ctx.lang
    g = guard(ctx)
    # Start at the model's own size: 1024² for Z-Image, the demo model's training size otherwise.
    start_w, start_h = ctx.studio.default_size
    start_preset = f"{start_w}x{start_h}" if f"{start_w}x{start_h}" in form.SIZE_PRESETS else form.CUSTOM
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=360, elem_classes="zx-form"):
            prompt = ctx.label(gr.Textbox(label=t("gen.prompt", lang), lines=4, max_lines=12,
                                          placeholder=t("gen.prompt.placeholder", lang), elem_id="prompt"),
                               "gen.prompt")
            errors = {"prompt": gr.Markdown(visible=False, elem_id="err-prompt", elem_classes="zx-error")}
            with gr.Column(visible=DEFAULT_GUIDANCE > 0) as negative_box:
                negative = ctx.label(gr.Textbox(label=t("gen.negative", lang), lines=2, elem_id="negative",
                                                placeholder=t("gen.negative.placeholder", lang)), "gen.negative")
                errors["negative_prompt"] = gr.Markdown(visible=False, elem_id="err-negative_prompt",
                                                        elem_classes="zx-error")
            size = gr.Radio(choices=_size_choices(lang), value=start_preset,
                            label=t("gen.size", lang), elem_id="size")
            ctx.label(size, "gen.size")
            with gr.Row(visible=start_preset == form.CUSTOM) as custom_row:
                width = ctx.label(gr.Number(value=start_w, precision=0, label=t("gen.width", lang),
                                            elem_id="width", minimum=None), "gen.width")
                height = ctx.label(gr.Number(value=start_h, precision=0, label=t("gen.height", lang),
                                             elem_id="height"), "gen.height")
            errors["size"] = gr.Markdown(visible=False, elem_id="err-size", elem_classes="zx-error")
            with gr.Row():
                steps = ctx.label(gr.Slider(MIN_STEPS, MAX_STEPS, value=DEFAULT_STEPS, step=1,
                                            label=t("gen.steps", lang), elem_id="steps"), "gen.steps")
                guidance = ctx.label(gr.Slider(MIN_GUIDANCE, MAX_GUIDANCE, value=DEFAULT_GUIDANCE, step=0.5,
                                               label=t("gen.guidance", lang), elem_id="guidance"), "gen.guidance")
            errors["steps"] = gr.Markdown(visible=False, elem_id="err-steps", elem_classes="zx-error")
            errors["guidance"] = gr.Markdown(visible=False, elem_id="err-guidance", elem_classes="zx-error")
            with gr.Row(equal_height=True):
                count = ctx.label(gr.Number(value=1, precision=0, label=t("gen.count", lang), elem_id="count",
                                            min_width=90), "gen.count")
                seed = ctx.label(gr.Textbox(value="", label=t("gen.seed", lang), elem_id="seed", min_width=160),
                                 "gen.seed")
                seed_mode = gr.Radio(choices=_seed_choices(lang), value="random", label=t("gen.seed_mode", lang),
                                     elem_id="seed-mode", min_width=220)
                ctx.label(seed_mode, "gen.seed_mode")
            errors["count"] = gr.Markdown(visible=False, elem_id="err-count", elem_classes="zx-error")
            errors["seed"] = gr.Markdown(visible=False, elem_id="err-seed", elem_classes="zx-error")
            with gr.Row():
                dice_btn = ctx.label(gr.Button(t("gen.dice", lang), size="sm", elem_id="dice"), "gen.dice", "value")
                reuse_btn = ctx.label(gr.Button(t("gen.reuse_seed", lang), size="sm", elem_id="reuse-seed"),
                                      "gen.reuse_seed", "value")
            with gr.Row():
                generate_btn = ctx.label(gr.Button(t("gen.generate", lang), variant="primary", elem_id="generate",
                                                   scale=3), "gen.generate", "value")
                cancel_btn = ctx.label(gr.Button(t("gen.cancel", lang), variant="stop", elem_id="cancel", scale=1),
                                       "gen.cancel", "value")
            examples = load_examples()
            if examples:  # below the buttons, so Generate stays in view on a laptop screen
                ctx.label(gr.Examples(examples=[[e] for e in examples], inputs=[prompt], label=t("gen.examples", lang),
                                      examples_per_page=10, elem_id="examples").dataset, "gen.examples")
        with gr.Column(scale=7, min_width=420):
            progress = gr.HTML(render_progress(None, lang), elem_id="progress")
            notice = gr.Markdown(visible=False, elem_id="gen-notice")
            results = gr.Gallery(label=t("gen.results", lang), elem_id="results", columns=3, height=560,
                                 object_fit="contain", allow_preview=False, interactive=False)
            ctx.label(results, "gen.results")
    result_paths = gr.State([])
    request_id = gr.State(None)
    last_seed = gr.State(None)

    tab = GenerateTab(prompt, negative, negative_box, size, custom_row, width, height, steps, guidance,
                      count, seed, seed_mode, errors, progress, results, result_paths, request_id, last_seed,
                      notice)

    def clear_errors() -> dict[Any, Any]:
        return {slot: gr.update(value="", visible=False) for slot in errors.values()}

    @g
    def run(prompt_v, negative_v, size_v, width_v, height_v, steps_v, guidance_v, count_v, seed_v, mode_v):
        """Submit, then stream this request's events into progress and results until it settles."""
        lang_now = ctx.lang
        request = form.build_request(prompt_v, negative_v, size_v, width_v, height_v, steps_v, guidance_v,
                                     count_v, seed_v, mode_v)
        follower = Follower(ctx.studio.subscribe)
        try:
            try:
                rid = ctx.studio.submit(request, origin="ui", interactive=True)
            except ValidationError as exc:
                out = clear_errors()
                slot = errors[SLOT_OF.get(exc.field, exc.field) if SLOT_OF.get(exc.field, exc.field) in errors
                              else "prompt"]
                out[slot] = gr.update(value=f"⚠ {field_error(exc.field, exc.message, lang_now)}", visible=True)
                yield out
                return
            ctx.last_request_id = rid
            view = _views[rid] = RequestView(rid, int(float(count_v)))
            out = clear_errors()
            out.update({progress: render_progress(view, lang_now), results: [], result_paths: [],
                        request_id: rid})
            paused = bool(getattr(ctx.studio, "paused", False))
            out[notice] = gr.update(value=t("gen.paused", lang_now), visible=paused)
            yield out
            last_yield = time.monotonic()
            while not view.settled():
                changed = follower.drain(view, timeout=0.2)
                if changed or time.monotonic() - last_yield > 2.0:
                    items = captions(view, lang_now)
                    update = {progress: render_progress(view, lang_now), results: items,
                              result_paths: [p for p, _c in items]}
                    if view.images:
                        update[last_seed] = view.images[0]["seed"]
                    yield update
                    last_yield = time.monotonic()
            items = captions(view, lang_now)
            final = {progress: render_progress(view, lang_now), results: items,
                     result_paths: [p for p, _c in items], request_id: None, notice: gr.update(visible=False)}
            if view.images:
                final[last_seed] = view.images[0]["seed"]
            yield final
        finally:
            follower.close()
            for rid_, v in list(_views.items()):
                if v.settled():
                    _views.pop(rid_, None)

    run_outputs = [*errors.values(), progress, results, result_paths, request_id, last_seed, notice]
    tab.run, tab.run_inputs, tab.run_outputs = run, tab.fields, run_outputs
    generate_btn.click(run, inputs=tab.fields, outputs=run_outputs, concurrency_limit=None,
                       show_progress="hidden")
    prompt.submit(run, inputs=tab.fields, outputs=run_outputs, concurrency_limit=None, show_progress="hidden")

    @g
    def cancel(rid):
        if rid:
            view = _views.get(rid)
            if view is not None:
                view.cancel_requested = True
            ctx.studio.cancel(rid)

    cancel_btn.click(cancel, inputs=[request_id], outputs=None, concurrency_limit=None, show_progress="hidden")

    @g
    def on_size(preset):
        fixed = form.preset_size(preset)
        if fixed:
            return gr.update(visible=False), fixed[0], fixed[1]
        return gr.update(visible=True), gr.update(), gr.update()

    size.change(on_size, inputs=[size], outputs=[custom_row, width, height], show_progress="hidden")
    guidance.change(g(lambda v: gr.update(visible=float(v or 0) > 0)), inputs=[guidance], outputs=[negative_box],
                    show_progress="hidden")
    dice_btn.click(g(lambda: form.dice()), outputs=[seed], show_progress="hidden")

    @g
    def reuse_seed(last):
        if last is None:
            gr.Info(t("gen.no_last_seed", ctx.lang))
            return gr.update()
        return str(last)

    reuse_btn.click(reuse_seed, inputs=[last_seed], outputs=[seed], show_progress="hidden")

    @g
    def restore_result(paths, evt: gr.SelectData):
        if not paths or evt.index is None or evt.index >= len(paths):
            return [gr.update()] * len(tab.fill_outputs)
        values = fill_values(read_png_request(paths[evt.index]))
        gr.Info(t("gen.restored", ctx.lang))
        return values

    results.select(restore_result, inputs=[result_paths], outputs=tab.fill_outputs, show_progress="hidden")

    def generate_api(prompt: str, negative_prompt: str = "", width: int = start_w, height: int = start_h,
                     steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE, count: int = 1,
                     seed: int = -1) -> dict:
        """For gradio_client (`api_name="/generate"`): draw, wait, return each image's path and seed."""
        request = GenerationRequest(prompt, negative_prompt, width, height, steps, guidance, seed, "increment",
                                    count)  # seed -1: random
        try:
            rid = ctx.studio.submit(request, origin="api", interactive=False)
        except ValidationError as exc:
            raise gr.Error(f"{exc.field}: {exc.message}") from None
        results = ctx.studio.wait(rid)
        return {"request_id": rid, "images": [{"path": r["path"], "seed": r["seed"], "status": r["status"]}
                                              for r in results]}

    gr.api(generate_api, api_name="generate", concurrency_limit=None)  # named endpoint (issue 21)
    ctx.localize(size, lambda lang_: {"choices": _size_choices(lang_)})
    ctx.localize(seed_mode, lambda lang_: {"choices": _seed_choices(lang_)})
    ctx.localize(prompt, lambda lang_: {"placeholder": t("gen.prompt.placeholder", lang_)})
    ctx.localize(negative, lambda lang_: {"placeholder": t("gen.negative.placeholder", lang_)})
    return tab
