"""The few pool messages the cluster relay must look inside, in one place (the rest pass unopened).

A job's output path is swapped for a node-local one and back; a `done` carries its PNG bytes beside
it; the relay itself may have to say `fatal` (no model on the node, an actor that cannot start) or
`failed` (the gallery write failed here). The messages are pool/protocol.py's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from studio.pool import protocol as p


def kind(msg: p.Message) -> str:
    """The message's kind as text ("ready", "step", "done", ...)."""
    return msg.kind.value


def payload(msg: p.Message) -> dict[str, Any]:
    """The message's fields as a dict."""
    return msg.payload()


def job(fields: dict[str, Any], memory_profile: str | None = None) -> p.RunJob:
    """The message that hands a worker one job (`fields`: the job as plain data)."""
    return p.RunJob(fields, memory_profile)


def revoke(job_id: str, reason: str) -> p.Revoke:
    return p.Revoke(job_id, p.RevokeReason(reason))


def stop() -> p.Stop:
    return p.Stop()


def is_job(msg: Any) -> bool:
    return isinstance(msg, p.RunJob)


def job_fields(msg: p.RunJob) -> dict[str, Any]:
    """The job a job message carries, as plain data."""
    return msg.job


def with_job(msg: p.RunJob, job: dict[str, Any]) -> p.RunJob:
    """The job message carrying `job` instead."""
    return replace(msg, job=job)


def with_output(msg: p.RunJob, path: str) -> p.RunJob:
    """The job message writing to `path` (the node's scratch file) instead of the studio's path, which
    stays with the studio (cluster/process.Outputs) and never comes back from a node."""
    return replace(msg, job={**msg.job, "output_path": path})


def done_path(msg: Any) -> tuple[str, str] | None:
    """(job id, path) of a `done` message; None for any other."""
    return (msg.job_id, msg.path) if isinstance(msg, p.Done) else None


def with_path(msg: p.Done, path: str) -> p.Done:
    """The `done` message naming `path` as its image."""
    return replace(msg, path=path)


def ready_pid(msg: Any) -> int | None:
    """The worker process id a `ready` message reports."""
    return msg.pid if isinstance(msg, p.Ready) else None


def busy_s(msg: p.Done) -> float:
    return msg.busy_s


def fatal(message: str) -> p.Fatal:
    """A worker that cannot serve says why and exits; the pool retries it with back-off, then gives up."""
    return p.Fatal(message)


def failed(job_id: str, busy: float, exc: BaseException, message: str) -> p.Failed:
    return p.Failed(job_id, busy, p.ErrorKind.ERROR, message, type(exc).__name__)
