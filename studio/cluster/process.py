"""A worker actor as the pool sees a worker process: the parts of `multiprocessing.Process` and of a
multiprocessing context the pool uses, so Ray actors take jobs from the same queue and scheduler.

Two threads per actor relay its pipes. One forwards the pool's messages to `deliver`, each awaited so
they arrive in order (a job with the bytes of the image inputs it names that this actor lacks); EOF
on the control pipe (the pool is gone or reaping) kills the actor, as EOF makes a local worker exit. The other long-polls the actor and writes each image's PNG bytes
atomically into the gallery before the pool hears `done`, so `done` still means a durable file; where
it writes is what the job said when it left (`Outputs`), never a path a node's message names. The
sentinel reaches EOF once the actor has ended: stopped, killed, or lost with its node.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
from itertools import count
from multiprocessing.connection import Connection
from typing import Any

from studio.cluster import wire
from studio.cluster.actor import EXITED, Relayed, WorkerActor
from studio.cluster.inputs import InputShipper
from studio.cluster.placement import ActorPlace
from studio.core.atomic import atomic_path

log = logging.getLogger(__name__)

POLL_S = 1.0  # the long poll's wait: an idle actor costs one call a second
KILLED = -9  # the exit code of an actor that died without saying (killed, its node gone): "signal 9"
MAX_CONCURRENCY = 4  # calls an actor serves at once: the long poll, deliveries, `where`
ENDED_ELSEWISE = ("cancelled", "revoked", "failed", "helped")  # a job's other last words: its path is let go

_remote_class: Any = None
_started = count()


def remote_class() -> Any:
    """WorkerActor as a Ray actor class (made once, on first use)."""
    global _remote_class
    if _remote_class is None:
        import ray

        _remote_class = ray.remote(WorkerActor)
    return _remote_class


class Outputs:
    """Where each job sent to one actor must land, kept on the studio's side by job id.

    A node's `done` names a path too, but a node is another machine: a compromised one could name
    any file the studio's user may write (~/.bashrc). So the PNG goes only where the studio asked,
    and a `done` for a job never sent to this actor writes nothing and is not passed on."""

    def __init__(self) -> None:
        self._paths: dict[str, str] = {}
        self._lock = threading.Lock()

    def sent(self, msg: Any) -> None:
        """Note a message on its way to the actor (a job: its output path)."""
        if wire.is_job(msg):
            fields = wire.job_fields(msg)
            with self._lock:
                self._paths[fields["job_id"]] = fields["output_path"]

    def land(self, item: Relayed) -> Any | None:
        """The message for the pool; a `done`'s PNG is in the gallery, durable, before it is passed on.
        None: a `done` of a job this actor was never given (nothing written)."""
        msg = item.message
        done = wire.done_path(msg)
        if done is None:
            if wire.kind(msg) in ENDED_ELSEWISE:
                with self._lock:
                    self._paths.pop(wire.payload(msg).get("job_id", ""), None)
            return msg
        job_id = done[0]
        with self._lock:
            path = self._paths.pop(job_id, None)
        if path is None:
            return None
        msg = wire.with_path(msg, path)
        if item.png is None:
            return msg
        try:
            with atomic_path(path) as tmp:
                tmp.write_bytes(item.png)
        except OSError as exc:  # a full disk, a file where the folder should be
            return wire.failed(job_id, wire.busy_s(msg), exc, f"Could not write {path}: {exc}")
        return msg


class ActorProcess:
    """One worker actor behind the interface of a worker process (start, sentinel, join, kill, exitcode)."""

    def __init__(self, target: Any, args: tuple[Any, ...], name: str, daemon: bool = False, *,
                 place: ActorPlace) -> None:
        del target, daemon  # the actor runs the pool's worker loop itself, on its node
        cfg, self._control, self._results = args
        self.name, self.place = name, place
        self._cfg = {**cfg, "name": place.name, "device": place.device, "threads": place.threads}
        self.sentinel, self._ended = mp.Pipe(duplex=False)
        self.exitcode: int | None = None
        self.pid: int | None = None  # the worker process on its node, once ready
        self.actor: Any = None
        self._inputs = InputShipper()
        self._outputs = Outputs()
        self._uplink = threading.Thread(target=self._poll_loop, name=f"ray-up-{place.name}", daemon=True)

    def start(self) -> None:
        # Like a child process, the relays hold their own copies of the pipe ends: the pool closes its
        # copies after start, and EOF on the control pipe still means the pool is gone.
        self._control = Connection(os.dup(self._control.fileno()), writable=False)
        self._results = Connection(os.dup(self._results.fileno()), readable=False)
        # named, so `ray list actors` (and a test) can find it: the place, this studio, the how-manieth
        self.actor_name = f"{self.place.name} {os.getpid()}.{next(_started)}"
        self.actor = remote_class().options(name=self.actor_name, max_concurrency=MAX_CONCURRENCY,
                                            max_restarts=0, **self.place.options()).remote(self._cfg)
        threading.Thread(target=self._deliver_loop, name=f"ray-down-{self.place.name}", daemon=True).start()
        self._uplink.start()

    def is_alive(self) -> bool:
        return self._uplink.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._uplink.ident is not None:
            self._uplink.join(timeout)

    def kill(self) -> None:
        """End the actor now (its worker process sees EOF and exits); the uplink then reports it."""
        import ray

        if self.actor is not None:
            try:
                ray.kill(self.actor, no_restart=True)
            except Exception:  # already gone
                pass

    terminate = kill

    def _deliver_loop(self) -> None:
        import ray

        while True:
            try:
                msg = self._control.recv()
            except Exception:  # EOF: the pool closed its end
                break
            inputs = self._inputs.for_job(wire.job_fields(msg)) if wire.is_job(msg) else None
            self._outputs.sent(msg)
            try:
                ray.get(self.actor.deliver.remote(msg, inputs or None))
            except ray.exceptions.RayError as exc:
                gone = ray.exceptions.RayActorError
                if isinstance(exc, gone) and not isinstance(exc, ray.exceptions.ActorUnavailableError):
                    return  # the actor is gone: the uplink tells the pool
                # It lives (or may come back), without this message: end it, so the pool sees the worker
                # go and hands its jobs on, rather than leave a job "sent" for good and drop the rest.
                log.warning("%s: a message to the node failed (%s); ending its worker", self.place.name,
                            _first_line(exc))
                break
        self.kill()

    def _poll_loop(self) -> None:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        code, heard = KILLED, False
        try:
            while True:
                try:
                    batch = ray.get(self.actor.poll.remote(POLL_S))
                except ActorUnavailableError:  # a network hiccup: the actor may come back
                    continue
                except RayActorError as exc:
                    if not heard:  # it never got as far as its worker: say why, as a worker that cannot load
                        self._results.send(wire.fatal(f"{self.place.name} could not start: {_first_line(exc)}"))
                    break
                for item in batch:
                    if isinstance(item, tuple) and item[0] == EXITED:
                        code = item[1]
                        return
                    heard = True
                    self.pid = wire.ready_pid(item.message) or self.pid
                    landed = self._outputs.land(item)
                    if landed is not None:
                        self._results.send(landed)
        except (OSError, ValueError):  # the pool closed its end of the results pipe
            pass
        finally:
            self.exitcode = code
            self._results.close()
            self._ended.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:200]


class RayContext:
    """What the pool asks of a multiprocessing context: worker actors for the names in `places`, and
    `local`'s processes (a spawn context by default) for every other worker, so one pool runs both."""

    in_process = False

    def __init__(self, places: list[ActorPlace], local: Any = None) -> None:
        self._places = {p.name: p for p in places}
        self._local = local or mp.get_context("spawn")

    def Process(self, target: Any, args: tuple[Any, ...], name: str, daemon: bool = False) -> Any:  # noqa: N802
        place = self._places.get(args[0]["name"])
        if place is None:
            return self._local.Process(target=target, args=args, name=name, daemon=daemon)
        return ActorProcess(target, args, name, daemon, place=place)

    def Pipe(self, duplex: bool = True) -> tuple[Any, Any]:  # noqa: N802 - multiprocessing's name
        return self._local.Pipe(duplex)
