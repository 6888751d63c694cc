"""The monitor's sampler against the real machine: NVML where there is a GPU, a clear message where not."""

from __future__ import annotations

import time

from studio.monitor.sampler import Sampler


def test_sampler_collects_and_reports_availability() -> None:
    s = Sampler(interval=0.05, history_s=0.5).start()
    try:
        time.sleep(0.5)
        snap = s.snapshot()
    finally:
        s.close()
    cpu = snap["cpu"]["samples"]
    assert 3 <= len(cpu) <= 10  # ring buffer bounded by history_s / interval
    assert all(0.0 <= r["util"] <= 100.0 for r in cpu)
    assert [r["t"] for r in cpu] == sorted(r["t"] for r in cpu)
    if snap["available"]:
        assert snap["gpus"] and all(g["samples"] for g in snap["gpus"])
        assert all(0 <= r["util"] <= 100 for g in snap["gpus"] for r in g["samples"] if r["util"] is not None)
    else:
        assert snap["gpus"] == [] and "No NVIDIA GPU" in snap["message"]


def test_close_stops_thread() -> None:
    s = Sampler(interval=0.05).start()
    s.close()
    n = len(s.snapshot()["cpu"]["samples"])
    time.sleep(0.2)
    assert len(s.snapshot()["cpu"]["samples"]) == n


def test_studio_snapshot_without_starting_the_pool(home) -> None:
    from studio.app import Studio

    studio = Studio(workers="cpu:2")
    try:
        snap = studio.monitor_snapshot()
        time.sleep(1.2)
        snap = studio.monitor_snapshot()
        assert [w["state"] for w in snap["workers"]] == ["not started", "not started"]
        assert len(snap["cpu"]["samples"]) >= 2
        assert studio._pool is None  # a query never starts workers
    finally:
        studio.close()
    assert not studio._sampler._thread
