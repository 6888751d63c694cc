"""The window's side of the string table: its labels live in `studio/core/i18n.py` with every
other string, looked up by key so that tests (and a language switch) never depend on the words.

What is the window's own is how a validation error reads in Chinese: core's English sentence is
the CLI's line, and the window shows that or the same sentence in Chinese, never both.
"""

from __future__ import annotations

from studio.core.i18n import LANGS, STRINGS, check_complete, resolve_language, system_language, t

__all__ = ["LANGS", "STRINGS", "resolve_language", "system_language", "t", "field_error", "check_complete"]


def field_error(field: str, message: str, lang: str, kind: str = "range", got: object = None) -> str:
    """A validation message for one field in `lang`: core's English sentence (the CLI's line) as it
    is, or the same sentence in Chinese, with the value that was given (`kind`/`got`, see
    core.request.ValidationError)."""
    if lang != "zh" or f"err.{field}" not in STRINGS:
        return message
    label = STRINGS.get(f"err.label.{field}", {}).get("zh", field)
    if kind in ("whole", "number", "finite", "text"):
        return t(f"err.{kind}", "zh", label=label, got=got)
    text = STRINGS[f"err.{field}"]["zh"]
    if got is not None and field not in ("prompt", "negative_prompt"):
        text = text.rstrip("。") + t("err.got", "zh", got=got) + "。"
    return text
