"""Which language to speak, and the words in it: `t(key, lang)` over the one table (core/strings.py).

One table for the window (`ui/`), the desktop parts (tray, console lines, `zaoxiang stop`, keys
`desk.*`) and the settings checks (`set.*`, `settings.*`), so a string is translated once and
`check_complete` keeps both languages in step. In core because the desktop must not import the UI
and messages made below both (the settings file's notices) follow the same language rule.
`SaidError` is an error raised below the window (in a worker) that the window can still say in zh.
"""

from __future__ import annotations

import locale
import os

from studio.core.strings import STRINGS

LANGS = ("zh", "en")
# gettext's order: LANGUAGE (a priority list such as "zh_CN:en") overrides the locale variables.
LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def _is_chinese(code: str) -> bool:
    return code.strip().lower().startswith(("zh", "chinese"))


def system_language() -> str:
    """`zh` when the system asks for Chinese, else `en`: the first set variable of `LOCALE_VARS`
    decides (LANGUAGE by its first entry), then the process locale (Windows, macOS apps)."""
    for var in LOCALE_VARS:
        value = os.environ.get(var, "")
        if var == "LANGUAGE":
            value = next((part for part in value.split(":") if part.strip()), "")
        if value.strip():
            return "zh" if _is_chinese(value) else "en"
    try:
        code = locale.getlocale()[0] or ""
    except ValueError:
        code = ""
    return "zh" if _is_chinese(code) else "en"


def resolve_language(setting: str | None) -> str:
    """The language to speak: the setting when it names one, else the system's."""
    return setting if setting in LANGS else system_language()


def t(key: str, lang: str, **fmt: object) -> str:
    """The text for `key` in `lang` (English where that language lacks it), formatted with `fmt`."""
    texts = STRINGS[key]
    text = texts.get(lang) or texts["en"]
    return text.format(**fmt) if fmt else text


def check_complete() -> list[str]:
    """Keys missing a language (validation keys `err.*` only need Chinese: English comes from core)."""
    bad = []
    for key, texts in STRINGS.items():
        for lang in LANGS:
            if lang == "en" and key.startswith("err.") and key != "err.unexpected":
                continue
            if not texts.get(lang):
                bad.append(f"{key}:{lang}")
    return bad


class SaidError(Exception):
    """An error stated once, as a key of the strings table and its arguments: `str()` is the English line
    (logs, the API and the CLI read it as before), and `key`/`fmt` travel as plain data so a window
    says it in its own language. The key's English must be complete (not an `err.*` blank)."""

    def __init__(self, key: str, **fmt: str | int | float) -> None:
        self.key, self.fmt = key, fmt
        super().__init__(t(key, "en", **fmt))

    def __reduce__(self) -> tuple[object, ...]:  # the default would call the class with the English line
        return _said, (type(self), self.key, self.fmt)


def _said(cls: type[SaidError], key: str, fmt: dict[str, str | int | float]) -> SaidError:
    return cls(key, **fmt)
