"""The Settings tab: model, memory profile, GPUs, output folder, language, listen address.

Saved through Studio (which writes the settings file); the answer says which changes need the
workers restarted, and the restart happens only when the person asks for it.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.core.errors import StudioError
from studio.core.passwords import hash_password
from studio.core.settings import (
    LANGUAGES,
    MEMORY_PROFILES,
    SPLIT_MODES,
    Settings,
    check_settings_values,
    load_settings,
)
from studio.core.settings_check import SettingsError, SettingsProblem, is_loopback
from studio.ui import api_keys
from studio.ui.context import Context, guard
from studio.ui.i18n import STRINGS, resolve_language, t

if TYPE_CHECKING:
    from studio.app import Studio

__all__ = ["FORM_FIELDS", "SERVER_FIELDS", "build", "check_settings", "current_values", "field_names",
           "is_loopback", "model_choices", "problem_lines"]

FORM_FIELDS = ("model", "memory_profile", "workers", "output_dir", "language", "host", "port",
               "auth_user", "auth_password", "split_image")
SERVER_FIELDS = ("host", "port", "auth_user", "auth_password")


def check_settings(values: dict[str, Any], current: Settings | None = None, paths: Any = None,
                   gpu_count: int | None = None) -> tuple[dict[str, Any], dict[str, SettingsProblem]]:
    """Form values to typed settings changes, or the problems (one per field) that stop the save.

    An empty password box keeps the saved password (the page never holds it); a new one is hashed
    here, so the plain text goes no further than this function.
    """
    out = {k: (v.strip() if isinstance(v, str) and k != "auth_password" else v)
           for k, v in values.items() if k in FORM_FIELDS}
    problems: dict[str, SettingsProblem] = {}
    try:
        port = float(out.get("port", 7860))
        out["port"] = int(port) if port.is_integer() else port
    except (TypeError, ValueError):
        out["port"] = None
    if not isinstance(out["port"], int):
        problems["port"] = SettingsProblem("port", "set.bad_port")
        out.pop("port")
    out["host"] = out.get("host") or "127.0.0.1"
    out["language"] = out.get("language") or "auto"
    password = out.pop("auth_password", "") or ""
    if not out.get("auth_user"):
        out["auth_password"] = ""  # no user, no login: forget the old password too
    elif password:
        out["auth_password"] = password
    else:
        out["auth_password"] = current.auth_password if current else ""
    for problem in check_settings_values(out, paths, saving=True, gpu_count=gpu_count):
        problems.setdefault(problem.field, problem)
    if problems:
        return {}, problems
    if password and out.get("auth_user"):
        out["auth_password"] = hash_password(password)
    return out, {}


def problem_lines(problems: dict[str, SettingsProblem], lang: str) -> str:
    """One line per bad field, naming the field."""
    colon = "：" if lang == "zh" else ": "
    return "\n\n".join(f"⚠ {t(f'set.field.{name}', lang)}{colon}{p.message(lang)}" for name, p in problems.items())


def field_names(names: list[str], lang: str) -> str:
    """Settings fields as a person reads them in `lang` (their labels, never the code names)."""
    labels = [t(f"set.field.{n}", lang) if f"set.field.{n}" in STRINGS else n for n in names]
    return ("、" if lang == "zh" else ", ").join(labels)


def _gpu_count(studio: Studio) -> int | None:
    """Visible GPUs, so a settings check can refuse cuda:3 on a two-GPU computer."""
    try:
        return studio.gpu_count()
    except Exception:  # no NVML: leave it to the pool to say
        return None


def model_choices(studio: Studio, lang: str) -> list[tuple[str, str]]:
    """The detected models for the dropdown: automatic, each model found, and the demo model."""
    out = [(t("set.auto", lang), "")]
    try:
        found = studio.available_models()
    except Exception:  # a broken cache folder must not break the tab
        found = []
    for info in found:
        state = "" if info.complete else " ⚠"
        out.append((f"{info.name} · {info.source}{state} · {info.path}", info.path))
    out.append((t("set.demo", lang), "demo"))
    return out


def memory_choices(lang: str) -> list[tuple[str, str]]:
    """The memory profiles, "auto" and "full" in words of `lang` (sizes stay as they are)."""
    return [(t(f"set.memory.{p}", lang) if p in ("auto", "full") else p.upper().replace("GB", " GB"), p)
            for p in MEMORY_PROFILES]


def split_choices(lang: str) -> list[tuple[str, str]]:
    return [(t(f"set.split.{m}", lang), m) for m in SPLIT_MODES]


def current_values(settings: Settings) -> list[Any]:
    """The form's values; the password box is always empty (the page never holds a secret)."""
    return ["" if name == "auth_password" else getattr(settings, name) for name in FORM_FIELDS]


def _trash(ctx: Context) -> None:
    """Empty the trash (deleted Gallery images), after a confirmation: it cannot be undone."""
    g = guard(ctx)
    empty = ctx.label(gr.Button(t("set.trash", ctx.lang), size="sm", elem_id="settings-empty-trash"), "set.trash",
                      "value")
    with gr.Row(visible=False, equal_height=True, elem_id="settings-trash-confirm") as confirm:
        ctx.label(gr.Markdown(t("set.trash_confirm", ctx.lang)), "set.trash_confirm", "value")
        yes = ctx.label(gr.Button(t("set.trash_yes", ctx.lang), variant="stop", size="sm",
                                  elem_id="settings-trash-yes"), "set.trash_yes", "value")
        no = ctx.label(gr.Button(t("set.trash_no", ctx.lang), size="sm", elem_id="settings-trash-no"),
                       "set.trash_no", "value")
    said = gr.Markdown(elem_id="settings-trash-status")

    @g
    def do_empty():
        freed = ctx.studio.empty_trash()
        return gr.update(visible=False), t("set.trash_done", ctx.lang, files=freed["files"],
                                          mb=f"{freed['bytes'] / 2**20:.1f}")

    empty.click(lambda: (gr.update(visible=True), ""), outputs=[confirm, said], show_progress="hidden")
    no.click(lambda: gr.update(visible=False), outputs=[confirm], show_progress="hidden")
    yes.click(do_empty, outputs=[confirm, said], show_progress="hidden")


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
            memory = ctx.label(gr.Dropdown(choices=memory_choices(lang), value=s.memory_profile,
                                           label=t("set.memory", lang), elem_id="settings-memory"), "set.memory")
            ctx.localize(memory, lambda l_: {"choices": memory_choices(l_)})
            workers = ctx.label(gr.Textbox(value=s.workers, label=t("set.workers", lang), elem_id="settings-workers"),
                                "set.workers")
            split = ctx.label(gr.Dropdown(choices=split_choices(lang), value=s.split_image, label=t("set.split", lang),
                                          elem_id="settings-split"), "set.split")
            ctx.localize(split, lambda l_: {"choices": split_choices(l_)})
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
            password = ctx.label(gr.Textbox(value="", type="password", placeholder=t("set.password_keep", lang),
                                            label=t("set.auth_password", lang), elem_id="settings-password",
                                            scale=2), "set.auth_password")
            ctx.localize(password, lambda l_: {"placeholder": t("set.password_keep", l_)})
        with gr.Row():
            save = ctx.label(gr.Button(t("set.save", lang), variant="primary", elem_id="settings-save"),
                             "set.save", "value")
            restart = ctx.label(gr.Button(t("set.restart", lang), visible=False, elem_id="settings-restart"),
                                "set.restart", "value")
        status = gr.Markdown(elem_id="settings-status")
        _trash(ctx)
        api_reload, api_outputs = api_keys.build(ctx)  # Settings → API (issue 21)
    inputs = [model, memory, workers, output, language, host, port, user, password, split]

    detected.change(g(lambda v: v if v is not None else gr.update()), inputs=[detected], outputs=[model],
                    show_progress="hidden")

    @g
    def do_save(*values):
        before = ctx.studio.settings
        changes, problems = check_settings(dict(zip(FORM_FIELDS, values)), before, ctx.studio.paths,
                                           _gpu_count(ctx.studio))
        if problems:
            return problem_lines(problems, ctx.lang), gr.update()
        try:
            restart_needed = ctx.studio.update_settings(**changes)
        except SettingsError as exc:  # the same check, on the Studio's side
            return problem_lines({p.field: p for p in exc.problems}, ctx.lang), gr.update()
        changed = [f.name for f in fields(Settings) if getattr(before, f.name) != getattr(ctx.studio.settings, f.name)]
        if "language" in changed:  # otherwise keep the language the window was opened in (--lang)
            ctx.lang = resolve_language(ctx.studio.settings.language)
        if not changed:
            return t("set.unchanged", ctx.lang), gr.update()
        lines = [t("set.saved", ctx.lang)]
        if restart_needed:
            lines.append(t("set.needs_restart", ctx.lang, names=field_names(restart_needed, ctx.lang)))
        if any(name in SERVER_FIELDS for name in changed):
            lines.append(t("set.needs_server", ctx.lang))
        return "\n\n".join(lines), gr.update(visible=bool(restart_needed))

    save_event = save.click(do_save, inputs=inputs, outputs=[status, restart], show_progress="hidden")

    @g
    def do_restart():
        try:
            ctx.studio.restart_pool()
        except StudioError as exc:  # the old workers still run: say why, keep the button
            return t("set.restart_failed", ctx.lang, reason=str(exc)), gr.update(visible=True)
        return t("set.restarted", ctx.lang), gr.update(visible=False)

    restart.click(do_restart, outputs=[status, restart], show_progress="minimal")

    @g
    def reload():
        """Values as saved in the settings file (what the next start will use), and api.json's."""
        return [*current_values(load_settings(ctx.studio.paths)),
                gr.update(choices=model_choices(ctx.studio, ctx.lang)), *api_reload()]

    return save_event, reload, [*inputs, detected, *api_outputs]
