"""Builds the studio window (a Gradio Blocks) from a Studio: a header, then one tab per module."""

from __future__ import annotations

import threading
from typing import Any

import gradio as gr

from studio.ui import gallery, generate, history, leftover, monitor, settings
from studio.ui.context import Context, guard
from studio.ui.i18n import resolve_language, t

QUIT_DELAY_S = 0.5


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


def _quit_bar(ctx: Context, quit_btn: gr.Button) -> None:
    """Quit from the window: asks first, then runs the desktop launcher's own Quit (the tray's, through `Studio.quit_hook`), which
    stops the workers, the tray and this server. Images on a GPU may finish first when some run."""
    g = guard(ctx)
    with gr.Row(visible=False, elem_id="zx-quit-confirm") as bar:
        question = gr.Markdown(elem_id="zx-quit-question")
        now = ctx.label(gr.Button(t("quit.now", ctx.lang), variant="stop", size="sm", elem_id="zx-quit-now"),
                        "quit.now", "value")
        finish = ctx.label(gr.Button(t("quit.finish", ctx.lang), size="sm", visible=False,
                                     elem_id="zx-quit-finish"), "quit.finish", "value")
        cancel = ctx.label(gr.Button(t("quit.cancel", ctx.lang), size="sm", elem_id="zx-quit-cancel"),
                           "quit.cancel", "value")
    said = gr.Markdown(visible=False, elem_id="zx-quit-status")

    @g
    def ask():
        hook = ctx.studio.quit_hook
        n = hook.running_images() if hook is not None else 0
        text = ctx.t("quit.confirm_running", n=n) if n else ctx.t("quit.confirm")
        return gr.update(visible=True), text, gr.update(visible=n > 0)

    def quit_with(finish_running: bool):
        @g
        def do_quit():
            hook = ctx.studio.quit_hook
            if hook is None:
                return gr.update(visible=False), gr.update(visible=True, value=ctx.t("quit.not_desktop"))
            # A moment's delay lets this answer reach the page before Quit stops the server.
            threading.Timer(QUIT_DELAY_S, hook.request, kwargs={"finish_running": finish_running}).start()
            return gr.update(visible=False), gr.update(visible=True, value=ctx.t("quit.stopping"))
        return do_quit

    quit_btn.click(ask, outputs=[bar, question, finish], show_progress="hidden")
    cancel.click(lambda: gr.update(visible=False), outputs=[bar], show_progress="hidden")
    # A window the studio opened is closed by Quit; one the person opened may close itself where the
    # browser allows a page to (else it says the studio has stopped).
    close_js = "() => { setTimeout(() => { try { window.close(); } catch (e) {} }, 1500); }"
    for button, finish_running in ((now, False), (finish, True)):
        button.click(quit_with(finish_running), outputs=[bar, said], show_progress="hidden").then(
            None, js=close_js)


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
            quit_btn = ctx.label(gr.Button(t("quit.button", lang), size="sm", scale=0, min_width=72,
                                           elem_id="zx-quit"), "quit.button", "value")
        _quit_bar(ctx, quit_btn)
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
        demo.load(None, js=gallery.PAGE_JS)
    hide_unnamed_endpoints(demo)
    demo.zx_context = ctx  # for tests and the server: the language and last request live here
    return demo
