"""Which images an API caller may read back (store/caller_images.py), on a real SQLite file: its own
calls' images, by job id, image id and path; nobody else's; and still after the store is reopened."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from studio.core.key_store import KEYLESS_CALLER
from studio.core.request import GenerationRequest
from studio.store import Store
from studio.store.schema import SCHEMA_VERSION, migrate
from tests.store_helpers import split, write_job_png


def made(store: Store, gallery: Path, prompt: str, origin: str = "api", api_key: str | None = None):
    """One finished image of a request recorded for `api_key`: (job id, image id, path)."""
    request = GenerationRequest(prompt=prompt, width=256, height=256, steps=2)
    (job,) = split(request, gallery)
    store.record_request(request, [job], origin=origin, model="demo", api_key=api_key)
    path = write_job_png(job)
    return job.job_id, store.mark_done(job.job_id, path), str(path)


def test_a_caller_reads_its_own_images_only_and_still_after_a_reopen(paths) -> None:
    store = Store()
    gallery = paths.gallery_dir
    mine = made(store, gallery, "key a's", api_key="aaaa1111")
    theirs = made(store, gallery, "key b's", api_key="bbbb2222")
    keyless = made(store, gallery, "keyless", api_key=KEYLESS_CALLER)
    window = made(store, gallery, "window's", origin="ui")
    owner = {"aaaa1111": mine, "bbbb2222": theirs, KEYLESS_CALLER: keyless}
    for caller, own in owner.items():
        for image in (mine, theirs, keyless, window):
            job_id, image_id, path = image
            allowed = image is own
            assert (store.caller_job_image(caller, job_id) == path) is allowed, (caller, image)
            assert store.caller_image_id(caller, image_id) is allowed
            assert store.caller_image_path(caller, path) is allowed
    # the same file spelt another way: through `..`, and through a link to it
    job_id, image_id, path = mine
    roundabout = f"{os.path.dirname(path)}/../{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}"
    link = paths.gallery_dir.parent / "link.png"
    link.symlink_to(path)
    assert store.caller_image_path("aaaa1111", roundabout) and store.caller_image_path("aaaa1111", str(link))
    assert not store.caller_image_path("bbbb2222", roundabout)
    for odd in ("", "\0", "http://x/y.png", "/etc/passwd"):
        assert not store.caller_image_path("aaaa1111", odd)
    store.close()

    again = Store()  # a restart: the grant is in the database, not in memory
    assert again.caller_job_image("aaaa1111", mine[0]) == mine[2]
    assert again.caller_job_image("aaaa1111", theirs[0]) is None
    again.close()


def test_requests_from_before_v3_are_nobodys(paths) -> None:
    """A v2 database gains the column empty: its API requests did not say who asked, so no caller reads them."""
    Store().close()
    conn = sqlite3.connect(paths.database, isolation_level=None)
    conn.execute("ALTER TABLE requests DROP COLUMN api_key")
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    store = Store()
    job_id, image_id, path = made(store, paths.gallery_dir, "from v2 days", api_key=None)
    assert store.caller_job_image(KEYLESS_CALLER, job_id) is None and not store.caller_image_id("", image_id)
    store.close()
    conn = sqlite3.connect(paths.database, isolation_level=None)
    assert migrate(conn) == SCHEMA_VERSION and conn.execute("SELECT count(*) FROM requests WHERE api_key IS NULL").fetchone()[0]
    conn.close()
