"""API keys: created once (the plain key shown only then), stored hashed in a 0600 file, revoked by id.

The file (`api.json` in the config dir) also holds the API's own settings: whether loopback callers
need a key too (yes unless the person turns it off: anything that changes state is for the person
at the window or a key holder, and on a shared machine loopback is not just the person), the per-key
rate limit and the queue limit. The server re-reads it when it changes,
so `zaoxiang keys revoke` takes effect on a running studio at its next request.

Hash: SHA-256 of the key, not scrypt. A key is 256 random bits, so there is nothing to guess that a
slow hash would protect; scrypt exists for passwords people choose. SHA-256 keeps every API call's
check to microseconds, where scrypt's 16 MiB and tens of milliseconds per call would hand anyone
able to send requests a cheap way to load the machine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from studio.core.atomic import atomic_path
from studio.core.file_lock import held

KEY_PREFIX = "zx-"
FILE_NAME = "api.json"
LOCK_NAME = "api.json.lock"  # held across each read-modify-write of FILE_NAME
DEFAULT_RATE_PER_MIN = 60
DEFAULT_QUEUE_LIMIT = 256
DEFAULT_UPLOADS_MB = 1024  # edits' body bytes in flight at once (studio/api/upload_budget.py)
# The caller the history records for an API call made without a key (keyless loopback, when the person
# turned keys off); a key's id is never empty. Such calls read only what other keyless calls made.
KEYLESS_CALLER = ""


@dataclass(frozen=True)
class KeyRecord:
    """One key as stored: never the key itself, only its SHA-256."""

    id: str
    name: str
    sha256: str
    created: str
    revoked: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None


@dataclass(frozen=True)
class ApiConfig:
    """The API's settings, kept beside the keys."""

    require_key_on_loopback: bool = True  # Settings → API may turn it off; see the module docstring
    rate_per_min: int = DEFAULT_RATE_PER_MIN  # per key; 0: no limit
    queue_limit: int = DEFAULT_QUEUE_LIMIT  # images waiting in the queue before new API calls get 429
    uploads_mb: int = DEFAULT_UPLOADS_MB  # edit bodies in flight together before new edits get 429
    keys: tuple[KeyRecord, ...] = ()


def bearer(headers: Mapping[str, str]) -> str | None:
    """The key an `Authorization: Bearer <key>` header carries, or None."""
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


class KeyStoreError(ValueError):
    """A key operation that cannot be done (unknown id, bad name): one readable sentence."""


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _digest(plain: str) -> str:
    return hashlib.sha256(plain.encode("utf-8", "replace")).hexdigest()


class KeyStore:
    """The keys file of one config dir; safe to share between threads."""

    def __init__(self, config_dir: Path | str) -> None:
        self.path = Path(config_dir) / FILE_NAME
        self._lock = threading.Lock()
        self._config = ApiConfig()
        self._stamp: tuple[int, int, int] | None = None

    # ------------------------------------------------------------------ reading

    def config(self) -> ApiConfig:
        """The current file's contents (re-read only when the file changed)."""
        with self._lock:
            try:
                st = self.path.stat()
                stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp != self._stamp:
                self._config = self._read() if stamp is not None else ApiConfig()
                self._stamp = stamp
            return self._config

    def _read(self) -> ApiConfig:
        try:
            data = json.loads(self.path.read_text("utf-8"))
            keys = tuple(KeyRecord(**{k: r[k] for k in ("id", "name", "sha256", "created", "revoked") if k in r})
                         for r in data.get("keys", []))
            return ApiConfig(require_key_on_loopback=bool(data.get("require_key_on_loopback", True)),
                             rate_per_min=max(0, int(data.get("rate_per_min", DEFAULT_RATE_PER_MIN))),
                             queue_limit=max(1, int(data.get("queue_limit", DEFAULT_QUEUE_LIMIT))),
                             uploads_mb=max(1, int(data.get("uploads_mb", DEFAULT_UPLOADS_MB))), keys=keys)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            # A damaged file must fail closed: no key is valid, and keys are required everywhere.
            return ApiConfig(require_key_on_loopback=True)

    def verify(self, plain: str) -> KeyRecord | None:
        """The active key record `plain` belongs to, or None (constant-time compare of the hashes)."""
        if not plain.startswith(KEY_PREFIX):
            return None
        key_id = plain[len(KEY_PREFIX):].split("-", 1)[0]
        digest = _digest(plain)
        for record in self.config().keys:
            if record.id == key_id and record.active and hmac.compare_digest(record.sha256, digest):
                return record
        return None

    def list(self) -> list[KeyRecord]:
        return list(self.config().keys)

    # ------------------------------------------------------------------ writing

    def _write(self, config: ApiConfig) -> None:
        data: dict[str, Any] = asdict(config)
        data["keys"] = [asdict(k) for k in config.keys]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:  # mkstemp: created 0600, so the file never exists wider
            tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
        os.chmod(self.path, 0o600)
        with self._lock:
            self._stamp = None  # read back on next use

    def _update(self, change: Callable[[ApiConfig], ApiConfig]) -> ApiConfig:
        """Read, change and write the file under an OS lock: the server, Settings and the CLI each have
        a KeyStore, in up to two processes, and a write from a stale read would undo a revoke."""
        try:
            with held(self.path.parent / LOCK_NAME):
                with self._lock:
                    self._stamp = None  # read the file itself, not the cache
                new = change(self.config())
                self._write(new)
        except TimeoutError:
            raise KeyStoreError(f"{self.path} is being changed by another process: try again.") from None
        return new

    def create(self, name: str) -> tuple[KeyRecord, str]:
        """A new key; returns its record and the plain key, which is never shown again."""
        name = " ".join(str(name or "").split())[:80] or "key"
        made: list[tuple[KeyRecord, str]] = []

        def change(c: ApiConfig) -> ApiConfig:
            # Never a revoked key's id again: the history records which key asked for each image by id.
            taken = {k.id for k in c.keys}
            key_id = secrets.token_hex(4)
            while key_id in taken:
                key_id = secrets.token_hex(4)
            plain = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
            made[:] = [(KeyRecord(id=key_id, name=name, sha256=_digest(plain), created=_now()), plain)]
            return replace(c, keys=(*c.keys, made[0][0]))

        self._update(change)
        return made[0]

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke by id (or by a name that only one active key has)."""
        found: list[KeyRecord] = []

        def change(c: ApiConfig) -> ApiConfig:
            active = [k for k in c.keys if k.active]
            match = [k for k in active if k.id == key_id] or [k for k in active if k.name == key_id]
            if len(match) != 1:
                raise KeyStoreError(f"No active key {key_id!r}." if not match else
                                f"{len(match)} keys are named {key_id!r}: revoke one by its id.")
            found.append(replace(match[0], revoked=_now()))
            return replace(c, keys=tuple(found[0] if k.id == match[0].id else k for k in c.keys))

        self._update(change)
        return found[0]

    def set_options(self, *, require_key_on_loopback: bool | None = None, rate_per_min: int | None = None,
                    queue_limit: int | None = None, uploads_mb: int | None = None) -> ApiConfig:
        changes: dict[str, Any] = {}
        if require_key_on_loopback is not None:
            changes["require_key_on_loopback"] = bool(require_key_on_loopback)
        if rate_per_min is not None:
            changes["rate_per_min"] = max(0, int(rate_per_min))
        if queue_limit is not None:
            changes["queue_limit"] = max(1, int(queue_limit))
        if uploads_mb is not None:
            changes["uploads_mb"] = max(1, int(uploads_mb))
        return self._update(lambda c: replace(c, **changes))
