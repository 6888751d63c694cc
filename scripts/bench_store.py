"""Benchmark the store on a 100,000-image history: insert, history page, search, reconciliation.

    .venv/bin/python scripts/bench_store.py [--images 100000] [--dir /tmp/somewhere] [--keep]

Everything happens in a temporary folder (never the studio's real data). Prints one line per figure;
targets from issue 4: history page < 20 ms, search < 100 ms, reconciliation of 100,000 files < 10 s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, PngImagePlugin  # noqa: E402

from studio.core.jobs import Job  # noqa: E402
from studio.core.metadata import build_record, text_chunks  # noqa: E402
from studio.core.naming import image_path  # noqa: E402
from studio.core.pngfile import write_png  # noqa: E402
from studio.core.request import GenerationRequest  # noqa: E402
from studio.core.spec import ImageSpec  # noqa: E402
from studio.store import Store, reconcile  # noqa: E402

ZH = ["一只", "橘色的", "猫咪", "在", "雪山", "下", "古风", "少女", "水墨", "山水", "画", "赛博朋克", "城市",
      "夜景", "霓虹", "灯光", "樱花", "树", "宫殿", "龙", "油画", "风格", "高清", "细节", "日落", "海边"]
EN = ["a", "red", "cat", "sitting", "on", "the", "mountain", "portrait", "of", "woman", "watercolor",
      "cyberpunk", "city", "night", "neon", "lights", "cherry", "blossom", "palace", "dragon", "oil",
      "painting", "highly", "detailed", "sunset", "beach", "astronaut", "forest", "cinematic", "4k"]


def make_prompt(rng: random.Random) -> str:
    zh = "".join(rng.choice(ZH) for _ in range(rng.randint(4, 12)))
    en = " ".join(rng.choice(EN) for _ in range(rng.randint(4, 14)))
    return rng.choice([zh, en, f"{zh}, {en}"])


def timed(fn, repeat: int = 20) -> tuple[float, float, object]:
    """Median and max wall time in ms over `repeat` runs (after one warm-up), and the last result."""
    out = fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="work folder (default: a new temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args()
    work = Path(a.dir or tempfile.mkdtemp(prefix="bench-store-"))
    gallery = work / "gallery"
    store = Store(work / "studio.sqlite3", trash_dir=work / "trash")
    rng = random.Random(1234)
    print(f"work folder: {work}  sqlite {__import__('sqlite3').sqlite_version}  python {sys.version.split()[0]}")

    # one real PNG (our writer, our metadata), hard-linked under every gallery path below
    seed_png = write_png(Image.new("RGB", (64, 64), (200, 80, 40)), work / "seed.png", build_record(
        ImageSpec(prompt="seed", seed=1, model="demo"), "cpu:0", 0.1))

    # -- insert ------------------------------------------------------------------------------------
    start_day = datetime(2025, 1, 1)
    n_images, n_requests, paths = 0, 0, []
    t0 = time.perf_counter()
    while n_images < a.images:
        with store.batch():
            for _ in range(1000):
                if n_images >= a.images:
                    break
                count = min(rng.randint(1, 4), a.images - n_images)
                created = start_day + timedelta(seconds=n_requests * 800)  # ~a year of history
                req = GenerationRequest(prompt=make_prompt(rng), width=1024, height=1024, seed=None, count=count)
                rid = uuid.uuid4().hex
                jobs = []
                for i, spec in enumerate(req.expand("demo", rng)):
                    jid = uuid.uuid4().hex
                    jobs.append(Job(jid, rid, i, spec, str(image_path(gallery, created, req.prompt, spec.seed, jid))))
                store.record_request(req, jobs, origin="cli", model="demo", created=created.timestamp())
                for j in jobs:
                    image_id = store.mark_done(j.job_id, worker="cuda:0", timings={"elapsed_s": 1.5},
                                               finished=created.timestamp())
                    if rng.random() < 0.05:
                        store.set_favorite(image_id, True)
                    paths.append(j.output_path)
                n_images += count
                n_requests += 1
    insert_s = time.perf_counter() - t0
    print(f"insert: {n_images} images in {n_requests} requests: {insert_s:.2f} s "
          f"({n_images / insert_s:,.0f} images/s, batched 1000 requests per transaction)")

    # one request at a time, each its own durable transaction (what Studio.submit does)
    t0 = time.perf_counter()
    for k in range(200):
        rid = uuid.uuid4().hex
        req = GenerationRequest(prompt=make_prompt(rng), count=4)
        jobs = [Job(uuid.uuid4().hex, rid, i, spec, str(work / "single" / f"{rid}_{i}.png"))
                for i, spec in enumerate(req.expand("demo", rng))]
        store.record_request(req, jobs, origin="ui", created=time.time() - 10 * 365 * 86400 - k)
    one_ms = (time.perf_counter() - t0) * 1000 / 200
    print(f"record_request (4 jobs, own transaction, synchronous=FULL): {one_ms:.2f} ms each (mean of 200)")
    size_mb = sum(p.stat().st_size for p in work.glob("studio.sqlite3*")) / 2**20
    print(f"database size: {size_mb:.1f} MiB")

    # -- queries -----------------------------------------------------------------------------------
    def show(label: str, fn, target: float) -> None:
        med, worst, out = timed(fn)
        n = len(out) if isinstance(out, list) else out
        print(f"{label}: median {med:.2f} ms, max {worst:.2f} ms (target < {target:g} ms) -> {n} rows")

    show("history page 1 (50 requests)", lambda: store.history(limit=50), 20)
    show("history page 200 (offset 10,000)", lambda: store.history(limit=50, offset=10_000), 20)
    show("history favorites only", lambda: store.history(favorites_only=True, limit=50), 20)
    show("history since a date", lambda: store.history(since=datetime(2025, 2, 1), limit=50), 20)
    show("gallery page 1 (48 images)", lambda: store.gallery(0, 48), 20)
    show("gallery page 1000", lambda: store.gallery(1000, 48), 20)
    show("history_count", lambda: store.history_count(), 20)
    for term in ("赛博朋克", "猫咪", "猫", "水墨山水", "astronaut", "cherry blossom", "4k", "zzzz-not-there"):
        show(f"search {term!r} (page of 50)", lambda t=term: store.history(search=t, limit=50), 100)
        show(f"search {term!r} count", lambda t=term: store.history_count(search=t), 100)

    # -- reconciliation ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    source = seed_png
    for n, p in enumerate(paths):
        if n % 50_000 == 0:  # file systems cap links per inode (ext4: 65,000)
            source = shutil.copy(seed_png, work / f"seed-{n}.png")
        try:
            os.link(source, p)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            os.link(source, p)
    print(f"(made {len(paths)} gallery files as hard links in {time.perf_counter() - t0:.1f} s, "
          f"{len({os.path.dirname(p) for p in paths})} day folders)")
    os.system("sync")
    rep = reconcile(store, [gallery])
    print(f"reconciliation, {rep['scanned']} files all known: {rep['duration_s']:.2f} s (target < 10 s) {rep}")

    new_dir = gallery / "2030-01-01"
    new_dir.mkdir(parents=True)
    for i in range(1000):  # distinct images, as if copied in by hand (no fsync: a copy, not a job)
        rec = build_record(ImageSpec(prompt=f"手工复制 copied by hand {i}", width=512, height=512, seed=i, model="demo"),
                           "cuda:1", 1.0, job_id=uuid.uuid4().hex, request_id=uuid.uuid4().hex)
        info = PngImagePlugin.PngInfo()
        for k, v in text_chunks(rec).items():
            info.add_itxt(k, v)
        Image.new("RGB", (64, 64), (i % 256, 0, 0)).save(new_dir / f"copy_{i}.png", pnginfo=info)
    for p in paths[:1000]:
        os.unlink(p)
    rep = reconcile(store, [gallery])
    print(f"reconciliation with 1000 new files and 1000 deleted: {rep['duration_s']:.2f} s -> "
          f"indexed {rep['indexed']}, missing {rep['missing']}, scanned {rep['scanned']}")
    show("search '手工复制' after import", lambda: store.history(search="手工复制", limit=50), 100)
    store.close()
    if not a.keep and not a.dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
