"""The Generate tab: the form, Generate/Cancel, live progress per image, and results as they finish
(its named endpoints for scripts are in endpoints.py)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gradio as gr

from studio.core.assets import assets_dir
from studio.core.image_inputs import InputImageError
from studio.core.metadata import request_from_chunks
from studio.core.pngfile import read_chunks
from studio.core.request import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    MAX_GUIDANCE,
    MIN_GUIDANCE,
    GenerationRequest,
    ValidationError,
    validate,
)
from studio.ui import form, lora_picker
from studio.ui.context import Context, guard
from studio.ui.endpoints import add_endpoints
from studio.ui.i18n import field_error, t
from studio.ui.image_panel import build_panel, image_fields, panel_values, send_buttons, wire_send
from studio.ui.progress import Follower, captions, render_progress
from studio.ui.window_queue import QUEUE_CLICK_JS, WindowQueue, find_view, render_listing, window

ASSETS_DIR = assets_dir("examples.json")
# Validation fields -> the error slot shown under them (width and height share the size slot).
ERROR_SLOTS = ("prompt", "negative_prompt", "size", "steps", "guidance", "count", "seed", "image")
SLOT_OF = {"width": "size", "height": "size", "seed_mode": "seed", "init_image": "image", "mask": "image",
           "strength": "image", "mask_blur": "image", "control": "image", "control_kind": "image",
           "control_scale": "image", "control_range": "image", "control_model": "image", "hires": "image",
           "hires_scale": "image", "hires_strength": "image"}



def load_examples(path: Path | None = None, *, demo: bool = False) -> list[str]:
    """Example prompts that fit the model in use (the demo model draws only shapes: its own set),
    Chinese first then English; none if the file is missing or broken."""
    try:
        data = json.loads((path or ASSETS_DIR / "examples.json").read_text("utf-8"))
    except (OSError, ValueError):
        return []
    if demo:
        data = data.get("demo") or {}
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
    more: Any = None  # the folded seed mode and guidance
    loras: Any = None  # the LoRA table (name, strength), filled by the picker above it
    loras_box: Any = None  # the folded LoRA picker
    run: Any = None  # the generator handler
    run_inputs: list | None = None
    run_outputs: list | None = None
    panel: Any = None  # studio.ui.image_panel.ImagePanel

    @property
    def fields(self) -> list[Any]:
        """The form's components in `form.FIELDS` order (what `run` takes and `fill_values` fills)."""
        return [getattr(self, name) for name in form.FIELDS]

    @property
    def fill_outputs(self) -> list[Any]:
        """What `fill_values` updates: every field, plus the boxes whose visibility depends on them."""
        return [*self.fields, self.negative_box, self.custom_row, self.more, self.loras_box, *self.panel.inputs]


def fill_values(request: GenerationRequest, lang: str, strict: bool = False) -> list[Any]:
    """Updates for `GenerateTab.fill_outputs` that put `request` back into the form (and unfold "more"
    when the request used it). `strict` (Rerun): an input no longer stored refuses it all (`panel_values`)."""
    values = form.fields_from_request(request)
    unusual = values.guidance > 0 or values.seed_mode != "random"  # unfold what was restored into it
    return [*values.as_list(), gr.update(visible=values.guidance > 0),
            gr.update(visible=values.size == form.CUSTOM), gr.update(open=True) if unusual else gr.update(),
            gr.update(open=True) if values.loras else gr.update(), *panel_values(request, lang, strict)]


def _size_choices(lang: str) -> list[tuple[str, str]]:
    return [(form.preset_label(p), p) for p in form.SIZE_PRESETS] + [(t("gen.size.custom", lang), form.CUSTOM)]


def _seed_choices(lang: str) -> list[tuple[str, str]]:
    return [(t(f"seed.{m}", lang), m) for m in ("random", "fixed", "increment")]


PAGE_JS = """
() => {
  if (window.zxPage) return;
  window.zxPage = true;
  // Ctrl+Enter (Cmd+Enter on a Mac) in the Generate tab clicks Generate
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && document.querySelector("#tab-generate")?.offsetParent) {
      e.preventDefault();
      document.querySelector("#generate")?.click();
    }
  });
  // the results box ends at the window's bottom edge, whatever the header, banners and queue above it take
  const fit = () => {
    const out = document.querySelector("#gen-output"), res = document.querySelector("#results");
    if (!out || !res || !res.offsetParent) return;
    const top = res.getBoundingClientRect().top + window.scrollY;
    out.style.setProperty("--zx-results-h", Math.max(260, Math.round(window.innerHeight - top - 56)) + "px");
  };
  window.addEventListener("resize", fit);
  setInterval(fit, 500);
}
"""


def _columns(count: int) -> int:
    """Result columns for `count` images: one image whole, otherwise always two (no jumping)."""
    return 1 if count <= 1 else 2


def _cancel(ctx: Context, request_id: str) -> None:
    """Cancel one request of a window: queued images are dropped, running ones stop at their next step."""
    view = find_view(request_id)
    if view is not None:
        view.cancel_requested = True
    ctx.studio.cancel(request_id)


def build(ctx: Context) -> GenerateTab:
    lang = ctx.lang
    g = guard(ctx)
    # Start at the model's own size: 1024² for Z-Image, the demo model's training size otherwise.
    start_w, start_h = ctx.studio.default_size
    start_preset = f"{start_w}x{start_h}" if f"{start_w}x{start_h}" in form.SIZE_PRESETS else form.CUSTOM
    with gr.Row(equal_height=False, elem_id="gen-layout"):
        with gr.Column(scale=5, min_width=300, elem_classes="zx-form"):
            # What a person types and clicks first, at the top: prompt, negative, Generate.
            prompt = ctx.label(gr.Textbox(label=t("gen.prompt", lang), lines=3, max_lines=10,
                                          placeholder=t("gen.prompt.placeholder", lang), elem_id="prompt"),
                               "gen.prompt")
            errors = {"prompt": gr.Markdown(visible=False, elem_id="err-prompt", elem_classes="zx-error")}
            with gr.Column(visible=DEFAULT_GUIDANCE > 0) as negative_box:
                negative = ctx.label(gr.Textbox(label=t("gen.negative", lang), lines=2, elem_id="negative",
                                                placeholder=t("gen.negative.placeholder", lang)), "gen.negative")
                errors["negative_prompt"] = gr.Markdown(visible=False, elem_id="err-negative_prompt",
                                                        elem_classes="zx-error")
            with gr.Row(elem_id="gen-buttons"):
                generate_btn = ctx.label(gr.Button(t("gen.generate", lang), variant="primary", elem_id="generate",
                                                   scale=3), "gen.generate", "value")
                cancel_btn = ctx.label(gr.Button(t("gen.cancel", lang), variant="stop", elem_id="cancel", scale=1),
                                       "gen.cancel", "value")
            size = gr.Radio(choices=_size_choices(lang), value=start_preset,
                            label=t("gen.size", lang), elem_id="size")
            ctx.label(size, "gen.size")
            with gr.Row(visible=start_preset == form.CUSTOM) as custom_row:
                width = ctx.label(gr.Number(value=start_w, precision=0, label=t("gen.width", lang),
                                            elem_id="width", minimum=None), "gen.width")
                height = ctx.label(gr.Number(value=start_h, precision=0, label=t("gen.height", lang),
                                             elem_id="height"), "gen.height")
            errors["size"] = gr.Markdown(visible=False, elem_id="err-size", elem_classes="zx-error")
            # Numbers as typed (no slider, no rounding): a bad one is refused with core's message.
            with gr.Row(equal_height=True):
                steps = ctx.label(gr.Number(value=DEFAULT_STEPS, label=t("gen.steps", lang), elem_id="steps",
                                            min_width=90), "gen.steps")
                count = ctx.label(gr.Number(value=1, label=t("gen.count", lang), elem_id="count", min_width=90),
                                  "gen.count")
                seed = ctx.label(gr.Textbox(value="", label=t("gen.seed", lang), elem_id="seed", min_width=160),
                                 "gen.seed")
            errors["steps"] = gr.Markdown(visible=False, elem_id="err-steps", elem_classes="zx-error")
            errors["count"] = gr.Markdown(visible=False, elem_id="err-count", elem_classes="zx-error")
            errors["seed"] = gr.Markdown(visible=False, elem_id="err-seed", elem_classes="zx-error")
            with gr.Accordion(t("gen.more", lang), open=False, elem_id="gen-more") as more:
                ctx.label(more, "gen.more")
                seed_mode = gr.Radio(choices=_seed_choices(lang), value="random", label=t("gen.seed_mode", lang),
                                     elem_id="seed-mode")
                ctx.label(seed_mode, "gen.seed_mode")
                guidance = ctx.label(gr.Slider(MIN_GUIDANCE, MAX_GUIDANCE, value=DEFAULT_GUIDANCE, step=0.5,
                                               label=t("gen.guidance", lang), elem_id="guidance"), "gen.guidance")
                errors["guidance"] = gr.Markdown(visible=False, elem_id="err-guidance", elem_classes="zx-error")
                with gr.Row():
                    dice_btn = ctx.label(gr.Button(t("gen.dice", lang), size="sm", elem_id="dice"), "gen.dice",
                                         "value")
                    reuse_btn = ctx.label(gr.Button(t("gen.reuse_seed", lang), size="sm", elem_id="reuse-seed"),
                                          "gen.reuse_seed", "value")
            loras, loras_box = lora_picker.build(ctx)
            errors["loras"] = gr.Markdown(visible=False, elem_id="err-loras", elem_classes="zx-error")
            panel = build_panel(ctx)
            errors["image"] = gr.Markdown(visible=False, elem_id="err-image", elem_classes="zx-error")
            examples = load_examples(demo=ctx.studio.model.is_demo)
            if examples:  # folded: a person who knows what to draw never scrolls past them
                with gr.Accordion(t("gen.examples", lang), open=False, elem_id="examples-box") as ex_box:
                    ctx.label(ex_box, "gen.examples")
                    gr.Examples(examples=[[e] for e in examples], inputs=[prompt], label=None,
                                examples_per_page=10, elem_id="examples")
        with gr.Column(scale=7, min_width=320, elem_id="gen-output"):
            progress = gr.HTML(render_progress(None, lang), elem_id="progress")
            queue_rows = gr.HTML("", elem_id="queue", js_on_load=QUEUE_CLICK_JS, padding=False)

            def cancel_clicked(evt: gr.EventData) -> None:
                rid = str(getattr(evt, "request_id", "") or "")
                if rid:
                    _cancel(ctx, rid)

            queue_rows.click(g(cancel_clicked), outputs=None, show_progress="hidden", api_visibility="private")
            notice = gr.Markdown(visible=False, elem_id="gen-notice")
            with gr.Row(equal_height=True, elem_id="results-send"):  # acts on the result clicked last, else the first
                result_send = send_buttons(ctx, "results")
            results = gr.Gallery(label=t("gen.results", lang), elem_id="results", columns=1,
                                 object_fit="contain", allow_preview=False, interactive=False)
            ctx.label(results, "gen.results")

    result_paths = gr.State([])
    request_id = gr.State(None)
    last_seed = gr.State(None)

    tab = GenerateTab(prompt, negative, negative_box, size, custom_row, width, height, steps, guidance,
                      count, seed, seed_mode, errors, progress, results, result_paths, request_id, last_seed,
                      notice, more, loras=loras, loras_box=loras_box)

    def clear_errors() -> dict[Any, Any]:
        return {slot: gr.update(value="", visible=False) for slot in errors.values()}

    def show_error(exc: ValidationError, lang_now: str) -> dict[Any, Any]:
        out = clear_errors()
        slot = SLOT_OF.get(exc.field, exc.field)
        out[errors[slot if slot in errors else "prompt"]] = gr.update(
            value=f"⚠ {field_error(exc.field, exc.message, lang_now, exc.kind, exc.got)}", visible=True)
        return out

    @g
    def run(request: gr.Request, *values):
        """Submit; if this window already shows a request, queue behind it and say so; otherwise stream
        this window's requests one after the other into progress and results."""
        lang_now = ctx.lang
        n = len(form.FIELDS)
        try:
            gen_request = replace(form.build_request(*values[:n]), **image_fields(*values[n:]))
        except InputImageError as exc:
            out = clear_errors()
            out[errors["image"]] = gr.update(value=f"⚠ {exc.message(lang_now)}", visible=True)
            yield out
            return
        try:
            checked = validate(gen_request)
        except ValidationError as exc:
            yield show_error(exc, lang_now)
            return
        wq = window(getattr(request, "session_hash", None) or "")
        entry, streams = wq.add(checked.prompt, checked.count)
        follower = Follower(ctx.studio.subscribe) if streams else None
        try:
            try:
                ctx.studio.submit(checked, origin="ui", interactive=True, request_id=entry.request_id)
            except ValidationError as exc:  # an input swept since validate() (store/input_sweep.py), say
                wq.drop(entry)
                yield show_error(exc, lang_now)
                return
            except Exception:
                wq.drop(entry)  # never queued: the window must not wait for it
                raise
            ctx.last_request_id = entry.request_id
            if follower is None:  # another handler of this window shows progress: queue behind it
                ahead = len(wq.listing()) - 1
                out = clear_errors()
                out.update({notice: gr.update(value=t("gen.queued_msg", lang_now, n=ahead), visible=True),
                            queue_rows: render_listing(wq.listing(), lang_now)})
                yield out
                return
            yield from _stream(wq, follower, clear_errors())
            follower.close()
            follower = None  # a normal end: `current()` already handed streaming back
        finally:
            if follower is not None:  # an error or a closed page: this window stops following its requests
                follower.close()
                wq.abandon()

    def _stream(wq: WindowQueue, follower: Follower, first: dict[Any, Any]):
        """Show each entry of `wq` in turn until none is left."""
        out = first
        while (entry := wq.current()) is not None:
            view, lang_now = entry.view, ctx.lang
            listing = wq.listing()
            paused = bool(getattr(ctx.studio, "paused", False))
            view.studio_eta_s = ctx.studio.eta_s(entry.request_id)  # known before its first step
            out.update({progress: render_progress(view, lang_now), results: gr.update(value=[], columns=
                        _columns(view.count)), result_paths: [], request_id: entry.request_id,
                        queue_rows: render_listing(listing, lang_now),
                        notice: gr.update(value=t("gen.paused", lang_now), visible=paused)})
            yield out
            last_yield, shown = time.monotonic(), listing
            while not view.settled():
                changed = follower.drain_all(wq.views, timeout=0.2)
                listing = wq.listing()
                if changed or listing != shown or time.monotonic() - last_yield > 2.0:
                    view.studio_eta_s = ctx.studio.eta_s(entry.request_id)
                    items = captions(view, ctx.lang)
                    update = {progress: render_progress(view, ctx.lang), results: items,
                              result_paths: [p for p, _c in items]}
                    if listing != shown:
                        update[queue_rows] = render_listing(listing, ctx.lang)
                        shown = listing
                    if view.images:
                        update[last_seed] = view.images[0]["seed"]
                    yield update
                    last_yield = time.monotonic()
            wq.finish(entry)
            listing = wq.listing()
            items = captions(view, ctx.lang)
            out = {progress: render_progress(view, ctx.lang), results: items,
                   result_paths: [p for p, _c in items], request_id: None, notice: gr.update(visible=False),
                   queue_rows: render_listing(listing, ctx.lang)}
            if view.images:
                out[last_seed] = view.images[0]["seed"]
            if wq.waiting() or listing:
                yield out  # the finished request stays on screen a moment before the next one takes over
                time.sleep(0.5)
        yield out

    run_outputs = [*errors.values(), progress, results, result_paths, request_id, last_seed, notice, queue_rows]
    tab.panel = panel
    tab.run, tab.run_inputs, tab.run_outputs = run, [*tab.fields, *panel.inputs], run_outputs
    # "multiple": a click while a request runs is a new request (queued), never ignored.
    generate_btn.click(run, inputs=tab.run_inputs, outputs=run_outputs, concurrency_limit=None,
                       show_progress="hidden", trigger_mode="multiple")

    @g
    def cancel_current(rid):
        if rid:
            _cancel(ctx, rid)

    cancel_btn.click(cancel_current, inputs=[request_id], outputs=None, concurrency_limit=None, show_progress="hidden")

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
            gr.Info(t("gen.no_last_seed", ctx.lang), title=t("toast.info", ctx.lang))
            return gr.update()
        return str(last)

    reuse_btn.click(reuse_seed, inputs=[last_seed], outputs=[seed], show_progress="hidden")

    @g
    def restore_result(paths, evt: gr.SelectData):
        if not paths or evt.index is None or evt.index >= len(paths):
            return [gr.update()] * len(tab.fill_outputs)
        values = fill_values(read_png_request(paths[evt.index]), ctx.lang)
        gr.Info(t("gen.restored", ctx.lang), title=t("toast.info", ctx.lang))
        return values

    results.select(restore_result, inputs=[result_paths], outputs=tab.fill_outputs, show_progress="hidden")
    picked = gr.State(None)  # the result clicked last

    @g
    def pick_result(evt: gr.SelectData):
        return evt.index

    results.select(pick_result, inputs=None, outputs=[picked], show_progress="hidden")

    def picked_result(paths: list[str], index: int | None) -> str | None:
        if not paths:
            return None
        return paths[index] if isinstance(index, int) and 0 <= index < len(paths) else paths[0]

    wire_send(ctx, panel, result_send, picked_result, [result_paths, picked])
    ctx.localize(progress, lambda lang_: {"value": render_progress(None, lang_)})

    add_endpoints(ctx, start_w, start_h)
    ctx.localize(size, lambda lang_: {"choices": _size_choices(lang_)})
    ctx.localize(seed_mode, lambda lang_: {"choices": _seed_choices(lang_)})
    ctx.localize(prompt, lambda lang_: {"placeholder": t("gen.prompt.placeholder", lang_)})
    ctx.localize(negative, lambda lang_: {"placeholder": t("gen.negative.placeholder", lang_)})
    return tab
