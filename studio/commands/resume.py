"""`zaoxiang resume [--workers SPEC] [--model PATH]`: finish what a crash, a kill, a Quit or a full disk
left queued, without the UI.

It takes only images whose studio is gone (a running studio keeps its own), reconciles the gallery
with the history, then makes each once, with its original seed and file name, on the model its
request was made with (one after another when they differ; `--model` runs only that model's); an
image already on disk is marked done, not made again. Images whose model is not here stay queued,
and the line says which model they wait for.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from studio.commands import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from studio.commands.running import report_interrupted, report_results, say, show_notices, start_or_explain

NAME = "resume"


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(NAME, help="finish the queued images left by a crash or a restart")
    r.add_argument("--workers", default=None,
                   help="auto (one per GPU, else CPU), cuda:0,cuda:2, or cpu:N (default: settings)")
    r.add_argument("--model", default=None, help="model folder, or 'demo' (default: each image's own model)")


def models_to_run(groups: list[dict[str, Any]], explicit: str | None) -> tuple[list[str | None], list[dict[str, Any]]]:
    """The models to start, in order (None: the configured default), and the groups whose model is
    missing. With `--model` only that one runs."""
    if explicit:
        return [explicit], []
    run: list[str | None] = []
    missing = []
    for g in groups:
        path = g["model_path"]
        if path is None:  # recorded before models were recorded by folder: the default model, by name
            choice: str | None = None
        elif os.path.exists(path):
            choice = path
        else:
            missing.append(g)
            continue
        if choice not in run:
            run.append(choice)
    return run, missing


def run(a: argparse.Namespace) -> int:
    from studio.app import Studio

    probe = Studio(model=a.model, workers=a.workers)  # the history only: no worker starts here
    try:
        show_notices(probe)
        groups = probe.store.orphans()
    finally:
        probe.close()
    if not groups:
        print("Nothing to resume.", file=sys.stderr)
        return EXIT_OK
    models, missing = models_to_run(groups, a.model)
    for g in missing:
        say(f"{g['jobs']} images wait for the model {g['model']} ({g['model_path']}), which is not here; "
            "they stay queued (resume with --model PATH).")
    made = jobs = not_made = requests = 0
    for model in models:
        studio = Studio(model=model, workers=a.workers)
        try:
            if not start_or_explain(studio, resume=True):
                return EXIT_USAGE
            rep = studio.last_reconciliation() or {}
            print(f"reconciled {rep.get('scanned', 0)} files in {rep.get('duration_s', 0):.2f} s: "
                  f"{rep.get('jobs_completed', 0)} finished jobs found on disk, {rep.get('indexed', 0)} new images "
                  f"indexed, {rep.get('missing', 0)} missing", file=sys.stderr)
            requests += len(studio.resumed)
            for request_id in studio.resumed:
                results = studio.wait(request_id)
                jobs += len(results)
                for r in results:
                    if r["status"] == "done":
                        made += 1
                        print(r["path"], flush=True)
                not_made += report_results(studio, results)
        except KeyboardInterrupt:
            studio.close()
            report_interrupted(studio.kept_queued)
            return EXIT_INTERRUPTED
        finally:
            studio.close()
    if not requests:
        print("Nothing to resume.", file=sys.stderr)
        return EXIT_ERROR if missing else EXIT_OK
    print(f"resumed {requests} request(s): {made} of {jobs} images made", file=sys.stderr)
    return EXIT_ERROR if not_made or missing else EXIT_OK
