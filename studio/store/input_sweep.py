"""Emptying the inputs folder: stored input images no history row can use any more are removed.

An input (studio/core/image_inputs.py's InputStore, `<data>/inputs/ab/<sha256>.<ext>`) is held by:
- a request that still has an image in the history, or work not done (queued, running, failed or
  cancelled: it may run, or be run again), or no jobs at all;
- an image row's own record (images indexed from disk);
- a request whose deleted image can still be undone (`keep_requests`, the window's undo list).
A request whose every job finished and whose every image was deleted holds nothing.

Safety: the sweep decides and removes inside one write transaction of the history database, and
`Store.record_request` checks a request's inputs are still there inside its own (`check_inputs_stored`),
so a request is either recorded before the sweep reads the references (its inputs are held) or after
the files went (refused in one line, nothing queued). An input stored or given again within GRACE_S
is never removed: it may be on its way to a request not yet recorded. A crash mid-sweep leaves only
files the next sweep removes. Any 64-hex-digit string in a holding row counts as a reference, so a
doubt keeps a file and never removes one.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from studio.store import Store

log = logging.getLogger(__name__)

GRACE_S = 3600.0  # stored or given again this recently: kept (on its way from a form to a request)
_HEX = re.compile(r"[0-9a-f]{64}")
_FILE = re.compile(r"^([0-9a-f]{64})\.[a-z0-9]+$")

# Requests that hold their inputs: an image left, work not done, or no jobs recorded.
_HOLDS = """(EXISTS (SELECT 1 FROM images i WHERE i.request_id = r.id)
       OR EXISTS (SELECT 1 FROM jobs j WHERE j.request_id = r.id AND j.state != 'done')
       OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.request_id = r.id))"""
_HOLDING = f"SELECT r.params FROM requests r WHERE {_HOLDS}"


@dataclass
class Swept:
    """What one sweep did: the hashes removed, their bytes, and unheld files kept as too recent."""

    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    recent: int = 0


def held_inputs(c: sqlite3.Connection, keep_requests: Iterable[str] = ()) -> set[str]:
    """Every input hash a history row still holds (see the module docstring)."""
    texts = [row[0] for row in c.execute(_HOLDING)]
    texts += [row[0] for row in c.execute("SELECT record FROM images WHERE record IS NOT NULL")]
    keep = list(dict.fromkeys(keep_requests))
    for i in range(0, len(keep), 500):
        part = keep[i:i + 500]
        texts += [row[0] for row in c.execute(
            f"SELECT params FROM requests WHERE id IN ({', '.join('?' * len(part))})", part)]
    return {h for text in texts if text for h in _HEX.findall(text)}


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


def stored_files(root: Path) -> dict[str, Path]:
    """The inputs folder's stored files by hash (temporary and foreign files left out)."""
    files: dict[str, Path] = {}
    if not root.is_dir():
        return files
    for shard in root.iterdir():
        if not shard.is_dir() or len(shard.name) != 2:
            continue
        for path in shard.iterdir():
            m = _FILE.match(path.name)
            if m and m.group(1).startswith(shard.name):
                files[m.group(1)] = path
    return files


def sweep_inputs(store: Store, root: Path, candidates: Iterable[str] | None = None,
                 keep_requests: Iterable[str] = (), grace_s: float = GRACE_S) -> Swept:
    """Remove the stored inputs under `root` that no history row holds (all of them, or only
    `candidates`), except those stored or given again within `grace_s`."""
    done = Swept()
    files = stored_files(root)
    if candidates is not None:
        wanted = set(candidates)
        files = {h: p for h, p in files.items() if h in wanted}
    if not files:
        return done
    with store.transaction("tidy the inputs folder") as c:
        held = held_inputs(c, keep_requests) if candidates is None else None
        now = time.time()
        for digest, path in files.items():
            if (digest in held) if held is not None else is_held(c, digest, keep_requests):
                continue
            try:
                st = path.stat()
                if st.st_mtime > now - grace_s:
                    done.recent += 1
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:  # kept: the next sweep tries again
                log.warning("could not remove the unused input %s: %s", path, exc)
                continue
            done.removed.append(digest)
            done.freed_bytes += st.st_size
    if done.removed:
        log.info("inputs folder: %d unused inputs removed (%d bytes)", len(done.removed), done.freed_bytes)
    return done
