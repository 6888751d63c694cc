"""Open a folder or file with the system's own application (file manager, text viewer).

Opening is fire-and-forget: the opened application must never become a child we wait on.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def open_command(path: Path) -> list[str] | None:
    """The command that opens `path` on this OS, or None where there is none (Windows uses startfile)."""
    if sys.platform == "darwin":
        return ["open", str(path)]
    if sys.platform.startswith("win"):
        return None
    tool = shutil.which("xdg-open") or shutil.which("gio")
    if tool is None:
        return None
    return [tool, "open", str(path)] if tool.endswith("gio") else [tool, str(path)]


def open_path(path: Path | str) -> bool:
    """Open `path` (creating a missing folder first); False, with a log line, when nothing can open it."""
    path = Path(path)
    if not path.suffix and not path.exists():
        path.mkdir(parents=True, exist_ok=True)
    try:
        if sys.platform.startswith("win"):
            os.startfile(str(path))  # type: ignore[attr-defined]
            return True
        cmd = open_command(path)
        if cmd is None:
            log.warning("no program to open %s (install xdg-utils)", path)
            return False
        subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        return True
    except OSError as exc:
        log.warning("could not open %s: %s", path, exc)
        return False
