"""Which language to speak: the setting when it names one, else the system locale's.

In core so that messages made below the UI (the settings file's notices) follow the same rule.
"""

from __future__ import annotations

import locale
import os

LANGS = ("zh", "en")


def system_language() -> str:
    """`zh` when the system locale is Chinese, else `en`."""
    for var in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = os.environ.get(var)
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    try:
        code = locale.getlocale()[0] or ""
    except ValueError:
        code = ""
    return "zh" if code.lower().startswith(("zh", "chinese")) else "en"


def resolve_language(setting: str | None) -> str:
    """The language to show: the setting when it names one, else the system's."""
    return setting if setting in LANGS else system_language()
