"""`zaoxiang history [--json] [--limit N] [--search TEXT]`: what was made, newest first."""

from __future__ import annotations

import argparse
import json

from studio.commands import EXIT_OK
from studio.commands.running import show_notices, terminal_safe

NAME = "history"


def register(sub: argparse._SubParsersAction) -> None:
    h = sub.add_parser(NAME, help="list past requests, newest first")
    h.add_argument("--json", action="store_true", help="one JSON object per request")
    h.add_argument("--limit", type=int, default=20, help="how many requests (default 20)")
    h.add_argument("--search", default=None, help="only prompts containing every word of TEXT")
    h.add_argument("--favorites", action="store_true", help="only requests with a favorite image")


def run(a: argparse.Namespace) -> int:
    from studio.app import Studio

    studio = Studio()
    try:
        rows = studio.history(search=a.search, favorites_only=a.favorites, limit=max(1, a.limit))
        show_notices(studio)
    finally:
        studio.close()
    for r in rows:
        if a.json:
            out = {k: r[k] for k in ("request_id", "created_iso", "origin", "state", "prompt", "negative_prompt",
                                     "model", "request", "jobs", "jobs_done", "jobs_failed", "jobs_cancelled",
                                     "jobs_queued", "jobs_running", "errors")}
            out["images"] = [{k: im[k] for k in ("id", "path", "seed", "width", "height", "favorite", "missing")}
                             for im in r["images"]]
            # JSON escapes C0 controls itself; DEL, C1 and bidi controls it would print raw
            print(terminal_safe_json(json.dumps(out, ensure_ascii=False)), flush=True)
            continue
        prompt = terminal_safe(r["prompt"].replace("\n", " "))
        prompt = prompt if len(prompt) <= 60 else prompt[:59] + "…"
        print(f"{r['created_iso'].replace('T', ' ')}  {r['state']:<9} {r['jobs_done']:>2}/{r['jobs']:<2} "
              f"{r['origin']:<6} {prompt}", flush=True)
        for err in r["errors"]:
            print(f"    ! {terminal_safe(err)}", flush=True)
    if not rows and not a.json:
        print("No requests yet." if not a.search else f"Nothing matches {terminal_safe(repr(a.search))}.")
    return EXIT_OK


def terminal_safe_json(text: str) -> str:
    """JSON text with the controls JSON leaves raw written as \\u escapes (still the same JSON)."""
    return "".join(f"\\u{ord(ch):04x}" if terminal_safe(ch) != ch else ch for ch in text)
