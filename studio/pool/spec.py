"""`--workers SPEC` on this machine: the grammar from `core/workers_spec.py`, applied to the GPUs
and CPU cores actually here.

GPUs are counted through NVML, not torch, so the parent process never has to import torch; NVML is
asked only when the text needs it (`cpu:2` never touches the driver).
"""

from __future__ import annotations

import os
from typing import Any

from studio.core.workers_spec import WorkerSpec, WorkerSpecError, parse_workers_text

__all__ = ["WorkerSpec", "WorkerSpecError", "cpu_count", "gpu_names", "not_started_status", "parse_workers",
           "visible_gpus"]


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries (empty: none)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [part.strip() for part in env.split(",") if part.strip()]
        out = []
        for part in ids:  # CUDA stops at the first invalid entry, e.g. "-1"
            if part.lstrip("-").isdigit() and int(part) < 0:
                break
            out.append(part)
        return out
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library: no GPU
        return []


def gpu_names(visible: list[str]) -> list[str | None]:
    """NVML's model name for each CUDA_VISIBLE_DEVICES entry (an index or a UUID); None where unknown
    (no driver, no library). An index is NVML's order, which is CUDA's under CUDA_DEVICE_ORDER=PCI_BUS_ID
    and may differ from it otherwise: good for "are these one kind of GPU", not for naming one."""
    if not visible:
        return []
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, no library
        return [None] * len(visible)
    try:
        names: list[str | None] = []
        for entry in visible:
            try:
                handle = (pynvml.nvmlDeviceGetHandleByIndex(int(entry)) if entry.isdigit()
                          else pynvml.nvmlDeviceGetHandleByUUID(entry))
                name = pynvml.nvmlDeviceGetName(handle)
                names.append(name.decode() if isinstance(name, bytes) else str(name))
            except Exception:
                names.append(None)
        return names
    finally:
        pynvml.nvmlShutdown()


def parse_workers(spec: str | None, *, gpus: list[str] | None = None,
                  cpus: int | None = None) -> list[WorkerSpec]:
    """The workers for `spec`; raises WorkerSpecError with one sentence when it cannot be run."""
    choice = parse_workers_text(spec)
    if gpus is None:
        gpus = visible_gpus() if choice.needs_gpus else []
    return choice.workers(gpus, cpus or cpu_count())


def not_started_status(spec: WorkerSpec) -> dict[str, Any]:
    """A worker's `WorkerPool.status` row before its pool has started (the monitor shows it)."""
    return {"name": spec.name, "device": spec.device, "state": "not started", "pid": None, "current_job": None,
            "current_request": None, "prefetched": 0, "images_done": 0, "busy_s": 0.0, "s_per_image": None,
            "load_s": None, "memory_gb": None, "threads": spec.threads, "restarts": 0, "last_error": ""}
