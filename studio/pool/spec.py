"""`--workers SPEC`: which worker processes a pool runs, and on which device each one sits.

`auto` is one worker per visible CUDA GPU (else one CPU worker), `cuda:0,cuda:2` names GPUs,
`cpu:N` runs N CPU workers (how tests and CI exercise the real pool without a GPU). GPUs are
counted through NVML, not torch, so the parent process never has to import torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class WorkerSpecError(ValueError):
    """A `--workers` value the pool cannot run; the message is one readable sentence."""


@dataclass(frozen=True)
class WorkerSpec:
    """One worker: its display name, the device string inside the child, and its pinning."""

    index: int  # position in the pool (the test slowdown knob and the logs use it)
    name: str  # "cuda:0", "cpu:1": also what the PNG metadata records as the worker
    device: str  # "cuda" (the child's only visible GPU) or "cpu"
    visible_devices: str  # CUDA_VISIBLE_DEVICES for the child ("" hides every GPU)
    threads: int  # OMP_NUM_THREADS / torch threads for the child


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


def parse_workers(spec: str | None, *, gpus: list[str] | None = None,
                  cpus: int | None = None) -> list[WorkerSpec]:
    """The workers for `spec`; raises WorkerSpecError with one sentence when it cannot be run."""
    text = (spec or "auto").strip().lower().replace(" ", "")
    cpus = cpus or cpu_count()
    if text in ("auto", ""):
        gpus = visible_gpus() if gpus is None else gpus
        return _cuda(list(range(len(gpus))), gpus, cpus) if gpus else _cpu(1, cpus)
    if text == "cpu" or text.startswith("cpu:"):
        count = text.partition(":")[2] or "1"
        if not count.isdigit() or not 1 <= int(count) <= 64:
            raise WorkerSpecError(f"'{spec}': the number of CPU workers must be from 1 to 64 (for example cpu:2).")
        return _cpu(int(count), cpus)
    gpus = visible_gpus() if gpus is None else gpus
    wanted: list[int] = []
    for part in text.split(","):
        if part == "cuda":
            wanted.extend(range(len(gpus)))
            continue
        kind, _, num = part.partition(":")
        if kind not in ("cuda", "gpu") or not num.isdigit():
            raise WorkerSpecError(f"'{spec}' is not a worker list: use auto, cpu:N, or cuda:0,cuda:1.")
        wanted.append(int(num))
    if not gpus:
        raise WorkerSpecError("No NVIDIA GPU is visible, so cuda workers cannot start; use --workers cpu:1.")
    for i in wanted:
        if i >= len(gpus):
            raise WorkerSpecError(f"There is no GPU cuda:{i} ({len(gpus)} visible: cuda:0 to cuda:{len(gpus) - 1}).")
    if len(set(wanted)) != len(wanted):
        raise WorkerSpecError(f"'{spec}' names a GPU twice; one worker per GPU.")
    return _cuda(wanted, gpus, cpus)


def _cpu(count: int, cpus: int) -> list[WorkerSpec]:
    threads = max(1, cpus // count)
    return [WorkerSpec(i, f"cpu:{i}", "cpu", "", threads) for i in range(count)]


def _cuda(indices: list[int], gpus: list[str], cpus: int) -> list[WorkerSpec]:
    threads = max(1, min(8, cpus // max(1, len(indices))))
    return [WorkerSpec(pos, f"cuda:{i}", "cuda", gpus[i], threads) for pos, i in enumerate(indices)]
