"""The few pool messages the cluster relay must look inside, in one place (the rest pass unopened).

A job's output path is swapped for a node-local one and back; a `done` carries its PNG bytes beside
it; the relay itself may have to say `fatal` (no model on the node, an actor that cannot start) or
`failed` (the gallery write failed here).
"""

from __future__ import annotations

from typing import Any


def kind(msg: Any) -> str:
    """The message's kind as text ("ready", "step", "done", ...)."""
    return msg[0]


def payload(msg: Any) -> dict[str, Any]:
    """The message's fields as a dict."""
    return msg[1] if len(msg) > 1 and isinstance(msg[1], dict) else {}


def job(fields: dict[str, Any], memory_profile: str | None = None) -> Any:
    """The message that hands a worker one job (`fields`: the job as plain data)."""
    return ("job", {**fields, "memory_profile": memory_profile})


def revoke(job_id: str, reason: str) -> Any:
    return ("revoke", job_id, reason)


def stop() -> Any:
    return ("stop",)


def is_job(msg: Any) -> bool:
    return isinstance(msg, tuple) and msg[:1] == ("job",)


def with_output(msg: Any, path: str) -> tuple[Any, str, str]:
    """The job message writing to `path` instead; (message, job id, the studio's path)."""
    job = dict(msg[1])
    original, job["output_path"] = job["output_path"], path
    return ("job", job, *msg[2:]), job["job_id"], original


def done_path(msg: Any) -> tuple[str, str] | None:
    """(job id, path) of a `done` message; None for any other."""
    if isinstance(msg, tuple) and msg[0] == "done":
        return msg[1]["job_id"], msg[1]["path"]
    return None


def with_path(msg: Any, path: str) -> Any:
    """The `done` message naming `path` as its image."""
    return (msg[0], {**msg[1], "path": path})


def ready_pid(msg: Any) -> int | None:
    """The worker process id a `ready` message reports."""
    if isinstance(msg, tuple) and msg[0] == "ready":
        return msg[1].get("pid")
    return None


def busy_s(msg: Any) -> float:
    return float(msg[1].get("busy_s", 0.0))


def fatal(message: str) -> Any:
    """A worker that cannot serve says why and exits; the pool retries it with back-off, then gives up."""
    return ("fatal", {"kind": "error", "message": message, "exception": ""})


def failed(job_id: str, busy: float, exc: BaseException, message: str) -> Any:
    return ("failed", {"job_id": job_id, "busy_s": busy, "kind": "error", "message": message,
                       "exception": type(exc).__name__})
