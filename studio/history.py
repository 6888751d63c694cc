"""The history and gallery half of the facade: what was made, read from the store alone.

None of these start the worker pool, so `zaoxiang history` and a window's History tab stay light.
`Studio` inherits them; `store` is its history database, opened on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.request import GenerationRequest

if TYPE_CHECKING:
    from studio.store import Store


class HistoryQueries:
    """History, gallery, favorites, trash and export, on `self.store`."""

    store: Store  # Studio's history database (a property there, opened on first use)

    def history(self, search: str | None = None, favorites_only: bool = False, since: Any = None,
                limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Requests newest first (see Store.history), each with its job counts, errors and images."""
        return self.store.history(search=search, favorites_only=favorites_only, since=since, limit=limit,
                                  offset=offset)

    def gallery(self, page: int = 0, per_page: int = 48) -> dict[str, Any]:
        """One page of images, newest first: {"items": [...], "total": n, "page": p, "per_page": k}."""
        return {"items": self.store.gallery(page, per_page), "total": self.store.gallery_count(),
                "page": page, "per_page": per_page}

    def image_info(self, image_id: int) -> dict[str, Any]:
        return self.store.image_info(image_id)

    def reuse(self, image_id: int | None = None, request_id: str | None = None) -> GenerationRequest:
        return self.store.reuse(image_id=image_id, request_id=request_id)

    def set_favorite(self, image_id: int, value: bool = True) -> bool:
        return self.store.set_favorite(image_id, value)

    def delete_image(self, image_id: int) -> Path | None:
        """The file goes to the trash folder and the row goes, together."""
        return self.store.delete_image(image_id)

    def empty_trash(self) -> dict[str, int]:
        return self.store.empty_trash()

    def export(self, image_ids: list[int], zip_path: Path | str) -> Path:
        return self.store.export(image_ids, zip_path)

    def last_reconciliation(self) -> dict[str, Any] | None:
        return self.store.last_reconciliation()

