"""The Generate tab's banner for what the last run left: "12 images from last time: resume / discard",
and the studio's one-time notices (a rebuilt database, a settings file moved aside).

A plain window start never makes the images a stopped studio left queued on its own: the person
decides here (`zaoxiang resume` does the same from a terminal). Until then they stay queued.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.ui.context import Context, guard
from studio.ui.i18n import t


def banner_text(ctx: Context, lang: str | None = None) -> str:
    """The banner's words for the images left queued now (empty when there are none)."""
    lang = lang or ctx.lang
    left = ctx.studio.orphans()
    lines = []
    if left["count"]:
        lines.append(t("left.banner", lang, n=left["count"], requests=left["requests"]))
    for g in left["other_models"]:
        lines.append(t("left.other_model", lang, n=g["jobs"], model=f"`{g['model']}`"))
    return "\n\n".join(lines)


def notices_text(notices: list[str], lang: str) -> str:
    """The studio's notices in `lang`: a notice with an i18n key (studio.app.Notice) is said in the
    window's language; a plain one (already in the person's language) as it is."""
    return "\n\n".join(f"⚠ {t('notice.prefix', lang)}{t(n.key, lang, **n.values) if hasattr(n, 'key') else n}"
                       for n in notices)


def build(ctx: Context) -> tuple[Any, list[Any]]:
    """Add the banners; returns (refresh, outputs) for the page's load event."""
    g = guard(ctx)
    notices = list(ctx.studio.notices)
    ctx.studio.notices.clear()  # shown by this window from now on, not again by anyone else
    box = gr.Markdown(notices_text(notices, ctx.lang), visible=bool(notices), elem_id="studio-notices",
                      elem_classes="zx-notice")
    if notices:
        ctx.localize(box, lambda lang: {"value": notices_text(notices, lang)})
    with gr.Row(visible=False, elem_id="leftover", equal_height=True) as row:
        text = ctx.localize(gr.Markdown(elem_id="leftover-text"), lambda lang: {"value": banner_text(ctx, lang)})
        resume_btn = ctx.label(gr.Button(ctx.t("left.resume"), size="sm", variant="primary", elem_id="leftover-resume",
                                         scale=0), "left.resume", "value")
        discard_btn = ctx.label(gr.Button(ctx.t("left.discard"), size="sm", elem_id="leftover-discard", scale=0),
                                "left.discard", "value")
    done = gr.Markdown(visible=False, elem_id="leftover-done")

    def refresh() -> list[Any]:
        words = banner_text(ctx)
        runnable = ctx.studio.orphans()["count"] > 0
        return [gr.update(visible=bool(words)), words, gr.update(visible=runnable), gr.update(visible=runnable)]

    @g
    def resume() -> list[Any]:
        before = ctx.studio.orphans()["count"]
        ctx.studio.resume_orphans()
        n = before - ctx.studio.orphans()["count"]
        return [*refresh(), gr.update(value=ctx.t("left.resumed", n=n), visible=True)]

    @g
    def discard() -> list[Any]:
        n = ctx.studio.discard_orphans()
        return [*refresh(), gr.update(value=ctx.t("left.discarded", n=n), visible=True)]

    outputs = [row, text, resume_btn, discard_btn]
    resume_btn.click(resume, outputs=[*outputs, done], show_progress="hidden")
    discard_btn.click(discard, outputs=[*outputs, done], show_progress="hidden")
    return g(refresh), outputs
