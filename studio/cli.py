"""`zaoxiang`: the command line. Thin: it parses, calls Studio (through studio/commands), and prints.

Bad input exits with status 2 and one readable line, never a traceback: values are checked before
any worker starts, log records go to the log file (not the terminal), and SIGTERM stops a command
the way Ctrl+C does, so its unfinished images stay queued for `zaoxiang resume`.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import logging
import re
import signal
import socket
import sys
from collections.abc import Sequence

from studio.commands import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE
from studio.core.errors import StudioError
from studio.core.process_env import prepare_process_env
from studio.desktop.logs import setup_logging

# One module per sub-command under studio/commands (see its __init__ for the contract).
COMMANDS = ("generate", "models", "doctor", "bench", "history", "resume", "stop", "keys", "mcp")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2
        self.exit(EXIT_USAGE, f"zaoxiang: {message}\n")


_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def port_arg(text: str) -> int:
    """A TCP port, 0 (the system picks one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port must be a number from 0 to 65535, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be from 0 to 65535 (got {port})")
    return port


def host_arg(text: str) -> str:
    """An IP address (v4 or v6) or a host name that resolves here."""
    host = text.strip()
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", bare) or ":" in bare or not _HOST_NAME.match(bare):
        raise argparse.ArgumentTypeError(f"--host must be an IP address such as 127.0.0.1 or a host name "
                                         f"(got {text!r})")
    try:
        socket.getaddrinfo(bare, None)
    except OSError:
        raise argparse.ArgumentTypeError(f"--host {text!r} does not resolve to an address on this machine") from None
    return bare


def _sigterm_as_interrupt(*_args: object) -> None:
    raise KeyboardInterrupt


def _modules():
    return {name: importlib.import_module(f"studio.commands.{name}") for name in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zaoxiang", description="造相 Z-Image Studio: local text-to-image on your GPUs.")
    # With no sub-command `zaoxiang` starts the desktop studio (studio/desktop/launcher.py).
    p.add_argument("--host", type=host_arg, default=None, help="listen address (default: settings, 127.0.0.1)")
    p.add_argument("--port", type=port_arg, default=None,
                   help="port (default: settings, 7860, or the next free)")
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
    prepare_process_env()
    parser = build_parser()
    a = parser.parse_args(argv)
    _log_to_file()
    if a.command is None:
        from studio.desktop.launcher import DesktopOptions, run_desktop

        return run_desktop(DesktopOptions(host=a.host, port=a.port, lang=a.lang, workers=a.workers,
                                          model=a.model, no_browser=a.no_browser, no_tray=a.no_tray,
                                          headless=a.headless))
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        return _modules()[a.command].run(a)
    except KeyboardInterrupt:
        print("zaoxiang: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one place a surprise becomes a readable line
        logging.getLogger("studio.cli").error("zaoxiang %s failed", a.command, exc_info=True)
        if isinstance(exc, StudioError):  # one sentence already; a wrong flag or path is a usage error
            print(f"zaoxiang: {exc}", file=sys.stderr)
            return EXIT_USAGE if exc.usage else EXIT_ERROR
        print(f"zaoxiang: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _log_to_file() -> None:
    """Log records (with their tracebacks) go to the log file; without a handler Python would print
    them on the terminal. A log dir that cannot be written leaves them silent, never on the terminal."""
    try:
        setup_logging()
    except OSError:
        logging.getLogger().addHandler(logging.NullHandler())
