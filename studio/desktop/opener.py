"""Open a folder, file or address with the system's own application (file manager, viewer, browser).

The answer is honest: True only when the opener succeeded (it exited 0, or was still running after a
moment, which means it became the application). Callers say "opened" only then, and otherwise show
the path so a person can copy it. Every child is waited for on a small thread, so none is left a
zombie, and none is ever a child the studio blocks on.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)

NO_OPEN_ENV = "ZAOXIANG_NO_OPEN"  # set (tests, screenshots): never launch anything, report "not opened"
SETTLE_S = 3.0  # how long an opener may take to fail before we take it as having launched something


def open_command(target: str) -> list[str] | None:
    """The command that opens `target` on this OS, or None where there is none (Windows uses startfile)."""
    if sys.platform == "darwin":
        return ["open", target]
    if sys.platform.startswith("win"):
        return None
    tool = shutil.which("xdg-open") or shutil.which("gio")
    if tool is None:
        return None
    return [tool, "open", target] if tool.endswith("gio") else [tool, target]


def reap(proc: subprocess.Popen) -> None:
    """Wait for `proc` on a daemon thread, so that it does not stay a zombie when it ends."""
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()


def spawn(cmd: list[str]) -> subprocess.Popen:
    """Start `cmd` detached from our terminal and session, and reap it when it ends."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    reap(proc)
    return proc


def settled(proc: subprocess.Popen, wait_s: float = SETTLE_S) -> bool:
    """Whether an opener succeeded: it exited 0, or still runs after `wait_s` (it is the application)."""
    try:
        return proc.wait(wait_s) == 0
    except subprocess.TimeoutExpired:
        return True


def open_target(target: str) -> bool:
    """Open a path or URL; False, with a log line, when nothing opened it."""
    if os.environ.get(NO_OPEN_ENV):
        return False
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        log.info("no display to open %s on", target)
        return False
    try:
        if sys.platform.startswith("win"):
            os.startfile(target)  # type: ignore[attr-defined]
            return True
        cmd = open_command(target)
        if cmd is None:
            log.warning("no program to open %s (install xdg-utils)", target)
            return False
        ok = settled(spawn(cmd))
        if not ok:
            log.warning("%s could not open %s", cmd[0], target)
        return ok
    except OSError as exc:
        log.warning("could not open %s: %s", target, exc)
        return False


def open_path(path: Path | str) -> bool:
    """Open `path` (creating a missing folder first); False when nothing opened it."""
    path = Path(path)
    if not path.suffix and not path.exists():
        path.mkdir(parents=True, exist_ok=True)
    return open_target(str(path))
