"""The start-up reconciliation pass: make the database and the gallery folders agree again.

PNGs with no row (copied in by hand, or written just before a crash) are indexed from their
embedded parameters; rows whose file is gone are flagged missing (and unflagged if it comes back);
temp files a crash left behind are removed. Fast on big galleries: one `os.scandir` walk compared
against the set of known paths, and only new files are opened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from studio.core.atomic import PART_PREFIX
from studio.core.metadata import request_from_chunks
from studio.store.files import read_png_meta
from studio.store.store import META_RECONCILIATION, Store, norm_path

STALE_PART_S = 3600.0  # a temp file this old belongs to no live writer
# Kernel views, not folders of files: an output folder of "/" must not walk them (or hang on them).
PSEUDO_FS = frozenset({"/proc", "/sys", "/dev", "/run"})
MAX_LISTED = 20


def _entries(folder: str) -> list[os.DirEntry[str]]:
    """The folder's entries; an unreadable folder (or one that fails part-way, as /proc does) gives
    what could be read, never an error: one bad folder must not stop the studio from starting."""
    out: list[os.DirEntry[str]] = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                out.append(entry)
    except OSError:
        pass
    return out


def _walk(root: str, partials: list[str]) -> Iterator[str]:
    """Every *.png under root (hidden names skipped; temp files collected; unreadable entries skipped)."""
    stack = [root]
    while stack:
        for entry in _entries(stack.pop()):
            name = entry.name
            if name.startswith("."):
                if name.startswith(PART_PREFIX):
                    partials.append(entry.path)
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.path not in PSEUDO_FS:
                        stack.append(entry.path)
                elif name.lower().endswith(".png") and entry.is_file():
                    yield entry.path
            except OSError:
                continue


def _under(path: str, roots: list[str]) -> bool:
    return any(path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def reconcile(store: Store, roots: Iterable[str | os.PathLike[str]], *,
              remove_partials: bool = True, partial_age_s: float = STALE_PART_S) -> dict[str, Any]:
    """Reconcile the store with the PNGs under `roots`; returns (and records) a report of counts.

    Temp files older than `partial_age_s` are removed: the caller passes 0 when no live studio could
    be writing one (see `Studio`), the default keeps those of a writer that may still be at work.
    """
    t0 = time.perf_counter()
    started = time.time()
    roots_n = [norm_path(r) for r in roots]
    known = store.known_images()
    found: set[str] = set()
    new: list[str] = []
    partials: list[str] = []
    for root in roots_n:
        for path in _walk(root, partials):
            found.add(path)
            if path not in known:
                new.append(path)

    def present(path: str) -> bool:
        return path in found if _under(path, roots_n) else os.path.isfile(path)

    gone = [i for p, (i, missing) in known.items() if not missing and not present(p)]
    back = [i for p, (i, missing) in known.items() if missing and present(p)]
    store.set_missing(gone, True)
    store.set_missing(back, False)

    indexed = completed = 0
    skipped: list[str] = []
    with store.batch("index new images"):
        for path in sorted(new):
            try:
                width, height, chunks = read_png_meta(path)
                request, record = request_from_chunks(chunks)
                created = os.path.getmtime(path)
            except (OSError, ValueError, SyntaxError, KeyError, TypeError):
                skipped.append(path)  # not a PNG we can describe: left alone, never deleted
                continue
            if store.index_file(path, width, height, request, record, created) == "job":
                completed += 1
            else:
                indexed += 1

    removed = 0
    if remove_partials:
        now = time.time()
        for path in partials:
            try:
                if now - os.path.getmtime(path) >= partial_age_s:
                    os.unlink(path)
                    removed += 1
            except OSError:
                pass
    report = {
        "time": started, "duration_s": round(time.perf_counter() - t0, 4), "roots": roots_n,
        "scanned": len(found), "known": len(known), "indexed": indexed, "jobs_completed": completed,
        "missing": len(gone), "restored": len(back), "skipped": len(skipped),
        "skipped_paths": skipped[:MAX_LISTED], "partials_removed": removed,
    }
    store.set_meta(META_RECONCILIATION, report)
    return report
