"""`zaoxiang`: the command line. Thin: it parses, calls Studio (through studio/commands), and prints.

Bad input exits with status 2 and one readable line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from studio.commands import EXIT_ERROR, EXIT_USAGE

# One module per sub-command under studio/commands (see its __init__ for the contract).
COMMANDS = ("generate", "models", "doctor", "bench", "history", "resume", "stop")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2
        self.exit(EXIT_USAGE, f"zaoxiang: {message}\n")


def _modules():
    return {name: importlib.import_module(f"studio.commands.{name}") for name in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zaoxiang", description="造相 Z-Image Studio: local text-to-image on your GPUs.")
    # With no sub-command `zaoxiang` starts the desktop studio (studio/desktop/launcher.py).
    p.add_argument("--host", default=None, help="listen address (default: settings, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: settings, 7860, or the next free)")
    p.add_argument("--lang", choices=("zh", "en"), default=None, help="window language")
    p.add_argument("--workers", default=None, help="auto | cuda:0,cuda:1 | cpu:N")
    p.add_argument("--model", default=None, help="model folder or file, or demo")
    p.add_argument("--no-browser", action="store_true", help="do not open the studio window")
    p.add_argument("--no-tray", action="store_true", help="no tray icon")
    p.add_argument("--headless", action="store_true", help="no tray icon and no window (servers, CI)")
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
        from studio.desktop.launcher import DesktopOptions, run_desktop

        return run_desktop(DesktopOptions(host=a.host, port=a.port, lang=a.lang, workers=a.workers,
                                          model=a.model, no_browser=a.no_browser, no_tray=a.no_tray,
                                          headless=a.headless))
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
