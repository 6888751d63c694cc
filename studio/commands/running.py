"""What the commands that run the pool share: starting a Studio, checking the output folder before any
worker starts, telling the person what happened in one line each, and text made safe for a terminal."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from studio.core.workers_spec import WorkerSpecError

RESUME_HINT = "run `zaoxiang resume` to make them"
# C0/C1 controls and DEL (ANSI escapes start with ESC or C1 CSI), and the bidi overrides that reorder
# what a terminal shows: stored text (prompts, errors) is printed with these escaped, never raw.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """`text` with control characters shown as escapes (\\x1b, \\u202e) instead of acted on."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                       else f"\\u{ord(m.group()):04x}", text)


def say(message: str) -> None:
    """One line for the person on stderr (stored text in it escaped)."""
    print(f"zaoxiang: {terminal_safe(message)}", file=sys.stderr, flush=True)


def output_folder_problem(folder: str | os.PathLike[str]) -> str | None:
    """Why images cannot be written to `folder` (created if missing), or None when they can.

    Tried for real (a file created and removed), because permissions, a read-only mount and a file in
    the way all look alike until then; checked before any worker starts.
    """
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".zaoxiang-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot write images to --out {path}: {exc.strerror or exc}."
    return None


def start_or_explain(studio: Any, resume: bool = False) -> bool:
    """Start `studio`; on a bad --workers spec print the one-line reason and return False. Messages
    for the person (a rebuilt database, images left from last time) are printed once."""
    try:
        studio.start(resume=resume)
    except WorkerSpecError as exc:
        say(str(exc))
        return False
    show_notices(studio)
    if not resume:
        left = studio.orphans()
        waiting = left["count"] + sum(g["jobs"] for g in left["other_models"])
        if waiting:
            say(f"{waiting} images from last time are still queued; {RESUME_HINT}.")
    return True


def show_notices(studio: Any) -> None:
    """Print and forget the studio's messages for the person."""
    while studio.notices:
        say(studio.notices.pop(0))


def report_failure(result: dict[str, Any], state: str | None = None) -> None:
    """One line on stderr for an image that was not made; `state` is what the store kept
    ("queued": it runs again on resume, so it is not called failed)."""
    what = "stays queued" if state == "queued" else result["status"]
    say(f"image {result['index'] + 1} (seed {result['seed']}) {what}: {result.get('error') or ''}".rstrip(": "))


def report_results(studio: Any, results: list[dict[str, Any]]) -> int:
    """One line per image that was not made (those the store kept queued are not called failed, and
    the `zaoxiang resume` hint follows them); returns how many were not made."""
    missing = queued = 0
    for r in results:
        if r["status"] == "done":
            continue
        missing += 1
        row = _store_row(studio, r)
        state = row["state"] if row else None
        if state == "queued" and row.get("error"):
            r = {**r, "error": row["error"]}  # the store's reason (a full disk, a read-only folder)
        report_failure(r, state)
        queued += state == "queued"
    if queued:
        say(f"{queued} images stay queued; {RESUME_HINT}.")
    return missing


def _store_row(studio: Any, result: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return studio.store.job_state(result["job_id"])
    except Exception:
        return None


def report_interrupted(kept: int) -> None:
    if kept:
        say(f"stopped; {kept} unfinished images stay queued; {RESUME_HINT}.")
    else:
        say("stopped.")
