"""The worker process: pin the device, load the engine once, then run jobs until told to stop.

This module is what a spawned child imports first, so it must not import torch at module level:
CUDA_VISIBLE_DEVICES and the thread counts are set in `worker_main` before torch is loaded.

Pipes (one pair per worker, no shared queues: a worker SIGKILLed while holding a shared queue's
lock would wedge every other worker):
- control (parent -> child): ("job", dict), ("revoke", job_id, "cancel"|"pause"), ("stop",).
  A thread blocks reading it; EOF means the parent is gone (even SIGKILLed), and the child exits.
  That makes it the "death pipe" as well.
- results (child -> parent): (status, payload) tuples of plain data, never live objects.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
from typing import Any

WARMUP = dict(prompt="warm-up", negative_prompt="", width=256, height=256, steps=2, guidance=0.0, seed=0)
DELAY_ENV = "ZAOXIANG_TEST_WORKER_DELAY"  # test-only, by worker index: "0:0.25" adds 0.25 s per step,
#                                            "1:x2" makes every step of worker 1 take twice as long
HANG_ENV = "ZAOXIANG_TEST_WORKER_HANG"  # test-only: a file; the first job step that finds it removes it
#                                        and never returns (a hung worker: alive, silent)
OOM_ENV = "ZAOXIANG_TEST_WORKER_OOM"  # test-only: a file; the first job that finds it removes it and
#                                      fails as out of memory


class Slowdown:
    """Test-only knob that makes one worker slower: sleep after each step, a flat number of seconds
    or (factor - 1) x the step's own time (so the slow/fast ratio holds whatever the machine's load)."""

    def __init__(self, seconds: float = 0.0, factor: float = 1.0) -> None:
        self.seconds, self.factor = seconds, factor
        self._t = time.perf_counter()

    def __bool__(self) -> bool:
        return self.seconds > 0 or self.factor > 1

    def start(self) -> None:
        self._t = time.perf_counter()

    def after_step(self, _i: int = 0, _n: int = 0) -> None:
        pause = self.seconds + (self.factor - 1) * (time.perf_counter() - self._t)
        if pause > 0:
            time.sleep(pause)
        self._t = time.perf_counter()


def slowdown_for(index: int, env: str | None = None) -> Slowdown:
    """The worker's test slowdown from ZAOXIANG_TEST_WORKER_DELAY (none when unset or unparsable)."""
    text = os.environ.get(DELAY_ENV, "") if env is None else env
    for part in text.split(","):
        key, _, value = part.partition(":")
        if key.strip() != str(index):
            continue
        value = value.strip().lower()
        try:
            if value.startswith("x"):
                return Slowdown(factor=max(1.0, float(value[1:])))
            return Slowdown(seconds=max(0.0, float(value)))
        except ValueError:
            break
    return Slowdown()


def _take_marker(env: str) -> bool:
    """True once: when the test knob `env` names a file that this call removed (one worker wins it)."""
    marker = os.environ.get(env)
    if not marker:
        return False
    try:
        os.unlink(marker)
    except OSError:
        return False
    return True


def hang_if_told() -> None:
    """The HANG_ENV test knob: hang this worker once, for the pool's hung-worker detection."""
    if _take_marker(HANG_ENV):
        while True:
            time.sleep(60)


def error_payload(exc: BaseException) -> dict[str, str]:
    """An exception as plain data: a kind the pool acts on, and a message a person can read."""
    name = type(exc).__name__
    text = str(exc) or name
    if name == "OutOfMemoryError" or "out of memory" in text.lower():
        kind = "oom"
    elif name == "NonFiniteOutput":
        kind = "non_finite"
    else:
        kind = "error"
    return {"kind": kind, "message": text, "exception": name}


def worker_main(cfg: dict[str, Any], control: Any, results: Any) -> None:
    """Child entry point (spawned). `cfg`: index, name, device, visible_devices, threads, model_path,
    model_name, memory_profile."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
    revoked: dict[str, str] = {}

    def control_loop() -> None:
        while True:
            try:
                msg = control.recv()
            except (EOFError, OSError):
                os._exit(0)  # the parent is gone: never outlive it
            except Exception:  # a torn message: the parent died mid-send
                os._exit(0)
            if msg[0] == "job":
                jobs.put(msg[1])
            elif msg[0] == "revoke":
                revoked[msg[1]] = msg[2]
            elif msg[0] == "stop":
                jobs.put(None)

    threading.Thread(target=control_loop, name="control", daemon=True).start()

    os.environ["CUDA_VISIBLE_DEVICES"] = cfg["visible_devices"]
    from studio.engine.cuda_env import prepare_process_env

    prepare_process_env(threads=cfg["threads"])
    _quiet_progress_bars()

    def send(status: str, payload: Any) -> None:
        try:
            results.send((status, payload))
        except (OSError, EOFError):
            os._exit(0)

    try:
        engine, load_s = _load_engine(cfg, cfg.get("memory_profile"))
        slow = slowdown_for(cfg["index"])
        t0 = time.perf_counter()
        slow.start()
        engine.generate(on_step=slow.after_step if slow else None, **WARMUP)
        warmup_s = time.perf_counter() - t0
    except BaseException as exc:  # cannot load: say why, then exit so the pool can decide
        send("fatal", error_payload(exc))
        sys.exit(3)

    send("ready", {"pid": os.getpid(), "device": engine.device_name, "memory_gb": _memory_gb(engine),
                   "load_s": round(load_s, 3), "warmup_s": round(warmup_s, 4),
                   "warmup": {k: WARMUP[k] for k in ("width", "height", "steps")},
                   "threads": cfg["threads"], "memory_profile": _profile_name(engine, cfg)})
    profile = cfg.get("memory_profile")
    while True:
        job = jobs.get()
        if job is None:
            break
        job_id = job["job_id"]
        if job_id in revoked:
            send("revoked", {"job_id": job_id, "reason": revoked.pop(job_id)})
            continue
        wanted = job.get("memory_profile")
        if wanted and wanted != profile:
            engine, profile = _switch_profile(cfg, engine, profile, wanted)
        send("started", {"job_id": job_id, "time": time.time()})
        t0 = time.perf_counter()
        try:
            result = _run(engine, cfg, job, send, slow, lambda j=job_id: revoked.get(j) == "cancel")
        except BaseException as exc:
            busy = time.perf_counter() - t0
            if type(exc).__name__ == "Cancelled":
                send("cancelled", {"job_id": job_id, "busy_s": busy})
            else:
                send("failed", {"job_id": job_id, "busy_s": busy, **error_payload(exc)})
                if error_payload(exc)["kind"] == "oom":
                    _free_cuda()
            revoked.pop(job_id, None)
            continue
        result["busy_s"] = round(time.perf_counter() - t0, 4)
        result["finished"] = time.time()
        revoked.pop(job_id, None)
        send("done", result)
    send("stopped", {})
    os._exit(0)  # nothing left to flush (PNGs are fsynced); library threads must not delay the exit


def _quiet_progress_bars() -> None:
    """Library progress bars (weight loading) would take a multiprocessing lock, i.e. a semaphore the
    resource tracker reports as leaked when the worker exits; a thread lock is all they need here."""
    try:
        from tqdm import tqdm

        tqdm.set_lock(threading.RLock())
    except ImportError:
        pass


def _run(engine: Any, cfg: dict[str, Any], job: dict[str, Any], send: Any, slow: Slowdown,
         cancelled: Any) -> dict[str, Any]:
    from studio.core.jobs import Job
    from studio.engine.run_job import run_job

    fields = {k: job[k] for k in Job.__dataclass_fields__}

    def on_step(i: int, n: int) -> None:
        send("step", {"job_id": job["job_id"], "step": i, "steps": n})
        hang_if_told()
        if slow:
            slow.after_step()

    if _take_marker(OOM_ENV):
        raise RuntimeError("CUDA out of memory (ZAOXIANG_TEST_WORKER_OOM)")
    slow.start()
    return run_job(engine, Job(**fields), model_name=cfg["model_name"], worker=cfg["name"], on_step=on_step,
                   should_cancel=cancelled)


def _load_engine(cfg: dict[str, Any], profile: str | None) -> tuple[Any, float]:
    import inspect

    from studio.engine.generate import Engine

    t0 = time.perf_counter()
    kwargs = {}
    if profile and "memory_profile" in inspect.signature(Engine).parameters:
        kwargs["memory_profile"] = profile  # the engine's memory profiles, once it has them
    engine = Engine(cfg["model_path"], cfg["device"], **kwargs)
    return engine, time.perf_counter() - t0


def _switch_profile(cfg: dict[str, Any], engine: Any, current: str | None, wanted: str) -> tuple[Any, str | None]:
    """Reload under a lower memory profile (after an OOM) when the engine supports profiles."""
    import inspect

    from studio.engine.generate import Engine

    if "memory_profile" not in inspect.signature(Engine).parameters:
        return engine, current  # nothing to switch yet: the retry is recorded by the pool only
    del engine
    _free_cuda()
    return _load_engine(cfg, wanted)[0], wanted


def _free_cuda() -> None:
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _profile_name(engine: Any, cfg: dict[str, Any]) -> str:
    """The memory profile the engine resolved ("auto" picks one from free VRAM), so that an OOM retry
    goes one lower than what actually ran."""
    return getattr(getattr(engine, "profile", None), "name", None) or cfg.get("memory_profile") or "auto"


def _memory_gb(engine: Any) -> float | None:
    import torch

    if engine.device.type == "cuda":
        return round(torch.cuda.get_device_properties(engine.device).total_memory / 2**30, 2)
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 2)
    except Exception:
        return None
