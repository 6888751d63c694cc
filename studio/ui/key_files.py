"""The images an API key may download from the window's server: those its own calls made, nothing else.

gradio_client downloads every `{"path": ...}` in an answer from `/gradio_api/file=<path>`, with the
call's headers, so a key needs that one route for the images of its `/generate` calls. The endpoint
grants each image it made to the calling key; the guard (studio/ui/guard.py) lets a key fetch a file
only when a grant names it. Grants live in memory, for this run: a key reads older images through
`history`/`image` as paths (gradio_client with download_files=False), not as downloads.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict


class KeyFiles:
    """(key id, real path) pairs, the newest `limit` of them."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._granted: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def grant(self, key_id: str, path: str) -> None:
        with self._lock:
            self._granted[(key_id, os.path.realpath(path))] = None
            while len(self._granted) > self.limit:
                self._granted.popitem(last=False)

    def allows(self, key_id: str, path: str) -> bool:
        if not path or "\0" in path or "://" in path:
            return False
        with self._lock:
            return (key_id, os.path.realpath(path)) in self._granted
