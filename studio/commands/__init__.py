"""One module per `zaoxiang` sub-command, each with `register(subparsers)` and `run(args) -> int`.

Keeping commands apart lets each grow without touching the others; `studio/cli.py` lists them.
"""

from __future__ import annotations

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl+C or SIGTERM, as shells report it
