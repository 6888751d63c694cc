"""The Gallery tab: every image, paged, newest first; a full-size viewer; search, favorites, undo.

Clicking a thumbnail opens the viewer above the grid: the image whole, its parameters beside it,
arrow keys (or the buttons) for the previous and next image, copy seed, download, "use as seed",
favorite and delete. A deletion moves the file to the trash and can be undone. Dropping a PNG reads
the parameters it carries (ours, or AUTOMATIC1111/Forge's `parameters` text).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr

from studio.core.errors import StudioError
from studio.core.opener import open_path
from studio.core.request import GenerationRequest
from studio.ui import records
from studio.ui.context import Context, guard
from studio.ui.generate import GenerateTab, fill_values, read_png_request
from studio.ui.i18n import t
from studio.ui.image_panel import send_buttons, wire_send

PER_PAGE = 48
HIDDEN = "hidden"  # in the page but not shown: the viewer's parts keep their ids for scripts and tests

# Arrow keys page through the viewer, Escape closes it; never while typing in a field.
PAGE_JS = """
() => {
  if (window.zxGallery) return;
  window.zxGallery = true;
  const keys = {ArrowLeft: "#viewer-prev", ArrowRight: "#viewer-next", Escape: "#viewer-close"};
  document.addEventListener("keydown", (e) => {
    const viewer = document.querySelector("#gallery-viewer");
    const target = e.target || {};
    if (!keys[e.key] || !viewer || !viewer.offsetParent || e.ctrlKey || e.metaKey || e.altKey) return;
    if (["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName) || target.isContentEditable) return;
    e.preventDefault();
    document.querySelector(keys[e.key])?.click();
  });
}
"""


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


def viewer_html(path: str, alt: str) -> str:
    """The image whole, at full size where it fits (the CSS keeps it inside the window)."""
    return (f'<img class="zx-viewer-img" src="{html.escape(records.file_url(path))}" '
            f'alt="{html.escape(alt)}">')


def build(ctx: Context, gen: GenerateTab) -> Any:
    g = guard(ctx)
    lang = ctx.lang
    with gr.Row(equal_height=True, elem_id="gallery-filters"):
        search = ctx.label(gr.Textbox(label=t("gal.search", lang), placeholder=t("gal.search_hint", lang),
                                      elem_id="gallery-search", scale=4, max_lines=1), "gal.search")
        ctx.localize(search, lambda l_: {"placeholder": t("gal.search_hint", l_)})
        favorites_only = ctx.label(gr.Checkbox(label=t("gal.favorites_only", lang), elem_id="gallery-favorites",
                                               scale=1), "gal.favorites_only")
    with gr.Row(equal_height=True):
        status = gr.Markdown(elem_id="gallery-status")
        undo = ctx.label(gr.Button(t("gal.undo", lang), size="sm", visible=False, scale=0, min_width=120,
                                   elem_id="gallery-undo"), "gal.undo", "value")
    with gr.Row(visible=HIDDEN, equal_height=False, elem_id="gallery-viewer") as viewer:
        with gr.Column(scale=3, min_width=320):
            picture = gr.HTML(elem_id="viewer-image")
        with gr.Column(scale=2, min_width=280):
            with gr.Row(equal_height=True):
                prev_img = ctx.label(gr.Button(t("gal.viewer.prev", lang), size="sm", elem_id="viewer-prev"),
                                     "gal.viewer.prev", "value")
                position = gr.Markdown(elem_id="viewer-pos")
                next_img = ctx.label(gr.Button(t("gal.viewer.next", lang), size="sm", elem_id="viewer-next"),
                                     "gal.viewer.next", "value")
                close = ctx.label(gr.Button(t("gal.viewer.close", lang), size="sm", elem_id="viewer-close"),
                                  "gal.viewer.close", "value")
            info = gr.Markdown(elem_id="gallery-info", elem_classes="zx-info")
            seed = ctx.label(gr.Textbox(label=t("info.seed", lang), interactive=False, buttons=["copy"],
                                        elem_id="viewer-seed"), "info.seed")
            with gr.Row():
                use_seed = ctx.label(gr.Button(t("gal.use_seed", lang), size="sm", elem_id="viewer-use-seed"),
                                     "gal.use_seed", "value")
                restore = ctx.label(gr.Button(t("gal.restore", lang), size="sm", variant="primary",
                                              elem_id="gallery-restore"), "gal.restore", "value")
                download = ctx.label(gr.DownloadButton(t("gal.download", lang), size="sm",
                                                       elem_id="viewer-download"), "gal.download", "label")
            with gr.Row():
                fav = ctx.label(gr.Button(t("gal.favorite", lang), size="sm", elem_id="gallery-favorite"),
                                "gal.favorite", "value")
                delete = ctx.label(gr.Button(t("gal.delete", lang), size="sm", variant="stop",
                                             elem_id="gallery-delete"), "gal.delete", "value")
            with gr.Row():
                send = send_buttons(ctx, "viewer")
    gallery = ctx.label(gr.Gallery(label=t("gal.gallery", lang), elem_id="gallery", columns=6, height=520,
                                   object_fit="cover", allow_preview=False, interactive=False, fit_columns=False),
                        "gal.gallery")
    with gr.Row(equal_height=True):
        prev_btn = ctx.label(gr.Button(t("gal.prev", lang), size="sm", elem_id="gallery-prev"), "gal.prev", "value")
        page_md = gr.Markdown(elem_id="gallery-page")
        next_btn = ctx.label(gr.Button(t("gal.next", lang), size="sm", elem_id="gallery-next"), "gal.next", "value")
        folder = ctx.label(gr.Button(t("gal.open_folder", lang), size="sm", elem_id="gallery-folder"),
                           "gal.open_folder", "value")
    with gr.Row(equal_height=False):
        drop = ctx.label(gr.File(label=t("gal.drop", lang), file_types=[".png"], type="filepath",
                                 elem_id="png-drop", height=140, scale=1), "gal.drop")
        with gr.Column(scale=2):
            drop_info = gr.Markdown(elem_id="png-info", elem_classes="zx-info")
            drop_restore = ctx.label(gr.Button(t("gal.restore", lang), visible=False, elem_id="png-restore"),
                                     "gal.restore", "value")
    page_state = gr.State(0)
    items_state = gr.State([])
    selected = gr.State(None)
    dropped = gr.State(None)
    filters = [search, favorites_only]

    def fetch(page: int, text: str | None, favs: bool) -> tuple[int, list[dict[str, Any]], int, int]:
        """(page, images, total, pages) for the filters, the page clamped to the last one."""
        text = (text or "").strip() or None
        page = max(0, int(page or 0))
        items, total = page_items(ctx.studio.gallery(page=page, per_page=PER_PAGE, search=text,
                                                     favorites_only=bool(favs)))
        pages = max(1, -(-total // PER_PAGE))
        if page >= pages and page > 0:
            page = pages - 1
            items, total = page_items(ctx.studio.gallery(page=page, per_page=PER_PAGE, search=text,
                                                         favorites_only=bool(favs)))
        slim = [{"image_id": im.get("image_id") or im.get("id"), "path": im.get("path"), "prompt": im.get("prompt"),
                 "favorite": bool(im.get("favorite")), "seed": im.get("seed")} for im in items if im.get("path")]
        return page, slim, total, pages

    def grid(page: int, slim: list[dict[str, Any]], total: int, pages: int, filtered: bool) -> tuple:
        """The outputs in `load_outputs` order, the viewer closed."""
        counter = t("gal.page", ctx.lang, page=page + 1, pages=pages, total=total)
        if not total and filtered:
            counter = t("gal.no_match", ctx.lang)
        return (page, [(im["path"], records.caption(im, ctx.lang)) for im in slim], slim, counter, None, "",
                gr.update(visible=HIDDEN))

    @g
    def load(page, text=None, favs=False):
        page, slim, total, pages = fetch(page, text, favs)
        return grid(page, slim, total, pages, bool((text or "").strip() or favs))

    load_outputs = [page_state, gallery, items_state, page_md, selected, info, viewer]
    prev_btn.click(g(lambda p, s, f: load(int(p or 0) - 1, s, f)), inputs=[page_state, *filters],
                   outputs=load_outputs, show_progress="hidden")
    next_btn.click(g(lambda p, s, f: load(int(p or 0) + 1, s, f)), inputs=[page_state, *filters],
                   outputs=load_outputs, show_progress="hidden")
    for trigger in (search.submit, favorites_only.change):
        trigger(g(lambda s, f: load(0, s, f)), inputs=filters, outputs=load_outputs, show_progress="hidden")

    def view(items: list[dict[str, Any]], index: int | None) -> tuple:
        """The viewer's outputs for image `index` of the page (the viewer closes when there is none)."""
        if index is None or not 0 <= index < len(items):
            return None, gr.update(visible=HIDDEN), "", "", "", "", gr.update(value=None)
        image = items[index]
        image_info = ctx.studio.image_info(image["image_id"]) or {}
        return (index, gr.update(visible=True), viewer_html(image["path"], image.get("prompt") or ""),
                f"{index + 1} / {len(items)}", records.info_markdown(image_info, ctx.lang),
                "" if image.get("seed") is None else str(image["seed"]), gr.update(value=image["path"]))

    view_outputs = [selected, viewer, picture, position, info, seed, download]

    @g
    def pick(items, evt: gr.SelectData):
        return view(items, evt.index)

    gallery.select(pick, inputs=[items_state], outputs=view_outputs, show_progress="hidden")

    def step(by: int):
        @g
        def move(page, items, index, text, favs):
            """The previous or next image; past either end of a page, the neighbouring page."""
            index = (index or 0) + by
            if 0 <= index < len(items):
                return (gr.update(),) * 4 + view(items, index)
            new_page, slim, total, pages = fetch(int(page or 0) + by, text, favs)
            if new_page == int(page or 0) or not slim:
                return (gr.update(),) * 4 + view(items, index - by)  # the first or the last image: stay
            counter = t("gal.page", ctx.lang, page=new_page + 1, pages=pages, total=total)
            return (new_page, [(im["path"], records.caption(im, ctx.lang)) for im in slim], slim, counter,
                    *view(slim, 0 if by > 0 else len(slim) - 1))
        return move

    step_outputs = [page_state, gallery, items_state, page_md, *view_outputs]
    for button, by in ((prev_img, -1), (next_img, 1)):
        button.click(step(by), inputs=[page_state, items_state, selected, *filters], outputs=step_outputs,
                     show_progress="hidden")
    close.click(lambda: (None, gr.update(visible=HIDDEN)), outputs=[selected, viewer], show_progress="hidden")

    def _image(items, index):
        if index is None or index >= len(items):
            raise gr.Error(t("gal.select_first", ctx.lang), title=t("err.title", ctx.lang), print_exception=False)
        return items[index]

    @g
    def do_restore(items, index):
        request = ctx.studio.reuse(image_id=_image(items, index)["image_id"])
        return [*fill_values(request, ctx.lang), gr.Tabs(selected="generate")]

    restore.click(do_restore, inputs=[items_state, selected], outputs=[*gen.fill_outputs, ctx.tabs],
                  show_progress="hidden")

    @g
    def do_use_seed(items, index):
        image = _image(items, index)
        if image.get("seed") is None:
            raise gr.Error(t("gal.no_seed", ctx.lang), title=t("err.title", ctx.lang), print_exception=False)
        unfold = [gr.update(open=True)] if gen.more is not None else []
        return [int(image["seed"]), "fixed", *unfold, gr.Tabs(selected="generate")]

    use_seed.click(do_use_seed, inputs=[items_state, selected],
                   outputs=[gen.seed, gen.seed_mode, *([gen.more] if gen.more is not None else []), ctx.tabs],
                   show_progress="hidden")

    wire_send(ctx, gen.panel, send, lambda items, index: _image(items, index)["path"], [items_state, selected])

    @g
    def do_favorite(page, items, index, text, favs):
        image = _image(items, index)
        ctx.studio.set_favorite(image["image_id"], not image["favorite"])
        out = load(page, text, favs)
        slim = out[2]
        same = next((i for i, im in enumerate(slim) if im["image_id"] == image["image_id"]), None)
        return (*out[:4], *view(slim, same if same is not None else min(index, len(slim) - 1)),
                t("gal.unfavorited" if image["favorite"] else "gal.favorited", ctx.lang))

    fav.click(do_favorite, inputs=[page_state, items_state, selected, *filters],
              outputs=[*step_outputs, status], show_progress="hidden")

    @g
    def do_delete(page, items, index, text, favs):
        ctx.studio.delete_image(_image(items, index)["image_id"])
        out = load(page, text, favs)
        slim = out[2]
        return (*out[:4], *view(slim, min(index, len(slim) - 1) if slim else None),
                t("gal.deleted_undo", ctx.lang), gr.update(visible=True))

    delete.click(do_delete, inputs=[page_state, items_state, selected, *filters],
                 outputs=[*step_outputs, status, undo], show_progress="hidden")

    @g
    def do_undo(page, text, favs):
        try:
            image_id = ctx.studio.undo_delete()
        except StudioError:  # the trash was emptied, or a new file took the name
            raise gr.Error(t("gal.undo_failed", ctx.lang), title=t("err.title", ctx.lang), print_exception=False) from None
        done = t("gal.restored", ctx.lang) if image_id is not None else t("gal.nothing_to_undo", ctx.lang)
        return (*load(page, text, favs), done, gr.update(visible=ctx.studio.can_undo_delete()))

    undo.click(do_undo, inputs=[page_state, *filters], outputs=[*load_outputs, status, undo],
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
        return [*fill_values(GenerationRequest.from_dict(data), ctx.lang), gr.Tabs(selected="generate")]

    drop_restore.click(restore_dropped, inputs=[dropped], outputs=[*gen.fill_outputs, ctx.tabs],
                       show_progress="hidden")
    return load, [page_state, *filters], load_outputs
