"""Who owns a job: the process that runs it, and how another process tells whether that owner is gone.

Two studios on one data dir (the window and a `zaoxiang generate`, say) must never make the same
image, and a crash must never strand one. So each running Studio registers itself (host, pid, the
pid's start time, a heartbeat) and every job carries its owner's id; a later start takes only jobs
whose owner is gone. On this host that is decided by the process table, with the start time so that
a reused pid does not count as the old process; a live owner keeps its jobs even when its heartbeat
is late (a suspended laptop, a busy disk), because taking them would make them twice. The heartbeat
lease decides only where the pid cannot be checked: another host sharing the folder, or a process we
may not inspect.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psutil

from studio.core.jobs import CANCELLED, QUEUED, RUNNING, Job
from studio.store.job_rows import JOB_COLUMNS, job_from_row

LEASE_S = 60.0  # an owner that cannot be checked by pid is gone after this long without a heartbeat
HEARTBEAT_S = 10.0  # how often a live owner renews its lease
CREATE_TIME_SLACK_S = 1.0  # psutil's create time is rounded differently across calls on some systems


def this_host() -> str:
    return socket.gethostname()


def process_started(pid: int) -> float | None:
    """The start time of process `pid` (seconds since the epoch), or None if it cannot be read."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


@dataclass(frozen=True)
class Owner:
    """One registered studio process, as the `owners` table holds it."""

    owner_id: str
    host: str
    pid: int
    pid_started: float | None
    heartbeat: float

    def alive(self, now: float, lease_s: float = LEASE_S) -> bool:
        """Whether this owner may still be making its jobs (see the module docstring for the rule)."""
        if self.host == this_host():
            try:
                proc = psutil.Process(self.pid)
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return False
                if self.pid_started is not None and abs(proc.create_time() - self.pid_started) > CREATE_TIME_SLACK_S:
                    return False  # the pid was reused by another program
                return True
            except psutil.NoSuchProcess:
                return False
            except (psutil.Error, OSError):
                pass  # may not inspect it: the lease decides
        return now - self.heartbeat < lease_s


def me() -> tuple[str, int, float | None]:
    """This process as an owner row needs it: host, pid, start time."""
    pid = os.getpid()
    return this_host(), pid, process_started(pid)


class OwnedJobs:
    """The owners table and the jobs' owner column. Mixed into Store, whose `transaction`,
    `_refresh_request` and `_finish_from_disk` it uses; kept apart so store.py stays about history."""

    def register_owner(self, model: str | None = None, model_path: str | None = None) -> str:
        """Record this process as a job owner; returns its owner id (renew with `heartbeat`)."""
        owner_id = uuid.uuid4().hex
        host, pid, started = me()
        now = time.time()
        with self.transaction("register this studio") as c:
            c.execute("INSERT INTO owners (id, host, pid, pid_started, started, heartbeat, model, model_path)"
                      " VALUES (?,?,?,?,?,?,?,?)", (owner_id, host, pid, started, now, now, model, model_path))
        return owner_id

    def heartbeat(self, owner_id: str) -> bool:
        """Renew the lease; False if the row is gone (another process took this one for dead)."""
        with self.transaction("renew this studio's lease") as c:
            return c.execute("UPDATE owners SET heartbeat = ? WHERE id = ?", (time.time(), owner_id)).rowcount > 0

    def release_owner(self, owner_id: str) -> int:
        """This studio stops (Quit, SIGTERM, Ctrl+C): its unfinished jobs go back to the queue as
        nobody's, for the next start to take. Returns how many."""
        with self.transaction("keep the queue for next time") as c:
            requests = [r[0] for r in c.execute(
                "SELECT DISTINCT request_id FROM jobs WHERE owner = ? AND state IN (?, ?)", (owner_id, QUEUED, RUNNING))]
            n = c.execute("UPDATE jobs SET owner = NULL, state = ?, started = NULL WHERE owner = ? AND state IN (?, ?)",
                          (QUEUED, owner_id, QUEUED, RUNNING)).rowcount
            for request_id in requests:
                self._refresh_request(c, request_id)
            c.execute("DELETE FROM owners WHERE id = ?", (owner_id,))
            return n

    def live_owners(self, exclude: str | None = None) -> list[Owner]:
        """Owners that may still be making images (dead ones are dropped from the table)."""
        with self.transaction("check the other studios") as c:
            return [o for o in self._live(c).values() if o.owner_id != exclude]

    @staticmethod
    def _live(c: sqlite3.Connection) -> dict[str, Owner]:
        now = time.time()
        owners = [Owner(r[0], r[1], r[2], r[3], r[4])
                  for r in c.execute("SELECT id, host, pid, pid_started, heartbeat FROM owners")]
        dead = [o.owner_id for o in owners if not o.alive(now)]
        c.executemany("DELETE FROM owners WHERE id = ?", [(d,) for d in dead])
        return {o.owner_id: o for o in owners if o.owner_id not in dead}

    def _orphan_rows(self, c: sqlite3.Connection) -> list[sqlite3.Row]:
        """Unfinished jobs whose owner is gone (or that never had one), oldest request first."""
        live = self._live(c)
        rows = c.execute(
            f"SELECT {JOB_COLUMNS}, j.state, j.owner, r.model, r.model_path"
            " FROM jobs j JOIN requests r ON r.id = j.request_id WHERE j.state IN (?, ?)"
            " ORDER BY r.created, r.rid, j.idx", (QUEUED, RUNNING)).fetchall()
        return [r for r in rows if r["owner"] not in live]

    def orphans(self) -> list[dict[str, Any]]:
        """Jobs left by studios that are gone, per model: [{model, model_path, jobs, requests}]."""
        with self.transaction("look for images from last time") as c:
            rows = self._orphan_rows(c)
        groups: dict[tuple[str | None, str | None], dict[str, Any]] = {}
        for r in rows:
            g = groups.setdefault((r["model"], r["model_path"]), {"model": r["model"], "model_path": r["model_path"],
                                                                  "jobs": 0, "requests": set()})
            g["jobs"] += 1
            g["requests"].add(r["request_id"])
        return [{**g, "requests": len(g["requests"])} for g in groups.values()]

    def owned_requests(self, owner_id: str) -> list[str]:
        """Requests with an unfinished job owned by `owner_id`."""
        with self.transaction("read the queue") as c:
            return [r[0] for r in c.execute("SELECT DISTINCT request_id FROM jobs WHERE owner = ? AND state IN (?, ?)",
                                            (owner_id, QUEUED, RUNNING))]

    def claim_orphans(self, owner_id: str, model: str | None, model_path: str | None,
                      check_files: bool = True, request_ids: set[str] | None = None) -> list[Job]:
        """Take every orphaned job made for this model (by folder; by name for databases that did not
        record the folder) and return it queued. One transaction: two processes never take the same job.

        A job whose PNG is already on disk finished just before its owner died: it is marked done instead.
        """
        out: list[Job] = []
        with self.transaction("resume the queue") as c:
            for row in self._orphan_rows(c):
                if not (row["model_path"] == model_path if row["model_path"] else row["model"] == model):
                    continue
                if request_ids is not None and row["request_id"] not in request_ids:
                    continue
                if check_files and self._finish_from_disk(row["id"], row["output_path"]):
                    continue
                c.execute("UPDATE jobs SET owner = ?, state = ?, started = NULL WHERE id = ?",
                          (owner_id, QUEUED, row["id"]))
                self._refresh_request(c, row["request_id"])
                out.append(job_from_row(row))
        return out

    def discard_orphans(self) -> int:
        """Cancel every job left by studios that are gone (the window's "discard"); returns how many."""
        with self.transaction("discard the images from last time") as c:
            rows = self._orphan_rows(c)
            now = time.time()
            for r in rows:
                c.execute("UPDATE jobs SET state = ?, owner = NULL, finished = ? WHERE id = ?", (CANCELLED, now, r["id"]))
            for request_id in {r["request_id"] for r in rows}:
                self._refresh_request(c, request_id)
            return len(rows)
