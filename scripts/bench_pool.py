"""Benchmark the worker pool on the demo model: dispatch overhead per job and balance efficiency.

    .venv/bin/python scripts/bench_pool.py [--workers cpu:2] [--images 12] [--size 256] [--steps 4]

Runs in a throw-away ZAOXIANG_HOME. Three measurements:
1. round trip on an idle pool: submit -> request_done, minus the worker's own busy time (1 image);
2. dispatch gap: on each worker, time between a job's `done` and the next job's `started` while work
   was queued (what prefetch is meant to hide), per job;
3. balance on an N-image request, with equal workers and with worker 1 slowed 2x per step (the
   test-only ZAOXIANG_TEST_WORKER_DELAY knob), next to what equal contiguous chunks would have given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _run_pool(args: argparse.Namespace, slow: str | None) -> None:
    from studio.app import Studio
    from studio.core import events as ev
    from studio.core.request import GenerationRequest
    from studio.pool.worker import DELAY_ENV

    if slow:
        os.environ[DELAY_ENV] = slow
    else:
        os.environ.pop(DELAY_ENV, None)
    events: list[dict] = []
    lock = threading.Lock()
    done = threading.Condition(lock)

    def record(e: dict) -> None:
        with done:
            events.append({**e, "seen": time.time()})
            done.notify_all()

    def wait_done(rid: str) -> None:
        with done:
            done.wait_for(lambda: any(e["type"] == ev.REQUEST_DONE and e["request_id"] == rid for e in events))

    studio = Studio(workers=args.workers, model="demo")
    studio.subscribe(record)
    t0 = time.perf_counter()
    studio.start()
    while not all(r["state"] == "idle" for r in studio.pool_status()):
        time.sleep(0.05)
    label = f"slowed ({slow})" if slow else "equal workers"
    print(f"\n== {args.workers}, {label}: all workers ready in {time.perf_counter() - t0:.1f} s")
    for r in studio.pool_status():
        print(f"   {r['name']}: {r['device']}, {r['threads']} threads, load {r['load_s']} s")
    try:
        base = dict(prompt="一只红色的星星 a red star", width=args.size, height=args.size, steps=args.steps)
        # warm both workers on this exact size (first images pay one-time costs)
        studio.wait(studio.submit(GenerationRequest(**base, seed=1, seed_mode="increment", count=4)))
        if not slow:
            trips = []
            for i in range(args.round_trips):
                t = time.time()
                rid = studio.submit(GenerationRequest(**{**base, "steps": 1}, seed=10 + i, count=1))
                wait_done(rid)
                with lock:
                    end = next(e["seen"] for e in events if e["type"] == ev.REQUEST_DONE and e["request_id"] == rid)
                    busy = next(e["busy_s"] for e in events if e["type"] == ev.JOB_DONE and e["request_id"] == rid)
                trips.append(end - t - busy)
            print(f"   round trip overhead (idle pool, 1 image, submit->request_done minus worker busy): "
                  f"median {statistics.median(trips) * 1000:.1f} ms over {len(trips)}")
        rid = studio.submit(GenerationRequest(**base, seed=100, seed_mode="increment", count=args.images))
        wait_done(rid)
        with lock:
            mine = [e for e in events if e.get("request_id") == rid]
        gaps = []
        for w in {e["worker"] for e in mine if e["type"] == ev.JOB_STARTED}:
            seq = sorted((e for e in mine if e.get("worker") == w and e["type"] in (ev.JOB_STARTED, ev.JOB_DONE)),
                         key=lambda e: e["time"])
            gaps += [b["time"] - a["time"] for a, b in zip(seq, seq[1:])
                     if a["type"] == ev.JOB_DONE and b["type"] == ev.JOB_STARTED]
        stats = studio.request_stats(rid)
        per = {w: stats["busy_s"][w] / n for w, n in stats["images"].items() if n}
        print(f"   {args.images} images {args.size}x{args.size}, {args.steps} steps: makespan {stats['makespan_s']:.2f} s,"
              f" ideal {stats['ideal_makespan_s']:.2f} s, balance efficiency {stats['balance_efficiency']:.3f},"
              f" makespan efficiency {stats['makespan_efficiency']:.3f}")
        print("   images per worker: " + ", ".join(f"{w} {n} ({per.get(w, 0):.3f} s/img)"
                                                   for w, n in stats["images"].items()))
        if gaps:
            print(f"   dispatch gap between jobs on a worker: mean {statistics.mean(gaps) * 1000:.1f} ms,"
                  f" max {max(gaps) * 1000:.1f} ms over {len(gaps)} hand-overs")
        if len(per) == len(stats["images"]) and len(per) > 1:
            chunk = args.images / len(per)
            busy = [chunk * s for s in per.values()]
            print(f"   equal contiguous chunks ({chunk:g} each) at these speeds would give balance efficiency "
                  f"{statistics.mean(busy) / max(busy):.3f}")
    finally:
        t = time.perf_counter()
        studio.close()
        print(f"   close: {time.perf_counter() - t:.2f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="cpu:2")
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--round-trips", type=int, default=10)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pool-") as home:
        os.environ["ZAOXIANG_HOME"] = home
        from studio.core.paths import get_paths
        from studio.models.demo import ensure_demo_model

        ensure_demo_model(get_paths().ensure())
        _run_pool(args, None)
        _run_pool(args, "1:x2")


if __name__ == "__main__":
    main()
