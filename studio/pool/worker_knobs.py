"""The worker's test-only knobs, read from the environment: a slower worker, a hung one, an OOM, a PNG
write held open. Kept apart from the worker loop so that it reads as what runs in production."""

from __future__ import annotations

import os
import time
from typing import Any

DELAY_ENV = "ZAOXIANG_TEST_WORKER_DELAY"  # test-only, by worker index: "0:0.25" adds 0.25 s per step,
#                                            "1:x2" makes every step of worker 1 take twice as long
HANG_ENV = "ZAOXIANG_TEST_WORKER_HANG"  # test-only: a file; the first job step that finds it removes it
#                                        and never returns (a hung worker: alive, silent)
GROUP_HANG_ENV = "ZAOXIANG_TEST_GROUP_HANG"  # test-only: "<worker index>:<warm|image>:<file>", comma-separated;
#                 that worker, at its first split step of a group warm-up ("warm") or a split image ("image") that
#                 finds the file, removes it and never returns (a hung group member; the others wait in a collective)
OOM_ENV = "ZAOXIANG_TEST_WORKER_OOM"  # test-only: a file; the first job that finds it removes it and
#                                      fails as out of memory
WRITE_HOLD_ENV = "ZAOXIANG_TEST_WRITE_HOLD"  # test-only: hold a written PNG's temp file open before its
#                rename, so a kill lands mid-write: "0.4" every write for 0.4 s (scripts/kill_matrix.py); a file
#                path: the first write that finds the file removes it, writes "<file>.writing" (the worker's
#                pid) and holds for good (tests/test_pool_recovery.py)


class Slowdown:
    """Test-only knob that makes one worker slower: sleep after each step, a flat number of seconds
    or (factor - 1) x the step's own time (so the slow/fast ratio holds whatever the machine's load)."""

    def __init__(self, seconds: float = 0.0, factor: float = 1.0) -> None:
        self.seconds, self.factor = seconds, factor
        self._t = time.perf_counter()

    def __bool__(self) -> bool:
        return self.seconds > 0 or self.factor > 1

    def start(self) -> None:
        self._t = time.perf_counter()

    def after_step(self, _i: int = 0, _n: int = 0) -> None:
        pause = self.seconds + (self.factor - 1) * (time.perf_counter() - self._t)
        if pause > 0:
            time.sleep(pause)
        self._t = time.perf_counter()


def slowdown_for(index: int, env: str | None = None) -> Slowdown:
    """The worker's test slowdown from ZAOXIANG_TEST_WORKER_DELAY (none when unset or unparsable)."""
    text = os.environ.get(DELAY_ENV, "") if env is None else env
    for part in text.split(","):
        key, _, value = part.partition(":")
        if key.strip() != str(index):
            continue
        value = value.strip().lower()
        try:
            if value.startswith("x"):
                return Slowdown(factor=max(1.0, float(value[1:])))
            return Slowdown(seconds=max(0.0, float(value)))
        except ValueError:
            break
    return Slowdown()


def take_marker(env: str) -> bool:
    """True once: when the test knob `env` names a file that this call removed (one worker wins it)."""
    return _take(os.environ.get(env))


def _take(marker: str | None) -> bool:
    """True when this call removed the file `marker` (of several workers, one wins it)."""
    if not marker:
        return False
    try:
        os.unlink(marker)
    except OSError:
        return False
    return True


def hang_if_told() -> None:
    """The HANG_ENV test knob: hang this worker once, for the pool's hung-worker detection."""
    if take_marker(HANG_ENV):
        while True:
            time.sleep(60)


def group_hang_if_told(index: int, where: str) -> None:
    """The GROUP_HANG_ENV test knob: hang this member of a group once, at a split step of `where`."""
    for part in os.environ.get(GROUP_HANG_ENV, "").split(","):
        told, _, rest = part.partition(":")
        at, _, marker = rest.partition(":")
        if told.strip() == str(index) and at == where and _take(marker):
            while True:
                time.sleep(60)


def hold_write_if_told(tmp: Any) -> None:
    """The WRITE_HOLD_ENV test knob: keep the PNG's temp file open, not renamed, for a moment or for good
    (the kill matrix finds the writer by its open files; a test by the pid in "<file>.writing")."""
    value = os.environ.get(WRITE_HOLD_ENV) or ""
    try:
        seconds = float(value)
    except ValueError:
        if not take_marker(WRITE_HOLD_ENV):
            return
        with open(value + ".writing", "w") as fh:
            fh.write(str(os.getpid()))
        seconds = float("inf")
    with open(tmp, "rb"):
        while seconds > 0:
            time.sleep(min(seconds, 60.0))
            seconds -= 60.0
