"""The History tab: past requests newest first, searchable; restore, run again, favorite, delete."""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.ui import records
from studio.ui.context import Context, guard
from studio.ui.generate import GenerateTab, fill_values
from studio.ui.i18n import t
from studio.ui.image_panel import send_buttons, wire_send

PAGE = 50


def _slim(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the session keeps per row: ids and image paths only."""
    return [{"request_id": r.get("request_id") or r.get("id"),
             "images": [{"image_id": im.get("image_id") or im.get("id"), "path": im["path"],
                         "favorite": bool(im.get("favorite")), "seed": im.get("seed")}
                        for im in records.images_of(r)]}
            for r in rows]


def build(ctx: Context, gen: GenerateTab) -> Any:
    g = guard(ctx)
    lang = ctx.lang
    with gr.Row(equal_height=False):
        search = ctx.label(gr.Textbox(label=t("hist.search", lang), elem_id="history-search", scale=4),
                           "hist.search")
        favorites = ctx.label(gr.Checkbox(label=t("hist.favorites", lang), elem_id="history-favorites",
                                          scale=1), "hist.favorites")
        refresh = ctx.label(gr.Button(t("hist.refresh", lang), elem_id="history-refresh", scale=1,
                                      size="sm"), "hist.refresh", "value")
    table = gr.Dataframe(headers=records.history_headers(lang), datatype=["html", "str", "str", "str", "str", "str"],
                         value=[], interactive=False, wrap=True, elem_id="history", max_height=440,
                         label=t("hist.table", lang), column_widths=["72px", "140px", "40%", "30%", "90px", "70px"])
    ctx.label(table, "hist.table")
    ctx.localize(table, lambda lang_: {"headers": records.history_headers(lang_)})
    with gr.Row(equal_height=False):
        thumbs = ctx.label(gr.Gallery(label=t("hist.thumbs", lang), elem_id="history-images", columns=6,
                                      height=220, allow_preview=False, interactive=False, scale=3, fit_columns=False),
                           "hist.thumbs")
        with gr.Column(scale=1, min_width=200):
            restore = ctx.label(gr.Button(t("hist.restore", lang), variant="primary", elem_id="history-restore"),
                                "hist.restore", "value")
            rerun = ctx.label(gr.Button(t("hist.rerun", lang), elem_id="history-rerun"), "hist.rerun", "value")
            fav = ctx.label(gr.Button(t("hist.favorite", lang), elem_id="history-favorite"), "hist.favorite",
                            "value")
            delete = ctx.label(gr.Button(t("hist.delete", lang), variant="stop", elem_id="history-delete"),
                               "hist.delete", "value")
            send = send_buttons(ctx, "history")
    status = gr.Markdown(elem_id="history-status")
    rows_state = gr.State([])
    selected = gr.State(None)  # index into rows_state
    selected_image = gr.State(None)  # index into that row's images

    @g
    def load(query, fav_only):
        rows = ctx.studio.history(search=(query or "").strip() or None, favorites_only=bool(fav_only),
                                  limit=PAGE)
        table_rows = records.history_table(rows, ctx.lang)
        msg = "" if rows else t("hist.empty", ctx.lang)
        return (gr.update(value=table_rows or None, headers=records.history_headers(ctx.lang)), _slim(rows),
                None, None, [], msg)

    load_outputs = [table, rows_state, selected, selected_image, thumbs, status]
    for trigger in (refresh.click, search.submit, favorites.change):
        trigger(load, inputs=[search, favorites], outputs=load_outputs, show_progress="hidden")

    @g
    def pick(rows, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if row is None or row >= len(rows):
            return None, None, []
        return row, None, [(im["path"], records.caption(im, ctx.lang)) for im in rows[row]["images"]]

    table.select(pick, inputs=[rows_state], outputs=[selected, selected_image, thumbs], show_progress="hidden")
    @g
    def pick_image(evt: gr.SelectData):
        return evt.index

    thumbs.select(pick_image, inputs=None, outputs=[selected_image], show_progress="hidden")

    def _require(rows, row):
        if row is None or row >= len(rows):
            raise gr.Error(t("hist.none", ctx.lang), title=t("err.title", ctx.lang), print_exception=False)
        return rows[row]

    @g
    def do_restore(rows, row):
        request = ctx.studio.reuse(request_id=_require(rows, row)["request_id"])
        return [*fill_values(request, ctx.lang), gr.Tabs(selected="generate")]

    @g
    def do_rerun(rows, row):  # refused whole when an input is gone: Generate follows at once
        request = ctx.studio.reuse(request_id=_require(rows, row)["request_id"])
        return [*fill_values(request, ctx.lang, strict=True), gr.Tabs(selected="generate")]

    restore_outputs = [*gen.fill_outputs, ctx.tabs]
    restore.click(do_restore, inputs=[rows_state, selected], outputs=restore_outputs, show_progress="hidden")
    rerun.click(do_rerun, inputs=[rows_state, selected], outputs=restore_outputs,
                show_progress="hidden").success(gen.run, inputs=gen.run_inputs, outputs=gen.run_outputs,
                                                concurrency_limit=None, show_progress="hidden")

    def _image(rows, row, index):
        entry = _require(rows, row)
        images = entry["images"]
        if index is None and len(images) == 1:
            index = 0
        if index is None or index >= len(images):
            raise gr.Error(t("gal.select_first", ctx.lang), title=t("err.title", ctx.lang), print_exception=False)
        return images[index]

    @g
    def do_favorite(query, fav_only, rows, row, index):
        image = _image(rows, row, index)
        ctx.studio.set_favorite(image["image_id"], not image["favorite"])
        msg = t("gal.unfavorited" if image["favorite"] else "gal.favorited", ctx.lang)
        return (*load(query, fav_only)[:5], msg)

    @g
    def do_delete(query, fav_only, rows, row, index):
        image = _image(rows, row, index)
        ctx.studio.delete_image(image["image_id"])
        return (*load(query, fav_only)[:5], t("gal.deleted", ctx.lang))

    wire_send(ctx, gen.panel, send, lambda rows, row, index: _image(rows, row, index)["path"],
              [rows_state, selected, selected_image])

    for button, fn in ((fav, do_favorite), (delete, do_delete)):
        button.click(fn, inputs=[search, favorites, rows_state, selected, selected_image], outputs=load_outputs,
                     show_progress="hidden")
    return load, [search, favorites], load_outputs
