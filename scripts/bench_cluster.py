"""Per-image overhead of a Ray worker actor against a local worker process (issue 23).

    .venv/bin/python scripts/bench_cluster.py [--images 24] [--rounds 3] [--size 256] [--steps 4] [--threads 1]

Both sides run pool/worker.py's worker loop on the demo model and are fed through the pipes the pool
uses, one job beyond the running one (the pool's prefetch): a local worker process as the pool spawns
it, and a worker actor (studio/cluster) whose PNGs come back as bytes through Ray and are written
into the gallery here. Rounds alternate the two so the machine's load falls on both alike; the
figures are medians over rounds. `busy_s` is the worker's own time per image (its engine thread);
`gap_s`, seconds per image beyond it, is what the relay adds that the pipeline does not hide, a figure
that holds on a loaded machine where the two workers' CPU shares differ; so does `cpu_s`, the CPU
seconds per image of this whole process tree (workers, actor, the local cluster's raylet and GCS). Without RAY_ADDRESS a one-node Ray cluster is started on 127.0.0.1
for the run (the actor then measures Ray's own cost, not a network's); everything happens in a
temporary studio home.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep a local cluster on 127.0.0.1
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from studio.cluster import wire  # noqa: E402


class Side:
    """One worker (local process or Ray actor) and the pool's ends of its pipes."""

    def __init__(self, label: str, proc: Any, control: Any, results: Any) -> None:
        self.label, self.proc, self.control, self.results = label, proc, control, results

    def next(self, kind: str, timeout: float = 600.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while self.results.poll(max(0.0, deadline - time.monotonic())):
            msg = self.results.recv()
            if wire.kind(msg) in ("fatal", "failed"):
                raise SystemExit(f"{self.label}: {wire.payload(msg)}")
            if wire.kind(msg) == kind:
                return wire.payload(msg)
        raise SystemExit(f"{self.label}: no {kind} within {timeout} s")

    def run(self, jobs: list[dict[str, Any]]) -> tuple[float, float, float]:
        """(wall seconds for `jobs`, their mean busy_s, CPU seconds this process tree spent meanwhile),
        keeping one job queued behind the running one."""
        cpu0 = tree_cpu_s()
        t0 = time.perf_counter()
        sent = 0
        busy = []
        for _ in range(min(2, len(jobs))):
            self.control.send(wire.job(jobs[sent]))
            sent += 1
        for _ in jobs:
            busy.append(self.next("done")["busy_s"])
            if sent < len(jobs):
                self.control.send(wire.job(jobs[sent]))
                sent += 1
        return time.perf_counter() - t0, statistics.mean(busy), tree_cpu_s() - cpu0

    def close(self) -> None:
        self.control.send(wire.stop())
        self.proc.join(30)


def tree_cpu_s() -> float:
    """CPU seconds used so far by this process and every process under it (the workers, the actor,
    and a local cluster's raylet and GCS): what a side costs, whatever share of the cores it got."""
    import psutil

    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:  # ended meanwhile
            pass
    return total


def start(label: str, ctx: Any, cfg: dict[str, Any], target: Any) -> Side:
    child_control, control = ctx.Pipe(duplex=False)
    results, child_results = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(cfg, child_control, child_results), name=label)
    proc.start()
    child_control.close()
    child_results.close()
    return Side(label, proc, control, results)


def jobs_for(out: Path, label: str, n: int, size: int, steps: int, first_seed: int) -> list[dict[str, Any]]:
    from studio.core.jobs import Job
    from studio.core.spec import ImageSpec

    spec = ImageSpec(prompt="a red star on a white background", width=size, height=size, steps=steps, model="demo")
    return [Job(job_id=f"{label}-{first_seed + i}", request_id=label, index=i, spec=spec.with_seed(first_seed + i),
                output_path=str(out / f"{label}-{first_seed + i}.png")).to_dict() for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="zaoxiang-bench-cluster-"))
    os.environ["ZAOXIANG_HOME"] = str(home)
    from ray.cluster_utils import Cluster

    from studio.cluster.connect import connect, disconnect
    from studio.cluster.placement import places
    from studio.cluster.process import RayContext
    from studio.models.demo import ensure_demo_model
    from studio.pool.worker import worker_main

    model = ensure_demo_model()
    ray_cluster = None
    if not os.environ.get("RAY_ADDRESS"):
        ray_cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": args.threads, "include_dashboard": False, "object_store_memory": 100 * 2**20,
            "node_ip_address": "127.0.0.1"})
    info = connect(ray_cluster.address if ray_cluster else None)
    place = places(info)[0]
    cfg = {"index": 0, "name": "cpu:0", "device": "cpu", "visible_devices": "", "threads": args.threads,
           "model_path": str(model), "model_name": "demo", "memory_profile": None}
    out = home / "gallery"
    sides = [start("local", mp.get_context("spawn"), cfg, worker_main),
             start("ray", RayContext([place]), {**cfg, "name": place.name}, None)]
    rows: dict[str, list[tuple[float, float, float]]] = {s.label: [] for s in sides}
    try:
        for side in sides:
            side.next("ready")
            side.run(jobs_for(out, side.label + "-warm", 2, args.size, args.steps, 10_000))
        seed = 0
        for _ in range(args.rounds):
            for side in sides:
                wall, busy, cpu = side.run(jobs_for(out, side.label, args.images, args.size, args.steps, seed))
                rows[side.label].append((wall / args.images, busy, cpu / args.images))
                seed += args.images
    finally:
        for side in sides:
            side.close()
        disconnect()
        if ray_cluster is not None:
            ray_cluster.shutdown()
    local = statistics.median(r[0] for r in rows["local"])
    ray = statistics.median(r[0] for r in rows["ray"])
    result = {"size": args.size, "steps": args.steps, "images": args.images, "rounds": args.rounds,
              "threads": args.threads, "cluster": "local one-node" if ray_cluster else os.environ["RAY_ADDRESS"],
              "local_s_per_image": round(local, 4), "ray_s_per_image": round(ray, 4),
              "overhead_pct": round(100 * (ray / local - 1), 1),
              "local_busy_s": round(statistics.median(r[1] for r in rows["local"]), 4),
              "ray_busy_s": round(statistics.median(r[1] for r in rows["ray"]), 4),
              # what the pipeline does not hide: seconds per image beyond the worker's own busy time
              "local_gap_s": round(statistics.median(r[0] - r[1] for r in rows["local"]), 4),
              "ray_gap_s": round(statistics.median(r[0] - r[1] for r in rows["ray"]), 4),
              # CPU seconds per image of the whole process tree: the cost that load does not blur
              "local_cpu_s": round(statistics.median(r[2] for r in rows["local"]), 4),
              "ray_cpu_s": round(statistics.median(r[2] for r in rows["ray"]), 4),
              "cpu_overhead_pct": round(100 * (statistics.median(r[2] for r in rows["ray"])
                                               / statistics.median(r[2] for r in rows["local"]) - 1), 1),
              "rounds_s_per_image": {k: [round(r[0], 4) for r in v] for k, v in rows.items()}}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
