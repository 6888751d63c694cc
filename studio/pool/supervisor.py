"""The worker processes' lives: spawn, pipes, readiness, death, hang kill, back-off and reaping.

The supervisor knows processes and pipes, never requests: the pool (its only caller, under the
pool's lock) decides what a death means for the jobs a worker held. Workers are spawned, never
forked, so a child starts without the parent's threads and locks; each gets its own two pipes (no
shared queue whose lock a SIGKILLed worker could take down with it). A `context` other than
multiprocessing's (pool/inline.py) runs the same worker loop on threads instead.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from studio.pool.protocol import Fatal, Message, Ready, SlotState, Stop, Warming
from studio.pool.spec import WorkerSpec
from studio.pool.speed import Shape, Size, SpeedModel
from studio.pool.worker import worker_main  # light: torch is imported only inside the child

MAX_LOAD_FAILURES = 3  # a worker that cannot load the model this many times in a row gives up
# A running job that sends no step for this long is taken as a hung worker (a wedged driver, a deadlock):
# the worker is killed and the job requeued like after a crash. The limit is 10 of the worker's
# measured steps, never under STALL_FLOOR_S (ZAOXIANG_STALL_S overrides the floor).
STALL_FLOOR_S = 120.0
STALL_STEPS = 10
# A group's first split image (its warm-up, or an image of a group never warmed) compiles graphs of its
# own before its first step: a member may be silent that long, up to this many times its compile at load.
COMPILE_SLACK = 2.0
# a first split compile may find the split graphs cold though the worker's own load hit a warm cache:
# it gets at least this many stall floors (the old collective timeout's 600 s at the default floor)
COMPILE_FLOORS = 5.0


def backoff_s(failures: int) -> float:
    """Seconds before restarting a worker that died `failures` times in a row."""
    return min(30.0, 0.5 * 2 ** max(0, failures - 1))


def stall_floor() -> float:
    """STALL_FLOOR_S, or ZAOXIANG_STALL_S when it holds a positive number of seconds."""
    try:
        value = float(os.environ.get("ZAOXIANG_STALL_S", ""))
    except ValueError:
        return STALL_FLOOR_S
    return value if value > 0 else STALL_FLOOR_S


@dataclass
class Slot:
    """One worker place: its process and pipes (the supervisor's) and its measured record (the pool's)."""

    spec: WorkerSpec
    state: SlotState = SlotState.NOT_STARTED
    warm_pct: float | None = None  # compile progress while warming (None: not reported)
    proc: Any = None
    control: Connection | None = None
    results: Connection | None = None
    assigned: list[str] = field(default_factory=list)  # job ids in the order sent
    speed: SpeedModel = field(default_factory=SpeedModel)
    info: dict[str, Any] = field(default_factory=dict)  # the READY message's payload
    profile: str | None = None  # the memory profile it runs now (READY's, then what a retry asked for)
    images_done: int = 0
    busy_s: float = 0.0
    restarts: int = 0
    failures: int = 0  # deaths in a row without a finished job
    fatal: dict[str, Any] | None = None
    respawn_at: float | None = None
    last_error: str = ""
    hung: str = ""  # why the supervisor killed it for not responding, until it is respawned
    last_request: str | None = None  # the request of its latest job (its GPU busy share in `status`)

    @property
    def gone(self) -> bool:
        return self.state in (SlotState.FAILED, SlotState.STOPPED)


@dataclass(frozen=True)
class Death:
    """How a worker ended: its exit code and a few words for people ("signal 9", "no progress for 4 s")."""

    exitcode: int | None
    how: str
    hung: bool


def reap(procs: dict[int, Any], controls: dict[int, Any], timeout: float = 3.0) -> None:
    """Stop worker processes on every exit path: EOF on their control pipe, join, SIGTERM, SIGKILL."""
    for conn in list(controls.values()):
        try:
            conn.close()
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    for proc in list(procs.values()):
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in list(procs.values()):
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


class Supervisor:
    """The workers' processes. `cfg` goes to every child; `profiles`: one memory profile per worker
    (overriding cfg's), as the bench uses to cap one card."""

    def __init__(self, specs: list[WorkerSpec], cfg: dict[str, Any], profiles: list[str | None],
                 *, context: Any = None, target: Callable[..., None] | None = None) -> None:
        self.slots = [Slot(spec) for spec in specs]
        self.closing = False
        self._cfg, self._profiles = cfg, profiles
        self._ctx = context or mp.get_context("spawn")
        self._target = target or worker_main
        # threads (pool/inline.py) share this process's pipe ends and cannot be killed: no hang detection
        self.in_process = getattr(self._ctx, "in_process", False)
        self.stall_floor_s = stall_floor()
        self._wake_r, self._wake_w = mp.Pipe(duplex=False)
        self._procs: dict[int, Any] = {}
        self._controls: dict[int, Any] = {}
        self._finalizer = weakref.finalize(self, reap, self._procs, self._controls)

    # ----------------------------------------------------------------- spawn and talk

    def spawn(self, i: int) -> None:
        slot = self.slots[i]
        parent_control, child_control = self._ctx.Pipe(duplex=False)  # (reader, writer)
        parent_results, child_results = self._ctx.Pipe(duplex=False)
        spec = slot.spec
        cfg = {"index": spec.index, "name": spec.name, "device": spec.device,
               "visible_devices": spec.visible_devices, "threads": spec.threads, **self._cfg}
        if i < len(self._profiles):
            cfg["memory_profile"] = self._profiles[i]
        proc = self._ctx.Process(target=self._target, args=(cfg, parent_control, child_results),
                                 name=f"zaoxiang-worker-{spec.name}", daemon=False)
        proc.start()
        if not self.in_process:
            parent_control.close()  # the child's copies are the only ones now: our EOF is its signal
            child_results.close()
        slot.proc, slot.control, slot.results = proc, child_control, parent_results
        slot.state, slot.fatal, slot.respawn_at, slot.hung, slot.warm_pct = SlotState.STARTING, None, None, "", None
        self._procs[i], self._controls[i] = proc, child_control

    def spawn_all(self) -> None:
        """Every worker at once: they load in parallel."""
        for i in range(len(self.slots)):
            self.spawn(i)

    def send(self, slot: Slot, msg: Message) -> bool:
        if slot.control is None:
            return False
        try:
            slot.control.send(msg)
            return True
        except (OSError, ValueError):  # dying worker: its sentinel will tell the loop
            return False

    def stop_all(self) -> None:
        """Ask every worker to stop (they finish writing what they made); a slot never started is stopped."""
        self.closing = True
        for slot in self.slots:
            self.send(slot, Stop())
            if slot.proc is None:
                slot.state = SlotState.STOPPED

    def wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"!")
        except OSError:
            pass

    @property
    def all_gone(self) -> bool:
        return all(s.proc is None for s in self.slots)

    def note(self, slot: Slot, msg: Warming | Ready | Fatal) -> None:
        """Readiness: a worker compiling (WARMING), loaded and warm (READY: its warm-up seeds the speed
        model), or unable to load (FATAL: kept until its process ends, to decide the restart)."""
        if isinstance(msg, Warming):
            slot.warm_pct = msg.pct
            if slot.state == SlotState.STARTING:
                slot.state = SlotState.WARMING
        elif isinstance(msg, Ready):
            slot.state, slot.info, slot.warm_pct, slot.profile = SlotState.READY, msg.payload(), None, msg.memory_profile
            if slot.speed.per_cost is None:
                slot.speed.seed_warmup(Size(**msg.warmup), msg.warmup_s, msg.warmup_step_s, msg.warmup_tail_s)
        else:
            slot.fatal, slot.last_error = msg.payload(), msg.message

    # ----------------------------------------------------------------- waiting

    def wait(self, due: list[float]) -> tuple[list[int], list[int]]:
        """Block until a worker speaks or ends, `wake()` is called, or the earliest of `due` (monotonic)
        and the next respawn; returns (workers with messages, workers whose process ended)."""
        waitables: list[Any] = [self._wake_r]
        owner: dict[Any, tuple[bool, int]] = {}
        for i, slot in enumerate(self.slots):
            if slot.results is not None:
                waitables.append(slot.results)
                owner[slot.results] = (False, i)
            if slot.proc is not None:
                waitables.append(slot.proc.sentinel)
                owner[slot.proc.sentinel] = (True, i)
        due = due + [s.respawn_at for s in self.slots if s.respawn_at is not None]
        timeout = max(0.0, min(due) - time.monotonic()) if due else None
        if self.closing:
            timeout = 0.2 if timeout is None else min(timeout, 0.2)
        fired = wait(waitables, timeout)
        if self._wake_r in fired:
            while self._wake_r.poll():
                self._wake_r.recv_bytes()
        hits = [owner[obj] for obj in fired if obj in owner]
        return [i for dead, i in hits if not dead], [i for dead, i in hits if dead]

    def drain(self, i: int) -> list[Message]:
        """Every message waiting in worker i's pipe (none once it is closed or torn)."""
        slot, out = self.slots[i], []
        conn = slot.results
        while conn is not None:
            try:
                if not conn.poll():
                    break
                out.append(conn.recv())
            except Exception:  # EOF or a message torn by a kill: nothing more comes from this one
                conn.close()
                slot.results = conn = None
        return out

    # ----------------------------------------------------------------- death, hang, restart

    def bury(self, i: int) -> Death | None:
        """Join a worker whose process ended and close its pipes; None if there was none (or closing)."""
        slot = self.slots[i]
        proc = slot.proc
        if proc is None:
            return None
        proc.join(1.0)
        self.forget(slot)
        self._procs.pop(i, None)
        self._controls.pop(i, None)
        if self.closing:
            return None
        code = proc.exitcode
        how = slot.hung or (f"signal {-code}" if code is not None and code < 0 else f"exit code {code}")
        return Death(code, how, bool(slot.hung))

    def forget(self, slot: Slot) -> None:
        for conn in (slot.control, slot.results):
            if conn is not None:
                conn.close()
        slot.control = slot.results = None
        slot.proc = None
        if self.closing:
            slot.state = SlotState.STOPPED

    def after_death(self, slot: Slot, death: Death) -> float | None:
        """Schedule the restart with back-off: its delay in seconds, or None when the worker gives up
        (it could not load the model MAX_LOAD_FAILURES times in a row)."""
        slot.failures += 1
        if slot.fatal is not None and slot.failures >= MAX_LOAD_FAILURES:
            slot.state = SlotState.FAILED
            return None
        delay = backoff_s(slot.failures)
        slot.state, slot.respawn_at = SlotState.RESTARTING, time.monotonic() + delay
        if slot.fatal is None:
            slot.last_error = f"died ({death.how})"
        return delay

    def respawn_due(self, now: float) -> None:
        for i, slot in enumerate(self.slots):
            if slot.respawn_at is not None and slot.respawn_at <= now and not self.closing:
                slot.restarts += 1
                self.spawn(i)

    def stall_deadline(self, slot: Slot, shape: Shape, last_seen: float,
                       compiling: bool = False) -> tuple[float | None, float]:
        """When the running job `shape` (last heard of at `last_seen`) counts as hung, and the limit
        (`compiling`: a group's first split image, allowed COMPILE_SLACK times the worker's compile)."""
        if slot.proc is None or slot.hung or self.in_process or self.closing:
            return None, 0.0
        step_s = slot.speed.estimate(shape) / max(1, shape.steps)
        limit = max(self.stall_floor_s, STALL_STEPS * step_s)
        if compiling:
            limit = max(limit, COMPILE_SLACK * float(slot.info.get("compile_s") or 0.0),
                        COMPILE_FLOORS * self.stall_floor_s)
        return last_seen + limit, limit

    def kill_hung(self, slot: Slot, limit: float, where: str = "") -> None:
        """Kill a silent worker; its sentinel wakes the loop, and its death requeues the job."""
        slot.hung = f"no progress for {limit:.0f} s{where}"
        slot.last_error = slot.hung
        slot.proc.kill()

    def kill_member(self, slot: Slot, why: str) -> None:
        """Kill a worker whose group broke mid-image: it may wait in a collective for a member that is
        gone. Its death restarts it like any other; `why` is what its death says."""
        slot.hung = why
        slot.last_error = why
        slot.state = SlotState.RESTARTING  # nothing more is handed to it before its death is seen
        slot.proc.kill()

    def reap(self) -> None:
        """Whatever is still alive: EOF, join, SIGTERM, then SIGKILL."""
        self._finalizer()
