"""A damaged history database never stops the studio: it is moved aside and rebuilt from the PNGs.

Real SQLite files damaged the way disks and people damage them (cut in half, overwritten with
garbage, emptied), opened through `zaoxiang history` in a subprocess as a person would.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from studio.core.paths import get_paths
from studio.core.request import GenerationRequest
from studio.store import Store, reconcile
from tests.conftest import cli_env
from tests.store_helpers import split, write_job_png


def history_with_images(paths, images: int = 3, padding: int = 150) -> list[Path]:
    """A history of `images` made images (PNGs in the gallery) and `padding` requests without files,
    so the database spans many pages; the WAL checkpointed into the main file. Returns the PNGs."""
    store = Store()
    pngs = []
    req = GenerationRequest(prompt="留下来的 kept image", width=256, height=256, count=images, seed=40,
                            seed_mode="increment")
    jobs = split(req, paths.gallery_dir)
    store.record_request(req, jobs, origin="cli", model="demo")
    for job in jobs:
        pngs.append(write_job_png(job))
        store.mark_done(job.job_id, job.output_path)
    for i in range(padding):
        filler = GenerationRequest(prompt=f"padding request {i} " * 30, width=256, height=256, count=2)
        store.record_request(filler, split(filler, paths.gallery_dir / "never-made"))
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return pngs


def history_json(home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", "history", "--json", "--limit", "500"],
                          env=cli_env(home), capture_output=True, text=True, timeout=120)


def damaged_copies(db: Path) -> list[Path]:
    return sorted(p for p in db.parent.iterdir() if ".damaged-" in p.name and not p.name.endswith(("-wal", "-shm")))


@pytest.mark.parametrize("damage", ["half-truncated", "garbage"])
def test_damaged_database_is_moved_aside_and_rebuilt_from_the_pngs(paths, damage: str) -> None:
    pngs = history_with_images(paths)
    db = paths.database
    original = db.read_bytes()
    if damage == "half-truncated":
        with open(db, "r+b") as fh:
            fh.truncate(len(original) // 2)
    else:
        db.write_bytes(os.urandom(len(original)))
    Path(f"{db}-wal").write_bytes(b"stale log")  # a leftover log goes aside with its database

    r = history_json(Path(os.environ["ZAOXIANG_HOME"]))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    [moved] = damaged_copies(db)
    assert f"kept as {moved}" in r.stderr and "3 images were found again" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # one line for the person
    assert moved.stat().st_size == (len(original) // 2 if damage == "half-truncated" else len(original))
    assert Path(f"{moved}-wal").read_bytes() == b"stale log"
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["prompt"] for row in rows] == ["留下来的 kept image"]
    assert sorted(im["path"] for im in rows[0]["images"]) == sorted(str(p) for p in pngs)
    assert sorted(im["seed"] for im in rows[0]["images"]) == [40, 41, 42]
    with sqlite3.connect(db) as conn:  # the new database is sound
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"

    again = history_json(Path(os.environ["ZAOXIANG_HOME"]))  # told once: the new database is fine
    assert again.returncode == 0 and again.stderr == "" and len(damaged_copies(db)) == 1


def test_empty_database_is_reported(paths) -> None:
    pngs = history_with_images(paths, images=2, padding=0)
    paths.database.write_bytes(b"")
    r = history_json(Path(os.environ["ZAOXIANG_HOME"]))
    assert r.returncode == 0, r.stderr
    assert "was empty (0 bytes)" in r.stderr and "2 images were found again" in r.stderr
    [row] = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(im["path"] for im in row["images"]) == sorted(str(p) for p in pngs)
    assert damaged_copies(paths.database) == []


def test_a_sound_database_is_left_alone(paths) -> None:
    history_with_images(paths, images=1, padding=5)
    before = paths.database.read_bytes()
    with Store() as store:
        assert store.recovery is None and len(store.history()) == 6
    assert damaged_copies(paths.database) == [] and paths.database.read_bytes()[:100] == before[:100]


def test_a_locked_database_is_not_taken_for_damaged(paths) -> None:
    history_with_images(paths, images=1, padding=0)
    holder = sqlite3.connect(paths.database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds it: an error, never a quarantine
    try:
        store = Store()
        with pytest.raises(Exception, match="locked|busy"):
            store.set_meta("x", 1)
        store.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert damaged_copies(paths.database) == []


def test_walk_survives_unreadable_entries(store, paths, tmp_path: Path) -> None:
    """An output folder of `/` once stopped the studio at `/proc/1/map_files` (unreadable even to root)."""
    req = GenerationRequest(prompt="beside the kernel", width=256, height=256)
    [job] = split(req, tmp_path / "out")
    write_job_png(job)
    locked = tmp_path / "out" / "locked"
    locked.mkdir()
    (locked / "inside.png").write_bytes(b"x")
    locked.chmod(0)
    try:
        report = reconcile(store, [tmp_path / "out", "/proc/1"])
    finally:
        locked.chmod(0o755)
    assert report["indexed"] == 1
    assert [r["prompt"] for r in store.history()] == ["beside the kernel"]


def test_partials_are_swept_when_no_studio_is_alive(home: Path) -> None:
    """A crash mid-write leaves `.part-` files; a start with no other live studio removes every one,
    fresh or not (no one could be writing it)."""
    from studio.app import Studio

    day = get_paths().gallery_dir / "2026-01-01"
    day.mkdir(parents=True)
    part = day / ".part-abc123.png"
    part.write_bytes(b"half an image")
    with Studio(workers="cpu:1") as studio:
        studio.start()
        assert not part.exists()
        assert studio.last_reconciliation()["partials_removed"] == 1
