"""The Generate tab's image inputs (issue 20): an image with a painted mask, outpaint, hires fix, ControlNet.

One folded panel under the form. The image editor's background is the init image and what is painted
on its layer is the mask (white = repaint; "invert" repaints the rest). The ControlNet part lists the
ControlNets found for the model in use (`Studio.available_controlnets`), with the control type, scale
and the start/end of the steps it acts on. `image_fields` turns the panel's values into request
fields through `core/image_args.py`, so the window stores and checks its inputs exactly as the CLI and
the API do. `send_buttons` + `wire_send` put an image of the results, the Gallery viewer or History
into the panel ("send to img2img / inpaint", "use as control image") and open it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, ImageChops, ImageOps

from studio.core.image_args import GivenImages, store_images
from studio.core.image_inputs import InputImageError, InputStore, Outpaint, sha256_of
from studio.core.request import CONTROL_KINDS, DEFAULT_HIRES_STRENGTH, DEFAULT_STRENGTH, MAX_MASK_BLUR
from studio.core.spec import ControlRef, HiresRef
from studio.ui.i18n import t

PANEL_FIELDS = ("editor", "strength", "mask_blur", "invert", "outpaint", "hires", "hires_scale",
                "hires_strength", "control_image", "control_type", "control_scale", "control_model",
                "control_start", "control_end", "restored")
SEND_TARGETS = ("img2img", "inpaint", "control")  # where an image can be sent: init image, init + mask, control
DEFAULT_CONTROL_SCALE = 0.75


@dataclass
class ImagePanel:
    editor: Any
    strength: Any
    mask_blur: Any
    invert: Any
    outpaint: Any
    hires: Any
    hires_scale: Any
    hires_strength: Any
    control_image: Any
    control_type: Any
    control_scale: Any
    control_model: Any
    control_start: Any
    control_end: Any
    restored: Any  # gr.State holding the `Restored` inputs of the last restore, so a rerun keeps them
    box: Any = None  # the accordion, opened when an image is sent to the panel

    @property
    def inputs(self) -> list[Any]:
        return [getattr(self, name) for name in PANEL_FIELDS]

    @property
    def send_outputs(self) -> list[Any]:
        """What sending an image updates (see `send_values`)."""
        return [self.box, self.editor, self.strength, self.control_image]


@dataclass(frozen=True)
class Restored:
    """The stored inputs a restore put in the editor: the init image's and mask's hashes, and the hash
    of the area its layer shows as painted (`_painted_digest`)."""

    init: str
    mask: str
    painted: str


def control_kinds(lang: str) -> list[tuple[str, str]]:
    """The control types in words of `lang` (the request keeps core's names)."""
    return [(t(f"img.kind.{kind}", lang), kind) for kind in CONTROL_KINDS]


def controlnet_choices(ctx: Any, lang: str) -> list[tuple[str, str]]:
    """Automatic (the studio's default ControlNet), then each ControlNet found for the model in use."""
    try:
        found = ctx.studio.available_controlnets()
    except Exception:  # an unreadable folder must not break the tab: automatic still works
        found = []
    return [(t("img.controlnet.auto", lang), "")] + [(info.name, info.path) for info in found]


def build_panel(ctx: Any) -> ImagePanel:
    lang = ctx.lang
    with gr.Accordion(t("img.panel", lang), open=False, elem_id="image-panel") as box:
        ctx.label(box, "img.panel")
        editor = ctx.label(gr.ImageEditor(
            label=t("img.editor", lang), type="pil", format="png", sources=("upload", "clipboard"),
            brush=gr.Brush(colors=[("#ff3b30", 0.6)], color_mode="fixed", default_size=32), layers=False,
            transforms=(), elem_id="image-editor", height=360), "img.editor")
        with gr.Row():
            strength = ctx.label(gr.Slider(0.0, 1.0, value=DEFAULT_STRENGTH, step=0.05, label=t("img.strength", lang),
                                           elem_id="img-strength"), "img.strength")
            mask_blur = ctx.label(gr.Slider(0, MAX_MASK_BLUR, value=4, step=1, label=t("img.mask_blur", lang),
                                            elem_id="img-mask-blur"), "img.mask_blur")
        with gr.Row():
            invert = ctx.label(gr.Checkbox(False, label=t("img.invert", lang), elem_id="img-invert"), "img.invert")
            outpaint = ctx.label(gr.Textbox("", label=t("img.outpaint", lang), placeholder="0,0,0,0",
                                            elem_id="img-outpaint"), "img.outpaint")
        with gr.Row():
            hires = ctx.label(gr.Checkbox(False, label=t("img.hires", lang), elem_id="img-hires"), "img.hires")
            hires_scale = ctx.label(gr.Slider(1.0, 4.0, value=2.0, step=0.25, label=t("img.hires_scale", lang),
                                              elem_id="img-hires-scale"), "img.hires_scale")
            hires_strength = ctx.label(gr.Slider(0.0, 1.0, value=DEFAULT_HIRES_STRENGTH, step=0.05,
                                                 label=t("img.hires_strength", lang), elem_id="img-hires-strength"),
                                       "img.hires_strength")
        with gr.Row():
            control_image = ctx.label(gr.Image(label=t("img.control", lang), type="pil", format="png",
                                               sources=("upload", "clipboard"), elem_id="img-control", height=200),
                                      "img.control")
            with gr.Column():
                control_model = ctx.label(gr.Dropdown(controlnet_choices(ctx, lang), value="", label=t("img.controlnet", lang),
                                                      allow_custom_value=True, elem_id="img-controlnet"),
                                          "img.controlnet")
                ctx.localize(control_model, lambda l_: {"choices": controlnet_choices(ctx, l_)})
                control_type = ctx.label(gr.Dropdown(control_kinds(lang), value="canny",
                                                     label=t("img.control_type", lang), elem_id="img-control-type"),
                                         "img.control_type")
                ctx.localize(control_type, lambda l_: {"choices": control_kinds(l_)})
                control_scale = ctx.label(gr.Slider(0.0, 2.0, value=DEFAULT_CONTROL_SCALE, step=0.05,
                                                    label=t("img.control_scale", lang), elem_id="img-control-scale"),
                                          "img.control_scale")
                with gr.Row():
                    control_start = ctx.label(gr.Slider(0.0, 1.0, value=0.0, step=0.05,
                                                        label=t("img.control_start", lang), elem_id="img-control-start"), "img.control_start")
                    control_end = ctx.label(gr.Slider(0.0, 1.0, value=1.0, step=0.05, label=t("img.control_end", lang),
                                                      elem_id="img-control-end"), "img.control_end")
    restored = gr.State(None)
    # ControlNets put in a folder while the studio runs show up when the list is opened
    control_model.focus(lambda: gr.update(choices=controlnet_choices(ctx, ctx.lang)), outputs=[control_model],
                        show_progress="hidden")
    return ImagePanel(editor, strength, mask_blur, invert, outpaint, hires, hires_scale, hires_strength,
                      control_image, control_type, control_scale, control_model, control_start, control_end,
                      restored, box)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def painted_mask(layers: list[Any], size: tuple[int, int], invert: bool) -> Image.Image | None:
    """The mask painted on the editor's layers (anything painted = repaint), or None if nothing is."""
    mask = Image.new("L", size, 0)
    for layer in layers or []:
        if layer is None:
            continue
        alpha = layer.convert("RGBA").getchannel("A")
        if alpha.size != size:
            alpha = alpha.resize(size)
        mask.paste(255, (0, 0), alpha.point(lambda v: 255 if v > 0 else 0))
    if mask.getextrema() == (0, 0) and not invert:
        return None
    return ImageOps.invert(mask) if invert else mask


def _painted_digest(mask: Image.Image | None) -> str:
    """What the editor's layer marks as painted (`painted_mask`, not inverted), as one hash."""
    return sha256_of(mask.tobytes()) if mask is not None else ""


def _kept(restored: Restored | None, background: Image.Image, layers: list[Any],
          invert: bool) -> tuple[Path | None, Path | None]:
    """The stored files of a restored init image and mask (see `panel_values`) while the editor still
    shows them: the same pixels, the same painted area, not inverted; (None, None) otherwise. Giving
    their stored bytes again keeps their hashes, so a rerun draws with the very mask it had (a soft
    mask's grey levels included), not the editor's 0/255 copy of it."""
    if not isinstance(restored, Restored):
        return None, None
    store = InputStore()
    init_path = store.path(restored.init)
    try:
        same = init_path is not None and ImageChops.difference(store.open(restored.init), background).getbbox() is None
    except (InputImageError, ValueError):  # gone or damaged since, or another size: the editor's own pixels
        same = False
    if not same:
        return None, None
    mask_path = store.path(restored.mask)
    painted = painted_mask(layers, background.size, False)
    keep_mask = mask_path is not None and not invert and _painted_digest(painted) == restored.painted
    return init_path, mask_path if keep_mask else None


def image_fields(editor: Any, strength: float, mask_blur: float, invert: bool, outpaint: str, hires: bool,
                 hires_scale: float, hires_strength: float, control_image: Any, control_type: str,
                 control_scale: float, control_model: str | None = "", control_start: float = 0.0,
                 control_end: float = 1.0, restored: Restored | None = None) -> dict[str, Any]:
    """Request fields from the panel's values (inputs stored by hash; InputImageError for a bad one)."""
    editor = editor or {}
    background = editor.get("background") if isinstance(editor, dict) else None
    fields: dict[str, Any] = {}
    given = GivenImages()
    if background is not None:
        background = background.convert("RGB")
        layers = editor.get("layers") or []
        init_path, mask_path = _kept(restored, background, layers, bool(invert))
        mask = None if mask_path is not None else painted_mask(layers, background.size, bool(invert))
        given = GivenImages(image=str(init_path) if init_path else _png(background), image_name="image",
                            mask=str(mask_path) if mask_path else (_png(mask) if mask is not None else None),
                            mask_name="mask",
                            outpaint=Outpaint.parse(outpaint) if (outpaint or "").strip() else None)
    if control_image is not None:
        given.control, given.control_name = _png(control_image.convert("RGB")), "control"
    stored = store_images(given)
    fields.update(stored.fields())
    if stored.init_image:
        fields.update(strength=strength, mask_blur=int(mask_blur or 0))
    if stored.control_image:
        fields["control"] = ControlRef(image=stored.control_image, kind=control_type or "canny",
                                       scale=control_scale, start=control_start, end=control_end,
                                       model=control_model or "")
    if hires:
        fields["hires"] = HiresRef(scale=hires_scale, strength=hires_strength)
    return fields


def panel_values(request: Any, lang: str, strict: bool = True) -> list[Any]:
    """The panel's values that bring `request`'s inputs back (History restore), in PANEL_FIELDS order.

    An input no longer in the inputs folder (or damaged there) is said in one line in `lang`. `strict`
    (Rerun) refuses the whole restore (gr.Error) before any field changes: an empty slot would quietly
    turn an inpaint into text-to-image, and Rerun (restore, then Generate on success) would queue it.
    Otherwise (Restore, a PNG made elsewhere) the rest comes back, the slot stays empty where the
    person sees it, and the line is a warning. The last value is the `Restored` state: the editor shows
    a soft mask as 0/255, so Generate gives the stored files again while the editor is left as restored
    (`_kept`)."""
    store = InputStore()

    def opened(digest: str | None, mode: str = "RGB") -> Image.Image | None:
        try:
            return store.open(digest, mode) if digest else None
        except InputImageError as exc:  # input.not_stored (or a damaged file's line), named by its hash
            if strict:
                raise gr.Error(exc.message(lang), title=t("err.title", lang), print_exception=False) from None
            gr.Warning(exc.message(lang))
            return None

    c, h = request.control, request.hires
    init = opened(request.init_image)
    mask = opened(request.mask, "L") if init is not None else None
    control = opened(c.image) if c else None
    editor: Any = None
    restored: Restored | None = None
    if init is not None:
        layers = []
        if mask is not None:
            white = Image.new("RGBA", init.size, (255, 255, 255, 0))
            white.putalpha(mask.resize(init.size, Image.Resampling.BILINEAR))  # the engine's own filter
            layers = [white]
        editor = {"background": init, "layers": layers, "composite": None}
        restored = Restored(request.init_image, request.mask or "",
                            _painted_digest(painted_mask(layers, init.size, False)))
    return [editor, request.strength if request.strength is not None else DEFAULT_STRENGTH,
            request.mask_blur or 0, False, "", h is not None, h.scale if h else 2.0,
            h.strength if h else DEFAULT_HIRES_STRENGTH, control,
            c.kind if c else "canny", c.scale if c else DEFAULT_CONTROL_SCALE, c.model if c else "",
            c.start if c else 0.0, c.end if c else 1.0, restored]


# --- sending an image into the panel ------------------------------------------------------------


def send_values(path: str | None, target: str, lang: str) -> list[Any]:
    """Updates for `ImagePanel.send_outputs` that put the image at `path` into the panel as `target`
    (img2img: the init image; inpaint: the same, ready to paint, full strength; control: the control
    image) and open it."""
    if not path:
        raise gr.Error(t("img.send.none", lang), title=t("err.title", lang), print_exception=False)
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    if target == "control":
        return [gr.update(open=True), gr.update(), gr.update(), image]
    editor = {"background": image, "layers": [], "composite": image}
    strength = 1.0 if target == "inpaint" else DEFAULT_STRENGTH
    return [gr.update(open=True), editor, strength, gr.update()]


def send_buttons(ctx: Any, prefix: str) -> dict[str, Any]:
    """One small button per target ("send to img2img", "send to inpaint", "use as control image"),
    with ids `<prefix>-send-<target>`, in the current row."""
    return {target: ctx.label(gr.Button(t(f"img.send.{target}", ctx.lang), size="sm", min_width=80,
                                        elem_id=f"{prefix}-send-{target}"), f"img.send.{target}", "value")
            for target in SEND_TARGETS}


def wire_send(ctx: Any, panel: ImagePanel, buttons: dict[str, Any], pick: Callable[..., str | None],
              inputs: list[Any]) -> None:
    """Clicking a send button: `pick(*inputs)` names the image (None: nothing chosen), the panel takes
    it and the Generate tab opens; the hint says what to do next in the window's language."""
    from studio.ui.context import guard

    g = guard(ctx)

    def handler(target: str) -> Callable[..., list[Any]]:
        @g
        def send(*values: Any) -> list[Any]:
            updates = send_values(pick(*values), target, ctx.lang)
            gr.Info(t(f"img.sent.{target}", ctx.lang), title=t("toast.info", ctx.lang))
            return [*updates, gr.Tabs(selected="generate")]
        return send

    for target, button in buttons.items():
        button.click(handler(target), inputs=inputs, outputs=[*panel.send_outputs, ctx.tabs],
                     show_progress="hidden")
