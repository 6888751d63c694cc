"""In-process workers: the pool's whole interface, with each worker on a thread of this process.

The same ledger, scheduler, protocol and worker loop (`worker.serve`, which runs `run_job`'s halves
on an Engine); only the supervisor's context differs: a worker is a thread and its pipes are
in-process pipes. For the bench in-process and for fast tests, where spawning a process per worker
costs more than the images. A thread cannot be killed, so there is no hang detection here, and a
worker that dies is an exception in its thread (exit code 1), restarted with back-off like a process.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
from collections.abc import Callable
from typing import Any

from studio.pool.pool import WorkerPool
from studio.pool.spec import WorkerSpec
from studio.pool.worker import serve

log = logging.getLogger(__name__)


class ThreadWorker:
    """A worker thread with the parts of `multiprocessing.Process` the supervisor uses."""

    def __init__(self, target: Callable[..., int], args: tuple[Any, ...], name: str, daemon: bool = True) -> None:
        self._target, self._args = target, args
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.sentinel, self._ended = mp.Pipe(duplex=False)  # readable (EOF) once the thread ends
        self.exitcode: int | None = None
        self.pid = os.getpid()

    def _run(self) -> None:
        try:
            self.exitcode = self._target(*self._args)
        except BaseException:  # a process would have died: the supervisor restarts it the same way
            log.exception("in-process worker %s failed", self._thread.name)
            self.exitcode = 1
        finally:
            self._ended.close()

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.sentinel.close()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def terminate(self) -> None:
        """Threads cannot be stopped from outside; closing the control pipe (EOF) is what ends one."""

    kill = terminate


class InlineContext:
    """What the supervisor asks of a multiprocessing context, with threads instead of processes."""

    in_process = True
    Process = ThreadWorker

    @staticmethod
    def Pipe(duplex: bool = True) -> tuple[Any, Any]:  # noqa: N802 - multiprocessing's name
        return mp.Pipe(duplex)


def serve_inline(cfg: dict[str, Any], control: Any, results: Any) -> int:
    """`worker.serve` on this thread; the worker's GPU is named by index (no CUDA_VISIBLE_DEVICES here)."""
    if cfg["device"] == "cuda" and cfg["visible_devices"].isdigit():
        cfg = {**cfg, "device": f"cuda:{cfg['visible_devices']}"}
    return serve(cfg, control, results, lost=lambda: None)  # the loop ends at the Stop or EOF that follows


def InlinePool(specs: list[WorkerSpec], **kwargs: Any) -> WorkerPool:  # noqa: N802 - a constructor
    """A WorkerPool whose workers are threads of this process (same arguments as WorkerPool)."""
    return WorkerPool(specs, context=InlineContext(), target=serve_inline, **kwargs)
