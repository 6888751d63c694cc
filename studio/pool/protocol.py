"""Every message between the pool and a worker, and the states of a worker slot: one place to read.

Messages are frozen dataclasses of plain data (numbers, strings, dicts of them), pickled whole over
the pipes; each names its kind with a `Msg` member, so the receiving side dispatches on an Enum,
never on a bare string. The child imports this module before torch, so it stays light.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from studio.core.i18n import SaidError

SENT = "sent"  # a job state of the pool's own, beside core's: handed to a worker's pipe, not started yet


class Msg(str, enum.Enum):
    """Every kind of message. Parent to worker: JOB, REVOKE, STOP, WARM_GROUP. Worker to parent: the rest.

    A job split over a group (studio/pool/group.py) goes to every member; the first (rank 0) answers
    as for any job, each other member only with HELPED when its part is over."""

    JOB = "job"
    REVOKE = "revoke"
    STOP = "stop"
    WARMING = "warming"
    READY = "ready"
    FATAL = "fatal"
    STARTED = "started"
    STEP = "step"
    PREVIEW = "preview"
    DONE = "done"
    CANCELLED = "cancelled"
    REVOKED = "revoked"
    FAILED = "failed"
    STOPPED = "stopped"
    HELPED = "helped"
    WARM_GROUP = "warm_group"


class SlotState(str, enum.Enum):
    """Where a worker slot is in its life; READY shows as "idle" or "busy" in `status`."""

    NOT_STARTED = "not started"
    STARTING = "starting"
    WARMING = "warming"
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


class RevokeReason(str, enum.Enum):
    """Why the pool takes back a job it sent: a cancel ends it, a pause puts it back in the queue."""

    CANCEL = "cancel"
    PAUSE = "pause"


class ErrorKind(str, enum.Enum):
    """What went wrong with a job, as the pool acts on it (OOM: retry one memory profile lower)."""

    OOM = "oom"
    NON_FINITE = "non_finite"
    ERROR = "error"
    WORKER_CRASH = "worker_crash"  # decided by the pool: the job kept killing workers
    NO_WORKER = "no_worker"  # decided by the pool: no worker is left to run it


class Message:
    """Base of every message: `kind` says which one; `payload()` is its fields as an event's payload."""

    kind: ClassVar[Msg]

    def payload(self) -> dict[str, Any]:
        return {k: v.value if isinstance(v, enum.Enum) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def pick(cls, data: dict[str, Any]) -> Any:
        """Build from a dict that may hold more keys than this message has (a save_image result)."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


# ----------------------------------------------------------------- parent -> worker

@dataclass(frozen=True)
class RunJob(Message):
    """One job to run; `job` is the job as plain data, `memory_profile` the profile it must run under
    (None: whatever the worker runs; set after an out-of-memory retry)."""

    kind: ClassVar[Msg] = Msg.JOB
    job: dict[str, Any]
    memory_profile: str | None = None
    group: dict[str, Any] | None = None  # a GroupSpec: this image is split over several workers


@dataclass(frozen=True)
class Revoke(Message):
    kind: ClassVar[Msg] = Msg.REVOKE
    job_id: str
    reason: RevokeReason


@dataclass(frozen=True)
class WarmGroup(Message):
    """Join this group and compile the split path now, while idle (each member answers HELPED with
    `job_id` = `warm_id(group)`), so a person's first split image does not wait for the compiler."""

    kind: ClassVar[Msg] = Msg.WARM_GROUP
    group: dict[str, Any]


def warm_id(group_id: int) -> str:
    return f"warm-group-{group_id}"


@dataclass(frozen=True)
class Stop(Message):
    """Finish writing what is made, then exit (EOF on the control pipe means the same, at once)."""

    kind: ClassVar[Msg] = Msg.STOP


# ----------------------------------------------------------------- worker -> parent

@dataclass(frozen=True)
class Warming(Message):
    """Compiling before ready (or again after a reload): how far, and which stage."""

    kind: ClassVar[Msg] = Msg.WARMING
    pct: float | None = None
    stage: str = ""


@dataclass(frozen=True)
class Ready(Message):
    """Loaded and warm; `warmup` (width, height, steps) with its steady step and encode + decode
    seconds seed the speed model (`warmup_s`, the whole image, also holds one-time costs)."""

    kind: ClassVar[Msg] = Msg.READY
    pid: int
    device: str
    memory_gb: float | None
    load_s: float
    warmup_s: float
    compile_s: float
    warmup: dict[str, int]
    threads: int
    memory_profile: str
    warmup_step_s: float | None = None  # one steady step of the warm-up (pool/speed.py's StepClock)
    warmup_tail_s: float = 0.0  # the warm-up's encode + decode


@dataclass(frozen=True)
class Fatal(Message):
    """The worker cannot load; it exits after sending this."""

    kind: ClassVar[Msg] = Msg.FATAL
    message: str
    error: ErrorKind = ErrorKind.ERROR
    exception: str = ""


@dataclass(frozen=True)
class Started(Message):
    kind: ClassVar[Msg] = Msg.STARTED
    job_id: str
    time: float  # wall clock


@dataclass(frozen=True)
class Step(Message):
    """A step done; every member of a split image says its own (the pool tells a silent one by them)."""

    kind: ClassVar[Msg] = Msg.STEP
    job_id: str
    step: int
    steps: int


@dataclass(frozen=True)
class Preview(Message):
    """A cheap look at the image after `step` (studio.engine.preview): a small JPEG, a few a second."""

    kind: ClassVar[Msg] = Msg.PREVIEW
    job_id: str
    step: int
    steps: int
    width: int
    height: int
    jpeg: bytes

    def event(self) -> dict[str, Any]:
        """The PREVIEW event's own fields: events stay JSON-safe, so the JPEG goes as a data URL."""
        return {"step": self.step, "steps": self.steps, "width": self.width, "height": self.height,
                "image": "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")}


@dataclass(frozen=True)
class Done(Message):
    """The PNG is durable (fsynced and renamed). busy_s: the GPU thread's time; gpu_s: the engine's."""

    kind: ClassVar[Msg] = Msg.DONE
    job_id: str
    request_id: str
    index: int
    path: str
    seed: int
    worker: str
    elapsed_s: float
    busy_s: float
    finished: float  # wall clock
    gpu_s: float | None = None
    write_s: float | None = None
    png_s: float | None = None
    sync_s: float | None = None
    compiled: bool | None = None  # a split image during which torch compiled graphs: not a measurement

    def result(self) -> dict[str, Any]:
        """What a job's result and its JOB_DONE event carry (the timings the worker measured)."""
        out = self.payload()
        out.pop("finished")
        return {k: v for k, v in out.items() if v is not None or k not in ("gpu_s", "write_s", "png_s", "sync_s", "compiled")}


@dataclass(frozen=True)
class Cancelled(Message):
    kind: ClassVar[Msg] = Msg.CANCELLED
    job_id: str
    busy_s: float


@dataclass(frozen=True)
class Revoked(Message):
    """A revoked job the worker had not started: given back untouched."""

    kind: ClassVar[Msg] = Msg.REVOKED
    job_id: str
    reason: RevokeReason


@dataclass(frozen=True)
class Failed(Message):
    kind: ClassVar[Msg] = Msg.FAILED
    job_id: str
    busy_s: float
    error: ErrorKind
    message: str
    exception: str = ""
    # a `SaidError`'s strings key and arguments, so a window says `message` in its own language
    message_key: str = ""
    message_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Helped(Message):
    """A member other than the first is done with its part of a split image, or any member with a group
    warm-up (`ok`: without an error)."""

    kind: ClassVar[Msg] = Msg.HELPED
    job_id: str
    busy_s: float
    ok: bool = True
    message: str = ""  # why not, when not ok
    # a group warm-up's answer: one steady step at (width, height), split and on this member alone
    width: int = 0
    height: int = 0
    split_step_s: float | None = None
    single_step_s: float | None = None


@dataclass(frozen=True)
class Stopped(Message):
    kind: ClassVar[Msg] = Msg.STOPPED


@dataclass(frozen=True)
class ErrorInfo:
    """An exception as plain data: a kind the pool acts on and a message a person can read."""

    error: ErrorKind
    message: str
    exception: str = ""
    message_key: str = ""  # a `SaidError`'s key and arguments (studio/core/strings.py)
    message_args: dict[str, Any] = field(default_factory=dict)

    def failed(self, job_id: str, busy_s: float) -> Failed:
        """The job's FAILED message saying this error."""
        return Failed(job_id, busy_s, self.error, self.message, self.exception, self.message_key,
                      dict(self.message_args))


def describe_error(exc: BaseException) -> ErrorInfo:
    """Classify an exception without importing torch (its OOM error is matched by name)."""
    name = type(exc).__name__
    text = str(exc) or name
    if name == "OutOfMemoryError" or "out of memory" in text.lower():
        kind = ErrorKind.OOM
    elif name == "NonFiniteOutput":
        kind = ErrorKind.NON_FINITE
    else:
        kind = ErrorKind.ERROR
    if isinstance(exc, SaidError):
        return ErrorInfo(kind, text, name, exc.key, dict(exc.fmt))
    return ErrorInfo(kind, text, name)
