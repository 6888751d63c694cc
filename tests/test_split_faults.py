"""A hung member of a group (issue 16's review), on two CPU workers with gloo: the pool notices it on
the stall deadline (ZAOXIANG_STALL_S, shortened here), not after the collectives' 600 s, kills the
silent member only, and a split image is made on one worker without a kill counted against it.

The knob ZAOXIANG_TEST_GROUP_HANG hangs one member, once per marker file, at a split step of its
group warm-up or of a split image; the other member then waits in a collective, as it would for a
wedged GPU. One studio serves the three cases in order (each breaks a group; the third is the last
the pool tries before it stops splitting)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from studio.core import events as ev
from studio.core.request import GenerationRequest
from studio.pool.group import JOIN_TIMEOUT_S
from studio.pool.worker_knobs import GROUP_HANG_ENV
from tests.homes import make_home
from tests.pool_helpers import Recorder, running_studio, wait_idle
from tests.test_split import record

pytestmark = pytest.mark.timeout(600)
STALL_S = 5.0


@pytest.fixture(scope="module")
def hung_group(tmp_path_factory: pytest.TempPathFactory, demo_model_master: Path):
    """A studio whose worker 1 hangs in the start-up group warm-up; markers for the split images."""
    marks = tmp_path_factory.mktemp("group-hang")
    warm, helper, leader = marks / "warm-1", marks / "image-1", marks / "image-0"
    warm.touch()
    with pytest.MonkeyPatch.context() as mp:
        make_home(tmp_path_factory.mktemp("split-faults-home"), demo_model_master, mp)
        mp.setenv("ZAOXIANG_SPLIT_IMAGE", "always")
        mp.setenv("ZAOXIANG_STALL_S", str(STALL_S))
        mp.setenv(GROUP_HANG_ENV, f"1:warm:{warm},1:image:{helper},0:image:{leader}")
        with running_studio("cpu:2") as (studio, rec):
            yield studio, rec, {"warm": warm, "helper": helper, "leader": leader}


def died(rec: Recorder, name: str) -> list[dict]:
    return rec.of(ev.WORKER_DIED, worker=name)


def test_a_member_hung_in_the_group_warm_up_is_stopped_on_the_stall_deadline(hung_group, tmp_path: Path) -> None:
    studio, rec, marks = hung_group
    assert not marks["warm"].exists()  # the knob fired: worker 1 hung in the warm-up
    [death] = died(rec, "cpu:1")
    assert "hung" in death["message"] and "in its group" in death["message"], death
    assert not died(rec, "cpu:0")  # the member that waited in the collective reported, it was not killed
    heard = [e["time"] for e in rec.of(ev.WORKER_WARMING, worker="cpu:1", stage="group") if e["time"] < death["time"]]
    silent_s = death["time"] - max(heard)
    assert STALL_S <= silent_s + 0.5 and silent_s < JOIN_TIMEOUT_S / 10, silent_s
    status = studio._pool.split_status()
    assert status["broken_groups"] == [1] and any("no word from cpu:1" in line for line in status["log"]), status
    # the restarted worker and the other warmed a group anew: the next image is split
    req = GenerationRequest(prompt="a red circle", width=256, height=256, steps=3, seed=5, seed_mode="fixed")
    [made] = studio.wait(studio.submit(req, out_dir=tmp_path), timeout=300)
    assert made["status"] == "done" and record(made["path"])["group"]["workers"] == ["cpu:0", "cpu:1"], made


def test_a_helper_hung_in_a_split_image_fails_over_to_one_worker(hung_group, tmp_path: Path) -> None:
    studio, rec, marks = hung_group
    wait_idle(studio)
    before = len(died(rec, "cpu:1"))
    marks["helper"].touch()
    req = GenerationRequest(prompt="a green square", width=256, height=256, steps=12, seed=6, seed_mode="fixed")
    t0 = time.monotonic()
    rid = studio.submit(req, out_dir=tmp_path)
    [made] = studio.wait(rid, timeout=300)
    assert made["status"] == "done", made
    assert time.monotonic() - t0 < JOIN_TIMEOUT_S / 10
    assert not marks["helper"].exists()
    assert "group" not in record(made["path"])  # made again by one worker
    assert record(made["path"])["worker"] == "cpu:0"
    assert len(died(rec, "cpu:1")) == before + 1 and "in its group" in died(rec, "cpu:1")[-1]["message"]
    assert not died(rec, "cpu:0")
    assert [e["reason"] for e in rec.of(ev.JOB_REQUEUED, request_id=rid)] == ["split_failed"]


def test_a_stalled_split_is_not_charged_to_its_image(hung_group, tmp_path: Path) -> None:
    """The leader hangs in a split image, then the worker that makes it alone is killed: one kill of
    its own, which an image survives (a kill counted for the group's stall made it two, and failed)."""
    studio, rec, marks = hung_group
    wait_idle(studio)
    assert studio._pool.split_status()["mode"] == "always"
    marks["leader"].touch()
    req = GenerationRequest(prompt="a blue triangle", width=256, height=256, steps=40, seed=7, seed_mode="fixed")
    rid = studio.submit(req, out_dir=tmp_path)
    rec.wait_for(lambda e: e["type"] == ev.JOB_REQUEUED and e["request_id"] == rid, 120)
    leader_death = rec.wait_for(lambda e: e["type"] == ev.WORKER_DIED and e["worker"] == "cpu:0", 60)
    assert "in its group" in leader_death["message"], leader_death
    alone = rec.wait_for(lambda e: e["type"] == ev.STEP and e["request_id"] == rid and e["worker"] == "cpu:1"
                         and e["step"] >= 2, 120)
    pid = {r["name"]: r["pid"] for r in studio.pool_status()}["cpu:1"]
    os.kill(pid, signal.SIGKILL)
    [made] = studio.wait(rid, timeout=300)
    assert made["status"] == "done", made
    assert "group" not in record(made["path"]) and alone["worker"] == "cpu:1"
    assert not rec.of(ev.JOB_FAILED, request_id=rid)
    assert len(rec.of(ev.JOB_REQUEUED, request_id=rid)) == 2
    assert studio._pool.split_status()["mode"] == "never"  # three broken groups: the pool stops splitting


def test_a_group_compiling_its_split_is_not_taken_for_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group warm-up compiles the split before its first step: its members may be silent for twice
    the compile each took at load (30 s here), and never less than COMPILE_FLOORS stall floors. No process is started: the
    pool's handlers take READY as its loop would (tests/test_split_choice.py)."""
    from tests.test_split_choice import gpu_pool, say_ready

    monkeypatch.setenv("ZAOXIANG_STALL_S", str(STALL_S))
    pool = gpu_pool(2, "always")
    say_ready(pool, 0)
    say_ready(pool, 1)
    assert pool._warming == {0: 1, 1: 1}
    for slot in pool._slots:
        slot.proc = object()  # stands for the worker's process, which stall deadlines need alive
    deadline, limit = pool._stall(pool._slots[0])
    assert limit == 60.0 and deadline is not None
    # a worker whose load compiled nothing (a warm cache): the split graphs may still be cold, so a
    # first split compile gets COMPILE_FLOORS stall floors all the same
    from studio.pool.supervisor import COMPILE_FLOORS

    pool._slots[1].info["compile_s"] = 0.0
    assert pool._stall(pool._slots[1])[1] == COMPILE_FLOORS * STALL_S
