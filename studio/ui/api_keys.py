"""Settings → API: create, list and revoke API keys, whether this computer needs one too, and the API's
limits (calls a minute per key, the queue limit, the edits' upload budget; core/settings_check.py checks them).

The same key file as `zaoxiang keys` (studio/core/key_store.py); a new key is shown once, here, and only
its hash is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from studio.core.key_store import KeyStore, KeyStoreError
from studio.core.settings_check import api_limit_values
from studio.ui.context import Context, guard
from studio.ui.i18n import t


def key_rows(keys: KeyStore, lang: str) -> str:
    """The keys as a Markdown table (ids and names; never the keys)."""
    records = keys.list()
    if not records:
        return t("api.none", lang)
    state = {True: t("api.active", lang), False: t("api.revoked_state", lang)}
    lines = [f"| {t('api.col.id', lang)} | {t('api.col.name', lang)} | {t('api.col.created', lang)} | |",
             "|---|---|---|---|"]
    lines += [f"| `{r.id}` | {r.name.replace('|', '/')} | {r.created[:16].replace('T', ' ')} | {state[r.active]} |"
              for r in records]
    return "\n".join(lines)


def build(ctx: Context) -> tuple[Callable[[], list[Any]], list[Any]]:
    """Settings → API; returns what Settings' reload calls to show api.json as it is now (a page opened,
    or reopened, after a save or a CLI change must not show the values of when the window was built,
    and a save from it must not write them back), and the components it fills."""
    g = guard(ctx)
    lang = ctx.lang
    keys = KeyStore(ctx.studio.paths.config_dir)
    with gr.Accordion(t("api.title", lang), open=False, elem_id="settings-api") as box:
        ctx.label(box, "api.title")
        config = keys.config()
        require = ctx.label(gr.Checkbox(value=config.require_key_on_loopback, label=t("api.require", lang),
                                        elem_id="api-require"), "api.require")
        with gr.Row(equal_height=True):
            # no min/max/precision on the boxes: Gradio would refuse in its own English words; core checks
            limits = [ctx.label(gr.Number(value=getattr(config, name), label=t(label, lang),
                                          elem_id=f"api-{name.replace('_', '-')}", scale=2), label)
                      for name, label in (("rate_per_min", "api.rate"), ("queue_limit", "api.queue"),
                                          ("uploads_mb", "api.uploads"))]
            save_limits = ctx.label(gr.Button(t("api.limits_save", lang), elem_id="api-limits-save", scale=1),
                                    "api.limits_save", "value")
        limits_said = gr.Markdown(elem_id="api-limits-said")
        table = ctx.localize(gr.Markdown(key_rows(keys, lang), elem_id="api-keys"),
                             lambda lang: {"value": key_rows(keys, lang)})
        with gr.Row(equal_height=True):
            name = ctx.label(gr.Textbox(label=t("api.name", lang), elem_id="api-key-name", scale=3), "api.name")
            create = ctx.label(gr.Button(t("api.create", lang), elem_id="api-key-create", scale=1), "api.create",
                               "value")
            key_id = ctx.label(gr.Textbox(label=t("api.revoke_id", lang), elem_id="api-key-id", scale=2),
                               "api.revoke_id")
            revoke = ctx.label(gr.Button(t("api.revoke", lang), variant="stop", elem_id="api-key-revoke", scale=1),
                               "api.revoke", "value")
        shown = gr.Markdown(elem_id="api-key-shown")

    @g
    def on_require(value: bool) -> Any:
        keys.set_options(require_key_on_loopback=bool(value))
        return gr.update()

    @g
    def on_create(label: str) -> tuple[str, str, str]:
        record, plain = keys.create(label)
        return key_rows(keys, ctx.lang), t("api.created", ctx.lang, id=record.id, plain=plain), ""

    @g
    def on_revoke(which: str) -> tuple[str, str]:
        which = (which or "").strip()
        try:
            record = keys.revoke(which)
        except KeyStoreError:  # its sentence is the CLI's English; the window says it in its language
            named = sum(1 for r in keys.list() if r.active and r.name == which)
            return gr.update(), "⚠ " + (t("api.ambiguous", ctx.lang, n=named, id=which) if named > 1
                                        else t("api.unknown", ctx.lang, id=which))
        return key_rows(keys, ctx.lang), t("api.revoked", ctx.lang, id=record.id)

    @g
    def on_limits(rate: Any, queue: Any, uploads: Any) -> str:
        values, problems = api_limit_values({"rate_per_min": rate, "queue_limit": queue, "uploads_mb": uploads})
        if problems:  # nothing saved: one line per bad box
            return "\n\n".join("⚠ " + p.message(ctx.lang) for p in problems)
        saved = keys.set_options(**values)
        return t("api.limits_saved", ctx.lang, rate=saved.rate_per_min, queue=saved.queue_limit,
                 uploads=saved.uploads_mb)

    require.input(on_require, inputs=[require], outputs=[require], show_progress="hidden")
    create.click(on_create, inputs=[name], outputs=[table, shown, name], show_progress="hidden")
    revoke.click(on_revoke, inputs=[key_id], outputs=[table, shown], show_progress="hidden")
    save_limits.click(on_limits, inputs=limits, outputs=[limits_said], show_progress="hidden")

    def reload() -> list[Any]:
        config = keys.config()
        return [config.require_key_on_loopback, config.rate_per_min, config.queue_limit, config.uploads_mb,
                key_rows(keys, ctx.lang)]

    return reload, [require, *limits, table]
