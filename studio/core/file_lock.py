"""OS file locks (fcntl on Linux/macOS, msvcrt on Windows), held by an open file, so the kernel drops
them when their process dies, even by SIGKILL: a crash never leaves a lock behind.

The one-instance lock (studio/desktop/single_instance.py) takes one without waiting; `held` waits for
one across a read-modify-write of a small shared file (the API keys), which several processes change.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def try_lock(fh: IO[str]) -> bool:
    """Take the lock on the open file `fh` without waiting; False when another holder has it."""
    if sys.platform.startswith("win"):
        import msvcrt

        try:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def unlock(fh: IO[str]) -> None:
    if sys.platform.startswith("win"):
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextmanager
def held(path: Path, wait_s: float = 30.0, poll_s: float = 0.01) -> Iterator[None]:
    """Hold the lock on `path` (created when missing) for the block; TimeoutError after `wait_s`.

    Polls rather than blocks: msvcrt has no lock that waits without a limit of its own, and one
    way on every system is one way to test."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        deadline = time.monotonic() + wait_s
        while not try_lock(fh):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{path} stayed locked for {wait_s:g} s")
            time.sleep(poll_s)
        try:
            yield
        finally:
            try:
                unlock(fh)
            except OSError:
                pass
