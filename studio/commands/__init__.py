"""One module per `zaoxiang` sub-command, each with `register(subparsers)` and `run(args) -> int`.

Keeping commands apart lets each grow without touching the others; `studio/cli.py` lists them.
Commands reach the studio through `studio.app` only, imported inside `run`: the facade opens the
store's modules (numpy, PIL), which would make `zaoxiang --help` several times slower to start.
"""

from __future__ import annotations

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl+C or SIGTERM, as shells report it
