"""The history database: requests, their per-image jobs, and the images they made.

Threads: one SQLite connection per Store, opened with `check_same_thread=False` and guarded by one
re-entrant lock, so the facade may call it from event threads and the UI's threads at once; every
query is short (milliseconds), so a lock costs less than a connection per thread would, and other
processes (`zaoxiang history` while the studio runs) are handled by WAL and a busy timeout.

Durability: WAL with `synchronous=FULL`, and every change in one explicit transaction, so what a
call returned is on disk, and a failure (full disk, read-only file) rolls back whole.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from studio.core import jobs as js
from studio.core.jobs import Job
from studio.core.metadata import record_spec, request_from_chunks
from studio.core.paths import get_paths
from studio.core.request import GenerationRequest, check_inputs_stored
from studio.store import files
from studio.store.caller_images import CallerImages
from studio.store.errors import STORAGE_KIND, StoreError, database_error, storage_errno, storage_message
from studio.store.healing import DamagedDatabase, Recovery, is_damage, is_empty_database, quarantine
from studio.store.history import HistoryQueries
from studio.store.job_rows import JOB_COLUMNS, job_from_row, spec_json
from studio.store.owners import OwnedJobs
from studio.store.schema import migrate

ORIGINS = ("ui", "cli", "api", "import")
UNFINISHED = (js.QUEUED, js.RUNNING)
META_RECONCILIATION = "last_reconciliation"


def norm_path(path: str | os.PathLike[str]) -> str:
    """The one spelling of a path used as a key (absolute, normalised, symlinks left alone)."""
    return os.path.abspath(os.fspath(path))


def request_state(counts: dict[str, int]) -> str:
    """A request's state from its jobs' states."""
    unfinished = counts.get(js.QUEUED, 0) + counts.get(js.RUNNING, 0)
    finished = sum(counts.get(s, 0) for s in js.FINISHED_STATES)
    if counts.get(js.RUNNING) or (unfinished and finished):
        return js.RUNNING
    if unfinished:
        return js.QUEUED
    if counts.get(js.FAILED):
        return js.FAILED
    if counts.get(js.CANCELLED):
        return js.CANCELLED
    return js.DONE


class Store(HistoryQueries, OwnedJobs, CallerImages):
    """The studio's SQLite store (see the module docstring for threading and durability).

    Opening it heals it: a database that fails `PRAGMA quick_check` or is not a database at all is
    moved aside (`<name>.damaged-<time>`, with its -wal and -shm) and a new one is started;
    `recovery` then says what happened, and the caller rebuilds the history from the PNGs
    (`reconcile`). A 0-byte file is reported the same way.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, trash_dir: Path | None = None) -> None:
        paths = get_paths()
        self.path = Path(path) if path else paths.database
        self.trash_dir = Path(trash_dir) if trash_dir else paths.trash_dir
        self.inputs_dir = paths.inputs_dir  # InputStore's folder: the inputs sweep empties it (input_sweep.py)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        self.recovery: Recovery | None = None
        empty = is_empty_database(self.path)
        try:
            self._conn = self._open()
        except DamagedDatabase as exc:
            self.recovery = Recovery("damaged", str(exc), exc.moved_to)
            self._conn = self._open()
        else:
            if empty:
                self.recovery = Recovery("empty", "the file was empty (0 bytes)", None)

    def _open(self) -> sqlite3.Connection:
        """Connect, check and migrate; DamagedDatabase when the file is not a sound SQLite database."""
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise DamagedDatabase("; ".join(problems))
            migrate(conn)
            return conn
        except BaseException as exc:
            damaged = isinstance(exc, DamagedDatabase) or (isinstance(exc, sqlite3.DatabaseError) and is_damage(exc))
            # Moved aside before the connection closes: closing would checkpoint the log into the
            # damaged file and delete it, and the log may hold the newest history.
            moved = quarantine(self.path) if damaged else None
            if conn is not None:
                conn.close()
            if damaged:
                raise DamagedDatabase(str(exc), moved) from exc
            if isinstance(exc, sqlite3.Error):
                raise database_error(exc, f"open the history database {self.path}") from exc
            raise

    # -- plumbing -------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, doing: str = "save to the history") -> Iterator[sqlite3.Connection]:
        """One atomic change; nested calls join the outer transaction (so a batch commits once)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise database_error(exc, doing) from exc
            self._depth = 1
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.Error):
                    raise database_error(exc, doing) from exc
                raise
            finally:
                self._depth = 0

    batch = transaction  # `with store.batch(): ...many calls...` commits them together

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise database_error(exc, "read the history") from exc

    # -- recording ------------------------------------------------------------------------------

    def record_request(self, request: GenerationRequest, jobs: Sequence[Job], *, origin: str = "ui",
                       model: str | None = None, created: float | None = None, owner: str | None = None,
                       model_path: str | None = None, api_key: str | None = None) -> str:
        """Save a validated request and all its jobs (owned by `owner`, a `register_owner` id) in one
        transaction; returns the request id. `api_key`: the API caller that asked (caller_images.py).

        Callers acknowledge the request only after this returns: from then on, a crash cannot lose it.
        """
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {', '.join(ORIGINS)} (got {origin!r})")
        if not jobs:
            raise ValueError("a request needs at least one job")
        request_id = jobs[0].request_id
        if any(j.request_id != request_id for j in jobs):
            raise ValueError("all jobs of a request must carry its request_id")
        created = time.time() if created is None else created
        with self.transaction("save the request") as c:
            check_inputs_stored(request)  # under the lock the inputs sweep holds as it removes files
            self._insert_request(c, request_id, request, origin, model, created, js.QUEUED, model_path, api_key)
            c.executemany(
                "INSERT INTO jobs (id, request_id, idx, seed, state, output_path, spec, queued, owner)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                [(j.job_id, request_id, j.index, j.spec.seed, js.QUEUED, norm_path(j.output_path),
                  spec_json(j.spec), created, owner) for j in jobs])
        return request_id

    @staticmethod
    def _insert_request(c: sqlite3.Connection, request_id: str, p: GenerationRequest, origin: str,
                        model: str | None, created: float, state: str, model_path: str | None = None,
                        api_key: str | None = None) -> None:
        c.execute(
            "INSERT INTO requests (id, created, origin, state, prompt, negative_prompt, width, height, steps,"
            " guidance, seed, seed_mode, count, model, params, model_path, api_key)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (request_id, created, origin, state, p.prompt, p.negative_prompt, p.width, p.height, p.steps,
             p.guidance, p.seed, p.seed_mode, p.count, model, json.dumps(p.to_dict(), ensure_ascii=False),
             model_path, api_key))

    def _job(self, c: sqlite3.Connection, job_id: str) -> sqlite3.Row | None:
        return c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()

    def _refresh_request(self, c: sqlite3.Connection, request_id: str) -> str:
        counts = {row[0]: row[1] for row in c.execute(
            "SELECT state, count(*) FROM jobs WHERE request_id = ? GROUP BY state", (request_id,))}
        state = request_state(counts)
        c.execute("UPDATE requests SET state = ? WHERE id = ? AND state != ?", (state, request_id, state))
        return state

    def mark_running(self, job_id: str, worker: str | None = None) -> bool:
        """A worker started the job; False if the job is unknown or already finished."""
        with self.transaction("record a job start") as c:
            row = self._job(c, job_id)
            if row is None or row["state"] not in UNFINISHED:
                return False
            c.execute("UPDATE jobs SET state = ?, worker = coalesce(?, worker), started = ?,"
                      " attempts = attempts + 1 WHERE id = ?", (js.RUNNING, worker, time.time(), job_id))
            self._refresh_request(c, row["request_id"])
            return True

    def mark_done(self, job_id: str, path: str | os.PathLike[str] | None = None, *,
                  worker: str | None = None, timings: dict[str, Any] | None = None,
                  finished: float | None = None, record: dict[str, Any] | None = None) -> int | None:
        """The job's PNG is on disk: mark it done and index the image (once); returns the image id."""
        finished = time.time() if finished is None else finished
        with self.transaction("record a finished image") as c:
            row = self._job(c, job_id)
            if row is None:
                return None
            spec = json.loads(row["spec"])
            image_path = norm_path(path or row["output_path"])
            c.execute("UPDATE jobs SET state = ?, worker = coalesce(?, worker), finished = ?,"
                      " timings = coalesce(?, timings), error = NULL, error_kind = NULL WHERE id = ?",
                      (js.DONE, worker, finished, json.dumps(timings) if timings else None, job_id))
            image_id = c.execute(
                "INSERT INTO images (path, request_id, job_id, seed, width, height, created, record)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET request_id = excluded.request_id,"
                " job_id = excluded.job_id, missing = 0 RETURNING id",
                (image_path, row["request_id"], job_id, row["seed"], spec.get("width"), spec.get("height"),
                 finished, json.dumps(record, ensure_ascii=False) if record else None)).fetchone()[0]
            self._refresh_request(c, row["request_id"])
            return int(image_id)

    def mark_failed(self, job_id: str, kind: str | BaseException | None, message: str = "") -> str | None:
        """The job failed; returns its new state.

        A full disk or a read-only / unwritable output folder is not the job's fault: the job stays
        `queued` with a clear message, to run again on resume. Anything else fails it for good.
        """
        code = storage_errno(kind, message)
        with self.transaction("record a job failure") as c:
            row = self._job(c, job_id)
            if row is None:
                return None
            if row["state"] == js.DONE:
                return js.DONE
            if code is not None:
                state, err_kind = js.QUEUED, STORAGE_KIND
                text = storage_message(code, os.path.dirname(row["output_path"]))
            else:
                state = js.FAILED
                err_kind = kind if isinstance(kind, str) else type(kind).__name__ if kind else "error"
                text = message or str(kind or "") or "The job failed."
            c.execute("UPDATE jobs SET state = ?, error_kind = ?, error = ?, finished = ? WHERE id = ?",
                      (state, err_kind, text, time.time() if state == js.FAILED else None, job_id))
            self._refresh_request(c, row["request_id"])
            return state

    def mark_cancelled(self, job_id: str) -> bool:
        """Cancel a job that has not finished; False if it already had."""
        with self.transaction("record a cancel") as c:
            row = self._job(c, job_id)
            if row is None or row["state"] not in UNFINISHED:
                return False
            c.execute("UPDATE jobs SET state = ?, finished = ? WHERE id = ?", (js.CANCELLED, time.time(), job_id))
            self._refresh_request(c, row["request_id"])
            return True

    def cancel_request(self, request_id: str) -> int:
        """Cancel every unfinished job of a request; returns how many."""
        with self.transaction("record a cancel") as c:
            n = c.execute("UPDATE jobs SET state = ?, finished = ? WHERE request_id = ? AND state IN (?, ?)",
                          (js.CANCELLED, time.time(), request_id, *UNFINISHED)).rowcount
            self._refresh_request(c, request_id)
            return n

    def requeue(self, job_id: str, reason: str | None = None) -> bool:
        """Put a job back in the queue (its worker died, or a retry); a done job stays done."""
        with self.transaction("requeue a job") as c:
            row = self._job(c, job_id)
            if row is None or row["state"] == js.DONE:
                return False
            c.execute("UPDATE jobs SET state = ?, started = NULL, finished = NULL,"
                      " error = coalesce(?, error) WHERE id = ?", (js.QUEUED, reason, job_id))
            self._refresh_request(c, row["request_id"])
            return True

    def job_state(self, job_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT id, request_id, state, worker, attempts, error_kind, error, output_path"
                          " FROM jobs WHERE id = ?", (job_id,))
        return dict(rows[0]) if rows else None

    def unfinished_jobs(self, check_files: bool = True) -> list[Job]:
        """Every job left queued or running, whoever owns it, oldest request first (studios resume
        only orphans, through `claim_orphans`). Each comes back queued; a job whose PNG is already on
        disk finished just before a crash: it is marked done and indexed instead, never made twice."""
        out: list[Job] = []
        with self.transaction("resume the queue") as c:
            rows = c.execute(
                f"SELECT {JOB_COLUMNS}, j.state FROM jobs j JOIN requests r ON r.id = j.request_id"
                " WHERE j.state IN (?, ?) ORDER BY r.created, r.rid, j.idx", UNFINISHED).fetchall()
            for row in rows:
                if check_files and self._finish_from_disk(row["id"], row["output_path"]):
                    continue
                if row["state"] == js.RUNNING:
                    self.requeue(row["id"])
                out.append(job_from_row(row))
        return out

    def _finish_from_disk(self, job_id: str, output_path: str) -> bool:
        """Mark the job done if its PNG is on disk (written just before its process died)."""
        if not os.path.isfile(output_path):
            return False
        worker, timings = None, None
        try:
            _, _, chunks = files.read_png_meta(output_path)
            _, record = request_from_chunks(chunks)
            worker, timings = record.get("worker"), record.get("timings")
        except (OSError, ValueError, SyntaxError):
            pass
        self.mark_done(job_id, output_path, worker=worker, timings=timings,
                       finished=os.path.getmtime(output_path))
        return True

    def set_favorite(self, image_id: int, value: bool = True) -> bool:
        with self.transaction("save a favorite") as c:
            return c.execute("UPDATE images SET favorite = ? WHERE id = ?",
                             (int(bool(value)), int(image_id))).rowcount > 0

    def delete_image(self, image_id: int) -> Path | None:
        """Move the image's file to the trash and drop its row, together: if either fails, neither
        happens. Returns where the file went (None if it was already gone)."""
        moved: Path | None = None
        original = ""
        try:
            with self.transaction("delete an image") as c:
                row = c.execute("SELECT path FROM images WHERE id = ?", (int(image_id),)).fetchone()
                if row is None:
                    raise StoreError(f"No image with id {image_id} in the history.")
                original = row["path"]
                c.execute("DELETE FROM images WHERE id = ?", (int(image_id),))
                if os.path.exists(original):
                    try:
                        moved = files.move_to_trash(original, self.trash_dir)
                    except OSError as exc:
                        raise StoreError(
                            f"Could not move {original} to the trash: {exc.strerror or exc}.") from exc
        except BaseException:
            if moved is not None:  # the row could not be dropped: put the file back
                shutil.move(moved, original)
            raise
        return moved

    def empty_trash(self) -> dict[str, int]:
        """Delete the trash folder's files for good; returns {'files': n, 'bytes': n}."""
        return files.empty_trash(self.trash_dir)

    def export(self, image_ids: Iterable[int], zip_path: str | os.PathLike[str]) -> Path:
        """A zip of the chosen images with parameters.csv and parameters.json."""
        infos = [self.image_info(i) for i in image_ids]
        if not infos:
            raise StoreError("Choose at least one image to export.")
        return files.write_export_zip(infos, zip_path)

    # -- reconciliation support -------------------------------------------------------------------

    def known_images(self) -> dict[str, tuple[int, bool]]:
        """Every indexed path -> (image id, missing flag)."""
        return {r[0]: (r[1], bool(r[2])) for r in self._rows("SELECT path, id, missing FROM images")}

    def index_file(self, path: str | os.PathLike[str], width: int, height: int, request: GenerationRequest,
                   record: dict[str, Any], created: float) -> str:
        """Index a PNG found on disk from its embedded parameters; returns what it did.

        'job': it is the output of a job we know (finished just before a crash): the job is marked
        done. 'image': a new image, added to its request if we know it, else to a new `import`
        request (PNGs of one original request share its id, so they group together again).
        """
        path = norm_path(path)
        job_id, request_id = record.get("job_id"), record.get("request_id")
        with self.transaction("index an image") as c:
            if job_id and self._job(c, job_id) is not None:
                self.mark_done(job_id, path, worker=record.get("worker"), timings=record.get("timings"),
                               finished=created)
                return "job"
            known = bool(request_id) and c.execute(
                "SELECT 1 FROM requests WHERE id = ?", (request_id,)).fetchone() is not None
            if not known:
                request_id = request_id or uuid.uuid4().hex
                self._insert_request(c, request_id, request, "import", record.get("model"), created, js.DONE)
            job_id = job_id or uuid.uuid4().hex
            idx = c.execute("SELECT coalesce(max(idx) + 1, 0) FROM jobs WHERE request_id = ?",
                            (request_id,)).fetchone()[0]
            spec = replace(record_spec(record), width=width, height=height)
            c.execute("INSERT INTO jobs (id, request_id, idx, seed, state, output_path, spec, worker, queued,"
                      " finished, timings) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                      (job_id, request_id, idx, spec.seed, js.DONE, path, spec_json(spec),
                       record.get("worker"), created, created,
                       json.dumps(record["timings"]) if record.get("timings") else None))
            c.execute("INSERT INTO images (path, request_id, job_id, seed, width, height, created, record)"
                      " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(path) DO NOTHING",
                      (path, request_id, job_id, request.seed, width, height, created,
                       json.dumps(record, ensure_ascii=False)))
            if not known or c.execute("SELECT origin FROM requests WHERE id = ?",
                                      (request_id,)).fetchone()[0] == "import":
                c.execute("UPDATE requests SET count = (SELECT count(*) FROM jobs WHERE request_id = ?)"
                          " WHERE id = ?", (request_id, request_id))
            self._refresh_request(c, request_id)
            return "image"

    def set_missing(self, image_ids: Iterable[int], missing: bool) -> int:
        ids = list(image_ids)
        with self.transaction("mark missing files") as c:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                c.execute(f"UPDATE images SET missing = ? WHERE id IN ({','.join('?' * len(chunk))})",
                          (int(missing), *chunk))
        return len(ids)

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction("save a note") as c:
            c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET"
                      " value = excluded.value", (key, json.dumps(value, ensure_ascii=False)))

    def get_meta(self, key: str) -> Any:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def last_reconciliation(self) -> dict[str, Any] | None:
        """The report of the last reconciliation pass, or None if none ran yet."""
        return self.get_meta(META_RECONCILIATION)
