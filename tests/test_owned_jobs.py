"""Owned jobs with real processes: SIGTERM and Quit keep the queue, the next start makes each image
once, two processes on one data dir never make the same job, and a reused pid is not an owner."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from studio.core import jobs as js
from studio.core.metadata import request_from_chunks
from studio.core.paths import get_paths
from studio.core.pngfile import read_chunks
from studio.core.request import GenerationRequest
from studio.store import Store
from studio.store.owners import LEASE_S, Owner
from tests.conftest import cli_env
from tests.pool_helpers import Recorder
from tests.store_helpers import split

pytestmark = pytest.mark.slow
SLOW_STEPS = "0:0.4"  # ZAOXIANG_TEST_WORKER_DELAY: each step of worker 0 takes 0.4 s more


def pngs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.png") if not p.name.startswith("."))


def seeds_of(files: list[Path]) -> list[int]:
    return sorted(request_from_chunks(read_chunks(p))[0].seed for p in files)


def generate(home: Path, prompt: str, count: int, seed: int, *, slow: bool = True,
             group: bool = False) -> subprocess.Popen:
    env = cli_env(home)
    if slow:
        env["ZAOXIANG_TEST_WORKER_DELAY"] = SLOW_STEPS
    return subprocess.Popen([sys.executable, "-m", "studio", "generate", prompt, "--count", str(count),
                             "--workers", "cpu:1", "--width", "256", "--height", "256", "--steps", "3",
                             "--seed", str(seed), "--seed-mode", "increment"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=group)


def resume(home: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "studio", "resume", "--workers", "cpu:1", *extra],
                            env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_images(proc: subprocess.Popen, folder: Path, n: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while len(pngs(folder)) < n:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"fewer than {n} images after {timeout} s"
        time.sleep(0.05)


def processes_of(home: Path) -> list[int]:
    """Live processes started with this studio home (the studio and its workers), zombies excluded."""
    found = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if p.pid != os.getpid() and p.info["status"] != psutil.STATUS_ZOMBIE and p.environ().get("ZAOXIANG_HOME") == str(home):
                found.append(p.pid)
        except psutil.Error:
            continue
    return found


def job_rows(home: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(get_paths().database)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT state, owner, output_path FROM jobs").fetchall()
    finally:
        conn.close()


def test_sigterm_keeps_unfinished_jobs_queued_and_resume_makes_each_once(home: Path) -> None:
    gallery = get_paths().gallery_dir
    proc = generate(home, "优雅退出 graceful stop", 8, 100)
    wait_for_images(proc, gallery, 2)
    proc.send_signal(signal.SIGTERM)  # the process only, as a service manager or `kill` would
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    made = pngs(gallery)
    assert 2 <= len(made) < 8
    assert f"{8 - len(made)} unfinished images stay queued; run `zaoxiang resume`" in err
    rows = job_rows(home)
    states = sorted(r["state"] for r in rows)
    assert states == sorted([js.DONE] * len(made) + [js.QUEUED] * (8 - len(made))), states  # none cancelled
    assert all(r["owner"] is None for r in rows if r["state"] == js.QUEUED)
    time.sleep(0.5)
    assert processes_of(home) == []  # no worker outlived the studio

    r = resume(home)
    out, err = r.communicate(timeout=300)
    assert r.returncode == 0, err
    resumed = out.split()
    assert len(resumed) == len(set(resumed)) == 8 - len(made)
    assert not set(resumed) & {str(p) for p in made}
    assert seeds_of(pngs(gallery)) == list(range(100, 108))  # every image once
    assert {r["state"] for r in job_rows(home)} == {js.DONE}


def test_quit_keeps_the_queue_and_the_next_start_asks(home: Path) -> None:
    """The window's Quit path (launcher._shutdown) with a request running: nothing is cancelled; the
    next start counts the images from last time, makes each once on resume, or discards them."""
    from studio.app import Studio
    from studio.desktop.launcher import RunningJobs, _shutdown

    os.environ["ZAOXIANG_TEST_WORKER_DELAY"] = SLOW_STEPS
    try:
        studio = Studio(workers="cpu:1")
        jobs = RunningJobs()
        studio.subscribe(jobs.handle)
        seen = Recorder()
        studio.subscribe(seen)
        rid = studio.submit(GenerationRequest(prompt="退出 quit", width=256, height=256, steps=3, count=6, seed=7,
                                              seed_mode="increment"))
        seen.wait_for(lambda e: e["type"] == "job_done", timeout=240)
        _shutdown(studio, jobs, False, None, [])
    finally:
        del os.environ["ZAOXIANG_TEST_WORKER_DELAY"]
    with Store() as store:
        [row] = store.history()
        assert row["request_id"] == rid and row["jobs_cancelled"] == 0 and row["jobs_running"] == 0
        left = row["jobs_queued"]
        assert 1 <= left <= 5 and row["jobs_done"] == 6 - left

    with Studio(workers="cpu:1") as studio:
        studio.start()  # a plain start asks: it makes nothing of them by itself
        assert studio.orphans() == {"count": left, "requests": 1, "other_models": []}
        assert studio.resumed == []
        [again] = studio.resume_orphans()
        assert again == rid
        results = studio.wait(rid, timeout=300)
        assert [r["status"] for r in results] == ["done"] * left
        assert studio.orphans()["count"] == 0
    assert seeds_of(pngs(get_paths().gallery_dir)) == list(range(7, 13))

    with Studio() as studio:  # "discard" on a queue left by a crash
        with Store() as store:
            req = GenerationRequest(prompt="放弃 discard", width=256, height=256, count=3)
            store.record_request(req, split(req, get_paths().gallery_dir), model="demo",
                                 owner=store.register_owner())  # its owner is this live process...
        assert studio.orphans()["count"] == 0  # ...so nobody may take them
        with sqlite3.connect(get_paths().database) as conn:
            conn.execute("UPDATE owners SET pid = ?", (dead_pid(),))  # ...until it is gone
        assert studio.orphans()["count"] == 3
        assert studio.discard_orphans() == 3 and studio.orphans()["count"] == 0
        assert studio.history(search="discard")[0]["state"] == js.CANCELLED


def test_two_processes_on_one_data_dir_never_make_the_same_job(home: Path) -> None:
    gallery = get_paths().gallery_dir
    owner = generate(home, "两个进程 two processes", 8, 500, group=True)
    try:
        wait_for_images(owner, gallery, 1)
        # A live studio's jobs are its own: neither a resume nor a new start takes them.
        r = resume(home)
        out, err = r.communicate(timeout=120)
        assert r.returncode == 0 and "Nothing to resume" in err and out == "", err
        with Store() as store:
            assert store.claim_orphans(store.register_owner(), "demo", None) == []
        wait_for_images(owner, gallery, 2)
    finally:
        os.killpg(owner.pid, signal.SIGKILL)  # the studio and its worker, mid-request: jobs orphaned
        owner.wait(30)
    before = {str(p) for p in pngs(gallery)}
    assert 2 <= len(before) < 8
    time.sleep(0.5)

    racers = [resume(home), resume(home)]  # both want the orphans at once
    outs = [p.communicate(timeout=400) for p in racers]
    assert [p.returncode for p in racers] == [0, 0], [e for _o, e in outs]
    made = [line for o, _e in outs for line in o.split()]
    assert len(made) == len(set(made)), f"an image was made twice: {made}"
    assert not set(made) & before
    assert seeds_of(pngs(gallery)) == list(range(500, 508))
    assert sum("Nothing to resume" in e for _o, e in outs) >= 1 or all(o for o, _e in outs)
    assert {r["state"] for r in job_rows(home)} == {js.DONE}
    assert processes_of(home) == []


def dead_pid() -> int:
    """A pid that no process has now."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_owner_liveness_uses_the_pids_start_time() -> None:
    me = psutil.Process()
    now = time.time()
    host = socket.gethostname()
    assert Owner("a", host, me.pid, me.create_time(), now - 10 * LEASE_S).alive(now)  # late heartbeat, alive
    assert not Owner("b", host, me.pid, me.create_time() - 3600, now).alive(now)  # pid reused by someone else
    assert not Owner("c", host, dead_pid(), None, now).alive(now)
    assert Owner("d", "another-host", 1, None, now - 5).alive(now)  # elsewhere: the lease decides
    assert not Owner("e", "another-host", 1, None, now - LEASE_S - 1).alive(now)


def test_resume_keeps_jobs_of_a_missing_model_queued(home: Path, tmp_path: Path) -> None:
    with Store() as store:
        req = GenerationRequest(prompt="另一个模型 other model", width=256, height=256, count=2)
        store.record_request(req, split(req, get_paths().gallery_dir), model="Z-Image-Turbo",
                             model_path=str(tmp_path / "gone-model"))
    r = resume(home)
    out, err = r.communicate(timeout=120)
    assert r.returncode == 1 and out == ""
    assert (f"2 images wait for the model Z-Image-Turbo ({tmp_path / 'gone-model'}), which is not here; "
            "they stay queued") in err
    assert "Traceback" not in err
    assert {row["state"] for row in job_rows(home)} == {js.QUEUED}
