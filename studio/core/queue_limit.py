"""The queue limit every scripted way in shares (/v1, /mcp and the window's named `/generate`): work
that would pass it is refused at once, so a script cannot bury the person's own images. The limit is
the API's setting in `api.json` (core/key_store.py); the window and the API each say the refusal
their own way."""

from __future__ import annotations

from typing import Any

from studio.core.key_store import KeyStore


class QueueFull(Exception):
    """`images` more would pass the queue limit; `str()` is the one sentence a caller shows."""

    def __init__(self, queued: int, limit: int) -> None:
        self.queued, self.limit = queued, limit
        super().__init__(f"The studio's queue holds {queued} images (limit {limit}); try again shortly.")


def admit_to_queue(studio: Any, keys: KeyStore, images: int) -> None:
    """Raise QueueFull when `images` more would pass the limit (`studio`: anything with `queue_length`)."""
    limit = keys.config().queue_limit
    queued = studio.queue_length()
    if queued + images > limit:
        raise QueueFull(queued, limit)
