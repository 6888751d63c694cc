"""A damaged history database is moved aside, never a reason for the studio not to start.

Every image carries its own parameters, so the history can be rebuilt from the PNGs (`reconcile`);
what cannot be rebuilt (queued jobs, favorites) stays in the moved-aside file for a person or a tool
to look at. Kept apart from store.py so that the rule for "damaged" is in one place.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# What SQLite says about a file that is not (or no longer) a sound database; "locked", "read-only",
# "disk full" and the like are not damage: moving the file aside would lose a good history.
DAMAGE_HINTS = ("malformed", "not a database", "file is encrypted", "corrupt")
SIDE_FILES = ("-wal", "-shm")


class DamagedDatabase(Exception):
    """The database file failed its check; the message is SQLite's, `moved_to` where it went."""

    def __init__(self, message: str, moved_to: Path | None = None) -> None:
        super().__init__(message)
        self.moved_to = moved_to


@dataclass(frozen=True)
class Recovery:
    """What opening the store had to do: `kind` "damaged" (moved to `moved_to`) or "empty" (0 bytes)."""

    kind: str
    reason: str
    moved_to: Path | None


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return any(hint in text for hint in DAMAGE_HINTS)


def is_empty_database(path: Path) -> bool:
    """A 0-byte database file (and no write-ahead log that could hold its content)."""
    try:
        if path.stat().st_size:
            return False
    except OSError:
        return False
    wal = Path(f"{path}-wal")
    return not (wal.exists() and wal.stat().st_size)


def quarantine(path: Path) -> Path:
    """Move the database and its -wal/-shm to `<name>.damaged-<time>`; returns the new main file's path."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = Path(f"{path}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = Path(f"{path}.damaged-{stamp}-{n}")
    for suffix in ("", *SIDE_FILES):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, f"{target}{suffix}")
    return target
