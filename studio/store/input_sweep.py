"""Emptying the inputs folder: stored input images no history row can use any more are removed.

An input (studio/core/image_inputs.py's InputStore, `<data>/inputs/ab/<sha256>.<ext>`) is held by:
- a request that still has an image in the history, or work not done (queued, running, failed or
  cancelled: it may run, or be run again), or no jobs at all;
- an image row's own record (images indexed from disk);
- a request whose deleted image can still be undone (`keep_requests`, the window's undo list).
A request whose every job finished and whose every image was deleted holds nothing.

Two phases, so the history's writers (the pool's events, other windows) never wait on a long scan:
the candidates are found on a connection of their own, reading one snapshot without any lock; then,
a few at a time inside short write transactions, each is checked again (`is_held`) and removed.
Safety: the final check and the removal happen inside the write transaction, and
`Store.record_request` checks a request's inputs are still there inside its own (`check_inputs_stored`),
so a request is either recorded before the check (its inputs are held) or after the file went (refused
in one line, nothing queued). An input stored or given again within GRACE_S is never removed: it may
be on its way to a request not yet recorded. Its age is read after the file was renamed aside, so an
`InputStore.put` refreshing it either lands before (the file goes back) or finds it gone and writes it
again. A crash mid-sweep leaves only files the next sweep removes, or a file set aside, which the
next sweep puts back first. Any 64-hex-digit string in a holding row counts as a reference, so a
doubt keeps a file and never removes one.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from studio.store.errors import database_error

if TYPE_CHECKING:
    from studio.store import Store

log = logging.getLogger(__name__)

GRACE_S = 3600.0  # stored or given again this recently: kept (on its way from a form to a request)
BATCH = 32  # candidates checked and removed per write transaction
ASIDE = ".sweep-"  # a file being removed: `<shard>/.sweep-<sha256>.<ext>` while its age is read again
_HEX = re.compile(r"[0-9a-f]{64}")
_FILE = re.compile(r"^([0-9a-f]{64})\.[a-z0-9]+$")

# Requests that hold their inputs: an image left, work not done, or no jobs recorded.
_HOLDS = """(EXISTS (SELECT 1 FROM images i WHERE i.request_id = r.id)
       OR EXISTS (SELECT 1 FROM jobs j WHERE j.request_id = r.id AND j.state != 'done')
       OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.request_id = r.id))"""
_HOLDING = f"SELECT r.params FROM requests r WHERE {_HOLDS}"


@dataclass
class Swept:
    """What one sweep did: the hashes removed, their bytes, and files kept as too recent."""

    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    recent: int = 0


def held_inputs(c: sqlite3.Connection, keep_requests: Iterable[str] = ()) -> set[str]:
    """Every input hash a history row still holds (see the module docstring)."""
    held: set[str] = set()

    def scan(rows: Iterable[sqlite3.Row | tuple]) -> None:
        for row in rows:
            if row[0]:
                held.update(_HEX.findall(row[0]))

    scan(c.execute(_HOLDING))
    scan(c.execute("SELECT record FROM images WHERE record IS NOT NULL"))
    keep = list(dict.fromkeys(keep_requests))
    for i in range(0, len(keep), 500):
        part = keep[i:i + 500]
        scan(c.execute(f"SELECT params FROM requests WHERE id IN ({', '.join('?' * len(part))})", part))
    return held


def is_held(c: sqlite3.Connection, digest: str, keep_requests: Iterable[str] = ()) -> bool:
    """Whether a history row holds the input `digest`: `held_inputs` for one hash, searched by SQLite
    itself (a deletion's few inputs, without reading every request into Python)."""
    keep = list(dict.fromkeys(keep_requests))
    kept = f" OR r.id IN ({', '.join('?' * len(keep))})" if keep else ""
    if c.execute(f"SELECT 1 FROM requests r WHERE instr(r.params, ?) > 0 AND ({_HOLDS}{kept}) LIMIT 1",
                 [digest, *keep]).fetchone():
        return True
    return c.execute("SELECT 1 FROM images WHERE record IS NOT NULL AND instr(record, ?) > 0 LIMIT 1",
                     (digest,)).fetchone() is not None


def request_inputs(c: sqlite3.Connection, request_ids: Iterable[str]) -> set[str]:
    """The input hashes the given requests name (the candidates when their images go)."""
    found: set[str] = set()
    for rid in dict.fromkeys(request_ids):
        row = c.execute("SELECT params FROM requests WHERE id = ?", (rid,)).fetchone()
        if row is not None and row[0]:
            found.update(_HEX.findall(row[0]))
    return found


def _scan(root: Path) -> tuple[dict[str, Path], list[Path]]:
    """The inputs folder's stored files by hash, and the files a sweep set aside and did not finish."""
    files: dict[str, Path] = {}
    aside: list[Path] = []
    if not root.is_dir():
        return files, aside
    for shard in root.iterdir():
        if not shard.is_dir() or len(shard.name) != 2:
            continue
        for path in shard.iterdir():
            name = path.name[len(ASIDE):] if path.name.startswith(ASIDE) else path.name
            m = _FILE.match(name)
            if m and m.group(1).startswith(shard.name):
                if name == path.name:
                    files[m.group(1)] = path
                else:
                    aside.append(path)
    return files, aside


def stored_files(root: Path) -> dict[str, Path]:
    """The inputs folder's stored files by hash (temporary and foreign files left out)."""
    return _scan(root)[0]


def aside_path(path: Path) -> Path:
    """Where the sweep sets a stored input aside while it reads its age again."""
    return path.with_name(ASIDE + path.name)


def unheld(store: Store, digests: Iterable[str], keep_requests: Iterable[str] = ()) -> set[str]:
    """Which of `digests` no history row holds, read from one snapshot on a connection of its own:
    neither the Store's lock nor the database's write lock is taken, so nothing waits on the scan.
    Only candidates: the history may change after; `sweep_inputs` checks each again before removing."""
    try:
        conn = sqlite3.connect(store.path, timeout=10.0, isolation_level=None)
        try:
            conn.execute("BEGIN")  # deferred: a read snapshot, no write lock
            held = held_inputs(conn, keep_requests)
            conn.execute("COMMIT")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise database_error(exc, "read the history") from exc
    return set(digests) - held


def _put_back(aside: list[Path]) -> None:
    """Files a crashed sweep left set aside go back under their names (or go, if one came back since)."""
    for path in aside:
        target = path.with_name(path.name[len(ASIDE):])
        try:
            if target.exists():
                path.unlink()
            else:
                os.replace(path, target)
        except FileNotFoundError:  # another process's sweep put it back first
            pass
        except OSError as exc:  # kept: the next sweep tries again
            log.warning("could not put back the input %s: %s", path, exc)


def _remove(digest: str, path: Path, grace_s: float, done: Swept) -> None:
    """Remove one stored input unless it is younger than `grace_s` (noted in `done`). Set aside first,
    so its age is read where `InputStore.put` cannot touch it: a put that refreshed it before is seen
    here (the file goes back), one after finds it gone and writes it again."""
    aside = aside_path(path)
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    try:
        st = aside.stat()
        if st.st_mtime > time.time() - grace_s:  # given again since the scan
            os.replace(aside, path)
            done.recent += 1
            return
        aside.unlink()
    except OSError as exc:  # kept: the next sweep tries again
        log.warning("could not remove the unused input %s: %s", path, exc)
        try:
            os.replace(aside, path)
        except OSError:
            pass
        return
    done.removed.append(digest)
    done.freed_bytes += st.st_size


def sweep_inputs(store: Store, root: Path, candidates: Iterable[str] | None = None,
                 keep_requests: Iterable[str] = (), grace_s: float = GRACE_S) -> Swept:
    """Remove the stored inputs under `root` that no history row holds (all of them, or only
    `candidates`), except those stored or given again within `grace_s`."""
    done = Swept()
    keep = list(dict.fromkeys(keep_requests))
    files, aside = _scan(root)
    if aside:
        with store.transaction("tidy the inputs folder"):  # no other sweep has a file aside meanwhile
            _put_back(aside)
        files = stored_files(root)
    wanted = unheld(store, files, keep) if candidates is None and files else set(candidates or ())
    files = {h: p for h, p in files.items() if h in wanted}
    old: list[tuple[str, Path]] = []
    cutoff = time.time() - grace_s
    for digest, path in files.items():
        try:
            if path.stat().st_mtime > cutoff:
                done.recent += 1
            else:
                old.append((digest, path))
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not read the unused input %s: %s", path, exc)
    for i in range(0, len(old), BATCH):
        with store.transaction("tidy the inputs folder") as c:
            for digest, path in old[i:i + BATCH]:
                if not is_held(c, digest, keep):
                    _remove(digest, path, grace_s, done)
    if done.removed:
        log.info("inputs folder: %d unused inputs removed (%d bytes)", len(done.removed), done.freed_bytes)
    return done
