"""The issue-15 figures from run_pool_pass.sh's JSON files: `python3 tools/gpu/pool_pass_table.py OUT`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(folder: Path, tag: str) -> dict | None:
    try:
        return json.loads((folder / f"{tag}.json").read_text().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None


def row(tag: str, r: dict, one_gpu: dict | None) -> str:
    stats = r.get("batch_stats") or {}
    tail = (f" (engine in worker {stats.get('gpu_s_median')} s, PNG write {stats.get('write_s_median')} s: "
            f"encode {stats.get('png_s_median')} s, fsync+rename {stats.get('sync_s_median')} s)")
    busy = ", ".join(f"{k} {100 * v:.0f}%" for k, v in (stats.get("gpu_busy") or {}).items() if v is not None)
    split = ", ".join(f"{k} {v}" for k, v in (stats.get("images") or {}).items())
    speedup = "" if not one_gpu else f"{r['images_per_min_batched'] / one_gpu['images_per_min_batched']:.3f}x"
    profiles = "/".join(str(w.get("memory_profile")) for w in r["workers"])
    return (f"| {tag} | {len(r['workers'])} ({profiles}) | {r['batch_s']:.2f} s | {r['pool_s_per_image']:.4f} | "
            f"{r['images_per_min_batched']:.1f} | {speedup} | {r.get('balance_efficiency')} | {split} | {busy} | "
            f"{r['first_image_s']:.3f} / {r['latency_s']['median']:.3f} = {r['first_vs_median']:.3f} | "
            f"{r['compile_warmup_s']:.1f} s / {r['load_s']:.1f} s |" + (tail if stats.get("gpu_s_median") else ""))


def main(folder: Path) -> None:
    runs = {tag: load(folder, tag) for tag in ("e1", "p1", "p2", "cap", "p1b", "p2b", "cap16")}
    runs = {tag: r for tag, r in runs.items() if r is not None or (folder / f"{tag}.json").exists()}
    ones = [r for tag, r in runs.items() if r and tag in ("e1", "p1", "p1b")]
    e1 = runs.get("e1")
    if e1 and "engine" in e1:
        e = e1["engine"]
        print(f"engine alone ({e['device']}): 16 images {e['total_s']:.2f} s = {e['s_per_image']:.4f} s/image "
              f"(median {e['median_s']:.4f}); pool cuda:0 / engine = {e1.get('pool_vs_engine')}")
    print("| run | workers | request of 16 | s/image | images/min | vs 1-GPU pool | balance | split | "
          "GPU busy | first after ready / median single | compile / ready |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for tag, r in runs.items():
        if r is None:
            print(f"| {tag} | (no result) |")
            continue
        print(row(tag, r, None if len(r["workers"]) == 1 else ones[0] if ones else None))
    twos = [r for tag, r in runs.items() if r and tag in ("p2", "p2b")]
    for one in ones:  # every pairing of a one-GPU and a two-GPU run: the spread of the speedup
        print("speedup " + ", ".join(f"{two['images_per_min_batched'] / one['images_per_min_batched']:.3f}x"
                                     for two in twos) + f" over the one-GPU run of {one['batch_s']:.2f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
