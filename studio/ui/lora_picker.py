"""The Generate tab's LoRA picker: choose a found LoRA and a strength, add it to the table of LoRAs
the next request uses (several rows; a strength can be edited in the table).

The table is the form's `loras` field (see form.FIELDS); what it holds becomes the request's LoRAs.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.core.lora_text import STRENGTH_MAX, STRENGTH_MIN
from studio.ui import form
from studio.ui.context import Context
from studio.ui.i18n import t


def choices(ctx: Context) -> list[str]:
    """The LoRAs found in the studio's and ComfyUI's LoRA folders, by the name `<lora:name>` uses."""
    return [info.name for info in ctx.studio.available_loras()]


def build(ctx: Context) -> tuple[Any, Any]:
    """The folded picker and its table; returns (table, accordion)."""
    lang = ctx.lang
    with gr.Accordion(t("gen.loras", lang), open=False, elem_id="loras-box") as box:
        ctx.label(box, "gen.loras")
        with gr.Row(equal_height=True):
            pick = ctx.label(gr.Dropdown(choices=choices(ctx), value=None, allow_custom_value=True,
                                         label=t("gen.lora.pick", lang), elem_id="lora-pick", scale=3),
                             "gen.lora.pick")
            strength = ctx.label(gr.Slider(STRENGTH_MIN, STRENGTH_MAX, value=1.0, step=0.05,
                                           label=t("gen.lora.strength", lang), elem_id="lora-strength", scale=2),
                                 "gen.lora.strength")
        with gr.Row():
            add = ctx.label(gr.Button(t("gen.lora.add", lang), size="sm", elem_id="lora-add"), "gen.lora.add",
                            "value")
            clear = ctx.label(gr.Button(t("gen.lora.clear", lang), size="sm", elem_id="lora-clear"),
                              "gen.lora.clear", "value")
        table = gr.Dataframe(value=[], headers=[t("gen.lora.name", lang), t("gen.lora.strength", lang)],
                             datatype=["str", "number"], type="array", column_count=2, interactive=True,
                             show_label=False, elem_id="loras")
    add.click(form.add_lora, inputs=[table, pick, strength], outputs=[table], show_progress="hidden")
    clear.click(lambda: [], outputs=[table], show_progress="hidden")
    pick.focus(lambda: gr.update(choices=choices(ctx)), outputs=[pick], show_progress="hidden")
    return table, box
