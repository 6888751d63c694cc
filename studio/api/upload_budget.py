"""How many body bytes the edits route holds at once, across all its calls: several large uploads in
flight cannot exhaust the studio's memory.

Each call holds its Content-Length from the start (or, sent chunked, each chunk as it arrives) until
its handler returns, since its bytes (and their decoded copies) live that long. A call that would take
the total past the budget is refused at once with 429 in OpenAI's shape and a Retry-After: clients
back off and send it again, and the calls already in flight are untouched. A body larger than the
whole budget could never fit, so it gets 413 (naming the setting) instead of a 429 clients would
retry for ever; the setting is left as the person chose it (a small machine may want it below one
edit's limit). A body that stops arriving lets its share go: see `multipart.BODY_IDLE_S`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from studio.api.errors import ApiError
from studio.api.keys import DEFAULT_UPLOADS_MB

RETRY_AFTER_S = 5.0


class UploadBudget:
    """Body bytes held by calls in flight, at most `max_bytes()` together (the API's `uploads_mb`
    setting, read as each call asks: the default holds one edit at the body limit and many ordinary
    ones beside it)."""

    def __init__(self, max_bytes: Callable[[], int] = lambda: DEFAULT_UPLOADS_MB << 20) -> None:
        self.max_bytes, self.held = max_bytes, 0
        self._lock = threading.Lock()

    def hold(self) -> UploadHold:
        """One call's share, empty until it grows; `release` it when the call is answered."""
        return UploadHold(self)

    def _take(self, nbytes: int, total: int) -> None:
        """Hold `nbytes` more for a call that then holds `total`."""
        limit = self.max_bytes()
        if total > limit:
            raise ApiError(413, f"This edit's body ({total / 2**20:.1f} MB) is more than the {limit / 2**20:.0f} MB "
                                "the API takes in at once (its uploads_mb setting): raise that setting or send "
                                "smaller files.", code="over_uploads_budget")
        with self._lock:
            if self.held + nbytes > limit:
                raise ApiError(429, f"Other uploads hold {self.held / 2**20:.0f} MB of the {limit / 2**20:.0f} MB the "
                                    "studio takes in at once; send this edit again in a moment.",
                               code="uploads_busy", retry_after_s=RETRY_AFTER_S)
            self.held += nbytes

    def _give(self, nbytes: int) -> None:
        with self._lock:
            self.held -= nbytes


class UploadHold:
    """One call's bytes in an UploadBudget."""

    def __init__(self, budget: UploadBudget) -> None:
        self.budget, self.nbytes = budget, 0

    def cover(self, nbytes: int) -> None:
        """Hold at least `nbytes` in all (the body so far, or its declared length); ApiError 429 if the
        budget has no room for the difference, 413 if `nbytes` alone is more than the whole budget."""
        if nbytes > self.nbytes:
            self.budget._take(nbytes - self.nbytes, nbytes)
            self.nbytes = nbytes

    def release(self) -> None:
        self.budget._give(self.nbytes)
        self.nbytes = 0
