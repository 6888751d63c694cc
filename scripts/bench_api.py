"""Benchmark the OpenAI-compatible API on CPU workers: N one-image requests from C concurrent clients.

    .venv/bin/python scripts/bench_api.py [--requests 100] [--clients 8] [--workers cpu:2] [--steps 2]

Runs a real studio (demo model) and its real window server on 127.0.0.1 in a throw-away
ZAOXIANG_HOME, then:
1. serial: 10 requests one after another; per request, what the client waited beyond the worker's
   own time for the image (HTTP, parsing, submit, store, events, reading and base64 of the PNG);
2. concurrent: `--requests` requests from `--clients` threads, each checked: one image, its bytes
   the very file the history holds, every image delivered once (no path twice, none missing), every
   request in History once with origin `api`. The queue's overhead per request is the worker time
   the pool did not spend drawing while requests were waiting, spread over the requests:
   (workers x wall - sum of the workers' busy time) / requests.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _busy_s(studio, image_id: int) -> float:
    info = studio.image_info(image_id)
    timings = info.get("timings") or {}
    return float(timings.get("busy_s") or timings.get("elapsed_s") or info.get("elapsed_s") or 0.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", default="cpu:2")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--size", default="256x256")
    a = p.parse_args()

    home = tempfile.mkdtemp(prefix="zx-bench-api-")
    os.environ["ZAOXIANG_HOME"] = home
    import httpx

    from studio.app import Studio
    from studio.ui.server import serve

    studio = Studio(workers=a.workers, model="demo")
    studio.start()
    url, stop = serve(studio, "127.0.0.1", 7960)
    base = url.split("/?", 1)[0]
    from studio.api.keys import KeyStore

    keys = KeyStore(studio.paths.config_dir)  # every API call needs a key, on loopback too
    keys.set_options(rate_per_min=0)  # one key for all clients: the per-key rate limit would measure itself
    auth = {"Authorization": f"Bearer {keys.create('bench')[1]}"}
    while not all(w["state"] == "idle" for w in studio.pool_status()):
        time.sleep(0.05)
    workers = len(studio.pool_status())
    print(f"studio at {base}, {workers} workers ({a.workers}), demo model, {a.size}, {a.steps} steps")

    def one(client: httpx.Client, prompt: str) -> tuple[float, dict]:
        t0 = time.perf_counter()
        r = client.post(f"{base}/v1/images/generations",
                        json={"prompt": prompt, "n": 1, "size": a.size, "steps": a.steps,
                              "response_format": "b64_json"})
        latency = time.perf_counter() - t0
        r.raise_for_status()
        return latency, r.json()

    def by_prompt() -> dict[str, list[dict]]:
        rows: dict[str, list[dict]] = {}
        for r in studio.history(limit=10_000):
            rows.setdefault(r["prompt"], []).append(r)
        return rows

    try:
        with httpx.Client(timeout=600, headers=auth) as client:
            one(client, "warm-up circle")
            serial = []
            for i in range(10):
                latency, body = one(client, f"serial {i} red circle")
                serial.append((f"serial {i} red circle", latency))
        rows = by_prompt()
        extra = [latency - _busy_s(studio, rows[prompt][0]["images"][0]["id"]) for prompt, latency in serial]
        print(f"serial, 10 requests: latency median {statistics.median(lat for _p, lat in serial) * 1000:.1f} ms; "
              f"beyond the worker's time: median {statistics.median(extra) * 1000:.1f} ms, "
              f"max {max(extra) * 1000:.1f} ms")

        prompts = [f"bench {i} blue square" for i in range(a.requests)]
        results: dict[str, tuple[float, dict]] = {}
        lock = threading.Lock()
        todo = list(prompts)

        def client_loop() -> None:
            with httpx.Client(timeout=600, headers=auth) as client:
                while True:
                    with lock:
                        if not todo:
                            return
                        prompt = todo.pop(0)
                    out = one(client, prompt)
                    with lock:
                        results[prompt] = out

        busy_before = sum(w["busy_s"] for w in studio.pool_status())
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client_loop) for _ in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        busy = sum(w["busy_s"] for w in studio.pool_status()) - busy_before

        rows = by_prompt()
        paths: list[str] = []
        for prompt in prompts:
            _latency, body = results[prompt]
            assert len(body["data"]) == 1, (prompt, body)
            (row,) = rows[prompt]  # in History once
            assert (row["origin"], row["state"], len(row["images"])) == ("api", "done", 1), row
            path = row["images"][0]["path"]
            assert base64.b64decode(body["data"][0]["b64_json"]) == Path(path).read_bytes(), prompt
            paths.append(path)
        assert len(set(paths)) == len(prompts), "an image was delivered twice"
        latencies = sorted(lat for lat, _b in results.values())
        overhead = (workers * wall - busy) / a.requests
        print(f"concurrent: {a.requests} requests from {a.clients} clients in {wall:.2f} s "
              f"({a.requests / wall * 60:.0f} images/min); every image delivered once, each in History once")
        print(f"  latency median {statistics.median(latencies):.2f} s, p95 {latencies[int(0.95 * len(latencies)) - 1]:.2f} s")
        print(f"  workers busy {busy:.2f} s of {workers} x {wall:.2f} s = {busy / (workers * wall):.1%}; "
              f"queue overhead per request {overhead * 1000:.1f} ms "
              f"(worker time per image {busy / a.requests * 1000:.1f} ms)")
    finally:
        stop()
        studio.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
