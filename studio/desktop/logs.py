"""The studio's log file: one rotating file in the log dir, so a person can send it when asking for help.

The launcher sets it up once; the tray and the UI find it with `log_file()` to open it. The file is
private to its owner (0600), and no link's ticket reaches it (`redact`).
"""

from __future__ import annotations

import logging
import os
import re
from logging.handlers import RotatingFileHandler
from pathlib import Path

from studio.core.paths import Paths, get_paths

LOG_NAME = "zaoxiang.log"
MAX_BYTES = 2 * 1024 * 1024
BACKUPS = 3
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"
_TOKEN = re.compile(r"zx_token=[\w-]+")


def redact(text: str) -> str:
    """`text` without a window link's ticket (a URL's `zx_token=...`), which opens the studio once."""
    return _TOKEN.sub("zx_token=…", text)


class _Redacting(logging.Filter):
    """Drops link tickets from every record bound for the file, whoever logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "zx_token=" in message:
            record.msg, record.args = redact(message), None
        return True


class _PrivateFileHandler(RotatingFileHandler):
    """A rotating log whose files (the current one and each rollover's) are readable by their owner only."""

    def _open(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.chmod(self.baseFilename, 0o600)  # a file left 0644 by an older version
        return os.fdopen(fd, self.mode, encoding=self.encoding, errors=self.errors)


def log_file(paths: Paths | None = None) -> Path:
    return (paths or get_paths()).log_dir / LOG_NAME


def setup_logging(paths: Paths | None = None, level: int = logging.INFO) -> Path:
    """Attach the rotating file handler to the root logger (once per file) and return the file's path."""
    path = log_file(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, RotatingFileHandler) and Path(handler.baseFilename) == path.resolve():
            return path
    handler = _PrivateFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handler.addFilter(_Redacting())
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(level)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    return path


def close_logging(paths: Paths | None = None) -> None:
    """Detach and close the file handler (tests and repeated launches in one process)."""
    path = log_file(paths).resolve()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, RotatingFileHandler) and Path(handler.baseFilename) == path:
            root.removeHandler(handler)
            handler.close()
