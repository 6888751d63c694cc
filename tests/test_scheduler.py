"""The scheduler alone: queue order and placement from fake measured speeds, no processes, no clock.

Each test plays the pool's part: it asks `plan_next` for a hand-out, "sends" the job (the worker now
holds it), and lets time pass by finishing held jobs by hand.
"""

from __future__ import annotations

from studio.core.spec import ImageSpec
from studio.pool.scheduler import PREFETCH, Held, JobQueue, Queued, WorkerView, ahead, job_cost, plan_next
from studio.pool.speed import Size, SpeedModel

SPEC = ImageSpec(prompt="a red star", width=1024, height=1024, steps=9)


def worker(s_per_image: float, order: int, profile: str | None = None) -> WorkerView:
    """A worker measured at `s_per_image` for SPEC's shape (as if its warm-up had been SPEC)."""
    speed = SpeedModel()
    speed.observe(SPEC, s_per_image, seed=True)
    return WorkerView(speed, [], profile, order)


def simulate(n_jobs: int, workers: list[WorkerView]) -> tuple[list[int], float]:
    """Hand out `n_jobs` SPEC jobs as the pool would, each worker running its held jobs one after
    another; returns images per worker and the makespan in seconds."""
    queue = [Queued(SPEC) for _ in range(n_jobs)]
    made = [0] * len(workers)
    busy_until = [0.0] * len(workers)  # when each worker's running job ends
    now = 0.0
    while queue or any(w.held for w in workers):
        planned = plan_next(queue, workers, now)
        if planned is not None:
            q, i = planned
            job = queue.pop(q)
            w = workers[i]
            if not w.held:
                busy_until[i] = now + w.speed.estimate(job.shape)
            w.held.append(Held(job.shape, now if not w.held else None))
            continue
        # nothing to hand out: time moves to the next finish
        i = min((k for k, w in enumerate(workers) if w.held), key=lambda k: busy_until[k])
        now = busy_until[i]
        w = workers[i]
        w.held.pop(0)
        made[i] += 1
        if w.held:
            w.held[0] = Held(w.held[0].shape, now)
            busy_until[i] = now + w.speed.estimate(w.held[0].shape)
    return made, now


def test_job_cost_reads_an_image_spec_and_grows_with_size_and_steps() -> None:
    small = ImageSpec(prompt="x", width=512, height=512, steps=9)
    assert job_cost(SPEC) > 4 * job_cost(small)  # 4x the tokens, plus their attention term
    assert job_cost(Size(1024, 1024, 18)) == 2 * job_cost(SPEC)
    speed = SpeedModel()
    speed.observe(SPEC, 1.0, seed=True)
    assert speed.estimate(small) == job_cost(small) / job_cost(SPEC)  # unseen sizes scale by cost


def test_two_workers_of_different_speed_share_by_speed() -> None:
    fast, slow = worker(1.0, 0), worker(2.0, 1)
    made, makespan = simulate(12, [fast, slow])
    assert made == [8, 4], made  # twice as fast: twice the images
    assert makespan == 8.0  # what 12 images at 1.5 images/s need: no idle gap on either


def test_slow_worker_still_gets_work_when_the_fast_one_is_full() -> None:
    fast, slow = worker(1.0, 0), worker(1.5, 1)
    fast.held = [Held(SPEC, 0.0)] * (PREFETCH + 1)  # running one, holding one: full
    planned = plan_next([Queued(SPEC)] * 3, [fast, slow], 0.0)
    assert planned == (0, 1)  # the head finishes sooner on the slow card than behind two jobs


def test_a_job_waits_for_the_fast_worker_rather_than_run_much_slower() -> None:
    fast, slow = worker(1.0, 0), worker(10.0, 1)
    fast.held = [Held(SPEC, 0.0)] * (PREFETCH + 1)
    slow.speed.jobs_seen = 1  # measured on a real job: no benefit of the doubt
    assert plan_next([Queued(SPEC)], [fast, slow], 0.0) is None


def test_an_unmeasured_idle_worker_gets_a_job_even_if_its_warm_up_looked_slow() -> None:
    fast, slow = worker(1.0, 0), worker(10.0, 1)
    fast.held = [Held(SPEC, 0.0)] * (PREFETCH + 1)
    assert plan_next([Queued(SPEC)], [fast, slow], 0.0) == (0, 1)


def test_running_job_counts_only_its_remainder() -> None:
    w = worker(4.0, 0)
    w.held = [Held(SPEC, 0.0), Held(SPEC)]
    assert ahead(w, 3.0) == 1.0 + 4.0
    assert ahead(w, 100.0) == 0.05 * 4.0 + 4.0  # overdue: still a little left, never negative


def test_interactive_jobs_go_before_bulk_ones() -> None:
    queue = JobQueue()
    for job_id in ("bulk-1", "bulk-2"):
        queue.add(job_id, interactive=False)
    queue.add("click-1", interactive=True)
    queue.add("bulk-3", interactive=False)
    queue.add("click-2", interactive=True)
    assert list(queue) == ["click-1", "click-2", "bulk-1", "bulk-2", "bulk-3"]
    w = worker(1.0, 0)
    queued = [Queued(SPEC) for _ in queue.head()]
    q, _ = plan_next(queued, [w], 0.0)
    assert queue.pop(q) == "click-1"


def test_a_job_requeued_after_a_death_goes_first_within_its_priority() -> None:
    queue = JobQueue()
    for job_id in ("a", "b", "c"):
        queue.add(job_id, interactive=True)
    queue.add("bulk", interactive=False)
    died = [queue.pop(), queue.pop()]  # "a" running, "b" prefetched on the worker that died
    for job_id in reversed(died):  # as the pool requeues: reversed, so their order holds
        queue.push_front(job_id, interactive=True)
    assert list(queue) == ["a", "b", "c", "bulk"]
    queue.remove("b")
    queue.push_front("b", interactive=True)  # a second requeue goes in front of the first
    assert list(queue) == ["b", "a", "c", "bulk"]


def test_a_job_that_fits_one_workers_memory_profile_goes_there() -> None:
    """After an out-of-memory retry a job must run under the 24 GiB profile: the worker already
    running it takes the job even though the other is faster and idle (no reload)."""
    full, capped = worker(1.0, 0, "full"), worker(3.0, 1, "24gb")
    queue = [Queued(SPEC, profile="24gb"), Queued(SPEC)]
    assert plan_next(queue, [full, capped], 0.0) == (0, 1)
    assert capped.fits(queue[0]) and not full.fits(queue[0])
    assert full.fits(queue[1]) and capped.fits(queue[1])
    lower = worker(3.0, 1, "12gb")
    assert lower.fits(queue[0])  # a lower profile fits too


def test_a_job_no_worker_fits_still_runs_somewhere() -> None:
    only = worker(1.0, 0, "full")
    assert plan_next([Queued(SPEC, profile="16gb")], [only], 0.0) == (0, 0)  # it reloads lower


def test_lowering_a_memory_profile_follows_core_order() -> None:
    from studio.pool.scheduler import lower_profile

    assert [lower_profile(p) for p in (None, "auto", "full", "24gb", "16gb", "12gb", "8gb")] == \
        ["24gb", "24gb", "24gb", "16gb", "12gb", None, None]


def test_every_message_crosses_a_pipe_whole() -> None:
    """Messages are pickled over the pipes: each must come back equal, with its kind."""
    import pickle

    from studio.pool import protocol as p

    messages = [p.RunJob({"job_id": "j"}, "24gb"), p.Revoke("j", p.RevokeReason.PAUSE), p.Stop(),
                p.Warming(12.5, "compile"), p.Started("j", 1.0), p.Step("j", 1, 9), p.Cancelled("j", 0.1),
                p.Preview("j", 2, 9, 32, 32, b"\xff\xd8jpeg"),
                p.Revoked("j", p.RevokeReason.CANCEL), p.Failed("j", 0.1, p.ErrorKind.OOM, "out of memory"),
                p.Stopped(), p.Fatal("no model"), p.Helped("j", 0.4, ok=False),
                p.RunJob({"job_id": "j"}, None, {"group_id": 1, "port": 29500, "rank": 1, "world": 2,
                                                 "members": ["cuda:0", "cuda:1"], "devices": ["cuda", "cuda"]}),
                p.WarmGroup({"group_id": 1, "port": 29500, "rank": 0, "world": 2, "members": ["cuda:0", "cuda:1"],
                             "devices": ["cuda", "cuda"]}),
                p.Done.pick({"job_id": "j", "request_id": "r", "index": 0, "path": "/x.png", "seed": 1,
                             "worker": "cpu:0", "elapsed_s": 0.5, "busy_s": 0.6, "finished": 2.0, "extra": 1})]
    assert {m.kind for m in messages} == set(p.Msg) - {p.Msg.READY}
    for msg in messages:
        assert pickle.loads(pickle.dumps(msg)) == msg
    assert p.describe_error(RuntimeError("CUDA out of memory")).error == p.ErrorKind.OOM
    assert p.Preview("j", 2, 9, 32, 32, b"\xff\xd8").event()["image"] == "data:image/jpeg;base64,/9g="
    assert messages[-1].result() == {"job_id": "j", "request_id": "r", "index": 0, "path": "/x.png", "seed": 1,
                                     "worker": "cpu:0", "elapsed_s": 0.5, "busy_s": 0.6}
