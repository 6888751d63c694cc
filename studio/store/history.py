"""The history as people browse it: requests with their images, gallery pages, one image's details.

Read-only queries, mixed into Store (whose `_rows` they use); kept apart so store.py is about
recording what happens.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from studio.core import jobs as js
from studio.core.metadata import format_a1111, request_from_chunks
from studio.core.request import GenerationRequest
from studio.core.spec import ImageSpec
from studio.store import files
from studio.store.errors import StoreError
from studio.store.search import fts_query, prompt_condition

INDEX_SORT_MAX = 2000  # more matches than this: find a history page by walking dates, not sorting


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


class HistoryQueries:
    """Requests, gallery pages and image details, read from the database (and an image's PNG where the
    database lacks its record)."""

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

    def gallery(self, page: int = 0, per_page: int = 48, favorites_only: bool = False,
                include_missing: bool = False) -> list[dict[str, Any]]:
        """One page of images, newest first, with their prompts."""
        clauses = [] if include_missing else ["i.missing = 0"]
        if favorites_only:
            clauses.append("i.favorite = 1")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        per_page = max(1, int(per_page))
        rows = self._rows(  # the page's ids from the covering index first, then their rows
            f"SELECT i.*, r.prompt FROM (SELECT id FROM images i{where} ORDER BY created DESC, id DESC"
            " LIMIT ? OFFSET ?) AS p JOIN images i ON i.id = p.id LEFT JOIN requests r ON r.id = i.request_id"
            " ORDER BY i.created DESC, i.id DESC", (per_page, max(0, int(page)) * per_page))
        return [self._image_dict(r) for r in rows]

    def gallery_count(self, favorites_only: bool = False, include_missing: bool = False) -> int:
        clauses = [] if include_missing else ["missing = 0"]
        if favorites_only:
            clauses.append("favorite = 1")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return int(self._rows(f"SELECT count(*) FROM images{where}")[0][0])

    def image_info(self, image_id: int) -> dict[str, Any]:
        """Everything about one image: file, size, favorite, and the exact request that made it.

        Read from the database; the PNG's own chunks fill in what the database lacks (an image
        indexed from disk, or the model and device it was made with).
        """
        rows = self._rows(
            "SELECT i.*, r.params, r.model, r.origin, j.spec, j.worker, j.timings, j.state AS job_state"
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
        record = record or {}
        source = row["spec"] or row["params"]  # this image's own spec; else its request's
        data = json.loads(source) if source else dict(record.get("request") or {})
        params: dict[str, Any] = {}
        if data:  # the request that draws this one image again
            spec = ImageSpec.from_dict(data)
            spec = replace(spec, model=row["model"] or record.get("model") or spec.model)
            if info["seed"] is not None:
                spec = spec.with_seed(info["seed"])
            params = GenerationRequest.from_spec(spec).to_dict()
        timings = json.loads(row["timings"]) if row["timings"] else record.get("timings")
        info.update(
            request=params or None, origin=row["origin"], model=row["model"] or record.get("model"),
            worker=row["worker"] or record.get("worker"), device=record.get("device"),
            timings=timings, elapsed_s=(timings or {}).get("elapsed_s", record.get("elapsed_s")),
            job_state=row["job_state"],
            parameters=format_a1111(spec) if data else "",
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

