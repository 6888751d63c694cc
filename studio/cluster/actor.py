"""The worker actor: on a cluster node, one local worker process (pool/worker.py's `worker_main`, the
very loop and Engine the pool runs on this machine), relayed to the studio through Ray.

The actor holds the worker's two pipes as the pool would. Jobs arrive by `deliver`, everything the
worker says leaves by `poll` (a long poll, so step events come back as they happen). Machines share
no disk: the worker writes each PNG to a node-local scratch folder (in memory where /dev/shm exists),
and `poll` hands the file's bytes back with its `done`, a reply Ray carries through its object store;
the studio writes them into its gallery. Image inputs come the other way, beside the job that names
them (cluster/inputs.py). When the actor dies, the worker sees EOF on its control pipe and exits, as
it does when the pool's process dies.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

from studio.cluster import wire
from studio.cluster.inputs import land
from studio.cluster.node_model import controlnet_here, resolve_here

EXITED = "exited"  # poll's last item: ("exited", exit code)


@dataclass(frozen=True)
class Relayed:
    """One worker message on its way to the studio; `png` is the image of a `done`."""

    message: Any
    png: bytes | None = None


def scratch_root() -> str:
    """Where the worker's PNGs wait to be sent: memory-backed when the system has /dev/shm."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else tempfile.gettempdir()


class WorkerActor:
    """Runs on a node (created as a Ray actor by cluster/process.py); `cfg` is the pool's worker cfg."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self._out: queue.Queue[Relayed | tuple[str, int]] = queue.Queue()
        self._names = count()
        self._scratch = tempfile.mkdtemp(prefix="zaoxiang-ray-", dir=scratch_root())
        self._proc: Any = None
        self._control: Any = None
        found = resolve_here(cfg["model_path"], cfg["model_name"])
        if found.path is None:  # say why like a worker that cannot load, and never take a job
            self._out.put(Relayed(wire.fatal(found.message)))
            self._out.put((EXITED, 3))
            return
        cfg = {**cfg, "model_path": found.path, "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
        from studio.pool.worker import worker_main

        ctx = mp.get_context("spawn")
        child_control, self._control = ctx.Pipe(duplex=False)
        results, child_results = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=worker_main, args=(cfg, child_control, child_results),
                                 name=f"zaoxiang-worker-{cfg['name']}", daemon=True)
        self._proc.start()
        child_control.close()
        child_results.close()
        threading.Thread(target=self._relay, args=(results,), name="relay", daemon=True).start()

    def where(self) -> dict[str, Any]:
        """This actor's host, Ray node, process, worker process (a test kills one) and scratch folder."""
        import ray

        return {"host": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id(),
                "pid": os.getpid(), "worker_pid": self._proc.pid if self._proc is not None else None,
                "scratch": self._scratch}

    def deliver(self, msg: Any, inputs: dict[str, bytes] | None = None) -> None:
        """One message from the pool to the worker (a job is pointed at the scratch folder first);
        `inputs`: image inputs the job reads, by hash, put into this node's inputs folder before it."""
        if self._control is None:
            return
        if inputs:
            land(inputs)
        if wire.is_job(msg):
            msg = wire.with_job(msg, controlnet_here(wire.job_fields(msg)))
            # the studio keeps where the PNG goes (cluster/process.py); its `done` names the scratch file
            msg = wire.with_output(msg, os.path.join(self._scratch, f"{next(self._names)}.png"))
        try:
            self._control.send(msg)
        except (OSError, ValueError):  # the worker is gone: the relay reports its exit
            pass

    def poll(self, timeout_s: float) -> list[Any]:
        """What the worker said since the last poll; waits up to `timeout_s` for the first message."""
        try:
            items = [self._out.get(timeout=timeout_s)]
        except queue.Empty:
            return []
        while True:
            try:
                items.append(self._out.get_nowait())
            except queue.Empty:
                return items

    def _relay(self, results: Any) -> None:
        while True:
            try:
                msg = results.recv()
            except Exception:  # EOF (the worker ended) or a message torn by its death
                break
            done = wire.done_path(msg)
            if done is None:
                self._out.put(Relayed(msg))
                continue
            job_id, scratch = done
            try:
                png = Path(scratch).read_bytes()
                os.unlink(scratch)
            except OSError as exc:
                self._out.put(Relayed(wire.failed(job_id, wire.busy_s(msg), exc, f"PNG lost on the node: {exc}")))
                continue
            self._out.put(Relayed(msg, png))
        self._proc.join(5.0)
        shutil.rmtree(self._scratch, ignore_errors=True)
        self._out.put((EXITED, self._proc.exitcode if self._proc.exitcode is not None else -9))
