"""One studio per user: an OS file lock plus a small JSON file with the running instance's URL.

The lock is an OS lock (fcntl on Linux/macOS, msvcrt on Windows) on `instance.lock` in the runtime
dir, so the kernel drops it when the process dies, even by SIGKILL: a crash can never leave a lock
that blocks the next start. `instance.json` (pid, url, secret; 0600) is what a second launch reads to
find the first and make a one-time link to its window (studio/core/launch_link.py); one left behind
by a crash is recognised (its lock is free, or its pid is gone) and cleared.
`zaoxiang stop` finds the instance here too: `find_running` checks that the recorded pid is really
the studio (lock held, same process since it published, a `zaoxiang`/`studio` command line) before
anyone signals it, and `request_quit_file` is its graceful request where there is no SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from studio.core.atomic import atomic_path
from studio.core.file_lock import try_lock as _try_lock
from studio.core.file_lock import unlock as _unlock

log = logging.getLogger(__name__)

LOCK_NAME = "instance.lock"
INFO_NAME = "instance.json"
QUIT_NAME = "quit.request"


@dataclass(frozen=True)
class Instance:
    pid: int
    url: str | None  # the window's address, without a ticket
    started: float
    secret: str | None = None  # makes one-time links to the window; only ever in this 0600 file


def read_instance(runtime_dir: Path) -> Instance | None:
    """The instance recorded in the runtime dir, or None when there is no readable record."""
    try:
        data = json.loads((Path(runtime_dir) / INFO_NAME).read_text(encoding="utf-8"))
        return Instance(pid=int(data["pid"]), url=data.get("url") or None, started=float(data.get("started", 0)),
                        secret=data.get("secret") or None)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class InstanceLock:
    """Held for the life of the running studio; `acquire` is non-blocking."""

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = Path(runtime_dir)
        self._fh: IO[str] | None = None
        self.cleared_stale: Instance | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> bool:
        """Take the lock; True when this process is now the one instance."""
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.runtime_dir / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 (held open on purpose)
        if not _try_lock(fh):
            fh.close()
            return False
        self._fh = fh
        stale = read_instance(self.runtime_dir)
        if stale is not None and stale.pid != os.getpid():
            # We hold the lock, so whoever wrote this record is gone (crash, SIGKILL, power loss).
            self.cleared_stale = stale
            log.warning("cleared a stale instance record left by pid %d (%s)", stale.pid, stale.url)
        (self.runtime_dir / QUIT_NAME).unlink(missing_ok=True)  # a request to an earlier studio
        self.publish(None)
        return True

    def quit_requested(self) -> bool:
        """Whether `zaoxiang stop` left a quit request for this process (the request is consumed)."""
        path = self.runtime_dir / QUIT_NAME
        try:
            pid = int(path.read_text(encoding="utf-8").strip() or 0)
        except (OSError, ValueError):
            return False
        path.unlink(missing_ok=True)
        return pid == os.getpid()

    def publish(self, url: str | None, secret: str | None = None) -> None:
        """Record this process (and, once the server is up, its address and secret) atomically for a
        second launch. Private (0600): the secret makes links that open the studio."""
        info = {"pid": os.getpid(), "url": url, "started": time.time(), "secret": secret}
        with atomic_path(self.runtime_dir / INFO_NAME) as tmp:  # a temp file is made 0600
            tmp.write_text(json.dumps(info), encoding="utf-8")

    def release(self) -> None:
        if self._fh is None:
            return
        info = read_instance(self.runtime_dir)
        if info is not None and info.pid == os.getpid():
            (self.runtime_dir / INFO_NAME).unlink(missing_ok=True)
        try:
            _unlock(self._fh)
        except OSError:
            pass
        self._fh.close()
        self._fh = None

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_is_free(runtime_dir: Path) -> bool:
    """Whether nobody holds the lock right now (probes by taking and dropping it)."""
    path = Path(runtime_dir) / LOCK_NAME
    if not path.exists():
        return True
    with open(path, "a+", encoding="utf-8") as fh:
        if _try_lock(fh):
            _unlock(fh)
            return True
    return False


def wait_for_running(runtime_dir: Path, timeout: float = 60.0, poll: float = 0.2) -> Instance | None:
    """The running instance once it has published its URL; None if it vanished or never got that far.

    A first instance may still be loading when a second launch arrives (a double double-click), so
    the second waits up to `timeout` seconds for the URL rather than failing at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        info = read_instance(runtime_dir)
        if info is not None and info.url and pid_alive(info.pid):
            return info
        if lock_is_free(runtime_dir):
            return None
        if time.monotonic() >= deadline:
            return info if info is not None and pid_alive(info.pid) else None
        time.sleep(poll)


def find_running(runtime_dir: Path) -> psutil.Process | None:
    """The running studio's process, checked to be ours, or None when no studio runs.

    A pid alone is not enough to signal: it may have been reused. The lock must be held, the process
    must be older than its record, and its command line must be the studio's.
    """
    info = read_instance(runtime_dir)
    if info is None or lock_is_free(runtime_dir) or not pid_alive(info.pid):
        return None
    try:
        proc = psutil.Process(info.pid)
        if info.started and proc.create_time() > info.started + 1:
            return None
        words = " ".join(proc.cmdline()).lower()
    except psutil.Error:
        return None
    return proc if ("zaoxiang" in words or "studio" in words) else None


def request_quit_file(runtime_dir: Path, pid: int) -> None:
    """Leave a quit request that the studio with `pid` picks up within a second (all systems)."""
    with atomic_path(Path(runtime_dir) / QUIT_NAME) as tmp:
        tmp.write_text(str(pid), encoding="utf-8")
