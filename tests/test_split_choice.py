"""The pool's side of one image over several workers, without processes: how many workers a group
takes, when "auto" splits, and when a group is formed anew."""

from __future__ import annotations

from typing import Any

import pytest

from studio.core import events as ev
from studio.pool.group import GroupBook, SplitChooser, SplitMode, group_size, kinds_differ
from studio.pool.speed import Size


def test_group_size_is_a_power_of_two_up_to_eight() -> None:
    assert [group_size(n) for n in range(0, 11)] == [0, 0, 2, 2, 4, 4, 4, 4, 8, 8, 8]


def test_auto_tries_a_size_then_keeps_the_faster_way() -> None:
    big, small = Size(2048, 2048, 9), Size(1024, 1024, 9)
    c = SplitChooser()
    assert not c.want(SplitMode.NEVER, big, 2, 5.0)
    assert c.want(SplitMode.ALWAYS, small, 2, 0.1)
    assert c.want(SplitMode.AUTO, big, 2, 5.0)  # never measured: try it
    c.observe(1, big, 2, 30.0)  # a group's first split image compiles: not a measurement
    assert c.want(SplitMode.AUTO, big, 2, 5.0)
    c.observe(1, big, 2, 2.9)
    assert c.want(SplitMode.AUTO, big, 2, 5.0)
    c.observe(1, big, 2, 75.0, compiled=True)  # torch compiled during it (the shared decode, a new size)
    assert c.want(SplitMode.AUTO, big, 2, 5.0)
    c.observe(1, small, 2, 0.95)  # the same graphs serve every size
    assert not c.want(SplitMode.AUTO, small, 2, 0.93)  # no faster split: one worker makes it
    assert c.want(SplitMode.AUTO, small, 4, 0.93)  # four workers are another measurement


def test_group_book_keeps_a_group_until_its_members_change_or_it_breaks() -> None:
    book = GroupBook()
    first = book.form((0, 1))
    assert book.form((0, 1)) == first
    second = book.form((0, 1, 2, 3))
    assert second[0] == first[0] + 1
    book.broken()
    third = book.form((0, 1, 2, 3))
    assert third[0] == second[0] + 1 and third[1] > 0


# ----------------------------------------------------------------- "auto" at start-up, a pool without processes
# The pool's own handlers take the workers' real messages (READY, HELPED) as its loop would hand them
# over; no process is started, so these run in milliseconds.


def gpu_pool(n: int, mode: str = "auto") -> Any:
    from studio.pool.pool import WorkerPool
    from studio.pool.spec import WorkerSpec

    specs = [WorkerSpec(i, f"cuda:{i}", "cuda", f"GPU-not-here-{i}", 4) for i in range(n)]
    return WorkerPool(specs, model_path="random:full", model_name="test", split=mode)


def say_ready(pool: Any, i: int, device: str = "NVIDIA H200", step_s: float = 0.1) -> None:
    from studio.pool import protocol as p

    msg = p.Ready(pid=100 + i, device=device, memory_gb=139.8, load_s=1.0, warmup_s=2.0, compile_s=30.0,
                  warmup={"width": 1024, "height": 1024, "steps": 2}, threads=4, memory_profile="full",
                  warmup_step_s=step_s, warmup_tail_s=0.05)
    with pool._lock:
        pool._on_worker(pool._slots[i], None, msg)
        pool._dispatch()


def announced(pool: Any) -> list[str]:
    return [e["worker"] for e in pool._books.outbox if e["type"] == ev.WORKER_READY]


def states(pool: Any) -> list[str]:
    return [r["state"] for r in pool.status()]


def test_one_gpu_says_ready_at_once() -> None:
    pool = gpu_pool(1)
    say_ready(pool, 0)
    assert announced(pool) == ["cuda:0"] and states(pool) == ["idle"] and not pool._warming


def test_two_gpus_say_ready_once_their_group_is_warm_and_timed() -> None:
    from studio.pool import protocol as p

    pool = gpu_pool(2)
    say_ready(pool, 0)
    assert announced(pool) == [] and states(pool) == ["warming", "not started"]
    say_ready(pool, 1)  # both ready: they join and warm the group, still "warming"
    assert announced(pool) == [] and states(pool) == ["warming", "warming"] and sorted(pool._warming) == [0, 1]
    group = pool._warming[0]
    warm = dict(job_id=p.warm_id(group), busy_s=20.0, width=1024, height=1024, single_step_s=0.1)
    with pool._lock:
        pool._on_group_warmed(0, p.Helped(**warm, split_step_s=0.081))
        assert announced(pool) == []  # one freed early would take the image alone
        pool._on_group_warmed(1, p.Helped(**warm, split_step_s=0.083))
    assert announced(pool) == ["cuda:0", "cuda:1"] and states(pool) == ["idle", "idle"]
    assert pool.split_status()["step_ratio"] == {"1024x1024@2": 0.83}  # the slower member: split ÷ one
    assert pool._chooser.want(SplitMode.AUTO, Size(1024, 1024, 9), 2, 1.0)


def test_gpus_that_cannot_pay_as_a_group_say_ready_without_one() -> None:
    pool = gpu_pool(2)
    say_ready(pool, 0, device="NVIDIA GeForce RTX 4090")
    say_ready(pool, 1, device="NVIDIA GeForce RTX 3060")
    assert announced(pool) == ["cuda:0", "cuda:1"] and not pool._warming
    assert "different kinds" in pool.split_status()["no_group"]
    pool = gpu_pool(2)
    say_ready(pool, 0, step_s=0.1)
    say_ready(pool, 1, step_s=0.2)  # one card capped: the split would run at its pace
    assert announced(pool) == ["cuda:0", "cuda:1"] and "different speeds" in pool.split_status()["no_group"]
    pool = gpu_pool(2, mode="never")
    say_ready(pool, 0)
    assert announced(pool) == ["cuda:0"]


def test_a_member_not_ready_in_time_does_not_hold_the_other(monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.pool import split_dispatch

    monkeypatch.setattr(split_dispatch, "HOLD_S", 0.0)
    pool = gpu_pool(2)
    say_ready(pool, 0)  # held until the other is ready, for HOLD_S at most: the loop's next pass frees it
    with pool._lock:
        pool._dispatch()
    assert announced(pool) == ["cuda:0"] and "within 0 s" in pool.split_status()["log"][-1]


def test_gpu_kinds_known_before_load() -> None:
    assert kinds_differ(["NVIDIA H200", "NVIDIA H200"]) == ""
    assert kinds_differ(["NVIDIA GeForce RTX 4090", None]) == ""  # unknown: the workers' READY tells
    assert kinds_differ(["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3060"]).startswith("GPUs of different kinds")


def test_a_group_warm_up_that_fails_lets_its_workers_say_ready() -> None:
    from studio.pool import protocol as p

    pool = gpu_pool(2)
    say_ready(pool, 0)
    say_ready(pool, 1)
    group = pool._warming[0]
    with pool._lock:  # member 0 could not join: the rendezvous is bounded (RENDEZVOUS_S)
        pool._on_group_warmed(0, p.Helped(p.warm_id(group), 3.0, ok=False, message="DistStoreError: timed out"))
    assert sorted(announced(pool)) == ["cuda:0", "cuda:1"] and not pool._warming and not pool._held
    assert pool.split_status()["broken_groups"] == [group]
