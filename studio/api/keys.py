"""The API's per-key rate limit. The keys themselves and the API's settings (`api.json`) are in
core/key_store.py, below the window and the API alike; their names are re-exported here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from studio.core.key_store import (  # noqa: F401  (re-exported: the API, the CLI and tests import them here)
    DEFAULT_QUEUE_LIMIT,
    DEFAULT_RATE_PER_MIN,
    DEFAULT_UPLOADS_MB,
    FILE_NAME,
    KEY_PREFIX,
    LOCK_NAME,
    ApiConfig,
    KeyRecord,
    KeyStore,
    KeyStoreError,
)


@dataclass
class RateLimiter:
    """A token bucket per key: `per_min` calls a minute on average, bursts up to `per_min`."""

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key id -> (tokens, at)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key_id: str, per_min: int) -> float:
        """0 when the call may go now (one token taken), else the seconds until it may."""
        if per_min <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key_id, (float(per_min), now))
            tokens = min(float(per_min), tokens + (now - at) * per_min / 60.0)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) * 60.0 / per_min
