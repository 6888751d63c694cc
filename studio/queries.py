"""The history and gallery half of the facade: what was made, read from the store alone.

None of these start the worker pool, so `zaoxiang history` and a window's History tab stay light.
`Studio` inherits them; `store` is its history database, opened on first use.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.request import GenerationRequest
from studio.store import input_sweep, undo
from studio.store.errors import StoreError

if TYPE_CHECKING:
    from studio.store import Store

log = logging.getLogger(__name__)

UNDO_KEEP = 20  # deletions that can be undone, newest last


class StoreQueries:
    """History, gallery, favorites, trash and export, on `self.store`."""

    store: Store  # Studio's history database (a property there, opened on first use)

    def __init__(self) -> None:
        self._deleted: list[undo.DeletedImage] = []

    def history(self, search: str | None = None, favorites_only: bool = False, since: Any = None,
                limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Requests newest first (see Store.history), each with its job counts, errors and images."""
        return self.store.history(search=search, favorites_only=favorites_only, since=since, limit=limit,
                                  offset=offset)

    def gallery(self, page: int = 0, per_page: int = 48, search: str | None = None,
                favorites_only: bool = False) -> dict[str, Any]:
        """One page of images, newest first: {"items": [...], "total": n, "page": p, "per_page": k}.
        `search`: every term in the prompt (as History searches); `favorites_only`: favorites alone."""
        return {"items": self.store.gallery(page, per_page, favorites_only=favorites_only, search=search),
                "total": self.store.gallery_count(favorites_only=favorites_only, search=search),
                "page": page, "per_page": per_page}

    def image_info(self, image_id: int) -> dict[str, Any]:
        return self.store.image_info(image_id)

    def reuse(self, image_id: int | None = None, request_id: str | None = None) -> GenerationRequest:
        return self.store.reuse(image_id=image_id, request_id=request_id)

    def set_favorite(self, image_id: int, value: bool = True) -> bool:
        return self.store.set_favorite(image_id, value)

    def delete_image(self, image_id: int) -> Path | None:
        """The file goes to the trash folder and the row goes, together; `undo_delete` brings both back.

        A deletion that falls off the undo list takes the inputs only its request held with it."""
        deleted = undo.delete(self.store, image_id)
        gone, self._deleted = self._deleted[:-(UNDO_KEEP - 1)], [*self._deleted[-(UNDO_KEEP - 1):], deleted]
        if gone:
            self.sweep_inputs([str(d.row.get("request_id") or "") for d in gone])
        return deleted.trashed

    def can_undo_delete(self) -> bool:
        return bool(self._deleted)

    def undo_delete(self) -> int | None:
        """Bring the last deleted image back (file and row, as they were); its id, or None when there is
        nothing to undo. StoreError when it cannot come back (the trash was emptied since)."""
        if not self._deleted:
            return None
        return undo.restore(self.store, self._deleted.pop())

    def empty_trash(self) -> dict[str, int]:
        """Delete the trash folder's files for good ({'files': n, 'bytes': n}); nothing can be undone after,
        so every stored input no history row holds goes too."""
        self._deleted = []
        freed = self.store.empty_trash()
        self.sweep_inputs(None)
        return freed

    def sweep_inputs(self, request_ids: list[str] | None) -> input_sweep.Swept | None:
        """Remove the stored inputs no history row holds: those the given requests named, or (None) all.

        Requests whose deletions can still be undone hold theirs. A sweep that fails is logged and
        left to the next one: the deletion it follows has happened."""
        try:
            keep = [str(d.row.get("request_id") or "") for d in self._deleted]
            if request_ids is None:
                return input_sweep.sweep_inputs(self.store, self.store.inputs_dir, keep_requests=keep)
            with self.store.transaction("read the deleted images' requests") as c:
                candidates = input_sweep.request_inputs(c, [r for r in request_ids if r])
            if not candidates:
                return None
            return input_sweep.sweep_inputs(self.store, self.store.inputs_dir, candidates, keep_requests=keep)
        except (StoreError, OSError) as exc:
            log.warning("inputs folder not tidied: %s", exc)
            return None

    def export(self, image_ids: list[int], zip_path: Path | str) -> Path:
        return self.store.export(image_ids, zip_path)

    def last_reconciliation(self) -> dict[str, Any] | None:
        return self.store.last_reconciliation()

