"""The worker process: pin the device, load the engine once, then run jobs until told to stop.

This module is what a spawned child imports first, so it must not import torch at module level:
CUDA_VISIBLE_DEVICES and the thread counts are set in `worker_main` before torch is loaded.

Pipes (one pair per worker, no shared queues: a worker SIGKILLed while holding a shared queue's
lock would wedge every other worker):
- control (parent -> child): RunJob, Revoke, Stop (pool/protocol.py lists every message).
  A thread blocks reading it; EOF means the parent is gone (even SIGKILLed), and the child exits.
  That makes it the "death pipe" as well.
- results (child -> parent): the protocol's replies, plain data, never live objects.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from studio.pool import protocol as p
from studio.pool.image_writer import ImageWriter
from studio.pool.speed import StepClock
from studio.pool.worker_knobs import (  # noqa: F401  (DELAY_ENV, HANG_ENV, WRITE_HOLD_ENV: tests import them here)
    DELAY_ENV,
    HANG_ENV,
    OOM_ENV,
    WRITE_HOLD_ENV,
    Slowdown,
    group_hang_if_told,
    hang_if_told,
    slowdown_for,
    take_marker,
)

WARMUP = dict(prompt="warm-up", negative_prompt="", width=256, height=256, steps=2, guidance=0.0, seed=0)
GROUP_TIMED_STEPS = 3  # the group warm-up's timed images: two steady steps after the first
WARM_SIZES_ENV = "ZAOXIANG_WARM_SIZES"  # "1024x1024,1152x896": the sizes compiled before ready (default:
#                                          the engine's WARM_SIZES)
# Loading builds modules on the meta device, which patches torch process-wide: in-process workers
# (pool/inline.py) must load one at a time. A worker process holds it alone.
LOAD_LOCK = threading.Lock()
RANDOM_PREFIX = "random:"  # model path "random:full": the worker builds the random-weight pipeline itself


def warm_sizes(env: str | None = None) -> tuple[tuple[int, int], ...] | None:
    """The sizes from WARM_SIZES_ENV ("WxH,WxH"), or None (the engine's default) when unset or unreadable."""
    text = os.environ.get(WARM_SIZES_ENV, "") if env is None else env
    sizes = []
    for part in text.replace(" ", "").lower().split(","):
        w, _, h = part.partition("x")
        if not (w.isdigit() and h.isdigit()):
            return None
        sizes.append((int(w), int(h)))
    return tuple(sizes) or None


def worker_main(cfg: dict[str, Any], control: Any, results: Any) -> None:
    """Child entry point (spawned). `cfg`: index, name, device, visible_devices, threads, model_path,
    model_name, memory_profile."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    os.environ["CUDA_VISIBLE_DEVICES"] = cfg["visible_devices"]
    from studio.core.process_env import prepare_process_env

    prepare_process_env(threads=cfg["threads"])
    _quiet_progress_bars()
    code = serve(cfg, control, results, lost=lambda: os._exit(0))  # the parent is gone: never outlive it
    if code:
        sys.exit(code)
    os._exit(0)  # nothing left to flush (PNGs are fsynced); library threads must not delay the exit


def serve(cfg: dict[str, Any], control: Any, results: Any, *, lost: Callable[[], None]) -> int:
    """Load the engine, say ready, run jobs until told to stop; returns the exit code (3: cannot load).

    `lost` is called when a pipe to the parent breaks (a process exits; a thread, in pool/inline.py,
    stops after the job it runs)."""
    jobs: queue.Queue[p.RunJob | p.WarmGroup | None] = queue.Queue()
    revoked: dict[str, p.RevokeReason] = {}

    def control_loop() -> None:
        while True:
            try:
                msg = control.recv()
            except Exception:  # EOF, or a message torn because the parent died mid-send
                jobs.put(None)
                lost()
                return
            if isinstance(msg, (p.RunJob, p.WarmGroup)):
                jobs.put(msg)
            elif isinstance(msg, p.Revoke):
                revoked[msg.job_id] = msg.reason
            elif isinstance(msg, p.Stop):
                jobs.put(None)

    threading.Thread(target=control_loop, name="control", daemon=True).start()
    send_lock = threading.Lock()  # the writer thread sends too; a pipe is not thread-safe

    def send(msg: p.Message) -> None:
        try:
            with send_lock:
                results.send(msg)
        except (OSError, EOFError):
            lost()

    try:
        engine, load_s = _load_engine(cfg, cfg.get("memory_profile"), send)
        slow = slowdown_for(cfg["index"])
        first = _warm_image_args(engine)
        clock = StepClock(_device_sync(engine), slow.after_step if slow else None)
        t0 = time.perf_counter()
        slow.start()
        # previews on (sent nowhere): the previewer is built and calibrated before ready, not in a job
        _image, timings = engine.generate(on_step=clock, on_preview=lambda _image: None, **first)
        warmup_s = time.perf_counter() - t0
    except BaseException as exc:  # cannot load: say why, then exit so the pool can decide
        err = p.describe_error(exc)
        send(p.Fatal(err.message, err.error, err.exception))
        return 3

    send(p.Ready(pid=os.getpid(), device=engine.device_name, memory_gb=_memory_gb(engine),
                 load_s=round(load_s, 3), warmup_s=round(warmup_s, 4),
                 compile_s=round(getattr(engine, "compile_s", None) or 0.0, 3),
                 warmup={k: first[k] for k in ("width", "height", "steps")},
                 threads=cfg["threads"], memory_profile=_profile_name(engine, cfg),
                 warmup_step_s=clock.steady_s(), warmup_tail_s=round(timings.encode_s + timings.decode_s, 4)))
    profile = cfg.get("memory_profile")
    writer = ImageWriter(send)
    member: Any = None  # studio.pool.group.Membership, made on the first split job
    while True:
        order = jobs.get()
        if order is None:
            break
        if isinstance(order, p.WarmGroup) or order.group is not None:
            if member is None:
                from studio.pool.group import Membership

                member = Membership(engine)
            if isinstance(order, p.WarmGroup):
                _warm_group(engine, cfg, order, member, send)
            else:  # every member runs it, even revoked: a cancel is agreed at a step
                _run_split(engine, cfg, order, member, send, writer, slow, revoked)
            continue
        job = order.job
        job_id = job["job_id"]
        if job_id in revoked:
            send(p.Revoked(job_id, revoked.pop(job_id)))
            continue
        wanted = order.memory_profile
        if wanted and wanted != profile:
            if member is not None:
                member.leave()
                member = None
            engine, profile = _switch_profile(cfg, engine, wanted, send)
        send(p.Started(job_id, time.time()))
        t0 = time.perf_counter()
        try:
            made = _run(engine, cfg, job, send, slow, lambda j=job_id: revoked.get(j) == p.RevokeReason.CANCEL)
        except BaseException as exc:
            busy = time.perf_counter() - t0
            if type(exc).__name__ == "Cancelled":
                send(p.Cancelled(job_id, busy))
            else:
                err = p.describe_error(exc)
                send(err.failed(job_id, busy))
                if err.error == p.ErrorKind.OOM:
                    _free_cuda()
            revoked.pop(job_id, None)
            continue
        revoked.pop(job_id, None)
        # busy_s: the time this job held the GPU's thread (what limits throughput); the write overlaps
        # the next job. gpu_s: the engine's own time for the image (the monitor's busy share).
        writer.put(made, {"busy_s": round(time.perf_counter() - t0, 4), "gpu_s": round(made.gpu_s, 4)})
    writer.close()
    send(p.Stopped())
    return 0


def _quiet_progress_bars() -> None:
    """Library progress bars (weight loading) would take a multiprocessing lock, i.e. a semaphore the
    resource tracker reports as leaked when the worker exits; a thread lock is all they need here."""
    try:
        from tqdm import tqdm

        tqdm.set_lock(threading.RLock())
    except ImportError:
        pass


def _run(engine: Any, cfg: dict[str, Any], job: dict[str, Any], send: Any, slow: Slowdown,
         cancelled: Any, group: Any = None, previews: bool = True) -> Any:
    """Make the job's image; every member of a split image says its steps (the pool tells a silent
    member by them), only the first one (`previews`) its previews."""
    from studio.core.jobs import Job
    from studio.engine.run_job import make_image

    def on_step(i: int, n: int) -> None:
        if group is not None:
            group_hang_if_told(cfg["index"], "image")
        send(p.Step(job["job_id"], i, n))
        hang_if_told()
        if slow:
            slow.after_step()

    def on_preview(image: Any) -> None:
        send(p.Preview(job["job_id"], image.step, image.steps, image.width, image.height, image.jpeg))

    if take_marker(OOM_ENV):
        raise RuntimeError("CUDA out of memory (ZAOXIANG_TEST_WORKER_OOM)")
    slow.start()
    made_by = None if group is None else {"workers": list(group.members), "devices": list(group.devices)}
    return make_image(engine, Job.from_dict(job), model_name=cfg["model_name"], worker=cfg["name"], on_step=on_step,
                      should_cancel=cancelled, on_preview=on_preview if previews else None, group=made_by)


def _warm_group(engine: Any, cfg: dict[str, Any], order: p.WarmGroup, member: Any, send: Any) -> None:
    """Join the group, make one small split image (not saved: the split graphs compile for every size
    at once, the sequence length being dynamic), then time one steady step of the first warm size
    split and on this worker alone, so "auto" knows the faster way before the first real image.
    Each split step is said (WARMING), so the pool tells a member that went silent from one compiling."""
    from studio.pool.group import GroupSpec

    spec = GroupSpec.from_dict(order.group)
    args = {**_warm_image_args(engine), "prompt": "warm-up 预热"}
    timed = {**args, "steps": GROUP_TIMED_STEPS}

    def beat(start: float, span: float) -> Callable[[int, int], None]:
        def on_step(i: int, n: int) -> None:
            group_hang_if_told(cfg["index"], "warm")
            send(p.Warming(round(start + span * i / max(1, n), 1), "group"))
        return on_step

    split_clock = StepClock(_device_sync(engine), beat(70.0, 14.0))
    single_clock = StepClock(_device_sync(engine))
    t0 = time.perf_counter()
    try:
        send(p.Warming(0.0, "group"))
        with member.join(spec).active():
            send(p.Warming(20.0, "group"))
            engine.generate(**args, on_step=beat(20.0, 49.0))
            send(p.Warming(70.0, "group"))
            engine.generate(**timed, on_step=split_clock)
        send(p.Warming(85.0, "group"))
        engine.generate(**timed, on_step=single_clock)  # after joining: as this worker runs from now on
    except BaseException as exc:  # the pool forms the group again when it needs one
        member.leave()
        send(p.Helped(p.warm_id(spec.group_id), round(time.perf_counter() - t0, 4), ok=False,
                      message=f"{type(exc).__name__}: {exc}"[:300]))
        return
    send(p.Helped(p.warm_id(spec.group_id), round(time.perf_counter() - t0, 4), width=args["width"],
                  height=args["height"], split_step_s=split_clock.steady_s(), single_step_s=single_clock.steady_s()))


def _run_split(engine: Any, cfg: dict[str, Any], order: p.RunJob, member: Any, send: Any, writer: ImageWriter,
               slow: Slowdown, revoked: dict[str, p.RevokeReason]) -> None:
    """This worker's part of a split image: the first member reports it like any job (and saves it),
    the others say HELPED. A failure other than an agreed cancel leaves the group: its collectives
    cannot be trusted any more, and the pool forms a new one for the next split."""
    from studio.pool.group import GroupSpec

    spec = GroupSpec.from_dict(order.group or {})
    job_id = order.job["job_id"]
    leader = spec.rank == 0
    if leader:
        send(p.Started(job_id, time.time()))
    t0 = time.perf_counter()
    graphs = _graphs_compiled()
    try:
        split = member.join(spec)
        with split.active():
            made = _run(engine, cfg, order.job, send, slow,
                        lambda: member.agree(revoked.get(job_id) == p.RevokeReason.CANCEL), group=spec, previews=leader)
    except BaseException as exc:
        busy = time.perf_counter() - t0
        revoked.pop(job_id, None)
        stopped = type(exc).__name__ == "Cancelled"
        if not stopped:
            member.leave()
        if not leader:
            send(p.Helped(job_id, round(busy, 4), ok=stopped, message="" if stopped else f"{type(exc).__name__}: {exc}"[:300]))
        elif stopped:
            send(p.Cancelled(job_id, busy))
        else:
            err = p.describe_error(exc)
            send(err.failed(job_id, busy))
        return
    revoked.pop(job_id, None)
    busy = round(time.perf_counter() - t0, 4)
    if leader:
        writer.put(made, {"busy_s": busy, "gpu_s": round(made.gpu_s, 4), "compiled": _graphs_compiled() > graphs or None})
    else:
        send(p.Helped(job_id, busy))


def _graphs_compiled() -> int:
    """How many graphs torch has compiled in this process: a split image that compiled some (a size
    whose shared decode recompiles, say) took longer than the next one will."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _load_engine(cfg: dict[str, Any], profile: str | None, send: Any) -> tuple[Any, float]:
    """Load the engine (or build the random-weight pipeline), then compile it for the sizes in use,
    sending Warming messages as it goes: a worker is ready only once warm."""
    import torch

    from studio.engine.generate import Engine

    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"warm": "none"}
    if os.environ.get("ZAOXIANG_SPLIT_STEP_GRAPHS"):  # studio/pool/group.py: split steps from CUDA graphs
        kwargs["graph_steps"] = True
    if profile:
        kwargs["memory_profile"] = profile
    path = cfg["model_path"]
    with LOAD_LOCK:
        if path.startswith(RANDOM_PREFIX):
            from studio.engine.precision import choose_dtype
            from studio.engine.random_pipeline import build_random_pipeline

            device = torch.device(cfg["device"])
            dtype = choose_dtype(device)
            kwargs.update(dtype=dtype, pipe=build_random_pipeline(path[len(RANDOM_PREFIX):], device, dtype))
        engine = Engine(path, cfg["device"], **kwargs)
    load_s = time.perf_counter() - t0

    def progress(fraction: float, stage: str) -> None:
        send(p.Warming(round(100 * fraction, 1), stage))

    if engine.compiled:
        send(p.Warming(0.0, "compile"))
        sizes = warm_sizes()
        engine.warm_up(**({"sizes": sizes} if sizes else {}), on_progress=progress)
    return engine, load_s


def _device_sync(engine: Any) -> Callable[[], None] | None:
    """What waits for the engine's GPU (None on the CPU, where a step is done when its callback runs)."""
    device = getattr(engine, "device", None)
    if getattr(device, "type", "cpu") != "cuda":
        return None
    import torch

    return lambda: torch.cuda.synchronize(device)


def _warm_image_args(engine: Any) -> dict[str, Any]:
    """The first image, before ready: on a compiled engine at the first warm size (so the allocator,
    kernels and the VAE at that size are warm too), else the small WARMUP image."""
    if not engine.compiled:
        return dict(WARMUP)
    from studio.engine.generate import WARM_SIZES

    width, height = (warm_sizes() or WARM_SIZES)[0]
    return {**WARMUP, "width": width, "height": height}


def _switch_profile(cfg: dict[str, Any], engine: Any, wanted: str, send: Any) -> tuple[Any, str | None]:
    """Reload under a lower memory profile (after an OOM)."""
    del engine
    _free_cuda()
    return _load_engine(cfg, wanted, send)[0], wanted


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
