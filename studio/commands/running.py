"""What the commands that run the pool share: starting a Studio, and how a failed image is reported."""

from __future__ import annotations

import sys
from typing import Any


def start_or_explain(studio: Any) -> bool:
    """Start `studio`; on a bad --workers spec print the one-line reason and return False."""
    from studio.pool.spec import WorkerSpecError

    try:
        studio.start()
    except WorkerSpecError as exc:
        print(f"zaoxiang: {exc}", file=sys.stderr)
        return False
    return True


def report_failure(result: dict[str, Any]) -> None:
    """One line on stderr for an image that was not made."""
    print(f"zaoxiang: image {result['index'] + 1} (seed {result['seed']}) {result['status']}: "
          f"{result.get('error') or ''}".rstrip(": "), file=sys.stderr)
