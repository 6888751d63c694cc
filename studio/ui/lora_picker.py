"""The Generate tab's LoRA picker: search the LoRAs found by name as you type, pick one to add it, and
set each added LoRA's strength on its own slider (several rows; ✕ removes one).

The rows live in a hidden table, the form's `loras` field (see form.FIELDS): what it holds becomes
the request's LoRAs, and History's restore fills it; the sliders are drawn from it (`gr.render`), so
a restored request shows its LoRAs and strengths the same way.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.core.lora_text import STRENGTH_MAX, STRENGTH_MIN
from studio.ui import form
from studio.ui.context import Context
from studio.ui.i18n import t

STRENGTH_STEP = 0.05


def choices(ctx: Context) -> list[tuple[str, str]]:
    """The LoRAs found in the studio's and ComfyUI's LoRA folders: (what the list shows, the name
    `<lora:name>` uses). The shown text carries layout and rank, so typing "kohya" finds those too."""
    return [(f"{info.name} · {info.layout.value}, rank {info.rank}", info.name)
            for info in ctx.studio.available_loras()]


def _strength(value: Any) -> float:
    """A row's strength as a slider can show it (a typed text that is no number shows 1)."""
    try:
        return min(STRENGTH_MAX, max(STRENGTH_MIN, float(value)))
    except (TypeError, ValueError):
        return 1.0


def set_strength(rows: Any, name: str, strength: float) -> list[list[Any]]:
    """The table with `name`'s strength changed (other rows as they are)."""
    return [[n, strength if n == name else w] for n, w in form.lora_refs(rows)]


def remove(rows: Any, name: str) -> list[list[Any]]:
    """The table without `name`."""
    return [[n, w] for n, w in form.lora_refs(rows) if n != name]


def build(ctx: Context) -> tuple[Any, Any]:
    """The folded picker and its (hidden) table; returns (table, accordion)."""
    lang = ctx.lang
    with gr.Accordion(t("gen.loras", lang), open=False, elem_id="loras-box") as box:
        ctx.label(box, "gen.loras")
        with gr.Row(equal_height=True):
            pick = ctx.label(gr.Dropdown(choices=choices(ctx), value=None, allow_custom_value=True, filterable=True,
                                         label=t("gen.lora.pick", lang), elem_id="lora-pick", scale=4),
                             "gen.lora.pick")
            add = ctx.label(gr.Button(t("gen.lora.add", lang), size="sm", elem_id="lora-add", scale=0,
                                      min_width=64), "gen.lora.add", "value")
            clear = ctx.label(gr.Button(t("gen.lora.clear", lang), size="sm", elem_id="lora-clear", scale=0,
                                        min_width=64), "gen.lora.clear", "value")
        table = gr.Dataframe(value=[], headers=[t("gen.lora.name", lang), t("gen.lora.strength", lang)],
                             datatype=["str", "number"], type="array", column_count=2, interactive=True,
                             show_label=False, visible=False, elem_id="loras-table")
        with gr.Column(elem_id="loras"):

            @gr.render(inputs=[table])
            def rows(data: Any) -> None:
                for name, weight in form.lora_refs(data):
                    with gr.Row(equal_height=True, elem_classes="zx-lora-row"):
                        slider = gr.Slider(STRENGTH_MIN, STRENGTH_MAX, value=_strength(weight), step=STRENGTH_STEP,
                                           label=name, scale=8, interactive=True, elem_classes="zx-lora-strength")
                        drop = gr.Button("✕", size="sm", scale=0, min_width=40, elem_classes="zx-lora-remove")
                    # release: once per drag (a re-draw mid-drag would drop the handle), and on a typed value
                    slider.release(lambda rows_, value, n=name: set_strength(rows_, n, value), inputs=[table, slider],
                                   outputs=[table], show_progress="hidden", api_visibility="private")
                    drop.click(lambda rows_, n=name: remove(rows_, n), inputs=[table], outputs=[table],
                               show_progress="hidden", api_visibility="private")

    def added(rows_: Any, name: str | None) -> tuple[list[list[Any]], Any]:
        return form.add_lora(rows_, name, 1.0), gr.update(value=None)

    # choosing from the list adds at once; Add is for a typed name (a path only inside the LoRA folders)
    pick.select(added, inputs=[table, pick], outputs=[table, pick], show_progress="hidden", api_visibility="private")
    add.click(added, inputs=[table, pick], outputs=[table, pick], show_progress="hidden", api_visibility="private")
    clear.click(lambda: [], outputs=[table], show_progress="hidden", api_visibility="private")
    pick.focus(lambda: gr.update(choices=choices(ctx)), outputs=[pick], show_progress="hidden",
               api_visibility="private")
    return table, box
