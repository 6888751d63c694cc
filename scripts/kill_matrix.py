"""The kill matrix: SIGKILL the studio (parent), its process group, or one worker, before, during and
after a PNG write, then check that nothing was lost or made twice.

Each run is a real `zaoxiang generate` on CPU workers with the demo model, in a throw-away studio
home. Steps are slowed (ZAOXIANG_TEST_WORKER_DELAY) and each PNG's temp file is held a moment before
its rename (ZAOXIANG_TEST_WRITE_HOLD), so every moment can be hit on purpose:
- before: an image is mid-steps and no temp file exists;
- during: a `.part-` temp file exists (the PNG is being written);
- after:  a new PNG has just appeared (renamed; the database may not know yet).
A killed studio is followed by `zaoxiang resume` (a killed worker is restarted by its studio). Then
every check: each seed on disk exactly once, every PNG valid, no `.part-` file left, the database
passes `PRAGMA quick_check` with every job done, no process of the run left alive.

    python scripts/kill_matrix.py --runs 3          # 27 runs, a few minutes each cell on 2 cores
    python scripts/kill_matrix.py --json out.json   # the counts as JSON too
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studio.core.atomic import PART_PREFIX  # noqa: E402
from studio.core.metadata import request_from_chunks  # noqa: E402
from studio.core.pngfile import read_chunks  # noqa: E402
from studio.pool.worker import DELAY_ENV, WRITE_HOLD_ENV  # noqa: E402

TARGETS = ("parent", "group", "worker")
MOMENTS = ("before", "during", "after")
COUNT = 6  # images per run
SEED = 1000


@dataclass
class Run:
    target: str
    moment: str
    hit: bool = False  # the kill landed at the moment asked for
    images_on_disk: int = 0
    seeds_once: bool = False
    valid_pngs: bool = False
    partials_left: int = 0
    db_intact: bool = False
    jobs_done: bool = False
    orphans: int = 0
    seconds: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        return (self.seeds_once and self.valid_pngs and not self.partials_left and self.db_intact
                and self.jobs_done and not self.orphans)


@dataclass
class Cell:
    runs: list[Run] = field(default_factory=list)


def studio_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ZAOXIANG_HOME": str(home), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT),
                DELAY_ENV: "0:0.25,1:0.25", WRITE_HOLD_ENV: "0.4"})
    for var in ("HF_HOME", "HF_HUB_CACHE", "MODELSCOPE_CACHE"):
        env[var] = str(home.parent / "empty-cache" / var.lower())
    return env


def files(gallery: Path) -> tuple[list[Path], list[Path]]:
    """(PNGs, temp files) under the gallery."""
    pngs, parts = [], []
    for folder, _dirs, names in os.walk(gallery):
        for name in names:
            if name.startswith(PART_PREFIX):
                parts.append(Path(folder) / name)
            elif name.endswith(".png") and not name.startswith("."):
                pngs.append(Path(folder) / name)
    return pngs, parts


def workers_of(pid: int) -> list[psutil.Process]:
    """The pool's worker processes (spawned children, not multiprocessing's resource tracker)."""
    try:
        kids = psutil.Process(pid).children()
    except psutil.Error:
        return []
    out = []
    for kid in kids:
        try:
            cmd = " ".join(kid.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in cmd and "resource_tracker" not in cmd:
            out.append(kid)
    return out


def writer_of(workers: list[psutil.Process], part: Path) -> psutil.Process | None:
    for w in workers:
        try:
            if any(f.path == str(part) for f in w.open_files()):
                return w
        except psutil.Error:
            continue
    return None


def processes_of(home: Path) -> list[int]:
    found = []
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and p.environ().get("ZAOXIANG_HOME") == str(home):
                found.append(p.pid)
        except psutil.Error:
            continue
    return found


def wait_moment(proc: subprocess.Popen, gallery: Path, moment: str, deadline: float) -> tuple[bool, Path | None]:
    """Poll until the moment comes; (hit, the temp file being written when the moment is `during`)."""
    seen = len(files(gallery)[0])
    while time.monotonic() < deadline and proc.poll() is None:
        pngs, parts = files(gallery)
        if moment == "during" and parts and len(pngs) >= 1:
            return True, parts[0]
        if moment == "after" and len(pngs) > seen and len(pngs) >= 2:
            return True, None
        if moment == "before" and len(pngs) >= 2 and not parts and workers_of(proc.pid):
            return True, None
        seen = len(pngs)
        time.sleep(0.005)
    return False, None


def kill(proc: subprocess.Popen, target: str, part: Path | None) -> str:
    if target == "parent":
        os.kill(proc.pid, signal.SIGKILL)
        return "studio"
    if target == "group":
        os.killpg(proc.pid, signal.SIGKILL)
        return "group"
    workers = workers_of(proc.pid)
    writer = writer_of(workers, part) if part else None
    victim = writer or (workers[0] if workers else None)
    if victim is None:
        return "no worker found"
    victim.kill()
    return f"worker {victim.pid}{' (the writer)' if writer else ''}"


def check(run: Run, home: Path, gallery: Path, db: Path) -> None:
    pngs, parts = files(gallery)
    run.images_on_disk = len(pngs)
    run.partials_left = len(parts)
    seeds = []
    valid = True
    for p in pngs:
        try:
            with Image.open(p) as im:
                im.load()
            seeds.append(request_from_chunks(read_chunks(p))[0].seed)
        except Exception:
            valid = False
    run.valid_pngs = valid
    run.seeds_once = sorted(seeds) == list(range(SEED, SEED + COUNT))
    try:
        with sqlite3.connect(db) as conn:
            run.db_intact = conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            states = {r[0] for r in conn.execute("SELECT state FROM jobs")}
            run.jobs_done = states == {"done"}
    except sqlite3.Error as exc:
        run.note += f" db: {exc}"
    time.sleep(0.5)
    run.orphans = len(processes_of(home))


def one_run(target: str, moment: str, base: Path, timeout_s: float) -> Run:
    run = Run(target, moment)
    t0 = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix=f"{target}-{moment}-", dir=base)) / "home"
    env = studio_env(home)
    gallery = home / "data" / "gallery"
    cmd = [sys.executable, "-m", "studio", "generate", "kill matrix 断电", "--count", str(COUNT),
           "--workers", "cpu:2", "--width", "256", "--height", "256", "--steps", "4",
           "--seed", str(SEED), "--seed-mode", "increment"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        run.hit, part = wait_moment(proc, gallery, moment, time.monotonic() + timeout_s)
        if run.hit:
            run.note = kill(proc, target, part)
        else:
            run.note = "moment missed"
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            run.note += "; the studio did not finish"
        if target != "worker" or proc.returncode != 0:
            resume = subprocess.run([sys.executable, "-m", "studio", "resume", "--workers", "cpu:2"], env=env,
                                    cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
            if resume.returncode != 0:
                run.note += f"; resume exited {resume.returncode}: {resume.stderr.strip()[-200:]}"
        check(run, home, gallery, home / "data" / "studio.sqlite3")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for pid in processes_of(home):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    run.seconds = round(time.monotonic() - t0, 1)
    return run


def table(cells: dict[tuple[str, str], Cell]) -> str:
    lines = ["| kill \\ moment | " + " | ".join(MOMENTS) + " |", "|---|" + "---|" * len(MOMENTS)]
    for target in TARGETS:
        row = []
        for moment in MOMENTS:
            runs = cells[(target, moment)].runs
            hit = [r for r in runs if r.hit]
            row.append(f"{sum(r.ok for r in hit)}/{len(hit)} ok" + (f" ({len(runs) - len(hit)} missed)"
                                                                    if len(hit) < len(runs) else ""))
        lines.append(f"| {target} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per cell (default 3)")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds a run may take per phase")
    ap.add_argument("--json", type=Path, default=None, help="write every run as JSON here")
    ap.add_argument("--only", default=None, help="one cell, e.g. group:during")
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="zaoxiang-kill-matrix-"))
    cells = {(t, m): Cell() for t in TARGETS for m in MOMENTS}
    todo = [tuple(a.only.split(":"))] if a.only else list(cells)
    try:
        for i in range(a.runs):
            for target, moment in todo:
                run = one_run(target, moment, base, a.timeout)
                cells[(target, moment)].runs.append(run)
                print(f"[{i + 1}/{a.runs}] {target:<6} {moment:<6} {'ok  ' if run.ok else 'FAIL'} "
                      f"hit={run.hit} images={run.images_on_disk} parts={run.partials_left} db={run.db_intact} "
                      f"done={run.jobs_done} orphans={run.orphans} {run.seconds:.0f}s  {run.note}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    runs = [r for c in cells.values() for r in c.runs]
    hit = [r for r in runs if r.hit]
    print()
    print(table(cells))
    print(f"\n{sum(r.ok for r in hit)} of {len(hit)} runs that hit their moment held "
          f"({len(runs) - len(hit)} missed); images on disk once, valid PNGs, no temp file, database intact, "
          "every job done, no process left.")
    if a.json:
        a.json.write_text(json.dumps([{**asdict(r), "ok": r.ok} for r in runs], indent=1), encoding="utf-8")
    return 0 if all(r.ok for r in hit) else 1


if __name__ == "__main__":
    sys.exit(main())
