"""Deleting an image so that it can be undone: its row is kept in memory, its file in the trash.

`Store.delete_image` moves the file to the trash folder and drops the row together; this module
reads the row first, so `restore` can put both back as they were (same id, favorite, request).
Undo lasts until the trash is emptied or the studio stops.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.store.errors import StoreError

if TYPE_CHECKING:
    from studio.store import Store


@dataclass(frozen=True)
class DeletedImage:
    """One deletion that can be undone: the images row as it was and where its file went."""

    image_id: int
    row: dict[str, Any]
    trashed: Path | None  # None: the file was already gone when it was deleted

    @property
    def path(self) -> str:
        return str(self.row["path"])


def delete(store: Store, image_id: int) -> DeletedImage:
    """Delete the image (file to the trash, row dropped) and keep what `restore` needs."""
    with store.transaction("read an image") as c:
        row = c.execute("SELECT * FROM images WHERE id = ?", (int(image_id),)).fetchone()
    if row is None:
        raise StoreError(f"No image with id {image_id} in the history.")
    trashed = store.delete_image(image_id)  # file and row together, or neither
    return DeletedImage(int(image_id), {k: row[k] for k in row.keys()}, trashed)


def restore(store: Store, deleted: DeletedImage) -> int:
    """Put the file back where it was and the row back as it was; returns the image id.

    Refused (StoreError) when the trash was emptied since, or another file now has that name.
    """
    original = Path(deleted.path)
    if deleted.trashed is not None:
        if not deleted.trashed.exists():
            raise StoreError(f"{original.name} is no longer in the trash (it was emptied).")
        if original.exists():
            raise StoreError(f"Another file now stands at {original}; it was left as it is.")
        original.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(os.fspath(deleted.trashed), original)
    columns = list(deleted.row)
    try:
        with store.transaction("restore an image") as c:
            c.execute(f"INSERT INTO images ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                      [deleted.row[k] for k in columns])
    except BaseException:
        if deleted.trashed is not None:  # the row could not come back: the file goes back to the trash
            shutil.move(os.fspath(original), deleted.trashed)
        raise
    return deleted.image_id
