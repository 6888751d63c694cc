"""Rows for the History and Gallery tabs, made from what Studio's store queries return.

Plain functions over dicts, so the tables are unit-tested without a browser or a database.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import quote

from studio.ui.i18n import t


def file_url(path: str) -> str:
    """The URL Gradio serves an allowed file under."""
    return "/gradio_api/file=" + quote(str(path), safe="/:")


def _when(value: Any) -> str:
    if value in (None, ""):
        return ""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    try:
        return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text


def request_of(row: dict[str, Any]) -> dict[str, Any]:
    """The request fields of a history row (nested under "request" or flat)."""
    req = row.get("request")
    return req if isinstance(req, dict) else row


def params_text(req: dict[str, Any], lang: str) -> str:
    """A compact one-line summary of a request's parameters."""
    seed = req.get("seed")
    parts = [f"{req.get('width')}×{req.get('height')}", f"{t('gen.steps', lang)} {req.get('steps')}",
             f"CFG {req.get('guidance')}", f"{t('gen.count', lang)} {req.get('count', 1)}",
             f"{t('seed.' + str(req.get('seed_mode', 'random')), lang) if req.get('seed_mode') in ('random', 'fixed', 'increment') else ''}"
             f"{'' if seed is None else ' ' + str(seed)}"]
    return " · ".join(p for p in parts if p.strip())


def images_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The images of a history row that exist (each a dict with at least `path`)."""
    out = []
    for im in row.get("images") or []:
        if isinstance(im, str):
            im = {"path": im}
        if im.get("path"):
            out.append(im)
    return out


def history_table(rows: list[dict[str, Any]], lang: str) -> list[list[Any]]:
    """History rows for the table: thumbnail, time, prompt, parameters, status, image count."""
    table = []
    for row in rows:
        req = request_of(row)
        images = images_of(row)
        thumb = (f'<img class="zx-thumb" src="{html.escape(file_url(images[0]["path"]))}" alt="">'
                 if images else "")
        prompt = str(req.get("prompt", ""))
        table.append([
            thumb, _when(row.get("created") or row.get("created_at") or row.get("time")),
            prompt if len(prompt) <= 120 else prompt[:117] + "…", params_text(req, lang),
            state_label(str(row.get("status", "")), lang), f"{len(images)}/{req.get('count', len(images))}",
        ])
    return table


def state_label(state: str, lang: str) -> str:
    """A request or job state in the window's language (unknown states as they are)."""
    from studio.ui.i18n import STRINGS

    return t(f"state.{state}", lang) if f"state.{state}" in STRINGS else state


def history_headers(lang: str) -> list[str]:
    return ["", t("hist.col.time", lang), t("hist.col.prompt", lang), t("hist.col.params", lang),
            t("hist.col.status", lang), t("hist.col.images", lang)]


def caption(image: dict[str, Any], lang: str) -> str:
    """A gallery caption: seed (in the window's words, as Generate says it), and a star for favorites."""
    star = "★ " if image.get("favorite") else ""
    seed = image.get("seed")
    return f"{star}{t('info.seed', lang)} {seed}" if seed is not None else star.strip()


def info_markdown(info: dict[str, Any], lang: str) -> str:
    """Every parameter of one image, as Markdown for the Gallery's details panel."""
    req = request_of(info)
    lines = [f"**{t('gen.prompt', lang)}:** {req.get('prompt', '')}"]
    if req.get("negative_prompt"):
        lines.append(f"**{t('gen.negative', lang)}:** {req['negative_prompt']}")
    lines.append(f"**{t('gen.size', lang)}:** {req.get('width')}×{req.get('height')} · "
                 f"**{t('gen.steps', lang)}:** {req.get('steps')} · **CFG:** {req.get('guidance')} · "
                 f"**{t('info.seed', lang)}:** {req.get('seed')}")
    for key in ("model", "worker", "elapsed_s", "created_iso", "path"):
        if info.get(key) not in (None, ""):
            value = f"{info[key]:.2f} s" if key == "elapsed_s" and isinstance(info[key], (int, float)) else info[key]
            lines.append(f"**{t('info.' + key, lang)}:** `{value}`")
    return "\n\n".join(lines)
