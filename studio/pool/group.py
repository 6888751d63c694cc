"""One image over several workers: when the pool forms a group, and how a worker joins and leaves one.

Pool side (no torch; the pool calls it under its lock): `GroupBook` picks the members and keeps one
group id per set of members, so workers that split again reuse their process group, and a fault
(a member died, a collective failed) makes the next split form a fresh one. `SplitChooser` is the
"auto" setting: a size splits when its measured split time beats one worker's; the group's warm-up,
before its workers say ready, compiles the split and times both ways at the first warm size, and a
size never seen is tried split once to find out.

Worker side: `Membership` joins torch.distributed lazily, on the first split job it gets (gloo on
CPU, NCCL on CUDA; rank 0 hosts the rendezvous on a port the pool chose), turns the engine's split
on for that image only, and lets every member agree on a cancel at each step.
"""

from __future__ import annotations

import enum
import os
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

from studio.pool.speed import Shape

SPLIT_DECODE_ENV = "ZAOXIANG_SPLIT_DECODE"  # "0": every member decodes the whole latent (shared by default)
SPLIT_GRAPHS_ENV = "ZAOXIANG_SPLIT_STEP_GRAPHS"  # "1": workers keep (bf16: make) step graphs, split ones too
MAX_GROUP = 8  # Ulysses splits heads and the padded sequence evenly: powers of two up to here
# a collective waits this long for a member (its first split image compiles): only the outer net, as the
# pool's stall deadline (split_dispatch.SplitDispatch._stalled) stops a silent member long before
JOIN_TIMEOUT_S = 600.0
# members meet within this, else joining fails (and the pool makes the image alone); tests shorten it
RENDEZVOUS_S = float(os.environ.get("ZAOXIANG_SPLIT_RENDEZVOUS_S", "") or 60.0)
# a start-up member said ready first and waits this long at most for the others (then says ready alone)
HOLD_S = float(os.environ.get("ZAOXIANG_SPLIT_HOLD_S", "") or 60.0)
SPEED_SPREAD = 1.25  # members whose warm-up steps differ more than this never pay as a group ("auto")
CPU_AUTO_ENV = "ZAOXIANG_TEST_AUTO_CPU_GROUP"  # test-only: "1" lets "auto" group CPU workers (CI has no GPUs)


def cpu_groups_allowed() -> bool:
    """CPU workers share the machine's cores and memory: only "always" groups them (tests: CPU_AUTO_ENV)."""
    return os.environ.get(CPU_AUTO_ENV) == "1"


def kinds_differ(names: list[str | None]) -> str:
    """Why GPUs known by name before they load (NVML) cannot pay as one group, or "" (alike, or unknown)."""
    known = sorted({n for n in names if n})
    return "GPUs of different kinds: " + ", ".join(known) if len(known) > 1 else ""


def mismatch(infos: list[dict[str, Any]], *, speeds: bool = True) -> str:
    """Why these workers (their READY payloads) cannot pay as one group, or "": a split image runs at
    the slowest member's pace, so "auto" groups only one kind of GPU with one memory and about one
    speed (`speeds` False: CPU workers, whose steps vary with the machine's load, not with the worker)."""
    names = sorted({str(info.get("device")) for info in infos})
    if len(names) > 1:
        return "GPUs of different kinds: " + ", ".join(names)
    memory = sorted({info.get("memory_gb") for info in infos}, key=str)
    if len(memory) > 1:
        return "GPUs with different memory: " + ", ".join(f"{m} GiB" for m in memory)
    steps = [info.get("warmup_step_s") for info in infos]
    if speeds and all(isinstance(t, (int, float)) and t > 0 for t in steps) and max(steps) > SPEED_SPREAD * min(steps):
        return f"GPUs of different speeds (warm-up steps {min(steps):.4f}-{max(steps):.4f} s)"
    return ""


class SplitMode(str, enum.Enum):
    """The setting "one image on several GPUs"."""

    AUTO = "auto"
    NEVER = "never"
    ALWAYS = "always"


@dataclass(frozen=True)
class GroupSpec:
    """What each member of a group is told with its job: where to meet, who it is, who the others are."""

    group_id: int
    port: int
    rank: int
    world: int
    members: tuple[str, ...]  # worker names, rank order
    devices: tuple[str, ...]
    addr: str = "127.0.0.1"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupSpec:
        return cls(**{**data, "members": tuple(data["members"]), "devices": tuple(data["devices"])})


def group_size(idle: int) -> int:
    """How many idle workers one image takes: the largest power of two up to MAX_GROUP (0: too few)."""
    n = 1
    while n * 2 <= min(idle, MAX_GROUP):
        n *= 2
    return n if n >= 2 else 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key(shape: Shape) -> tuple[int, int, int]:
    return (shape.width, shape.height, shape.steps)


@dataclass
class SplitChooser:
    """Measured split seconds per (size, steps, members); "auto" splits where that beats one worker.

    Before a size's first split image, the group's warm-up (before ready) may have timed one steady
    step both ways at that size (`step_ratio`): "auto" then follows it, so the first image a person
    asks for is already made the faster way, and is never the one that measures."""

    split_s: dict[tuple[int, int, int, int], float] = field(default_factory=dict)
    step_ratio: dict[tuple[int, int, int], float] = field(default_factory=dict)  # (w, h, members): split ÷ one
    warmed: set[int] = field(default_factory=set)  # groups whose split graphs are compiled (any size)

    def want(self, mode: SplitMode, shape: Shape, members: int, single_s: float) -> bool:
        if mode == SplitMode.NEVER:
            return False
        if mode == SplitMode.ALWAYS:
            return True
        known = self.split_s.get((*_key(shape), members))
        if known is not None:
            return known < single_s
        ratio = self.step_ratio.get((shape.width, shape.height, members))
        return ratio is None or ratio < 1.0

    def observe(self, group_id: int, shape: Shape, members: int, seconds: float, compiled: bool = False) -> None:
        """A split image's time; a group's first one compiled its graphs (unless it was warmed) and is
        not kept, nor is one during which the worker saw torch compile (`compiled`): the transformer's
        graphs serve every size, but the shared decode's may compile again at a new one."""
        if group_id not in self.warmed or compiled:
            self.warmed.add(group_id)
            return
        key = (*_key(shape), members)
        old = self.split_s.get(key)
        self.split_s[key] = seconds if old is None else old + 0.4 * (seconds - old)

    def timed(self, width: int, height: int, members: int, split_step_s: float, single_step_s: float) -> None:
        """The group warm-up's steady step at one size, split and on one member alone."""
        if split_step_s > 0 and single_step_s > 0:
            self.step_ratio[(width, height, members)] = split_step_s / single_step_s


@dataclass
class GroupBook:
    """The pool's current group: its members (slot indices) and id; a new set or a fault makes a new one."""

    members: tuple[int, ...] = ()
    group_id: int = 0
    port: int = 0

    def form(self, members: tuple[int, ...]) -> tuple[int, int]:
        """(group id, port) for these members: the same as last time unless they changed or it broke."""
        if members != self.members or not self.group_id:
            self.members, self.group_id, self.port = members, self.group_id + 1, free_port()
        return self.group_id, self.port

    def broken(self) -> None:
        self.members = ()


class Membership:
    """A worker's side of its group: the process group and the engine's split, made on first use."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.spec: GroupSpec | None = None
        self.split: Any = None
        self._votes: Any = None  # a gloo group beside NCCL's, for the cancel vote

    def join(self, spec: GroupSpec) -> Any:
        """The engine's Split for `spec`'s group (joining it first, leaving any other group)."""
        if self.spec is not None and self.spec.group_id == spec.group_id and self.split is not None:
            return self.split
        self.leave()
        import datetime

        import torch
        import torch.distributed as dist

        from studio.engine import split as split_mod

        engine = self.engine
        cuda = engine.device.type == "cuda"
        store = dist.TCPStore(spec.addr, spec.port, spec.world, spec.rank == 0,
                              timeout=datetime.timedelta(seconds=RENDEZVOUS_S))
        device = {}
        if cuda:  # NCCL binds to an indexed device ("cuda" alone is the worker's only visible GPU)
            index = engine.device.index if engine.device.index is not None else torch.cuda.current_device()
            device = {"device_id": torch.device("cuda", index)}
        dist.init_process_group("nccl" if cuda else "gloo", store=store, rank=spec.rank, world_size=spec.world,
                                timeout=datetime.timedelta(seconds=JOIN_TIMEOUT_S), **device)
        self.spec = spec
        if engine.step_graphs is not None and not os.environ.get(SPLIT_GRAPHS_ENV):
            # Split steps captured in CUDA graphs (their own graphs: step_graphs keys them apart) hold
            # the group's collectives; a capture failing on one member only would leave the others
            # waiting, so until that is measured safe they are off on a worker that splits.
            engine.step_graphs.failed = "an image split over several GPUs"
            engine.drop_step_graphs()
        # the per-step cancel vote goes host to host (gloo): on the GPU it would sync every step
        self._votes = dist.new_group(backend="gloo") if cuda else None
        self.split = split_mod.Split(engine.pipe.transformer, spec.world,
                                     vae=None if os.environ.get(SPLIT_DECODE_ENV) == "0" else engine.pipe.vae)
        return self.split

    def agree(self, flag: bool) -> bool:
        """True on every member when any member says True (a cancel must stop all of them at one step)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([1 if flag else 0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self._votes)
        return bool(t.item())

    def leave(self) -> None:
        """Tear the group down (after a fault, or to join another); the engine is whole again."""
        if self.split is not None:
            self.split.close()
            self.split = None
        if self.spec is not None:
            self.spec, self._votes = None, None
            import torch.distributed as dist

            if dist.is_initialized():
                try:
                    dist.destroy_process_group()
                except Exception:  # noqa: BLE001 - a peer already gone: nothing left to close cleanly
                    pass
