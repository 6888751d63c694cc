"""A background thread that samples every GPU (and the CPU) once a second into ring buffers.

The UI asks for a snapshot whenever it redraws; sampling never blocks it, and a history of a few
minutes is kept so the charts have something to show when the tab is opened.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import psutil

from studio.monitor.nvml import Nvml


class Sampler:
    """Samples at `interval` seconds, keeping `history_s` seconds of readings per GPU and for the CPU."""

    def __init__(self, interval: float = 1.0, history_s: float = 300.0) -> None:
        self.interval = interval
        size = max(2, int(history_s / interval))
        self.nvml = Nvml()
        self._gpu: list[deque] = [deque(maxlen=size) for _ in self.nvml.gpus]
        self._cpu: deque = deque(maxlen=size)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        psutil.cpu_percent(None)  # prime: the first reading is meaningless otherwise

    def start(self) -> Sampler:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zaoxiang-monitor", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval)

    def sample_once(self) -> None:
        now = time.time()
        readings = [self.nvml.sample(g.index) for g in self.nvml.gpus] if self.nvml.available else []
        cpu = {"t": now, "util": psutil.cpu_percent(None), "mem_used_mb": psutil.virtual_memory().used / 2**20}
        with self._lock:
            for buf, r in zip(self._gpu, readings):
                buf.append({"t": now, **r})
            self._cpu.append(cpu)

    def snapshot(self) -> dict[str, Any]:
        """Everything the monitor tab draws: GPUs with their samples, the CPU, and availability."""
        with self._lock:
            gpus = [
                {"index": g.index, "name": g.name, "memory_total_mb": round(g.memory_total_mb, 1),
                 "samples": list(buf)}
                for g, buf in zip(self.nvml.gpus, self._gpu)
            ]
            cpu = {"cores": psutil.cpu_count() or 1,
                   "memory_total_mb": round(psutil.virtual_memory().total / 2**20, 1),
                   "samples": list(self._cpu)}
        return {"available": self.nvml.available, "message": self.nvml.message, "gpus": gpus, "cpu": cpu}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval + 1)
            self._thread = None
        self.nvml.close()
