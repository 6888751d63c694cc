"""`zaoxiang stop`: ask the running desktop studio to quit, and wait until it has.

It finds the studio through the instance record (studio/desktop/single_instance.py), which checks
that the pid is really the studio before anything is sent. The studio then runs its own Quit (the
same as the tray's and the window's): on Linux and macOS through SIGTERM, on Windows, which has no
graceful signal for a windowless process, through a quit-request file the studio polls.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from studio.commands import EXIT_ERROR, EXIT_OK

NAME = "stop"
DEFAULT_TIMEOUT_S = 120.0
POLL_S = 0.2


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(NAME, help="quit the running studio (as its Quit does)")
    s.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds to wait for it to finish quitting (default {DEFAULT_TIMEOUT_S:g})")


def run(a: argparse.Namespace) -> int:
    import psutil

    from studio.core.paths import get_paths
    from studio.desktop.messages import resolve_lang, text
    from studio.desktop.single_instance import find_running, request_quit_file

    lang = resolve_lang(getattr(a, "lang", None))
    runtime_dir = get_paths().runtime_dir
    proc = find_running(runtime_dir)
    if proc is None:
        print(text("stop_none", lang), flush=True)
        return EXIT_OK
    print(text("stop_asking", lang, pid=proc.pid), flush=True)
    try:
        if sys.platform.startswith("win"):
            request_quit_file(runtime_dir, proc.pid)
        else:
            proc.send_signal(signal.SIGTERM)  # psutil refuses if the pid now names another process
    except psutil.NoSuchProcess:
        pass
    if not _wait_quit(runtime_dir, proc.pid, max(0.0, a.timeout)):
        print(text("stop_slow", lang, pid=proc.pid, seconds=f"{a.timeout:g}"), file=sys.stderr, flush=True)
        return EXIT_ERROR
    print(text("stop_done", lang), flush=True)
    return EXIT_OK


def _wait_quit(runtime_dir, pid: int, timeout_s: float) -> bool:
    """Whether the studio let go of its lock and ended (a zombie its parent has not reaped counts)."""
    from studio.desktop.single_instance import lock_is_free, pid_alive

    deadline = time.monotonic() + timeout_s
    while not (lock_is_free(runtime_dir) and not pid_alive(pid)):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True
