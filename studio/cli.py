"""`zaoxiang`: the command line. Thin: it parses, calls Studio (through studio/commands), and prints.

Bad input exits with status 2 and one readable line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from studio.commands import EXIT_ERROR, EXIT_OK, EXIT_USAGE

# One module per sub-command under studio/commands (see its __init__ for the contract).
COMMANDS = ("generate", "models", "doctor")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2
        self.exit(EXIT_USAGE, f"zaoxiang: {message}\n")


def _modules():
    return {name: importlib.import_module(f"studio.commands.{name}") for name in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zaoxiang", description="造相 Z-Image Studio: local text-to-image on your GPUs.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    for module in _modules().values():
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from studio.engine.cuda_env import prepare_process_env

    prepare_process_env()
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        return _modules()[a.command].run(a)
    except KeyboardInterrupt:
        print("zaoxiang: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one place a surprise becomes a readable line
        from studio.models.discovery import ModelNotFoundError

        if isinstance(exc, ModelNotFoundError):
            print(f"zaoxiang: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"zaoxiang: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
