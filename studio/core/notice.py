"""Messages for the person that a window says in its own language and the CLI prints in English."""

from __future__ import annotations

from typing import Any


class Notice(str):
    """A message for the person: the English line (what the CLI prints and the log keeps), plus an
    i18n key and its values so that a window says it in its own language."""

    key: str
    values: dict[str, Any]

    def __new__(cls, text: str, key: str, **values: Any) -> Notice:
        notice = super().__new__(cls, text)
        notice.key, notice.values = key, values
        return notice


def database_rebuilt(damaged: bool, reason: str, moved_to: str | None, count: int) -> Notice:
    """The history database had to start afresh; `count` images were found again from their files."""
    where = f"; the damaged file was kept as {moved_to}" if moved_to else ""
    what = "was damaged" if damaged else "was empty (0 bytes)"
    key = f"notice.db_{'damaged' if damaged else 'empty'}{'_kept' if moved_to else ''}"
    return Notice(f"The history database {what} ({reason}){where}. A new one was started "
                  f"and {count} images were found again from their files.", key, count=count, path=str(moved_to or ""))
