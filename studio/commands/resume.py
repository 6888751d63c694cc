"""`zaoxiang resume [--workers SPEC]`: finish what a crash, a kill or a full disk left queued, without the UI.

It reconciles the gallery with the history, then makes each unfinished image once, with its original
seed and file name; an image already on disk is marked done, not made again.
"""

from __future__ import annotations

import argparse
import sys

from studio.commands import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from studio.commands.running import report_failure, start_or_explain

NAME = "resume"


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(NAME, help="finish the queued images left by a crash or a restart")
    r.add_argument("--workers", default=None,
                   help="auto (one per GPU, else CPU), cuda:0,cuda:2, or cpu:N (default: settings)")
    r.add_argument("--model", default=None, help="model folder, or 'demo'")


def run(a: argparse.Namespace) -> int:
    from studio.app import Studio

    studio = Studio(model=a.model, workers=a.workers)
    try:
        if not start_or_explain(studio):
            return EXIT_USAGE
        rep = studio.last_reconciliation() or {}
        print(f"reconciled {rep.get('scanned', 0)} files in {rep.get('duration_s', 0):.2f} s: "
              f"{rep.get('jobs_completed', 0)} finished jobs found on disk, {rep.get('indexed', 0)} new images "
              f"indexed, {rep.get('missing', 0)} missing", file=sys.stderr)
        if not studio.resumed:
            print("Nothing to resume.", file=sys.stderr)
            return EXIT_OK
        jobs = failed = 0
        for request_id in studio.resumed:
            for r in studio.wait(request_id):
                jobs += 1
                if r["status"] == "done":
                    print(r["path"], flush=True)
                else:
                    failed += 1
                    report_failure(r)
        print(f"resumed {len(studio.resumed)} request(s): {jobs - failed} of {jobs} images made", file=sys.stderr)
        return EXIT_ERROR if failed else EXIT_OK
    finally:
        studio.close()
