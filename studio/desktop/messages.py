"""What the desktop parts say to a person (tray menu, console lines, `zaoxiang stop`).

The strings are `desk.*` in `studio/core/i18n.py`'s one table (the desktop must not import the UI);
the language is the one the studio was started with, else the system's, by the window's own rule.
"""

from __future__ import annotations

from studio.core.i18n import resolve_language as resolve_lang
from studio.core.i18n import system_language as system_lang
from studio.core.i18n import t

__all__ = ["IDLE", "WORKING", "ERROR", "resolve_lang", "system_lang", "text"]

IDLE, WORKING, ERROR = "idle", "working", "error"


def text(key: str, lang: str, **fmt: object) -> str:
    """The desktop string `key` (`desk.<key>`) in `lang`."""
    return t(f"desk.{key}", lang, **fmt)
