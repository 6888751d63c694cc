"""Store errors with one readable sentence, and telling a full or read-only disk from other failures.

A job whose PNG cannot be written because the disk is full or the folder is read-only did nothing
wrong: it is kept queued for a retry instead of being failed for good, so the classification lives
here, next to the store that acts on it.
"""

from __future__ import annotations

import errno
import re
import sqlite3

from studio.core.errors import StudioError

# errno values that mean "the place we write to cannot take the file right now".
STORAGE_ERRNOS = {errno.ENOSPC: "the disk is full (no space left on device)",
                  errno.EROFS: "the output folder is on a read-only file system",
                  errno.EACCES: "the output folder is not writable (permission denied)",
                  errno.EDQUOT: "the disk quota is exceeded"}
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")
_TEXT_HINTS = {"no space left": errno.ENOSPC, "read-only file system": errno.EROFS,
               "permission denied": errno.EACCES, "disk quota": errno.EDQUOT}
STORAGE_KIND = "storage"


class StoreError(StudioError, RuntimeError):
    """The store could not do what was asked; the message says why in one sentence."""


def storage_errno(error: BaseException | str | None, message: str = "") -> int | None:
    """The storage errno in an OSError, or in the text of one that crossed a process pipe; else None."""
    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
        return error.errno
    text = f"{error or ''} {message}"
    m = _ERRNO_IN_TEXT.search(text)
    if m and int(m.group(1)) in STORAGE_ERRNOS:
        return int(m.group(1))
    low = text.lower()
    for hint, code in _TEXT_HINTS.items():
        if hint in low:
            return code
    return None


def storage_message(code: int, path: str | None = None) -> str:
    """What happened and what to do, for a job that stays queued."""
    where = f" ({path})" if path else ""
    return (f"Could not save the image: {STORAGE_ERRNOS[code]}{where}. "
            "The job stays queued and runs again when you resume.")


def database_error(exc: sqlite3.Error, doing: str) -> StoreError:
    """A readable StoreError for an SQLite failure (full disk, read-only file, locked, corrupt)."""
    text = str(exc).lower()
    if "full" in text:
        why = "the disk holding the database is full"
    elif "readonly" in text or "read-only" in text:
        why = "the database file or its folder is read-only"
    elif "locked" in text or "busy" in text:
        why = "another program holds the database locked"
    elif "malformed" in text or "not a database" in text:
        why = "the database file is damaged"
    else:
        why = str(exc)
    return StoreError(f"Could not {doing}: {why}. Nothing was half-saved.")
