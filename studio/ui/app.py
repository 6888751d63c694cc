"""Builds the studio window (a Gradio Blocks) from a Studio: a header, then one tab per module."""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.ui import gallery, generate, history, leftover, monitor, settings
from studio.ui.context import Context, guard
from studio.ui.i18n import resolve_language, t


def _model_header(studio: Any, lang: str) -> tuple[str, bool]:
    """The model line, and whether the demo banner applies."""
    try:
        model = studio.model
    except Exception as exc:  # e.g. a configured path that is not a model: say so, keep the window usable
        return f"⚠ {exc}", False
    return t("model.line", lang, name=f"`{model.name}` · {model.path}"), bool(model.is_demo)


NAMED_ENDPOINTS = ("generate", "cancel", "history", "image")


def hide_unnamed_endpoints(demo: gr.Blocks) -> None:
    """Only the endpoints meant for scripts are listed and callable by API clients; the page's own
    events (clicks, loads, renders) stay private to the page."""
    for fn in demo.fns.values():
        if fn.api_name not in NAMED_ENDPOINTS or not getattr(fn.fn, "zx_endpoint", False):
            fn.api_visibility = "private"


def build_app(studio: Any, lang: str | None = None) -> gr.Blocks:
    """The whole window. `lang` (zh|en) overrides the settings and the system locale."""
    lang = resolve_language(lang or studio.settings.language)
    ctx = Context(studio=studio, lang=lang)
    g = guard(ctx)
    model_line, is_demo = _model_header(studio, lang)
    with gr.Blocks(title=t("title", lang), analytics_enabled=False, fill_width=True) as demo:
        with gr.Row(elem_id="zx-header", equal_height=True):
            gr.HTML('<div class="zx-brand"><span class="zx-seal">造相</span><span class="zx-name">Z-Image Studio</span>'
                    "</div>")
            model_md = gr.Markdown(model_line, elem_id="model-line")
        banner = gr.Markdown(t("demo.banner", lang), visible=is_demo, elem_id="demo-banner")
        if is_demo:
            ctx.label(banner, "demo.banner", "value")
        with gr.Tabs(elem_id="tabs") as tabs:
            ctx.tabs = tabs
            with gr.Tab(t("tab.generate", lang), id="generate", elem_id="tab-generate") as tab_gen:
                left_refresh, left_outputs = leftover.build(ctx)
                gen = generate.build(ctx)
            with gr.Tab(t("tab.history", lang), id="history", elem_id="tab-history") as tab_hist:
                hist_load, hist_inputs, hist_outputs = history.build(ctx, gen)
            with gr.Tab(t("tab.gallery", lang), id="gallery", elem_id="tab-gallery") as tab_gal:
                gal_load, gal_inputs, gal_outputs = gallery.build(ctx, gen)
            with gr.Tab(t("tab.monitor", lang), id="monitor", elem_id="tab-monitor") as tab_mon:
                timer, mon_refresh, mon_outputs = monitor.build(ctx)
            with gr.Tab(t("tab.settings", lang), id="settings", elem_id="tab-settings") as tab_set:
                save_event, set_reload, set_outputs = settings.build(ctx)
        for tab, key in ((tab_gen, "tab.generate"), (tab_hist, "tab.history"), (tab_gal, "tab.gallery"),
                         (tab_mon, "tab.monitor"), (tab_set, "tab.settings")):
            ctx.label(tab, key)

        # Each tab loads when opened; the monitor's timer runs only while its tab is open.
        tab_hist.select(hist_load, inputs=hist_inputs, outputs=hist_outputs, show_progress="hidden")
        tab_gal.select(gal_load, inputs=gal_inputs, outputs=gal_outputs, show_progress="hidden")
        tab_set.select(set_reload, outputs=set_outputs, show_progress="hidden")
        tab_mon.select(g(lambda: (gr.Timer(active=True), *mon_refresh())), outputs=[timer, *mon_outputs],
                       show_progress="hidden")
        for tab in (tab_gen, tab_hist, tab_gal, tab_set):
            tab.select(lambda: gr.Timer(active=False), outputs=[timer], show_progress="hidden")

        # Language: a switch in Settings relabels this page; a page opened later gets the current one.
        components = ctx.labelled_components
        header_outputs = [model_md]
        save_event.then(g(lambda: [_model_header(studio, ctx.lang)[0], *ctx.relabel(ctx.lang)]),
                        outputs=[*header_outputs, *components], show_progress="hidden")

        @g
        def on_load():
            line, _demo = _model_header(studio, ctx.lang)
            if ctx.lang == lang:
                return [line, *[gr.update() for _ in components]]
            return [line, *ctx.relabel(ctx.lang)]

        demo.load(on_load, outputs=[*header_outputs, *components], show_progress="hidden")
        demo.load(left_refresh, outputs=left_outputs, show_progress="hidden")
        demo.load(None, js=generate.PAGE_JS)
    hide_unnamed_endpoints(demo)
    demo.zx_context = ctx  # for tests and the server: the language and last request live here
    return demo
