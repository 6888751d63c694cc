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
from datetime import date, datetime
from pathlib import Path
from typing import Any

from studio.core import jobs as js
from studio.core.jobs import Job
from studio.core.metadata import format_a1111, request_from_chunks
from studio.core.paths import get_paths
from studio.core.request import GenerationRequest
from studio.store import files
from studio.store.errors import STORAGE_KIND, StoreError, database_error, storage_errno, storage_message
from studio.store.healing import DamagedDatabase, Recovery, is_damage, is_empty_database, quarantine
from studio.store.owners import OwnedJobs
from studio.store.schema import migrate
from studio.store.search import fts_query, prompt_condition

ORIGINS = ("ui", "cli", "api", "import")
UNFINISHED = (js.QUEUED, js.RUNNING)
META_RECONCILIATION = "last_reconciliation"
INDEX_SORT_MAX = 2000  # more matches than this: find a history page by walking dates, not sorting


def norm_path(path: str | os.PathLike[str]) -> str:
    """The one spelling of a path used as a key (absolute, normalised, symlinks left alone)."""
    return os.path.abspath(os.fspath(path))


def to_timestamp(value: float | int | str | date | datetime | None) -> float | None:
    """A date filter as seconds since the epoch: datetime, date (local midnight), ISO text or a number."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime(value.year, value.month, value.day).timestamp()


def _iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).isoformat(timespec="seconds") if ts else ""


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


class Store(OwnedJobs):
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
                       model_path: str | None = None) -> str:
        """Save a validated request and all its jobs (owned by `owner`, a `register_owner` id) in one
        transaction; returns the request id.

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
            self._insert_request(c, request_id, request, origin, model, created, js.QUEUED, model_path)
            c.executemany(
                "INSERT INTO jobs (id, request_id, idx, seed, state, output_path, spec, queued, owner)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                [(j.job_id, request_id, j.index, j.seed, js.QUEUED, norm_path(j.output_path),
                  json.dumps(j.to_dict(), ensure_ascii=False), created, owner) for j in jobs])
        return request_id

    @staticmethod
    def _insert_request(c: sqlite3.Connection, request_id: str, p: GenerationRequest, origin: str,
                        model: str | None, created: float, state: str, model_path: str | None = None) -> None:
        c.execute(
            "INSERT INTO requests (id, created, origin, state, prompt, negative_prompt, width, height, steps,"
            " guidance, seed, seed_mode, count, model, params, model_path) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (request_id, created, origin, state, p.prompt, p.negative_prompt, p.width, p.height, p.steps,
             p.guidance, p.seed, p.seed_mode, p.count, model, json.dumps(p.to_dict(), ensure_ascii=False),
             model_path))

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
                "SELECT j.id, j.spec, j.state, j.output_path FROM jobs j JOIN requests r ON r.id = j.request_id"
                " WHERE j.state IN (?, ?) ORDER BY r.created, r.rid, j.idx", UNFINISHED).fetchall()
            for row in rows:
                if check_files and self._finish_from_disk(row["id"], row["output_path"]):
                    continue
                if row["state"] == js.RUNNING:
                    self.requeue(row["id"])
                out.append(Job(**json.loads(row["spec"])))
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

    # -- queries --------------------------------------------------------------------------------

    def _history_where(self, search: str | None, favorites_only: bool, since: Any,
                       until: Any, for_page: bool = False) -> tuple[str, list[Any]]:
        clauses, params = [], []
        use_index = True
        if for_page and (match := fts_query(search)):  # a common term: walk by date instead of sorting
            use_index = self._rows("SELECT count(*) FROM (SELECT 1 FROM requests_fts WHERE requests_fts"
                                   " MATCH ? LIMIT ?)", (match, INDEX_SORT_MAX + 1))[0][0] <= INDEX_SORT_MAX
        cond, cond_params = prompt_condition(search, use_index=use_index)
        if cond:
            clauses.append(cond)
            params += cond_params
        if favorites_only:
            clauses.append("EXISTS (SELECT 1 FROM images i WHERE i.request_id = r.id AND i.favorite = 1)")
        if (ts := to_timestamp(since)) is not None:
            clauses.append("r.created >= ?")
            params.append(ts)
        if (ts := to_timestamp(until)) is not None:
            clauses.append("r.created < ?")
            params.append(ts)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def history(self, search: str | None = None, favorites_only: bool = False, since: Any = None,
                until: Any = None, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Requests newest first, each with its job counts, errors and images.

        `search`: every whitespace-separated term must be in the prompt (Chinese or English);
        `favorites_only`: requests with at least one favorite image; `since`/`until`: created time.
        """
        where, params = self._history_where(search, favorites_only, since, until, for_page=True)
        rows = self._rows(
            "SELECT r.id, r.created, r.origin, r.state, r.prompt, r.negative_prompt, r.model, r.params"
            f" FROM requests r{where} ORDER BY r.created DESC, r.rid DESC LIMIT ? OFFSET ?",
            [*params, max(0, int(limit)), max(0, int(offset))])
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        marks = ",".join("?" * len(ids))
        counts: dict[str, dict[str, int]] = {i: {} for i in ids}
        errors: dict[str, list[str]] = {i: [] for i in ids}
        images: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for row in self._rows(f"SELECT request_id, state, count(*) AS n FROM jobs"
                              f" WHERE request_id IN ({marks}) GROUP BY request_id, state", ids):
            counts[row["request_id"]][row["state"]] = row["n"]
        for row in self._rows(f"SELECT DISTINCT request_id, error FROM jobs"
                              f" WHERE request_id IN ({marks}) AND error IS NOT NULL", ids):
            errors[row["request_id"]].append(row["error"])
        for row in self._rows(f"SELECT i.*, j.idx FROM images i LEFT JOIN jobs j ON j.id = i.job_id"
                              f" WHERE i.request_id IN ({marks}) ORDER BY coalesce(j.idx, 0), i.id", ids):
            images[row["request_id"]].append(self._image_dict(row))
        out = []
        for r in rows:
            c = counts[r["id"]]
            out.append({
                "request_id": r["id"], "created": r["created"], "created_iso": _iso(r["created"]),
                "origin": r["origin"], "state": r["state"], "status": r["state"], "prompt": r["prompt"],
                "negative_prompt": r["negative_prompt"], "model": r["model"],
                "request": json.loads(r["params"]), "jobs": sum(c.values()),
                **{f"jobs_{s}": c.get(s, 0) for s in js.JOB_STATES},
                "errors": errors[r["id"]], "images": images[r["id"]],
            })
        return out

    def history_count(self, search: str | None = None, favorites_only: bool = False, since: Any = None,
                      until: Any = None) -> int:
        where, params = self._history_where(search, favorites_only, since, until)
        return int(self._rows(f"SELECT count(*) FROM requests r{where}", params)[0][0])

    @staticmethod
    def _image_dict(row: sqlite3.Row) -> dict[str, Any]:
        keys = row.keys()
        d = {k: row[k] for k in ("id", "path", "request_id", "job_id", "seed", "width", "height", "created")}
        d.update(image_id=row["id"], favorite=bool(row["favorite"]), missing=bool(row["missing"]),
                 created_iso=_iso(row["created"]))
        if "prompt" in keys:
            d["prompt"] = row["prompt"]
        return d

    @staticmethod
    def _gallery_where(favorites_only: bool, include_missing: bool, search: str | None) -> tuple[str, list[Any]]:
        clauses = [] if include_missing else ["i.missing = 0"]
        if favorites_only:
            clauses.append("i.favorite = 1")
        cond, params = prompt_condition(search)
        if cond:  # images of the requests whose prompt matches, as History searches
            clauses.append(f"i.request_id IN (SELECT r.id FROM requests r WHERE {cond})")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def gallery(self, page: int = 0, per_page: int = 48, favorites_only: bool = False,
                include_missing: bool = False, search: str | None = None) -> list[dict[str, Any]]:
        """One page of images, newest first, with their prompts; `search` as in `history`."""
        where, params = self._gallery_where(favorites_only, include_missing, search)
        per_page = max(1, int(per_page))
        rows = self._rows(  # the page's ids from the covering index first, then their rows
            f"SELECT i.*, r.prompt FROM (SELECT id FROM images i{where} ORDER BY created DESC, id DESC"
            " LIMIT ? OFFSET ?) AS p JOIN images i ON i.id = p.id LEFT JOIN requests r ON r.id = i.request_id"
            " ORDER BY i.created DESC, i.id DESC", [*params, per_page, max(0, int(page)) * per_page])
        return [self._image_dict(r) for r in rows]

    def gallery_count(self, favorites_only: bool = False, include_missing: bool = False,
                      search: str | None = None) -> int:
        where, params = self._gallery_where(favorites_only, include_missing, search)
        return int(self._rows(f"SELECT count(*) FROM images i{where}", params)[0][0])

    def image_info(self, image_id: int) -> dict[str, Any]:
        """Everything about one image: file, size, favorite, and the exact request that made it.

        Read from the database; the PNG's own chunks fill in what the database lacks (an image
        indexed from disk, or the model and device it was made with).
        """
        rows = self._rows(
            "SELECT i.*, r.params, r.model, r.origin, j.worker, j.timings, j.state AS job_state"
            " FROM images i LEFT JOIN requests r ON r.id = i.request_id LEFT JOIN jobs j ON j.id = i.job_id"
            " WHERE i.id = ?", (int(image_id),))
        if not rows:
            raise StoreError(f"No image with id {image_id} in the history.")
        row = rows[0]
        info = self._image_dict(row)
        record = json.loads(row["record"]) if row["record"] else None
        if record is None and row["path"] and os.path.isfile(row["path"]):
            try:
                record = request_from_chunks(files.read_png_meta(row["path"])[2])[1]
            except (OSError, ValueError, SyntaxError):
                record = None
        params: dict[str, Any] = json.loads(row["params"]) if row["params"] else \
            dict((record or {}).get("request") or {})
        if params:  # the request as run for this one image
            if info["seed"] is not None:
                params["seed"] = info["seed"]
            params.update(seed_mode="fixed", count=1)
            params = GenerationRequest.from_dict(params).to_dict()
        record = record or {}
        timings = json.loads(row["timings"]) if row["timings"] else record.get("timings")
        info.update(
            request=params or None, origin=row["origin"], model=row["model"] or record.get("model"),
            worker=row["worker"] or record.get("worker"), device=record.get("device"),
            timings=timings, elapsed_s=(timings or {}).get("elapsed_s", record.get("elapsed_s")),
            job_state=row["job_state"],
            parameters=format_a1111(params["prompt"], params.get("negative_prompt", ""), params["steps"],
                                    params["guidance"], params["seed"], params["width"], params["height"],
                                    row["model"] or record.get("model", "")) if params else "",
        )
        return info

    def reuse(self, image_id: int | None = None, request_id: str | None = None) -> GenerationRequest:
        """The parameters to draw again: an image's exact request (its seed, count 1), or a request's."""
        if (image_id is None) == (request_id is None):
            raise ValueError("reuse needs exactly one of image_id or request_id")
        if image_id is not None:
            params = self.image_info(image_id)["request"]
            if not params:
                raise StoreError(f"Image {image_id} carries no generation parameters.")
            return GenerationRequest.from_dict(params)
        rows = self._rows("SELECT params FROM requests WHERE id = ?", (request_id,))
        if not rows:
            raise StoreError(f"No request {request_id} in the history.")
        return GenerationRequest.from_dict(json.loads(rows[0]["params"]))

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
            seed = request.seed if request.seed is not None else 0
            job = Job(job_id=job_id, request_id=request_id, index=idx, seed=seed, prompt=request.prompt,
                      negative_prompt=request.negative_prompt, width=width, height=height,
                      steps=request.steps, guidance=request.guidance, output_path=path)
            c.execute("INSERT INTO jobs (id, request_id, idx, seed, state, output_path, spec, worker, queued,"
                      " finished, timings) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                      (job_id, request_id, idx, seed, js.DONE, path, json.dumps(job.to_dict(), ensure_ascii=False),
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
