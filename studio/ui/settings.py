"""The Settings tab: model, memory profile, GPUs, output folder, language, listen address.

Saved through Studio (which writes the settings file); the answer says which changes need the
workers restarted, and the restart happens only when the person asks for it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import fields
from typing import Any

import gradio as gr

from studio.core.settings import LANGUAGES, MEMORY_PROFILES, Settings, load_settings
from studio.ui.context import Context, guard
from studio.ui.i18n import resolve_language, t

FORM_FIELDS = ("model", "memory_profile", "workers", "output_dir", "language", "host", "port",
               "auth_user", "auth_password")
SERVER_FIELDS = ("host", "port", "auth_user", "auth_password")


def is_loopback(host: str) -> bool:
    """True for addresses only this computer can reach (127.x, ::1, localhost)."""
    host = (host or "").strip().strip("[]")
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(values: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Form values to typed settings changes, or an i18n key naming what is wrong."""
    out = {k: (v.strip() if isinstance(v, str) else v) for k, v in values.items() if k in FORM_FIELDS}
    try:
        port = int(float(out.get("port", 7860)))
    except (TypeError, ValueError):
        return {}, "set.bad_port"
    if not 1 <= port <= 65535:
        return {}, "set.bad_port"
    out["port"] = port
    if out.get("memory_profile") not in MEMORY_PROFILES:
        return {}, "set.bad_profile"
    if out.get("language") not in LANGUAGES:
        out["language"] = "auto"
    out["host"] = out.get("host") or "127.0.0.1"
    if not is_loopback(out["host"]) and not (out.get("auth_user") and out.get("auth_password")):
        return {}, "set.auth_required"
    return out, None


def model_choices(studio: Any, lang: str) -> list[tuple[str, str]]:
    """The detected models for the dropdown: automatic, each model found, and the demo model."""
    from studio.models.discovery import find_models

    out = [("auto", "")]
    try:
        found = find_models(configured=studio.settings.model or None, paths=studio.paths, include_demo=False)
    except Exception:  # a broken cache folder must not break the tab
        found = []
    for info in found:
        state = "" if info.complete else " ⚠"
        out.append((f"{info.name} · {info.source}{state} · {info.path}", info.path))
    out.append(("demo", "demo"))
    return out


def current_values(settings: Settings) -> list[Any]:
    return [getattr(settings, name) for name in FORM_FIELDS]


def build(ctx: Context):
    """Returns the save event (app.py chains the relabel after it) and the reload handler."""
    g = guard(ctx)
    lang = ctx.lang
    s = ctx.studio.settings
    with gr.Column(elem_id="settings"):
        with gr.Row(equal_height=True):
            choices = model_choices(ctx.studio, lang)
            detected = gr.Dropdown(choices=choices, value=s.model if s.model in [v for _l, v in choices] else None, label=t("set.model", lang),
                                   elem_id="settings-detected", scale=2, allow_custom_value=True)
            ctx.label(detected, "set.model")
            model = ctx.label(gr.Textbox(value=s.model, label=t("set.model_path", lang), elem_id="settings-model",
                                         scale=3), "set.model_path")
        with gr.Row(equal_height=True):
            memory = ctx.label(gr.Dropdown(choices=list(MEMORY_PROFILES), value=s.memory_profile,
                                           label=t("set.memory", lang), elem_id="settings-memory"), "set.memory")
            workers = ctx.label(gr.Textbox(value=s.workers, label=t("set.workers", lang), elem_id="settings-workers"),
                                "set.workers")
        output = ctx.label(gr.Textbox(value=s.output_dir, label=t("set.output", lang), elem_id="settings-output",
                                      placeholder=str(ctx.studio.paths.gallery_dir)), "set.output")
        language = gr.Radio(choices=[(t("set.lang.auto", lang), "auto"), ("中文", "zh"), ("English", "en")],
                            value=s.language if s.language in LANGUAGES else "auto", label=t("set.language", lang),
                            elem_id="settings-language")
        ctx.label(language, "set.language")
        ctx.localize(language, lambda l_: {"choices": [(t("set.lang.auto", l_), "auto"), ("中文", "zh"),
                                                       ("English", "en")]})
        with gr.Row(equal_height=True):
            host = ctx.label(gr.Textbox(value=s.host, label=t("set.host", lang), elem_id="settings-host", scale=2),
                             "set.host")
            port = ctx.label(gr.Number(value=s.port, precision=0, label=t("set.port", lang), elem_id="settings-port",
                                       scale=1), "set.port")
            user = ctx.label(gr.Textbox(value=s.auth_user, label=t("set.auth_user", lang), elem_id="settings-user",
                                        scale=2), "set.auth_user")
            password = ctx.label(gr.Textbox(value=s.auth_password, type="password", label=t("set.auth_password", lang),
                                            elem_id="settings-password", scale=2), "set.auth_password")
        with gr.Row():
            save = ctx.label(gr.Button(t("set.save", lang), variant="primary", elem_id="settings-save"),
                             "set.save", "value")
            restart = ctx.label(gr.Button(t("set.restart", lang), visible=False, elem_id="settings-restart"),
                                "set.restart", "value")
        status = gr.Markdown(elem_id="settings-status")
    inputs = [model, memory, workers, output, language, host, port, user, password]

    detected.change(g(lambda v: v if v is not None else gr.update()), inputs=[detected], outputs=[model],
                    show_progress="hidden")

    @g
    def do_save(*values):
        changes, problem = check_settings(dict(zip(FORM_FIELDS, values)))
        if problem:
            return f"⚠ {t(problem, ctx.lang)}", gr.update()
        before = ctx.studio.settings
        restart_needed = ctx.studio.update_settings(**changes)
        changed = [f.name for f in fields(Settings) if getattr(before, f.name) != getattr(ctx.studio.settings, f.name)]
        if "language" in changed:  # otherwise keep the language the window was opened in (--lang)
            ctx.lang = resolve_language(ctx.studio.settings.language)
        if not changed:
            return t("set.unchanged", ctx.lang), gr.update()
        lines = [t("set.saved", ctx.lang)]
        if restart_needed:
            lines.append(t("set.needs_restart", ctx.lang, names=", ".join(restart_needed)))
        if any(name in SERVER_FIELDS for name in changed):
            lines.append(t("set.needs_server", ctx.lang))
        return "\n\n".join(lines), gr.update(visible=bool(restart_needed))

    save_event = save.click(do_save, inputs=inputs, outputs=[status, restart], show_progress="hidden")

    @g
    def do_restart():
        ctx.studio.restart_pool()
        return t("set.restarted", ctx.lang), gr.update(visible=False)

    restart.click(do_restart, outputs=[status, restart], show_progress="minimal")

    @g
    def reload():
        """Values as saved in the settings file (what the next start will use)."""
        return [*current_values(load_settings(ctx.studio.paths)),
                gr.update(choices=model_choices(ctx.studio, ctx.lang))]

    return save_event, reload, [*inputs, detected]
