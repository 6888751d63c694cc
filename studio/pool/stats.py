"""Load-balance figures for one finished (or running) request, from its jobs' timings.

balance efficiency = mean busy time / max busy time over the pool's workers (DESIGN.md): 1.0 means
every worker worked equally long on the request; makespan efficiency = ideal makespan / makespan,
where the ideal is the total work spread evenly over the workers (it also counts dispatch gaps);
gpu busy = per worker, the engine's time for its images (`gpu_s`) over the request's wall time (first
start to last PNG written): under 1.0 by more than the last write, that GPU waited (a starving GPU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.core.jobs import Job
    from studio.pool.supervisor import Slot


def request_stats(jobs: list[dict[str, Any]], worker_names: list[str]) -> dict[str, Any]:
    """`jobs`: dicts with state, worker, started, finished (wall clock), busy_s and gpu_s."""
    busy = {name: 0.0 for name in worker_names}
    gpu = {name: 0.0 for name in worker_names}
    images = {name: 0 for name in worker_names}
    starts, ends = [], []
    for job in jobs:
        worker = job.get("worker")
        if worker is None or job.get("busy_s") is None:
            continue
        busy[worker] = busy.get(worker, 0.0) + job["busy_s"]
        gpu[worker] = gpu.get(worker, 0.0) + (job["busy_s"] if job.get("gpu_s") is None else job["gpu_s"])
        if job.get("state") == "done":
            images[worker] = images.get(worker, 0) + 1
        if job.get("started") is not None:
            starts.append(job["started"])
        if job.get("finished") is not None:
            ends.append(job["finished"])
    n = max(1, len(busy))
    total = sum(busy.values())
    longest = max(busy.values(), default=0.0)
    makespan = (max(ends) - min(starts)) if starts and ends else 0.0
    ideal = total / n
    return {
        "jobs": len(jobs),
        "done": sum(1 for j in jobs if j.get("state") == "done"),
        "failed": sum(1 for j in jobs if j.get("state") == "failed"),
        "cancelled": sum(1 for j in jobs if j.get("state") == "cancelled"),
        "workers": n,
        "makespan_s": round(makespan, 4),
        "ideal_makespan_s": round(ideal, 4),
        "total_busy_s": round(total, 4),
        "balance_efficiency": round(ideal / longest, 4) if longest > 0 else None,
        "makespan_efficiency": round(ideal / makespan, 4) if makespan > 0 else None,
        "busy_s": {k: round(v, 4) for k, v in busy.items()},
        "gpu_busy": {k: round(min(1.0, v / makespan), 4) if makespan > 0 else None for k, v in gpu.items()},
        "images": images,
    }


def worker_row(slot: Slot, running: Job | None, prefetched: int, gpu_busy: float | None) -> dict[str, Any]:
    """One worker's row in `WorkerPool.status` (the monitor, the tray, `pool_status`)."""
    state = slot.state.value
    if state == "ready":
        state = "busy" if running else "idle"
    info = slot.info
    return {
        "name": slot.spec.name, "device": info.get("device") or slot.spec.device,
        "state": state, "pid": slot.proc.pid if slot.proc is not None else None,
        "current_job": running.job_id if running else None,
        "current_request": running.request_id if running else None,
        "prefetched": prefetched, "images_done": slot.images_done, "busy_s": round(slot.busy_s, 3),
        "s_per_image": round(slot.busy_s / slot.images_done, 4) if slot.images_done else None,
        "load_s": info.get("load_s"), "memory_gb": info.get("memory_gb"),
        "memory_profile": info.get("memory_profile"), "threads": slot.spec.threads,
        "restarts": slot.restarts, "last_error": slot.last_error,
        "warm_pct": slot.warm_pct, "compile_s": info.get("compile_s"), "gpu_busy": gpu_busy,
    }
