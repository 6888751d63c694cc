"""The store with the real pool on CPU workers: SIGKILL mid-request then resume, full and read-only
disks, and the Studio's history queries (which never start the pool)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.core import jobs as js
from studio.core.metadata import request_from_chunks
from studio.core.paths import get_paths
from studio.core.pngfile import read_chunks
from studio.core.request import GenerationRequest
from tests.conftest import cli_env

pytestmark = pytest.mark.slow


def zaoxiang(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *args], env=cli_env(home), capture_output=True,
                          text=True, timeout=timeout)


def pngs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.png") if not p.name.startswith("."))


def test_sigkill_mid_request_then_resume_makes_each_image_once(home: Path) -> None:
    gallery = get_paths().gallery_dir
    args = [sys.executable, "-m", "studio", "generate", "断电测试 power cut", "--count", "10", "--workers", "cpu:2",
            "--width", "256", "--height", "256", "--steps", "2", "--seed", "100", "--seed-mode", "increment"]
    proc = subprocess.Popen(args, env=cli_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own process group: the studio and its workers
    try:
        deadline = time.monotonic() + 240
        while len(pngs(gallery)) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no image after 240 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole studio, workers included, mid-request
        proc.wait(30)
    before = len(pngs(gallery))
    assert 2 <= before < 10, f"the kill came too late to test anything ({before} images)"
    time.sleep(0.5)

    r = zaoxiang(home, "resume", "--workers", "cpu:2")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    files = pngs(gallery)
    seeds = sorted(request_from_chunks(read_chunks(p))[0].seed for p in files)
    assert seeds == list(range(100, 110))  # exactly 10 images, each seed once
    h = zaoxiang(home, "history", "--json")
    assert h.returncode == 0, h.stderr
    [row] = [json.loads(line) for line in h.stdout.splitlines()]
    assert row["state"] == "done" and row["jobs"] == row["jobs_done"] == 10 and row["origin"] == "cli"
    assert sorted(im["path"] for im in row["images"]) == sorted(str(p) for p in files)
    assert sorted(im["seed"] for im in row["images"]) == seeds
    again = zaoxiang(home, "resume", "--workers", "cpu:1")
    assert again.returncode == 0 and "Nothing to resume" in again.stderr
    assert len(pngs(gallery)) == 10
    text = zaoxiang(home, "history", "--search", "断电")
    assert "done" in text.stdout and "10/10" in text.stdout


@pytest.fixture
def small_mounts(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A tiny tmpfs (fills up on the first image) and a read-only one: real ENOSPC and EROFS."""
    full, ro = tmp_path / "full", tmp_path / "readonly"
    full.mkdir()
    ro.mkdir()
    mounted = []
    try:
        for folder, opts in ((full, "size=16k"), (ro, "size=1m,ro")):
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True)
            if r.returncode != 0:
                pytest.skip(f"cannot mount a small file system here: {r.stderr.decode().strip()}")
            mounted.append(folder)
        yield full, ro
    finally:
        for folder in reversed(mounted):
            subprocess.run(["umount", str(folder)], capture_output=True)


def test_full_and_read_only_output_keep_jobs_queued_then_resume(home: Path, small_mounts) -> None:
    from studio.app import Studio

    full, ro = small_mounts
    req = GenerationRequest(prompt="满了 disk full", width=256, height=256, steps=2, seed=5, seed_mode="fixed")
    with Studio(workers="cpu:1") as studio:
        rids = [studio.submit(req, origin="cli", out_dir=full),
                studio.submit(GenerationRequest(**{**req.to_dict(), "prompt": "只读 read only"}), origin="cli",
                              out_dir=ro)]
        got = [r for rid in rids for r in studio.wait(rid, timeout=150)]
        assert [r["status"] for r in got] == ["failed", "failed"]
        # Studio.wait returns once the store has recorded the request's end too: no polling here.
        rows = {r["prompt"]: r for r in studio.history()}
    full_row, ro_row = rows["满了 disk full"], rows["只读 read only"]
    assert full_row["state"] == js.QUEUED and "disk is full" in full_row["errors"][0]
    assert ro_row["state"] == js.QUEUED and "read-only" in ro_row["errors"][0]
    assert "stays queued" in full_row["errors"][0] and str(full) in full_row["errors"][0]
    assert [p for p in full.rglob("*") if p.is_file()] == []  # no half-written file left behind

    subprocess.run(["mount", "-o", "remount,size=8m", str(full)], check=True)
    subprocess.run(["mount", "-o", "remount,rw", str(ro)], check=True)
    with Studio(workers="cpu:1") as studio:
        studio.start(resume=True)
        assert sorted(studio.resumed) == sorted([full_row["request_id"], ro_row["request_id"]])
        for rid in studio.resumed:
            assert [r["status"] for r in studio.wait(rid, timeout=300)] == ["done"]
        rows = {r["prompt"]: r for r in studio.history()}
    for folder, prompt in ((full, "满了 disk full"), (ro, "只读 read only")):
        [png] = pngs(folder)
        row = rows[prompt]
        assert row["state"] == js.DONE and [im["path"] for im in row["images"]] == [str(png)]
        assert request_from_chunks(read_chunks(png))[0].seed == 5


def test_studio_records_events_and_answers_queries(home: Path, tmp_path: Path) -> None:
    from studio.app import Studio
    from studio.core import events as ev

    seen: list[dict] = []
    with Studio(workers="cpu:1") as studio:
        studio.subscribe(seen.append)
        rid = studio.submit(GenerationRequest(prompt="记录 recorded \"q\" 100%", width=256, height=256, steps=2,
                                              count=2, seed=9, seed_mode="increment"), origin="api")
        [row] = studio.history()  # recorded before submit returned
        assert row["request_id"] == rid and row["jobs"] == 2 and row["origin"] == "api"
        results = studio.wait(rid, timeout=300)
        assert [r["status"] for r in results] == ["done", "done"]
        time.sleep(0.5)  # let the delivery thread hand over the last events
    done = [e for e in seen if e["type"] == ev.JOB_DONE]
    assert len(done) == 2 and all(isinstance(e["image_id"], int) for e in done)

    fresh = Studio(workers="cpu:1")  # a new process would see the same: the UI's queries, no pool
    try:
        [row] = fresh.history(search="100%")
        assert row["state"] == js.DONE and row["jobs_done"] == 2
        page = fresh.gallery(0, 48)
        assert page["total"] == 2 and [im["seed"] for im in page["items"]] in ([10, 9], [9, 10])
        image_id = row["images"][0]["id"]
        info = fresh.image_info(image_id)
        assert info["request"]["seed"] == 9 and info["model"] == "demo" and info["worker"] == "cpu:0"
        assert fresh.reuse(image_id=image_id).seed == 9
        assert fresh.reuse(request_id=rid).count == 2
        assert fresh.set_favorite(image_id, True)
        assert [r["request_id"] for r in fresh.history(favorites_only=True)] == [rid]
        out = fresh.export([im["id"] for im in row["images"]], tmp_path / "sel.zip")
        assert out.is_file()
        trashed = fresh.delete_image(image_id)
        assert trashed is not None and trashed.is_file()
        assert fresh.gallery()["total"] == 1
        assert fresh.empty_trash()["files"] == 1
        assert fresh.last_reconciliation() is not None  # the first studio's start ran one
        assert fresh._pool is None  # none of the above started a worker
    finally:
        fresh.close()


def test_cli_says_stays_queued_with_the_resume_hint_not_failed(home: Path, small_mounts) -> None:
    full, _ro = small_mounts
    r = zaoxiang(home, "generate", "满了 full from the CLI", "--out", str(full), "--workers", "cpu:1", "--width", "256",
                 "--height", "256", "--steps", "2", "--seed", "3")
    assert r.returncode == 1 and r.stdout == ""
    assert "Traceback" not in r.stderr and "failed" not in r.stderr, r.stderr
    assert "image 1 (seed 3) stays queued: Could not save the image: the disk is full" in r.stderr
    assert "1 images stay queued; run `zaoxiang resume` to make them." in r.stderr
