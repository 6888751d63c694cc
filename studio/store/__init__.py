"""What must never be lost: requests, jobs and images in SQLite (WAL), and the gallery files.

`Store` is the database (see store.py for threading and durability); `reconcile` makes the
database and the gallery folders agree at start-up.
"""

from studio.store.errors import StoreError, storage_errno, storage_message
from studio.store.reconcile import reconcile
from studio.store.store import ORIGINS, Store, request_state

__all__ = ["ORIGINS", "Store", "StoreError", "reconcile", "request_state", "storage_errno", "storage_message"]
