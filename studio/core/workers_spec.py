"""`--workers` text as pure rules: which workers a pool runs and on which device each one sits.

`auto` is one worker per visible GPU (else one CPU worker), `cuda:0,cuda:2` (or `gpu:0`) names GPUs,
`cuda` means every visible GPU, `cpu:N` runs N CPU workers; `ray`, alone or after any of these
(`cpu:1,ray`), adds workers on a Ray cluster's machines (studio/cluster/). The settings check and the
pool both read the text through here, so the grammar is written once; counting GPUs (NVML) stays in
`pool/spec.py`, which hands the visible list in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from studio.core.errors import StudioError

MAX_CPU_WORKERS = 64


class WorkerSpecError(StudioError, ValueError):
    """A `--workers` value the pool cannot run: one English sentence (the CLI's), plus the message
    key and its values, so the settings form can say it in the window's language."""

    usage = True

    def __init__(self, message: str, key: str, **params: object) -> None:
        super().__init__(message)
        self.key = key
        self.params = {k: str(v) for k, v in params.items()}


@dataclass(frozen=True)
class WorkerSpec:
    """One worker: its display name, the device string inside the child, and its pinning."""

    index: int  # position in the pool (the test slowdown knob and the logs use it)
    name: str  # "cuda:0", "cpu:1": also what the PNG metadata records as the worker
    device: str  # "cuda" (the child's only visible GPU) or "cpu"
    visible_devices: str  # CUDA_VISIBLE_DEVICES for the child ("" hides every GPU)
    threads: int  # OMP_NUM_THREADS / torch threads for the child


@dataclass(frozen=True)
class WorkersChoice:
    """What a `--workers` text asks for, before the visible GPUs are known."""

    text: str  # as the person wrote it, for messages
    cpu: int = 0  # CPU workers asked for; 0 when GPUs are
    gpus: tuple[int | None, ...] = ()  # GPU indices named; None stands for "every visible GPU"
    auto: bool = False  # every visible GPU, else one CPU worker
    ray: bool = False  # workers on a Ray cluster too (alone: no local worker)

    @property
    def needs_gpus(self) -> bool:
        """Whether the visible GPUs must be counted to know the workers."""
        return self.auto or bool(self.gpus)

    def indices(self, gpu_count: int) -> list[int]:
        """The GPU indices this choice runs on `gpu_count` visible GPUs; WorkerSpecError if it cannot."""
        if self.auto or not self.gpus:
            return list(range(gpu_count)) if self.auto else []
        if gpu_count == 0:
            raise WorkerSpecError("No NVIDIA GPU is visible, so cuda workers cannot start; use --workers cpu:1.",
                                  "set.bad.no_gpu", index=next((i for i in self.gpus if i is not None), 0),
                                  count=0)
        wanted: list[int] = []
        for index in self.gpus:
            wanted.extend(range(gpu_count) if index is None else [index])
        for index in wanted:
            if index >= gpu_count:
                raise WorkerSpecError(f"There is no GPU cuda:{index} ({gpu_count} visible: cuda:0 to "
                                      f"cuda:{gpu_count - 1}).", "set.bad.no_gpu", index=index, count=gpu_count)
        _no_twice(self.text, wanted)
        return wanted

    def workers(self, gpus: list[str], cpus: int) -> list[WorkerSpec]:
        """The workers on a machine whose visible GPUs are `gpus` (CUDA_VISIBLE_DEVICES entries)."""
        if self.cpu or (self.auto and not gpus):
            count = self.cpu or 1
            threads = max(1, cpus // count)
            return [WorkerSpec(i, f"cpu:{i}", "cpu", "", threads) for i in range(count)]
        indices = self.indices(len(gpus))
        threads = max(1, min(8, cpus // max(1, len(indices))))
        return [WorkerSpec(pos, f"cuda:{i}", "cuda", gpus[i], threads) for pos, i in enumerate(indices)]


def _no_twice(text: str, indices: list[int]) -> None:
    if len(set(indices)) != len(indices):
        raise WorkerSpecError(f"'{text}' names a GPU twice; one worker per GPU.", "set.bad.gpu_twice", value=text)


def parse_workers_text(spec: str | None) -> WorkersChoice:
    """The grammar alone (no GPU is counted); raises WorkerSpecError with one sentence."""
    raw = spec or "auto"
    text = raw.strip().lower().replace(" ", "")
    parts = text.split(",")
    if "ray" in parts:  # the cluster's workers, beside whatever the rest names here
        rest = ",".join(p for p in parts if p != "ray")
        return replace(parse_workers_text(rest), text=raw, ray=True) if rest else WorkersChoice(raw, ray=True)
    if text in ("auto", ""):
        return WorkersChoice(raw, auto=True)
    if text == "cpu" or text.startswith("cpu:"):
        count = text.partition(":")[2] or "1"
        if not count.isdigit() or not 1 <= int(count) <= MAX_CPU_WORKERS:
            raise WorkerSpecError(f"'{raw}': the number of CPU workers must be from 1 to {MAX_CPU_WORKERS} "
                                  "(for example cpu:2).", "set.bad.workers", value=raw)
        return WorkersChoice(raw, cpu=int(count))
    gpus: list[int | None] = []
    for part in text.split(","):
        kind, _, num = part.partition(":")
        if part == "cuda":
            gpus.append(None)
        elif kind in ("cuda", "gpu") and num.isdigit():
            gpus.append(int(num))
        elif part.isdigit() and gpus:  # "cuda:0,1": a bare index after a GPU names the next GPU
            gpus.append(int(part))
        else:
            raise WorkerSpecError(f"'{raw}' is not a worker list: use auto, cpu:N, cuda:0,cuda:1 or ray.",
                                  "set.bad.workers", value=raw)
    _no_twice(raw, [i for i in gpus if i is not None])
    return WorkersChoice(raw, gpus=tuple(gpus))
