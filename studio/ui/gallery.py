"""The Gallery tab: every image, paged, newest first, with its parameters; and the PNG reader.

Dropping a PNG reads the parameters it carries (ours, or AUTOMATIC1111/Forge's `parameters` text),
so an image found anywhere can be made again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from studio.core.opener import open_path
from studio.core.request import GenerationRequest
from studio.ui import records
from studio.ui.context import Context, guard
from studio.ui.generate import GenerateTab, fill_values, read_png_request
from studio.ui.i18n import t

PER_PAGE = 48


def page_items(result: Any) -> tuple[list[dict[str, Any]], int]:
    """(images, total) from Studio.gallery's answer (a dict with items/total, or a plain list)."""
    if isinstance(result, dict):
        items = result.get("items") or result.get("images") or []
        total = int(result.get("total", len(items)))
        return list(items), total
    items = list(result or [])
    return items, len(items)


def describe_png(path: str, lang: str) -> tuple[str, dict[str, Any] | None]:
    """Markdown of a dropped PNG's parameters and the request fields (None when it has none)."""
    try:
        request = read_png_request(path)
    except ValueError:
        return t("gal.drop.none", lang), None
    except Exception as exc:  # not a PNG, truncated...
        return t("gal.drop.bad", lang, message=str(exc)), None
    data = request.to_dict()
    return records.info_markdown({"request": data}, lang), data


def build(ctx: Context, gen: GenerateTab) -> Any:
    g = guard(ctx)
    lang = ctx.lang
    gallery = ctx.label(gr.Gallery(label=t("gal.gallery", lang), elem_id="gallery", columns=6, height=520,
                                   object_fit="cover", allow_preview=False, interactive=False, fit_columns=False),
                        "gal.gallery")
    with gr.Row(equal_height=True):
        prev_btn = ctx.label(gr.Button(t("gal.prev", lang), size="sm", elem_id="gallery-prev"), "gal.prev", "value")
        page_md = gr.Markdown(elem_id="gallery-page")
        next_btn = ctx.label(gr.Button(t("gal.next", lang), size="sm", elem_id="gallery-next"), "gal.next", "value")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            info = gr.Markdown(elem_id="gallery-info", elem_classes="zx-info")
        with gr.Column(scale=1, min_width=200):
            restore = ctx.label(gr.Button(t("gal.restore", lang), variant="primary", elem_id="gallery-restore"),
                                "gal.restore", "value")
            fav = ctx.label(gr.Button(t("gal.favorite", lang), elem_id="gallery-favorite"), "gal.favorite", "value")
            delete = ctx.label(gr.Button(t("gal.delete", lang), variant="stop", elem_id="gallery-delete"),
                               "gal.delete", "value")
            folder = ctx.label(gr.Button(t("gal.open_folder", lang), elem_id="gallery-folder"),
                               "gal.open_folder", "value")
    with gr.Row(equal_height=False):
        drop = ctx.label(gr.File(label=t("gal.drop", lang), file_types=[".png"], type="filepath",
                                 elem_id="png-drop", height=140, scale=1), "gal.drop")
        with gr.Column(scale=2):
            drop_info = gr.Markdown(elem_id="png-info", elem_classes="zx-info")
            drop_restore = ctx.label(gr.Button(t("gal.restore", lang), visible=False, elem_id="png-restore"),
                                     "gal.restore", "value")
    status = gr.Markdown(elem_id="gallery-status")
    page_state = gr.State(0)
    items_state = gr.State([])
    selected = gr.State(None)
    dropped = gr.State(None)

    @g
    def load(page):
        page = max(0, int(page or 0))
        items, total = page_items(ctx.studio.gallery(page=page, per_page=PER_PAGE))
        pages = max(1, -(-total // PER_PAGE))
        if page >= pages and page > 0:
            page = pages - 1
            items, total = page_items(ctx.studio.gallery(page=page, per_page=PER_PAGE))
        slim = [{"image_id": im.get("image_id") or im.get("id"), "path": im.get("path"),
                 "favorite": bool(im.get("favorite")), "seed": im.get("seed")} for im in items if im.get("path")]
        return (page, [(im["path"], records.caption(im, ctx.lang)) for im in slim], slim,
                t("gal.page", ctx.lang, page=page + 1, pages=pages, total=total), None, "")

    load_outputs = [page_state, gallery, items_state, page_md, selected, info]
    prev_btn.click(g(lambda p: load(int(p or 0) - 1)), inputs=[page_state], outputs=load_outputs,
                   show_progress="hidden")
    next_btn.click(g(lambda p: load(int(p or 0) + 1)), inputs=[page_state], outputs=load_outputs,
                   show_progress="hidden")

    @g
    def pick(items, evt: gr.SelectData):
        if evt.index is None or evt.index >= len(items):
            return None, ""
        image = items[evt.index]
        return evt.index, records.info_markdown(ctx.studio.image_info(image["image_id"]) or {}, ctx.lang)

    gallery.select(pick, inputs=[items_state], outputs=[selected, info], show_progress="hidden")

    def _image(items, index):
        if index is None or index >= len(items):
            raise gr.Error(t("gal.select_first", ctx.lang), print_exception=False)
        return items[index]

    @g
    def do_restore(items, index):
        request = ctx.studio.reuse(image_id=_image(items, index)["image_id"])
        return [*fill_values(request), gr.Tabs(selected="generate")]

    restore.click(do_restore, inputs=[items_state, selected], outputs=[*gen.fill_outputs, ctx.tabs],
                  show_progress="hidden")

    @g
    def do_favorite(page, items, index):
        image = _image(items, index)
        ctx.studio.set_favorite(image["image_id"], not image["favorite"])
        out = load(page)
        return (*out[:4], index, records.info_markdown(ctx.studio.image_info(image["image_id"]) or {}, ctx.lang),
                t("gal.unfavorited" if image["favorite"] else "gal.favorited", ctx.lang))

    fav.click(do_favorite, inputs=[page_state, items_state, selected], outputs=[*load_outputs, status],
              show_progress="hidden")

    @g
    def do_delete(page, items, index):
        ctx.studio.delete_image(_image(items, index)["image_id"])
        return (*load(page), t("gal.deleted", ctx.lang))

    delete.click(do_delete, inputs=[page_state, items_state, selected], outputs=[*load_outputs, status],
                 show_progress="hidden")

    @g
    def do_folder():
        path = Path(ctx.studio.output_dir)
        key = "gal.folder_opened" if open_path(path) else "gal.folder_is"  # open_path makes a missing folder
        return t(key, ctx.lang, path=str(path))

    folder.click(do_folder, outputs=[status], show_progress="hidden")

    @g
    def on_drop(path):
        if not path:
            return "", None, gr.update(visible=False)
        text, data = describe_png(path, ctx.lang)
        return text, data, gr.update(visible=data is not None)

    drop.change(on_drop, inputs=[drop], outputs=[drop_info, dropped, drop_restore], show_progress="hidden")

    @g
    def restore_dropped(data):
        if not data:
            return [gr.update()] * (len(gen.fill_outputs) + 1)
        return [*fill_values(GenerationRequest.from_dict(data)), gr.Tabs(selected="generate")]

    drop_restore.click(restore_dropped, inputs=[dropped], outputs=[*gen.fill_outputs, ctx.tabs],
                       show_progress="hidden")
    return load, [page_state], load_outputs
