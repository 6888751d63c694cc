"""`zaoxiang bench` on the tiny random-weight architecture (CPU), and memory-profile selection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from studio.engine.memory import PROFILES, GiB, ProfileError, choose_profile, resolve_profile, use_tiling
from tests.conftest import cli_env

BENCH = [sys.executable, "-m", "studio", "bench", "--random-weights", "tiny", "--size", "256", "--steps", "2"]


def _run(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, env=cli_env(home), timeout=300)


def test_bench_tiny_prints_table_and_json(home: Path) -> None:
    r = _run(home, "--runs", "2", "--batch", "2")
    assert r.returncode == 0, r.stderr
    table, _, rest = r.stdout.partition("\n\n")
    assert "单张图像生成时间" in rest and "批量生成(2张)时间" in rest and "显存使用率" in rest
    assert "random:tiny" in table and "256×256" in table
    data = json.loads(rest[rest.index("{"):])
    assert data["mode"] == "in-process" and data["runs"] == 2 and data["batch"] == 2
    lat = data["latency_s"]
    assert 0 < lat["min"] <= lat["median"] <= lat["max"] and len(lat["all"]) == 2
    assert data["batch_s"] > 0 and data["images_per_min"] == pytest.approx(60 / lat["median"], rel=0.01)
    assert data["load_s"] > 0 and data["profile"] == "full"


def test_bench_json_only_and_bad_arguments(home: Path) -> None:
    r = _run(home, "--runs", "1", "--batch", "1", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["batch_s"] is None and data["runs"] == 1 and data["encode_s_median"] > 0
    bad = _run(home, "--profile", "8gb")
    assert bad.returncode == 2 and "--profile must be one of" in bad.stderr and "Traceback" not in bad.stderr
    mixed = _run(home, "--profile", "full,24gb")  # one profile a worker needs --workers
    assert mixed.returncode == 2 and "--profile must be one of" in mixed.stderr


def test_bench_through_the_pool(home: Path) -> None:
    """Each worker builds the random-weight pipeline itself; the engine baseline times the same images."""
    r = _run(home, "--workers", "cpu:2", "--runs", "2", "--batch", "4", "--engine-baseline", "--profile", "full,24gb")
    assert r.returncode == 0, r.stderr
    assert "双卡 (2 workers)" in r.stdout and "负载均衡效率" in r.stdout
    data = json.loads(r.stdout[r.stdout.index("\n{") + 1:])
    assert data["mode"] == "pool" and len(data["workers"]) == 2 and data["model"] == "random:tiny"
    assert 0 < data["balance_efficiency"] <= 1 and data["batch_s"] > 0
    assert [w["memory_profile"] for w in data["workers"]] == ["full", "24gb"]  # one profile a worker
    assert sum(w["images_done"] for w in data["workers"]) == 1 + 2 + 4  # first after ready, runs, batch
    assert data["batch_stats"]["gpu_s_median"] > 0 and data["batch_stats"]["write_s_median"] > 0
    assert data["first_image_s"] > 0 and data["first_vs_median"] > 0
    engine = data["engine"]
    assert engine["images"] == 4 and engine["s_per_image"] > 0
    assert data["pool_vs_engine"] == pytest.approx(data["pool_s_per_image"] / engine["s_per_image"], rel=0.01)
    busy = data["batch_stats"]["gpu_busy"]
    assert set(busy) == {"cpu:0", "cpu:1"} and all(0 < v <= 1 for v in busy.values())


@pytest.mark.parametrize(("free_gib", "expected"), [
    (79.0, "full"), (30.0, "full"), (29.9, "24gb"), (23.0, "24gb"), (20.5, "24gb"),
    (20.4, "16gb"), (15.0, "16gb"), (13.5, "16gb"), (13.4, "12gb"), (10.0, "12gb"), (2.0, "12gb"),
])
def test_profile_chosen_from_free_vram(free_gib: float, expected: str) -> None:
    assert choose_profile(int(free_gib * GiB), int(80 * GiB)) == expected


def test_profile_budgets_leave_room_below_the_card() -> None:
    assert choose_profile(None) == "full"
    budgets = [PROFILES[n].budget_gib for n in ("24gb", "16gb", "12gb")]
    assert budgets == sorted(budgets, reverse=True) and budgets[0] == 22.0
    for name, card in (("24gb", 24), ("16gb", 16), ("12gb", 12)):
        assert PROFILES[name].budget_gib < card


def test_resolve_profile_names_and_errors() -> None:
    cpu = torch.device("cpu")
    assert resolve_profile("auto", cpu).name == "full"
    assert resolve_profile("24", cpu).name == "24gb" and resolve_profile(" 16GB ", cpu).name == "16gb"
    with pytest.raises(ProfileError, match="choose one of"):
        resolve_profile("8gb", cpu)


def test_vae_tiling_above_about_two_megapixels_on_24gb() -> None:
    p = PROFILES["24gb"]
    assert not use_tiling(p, 1024, 1024) and not use_tiling(p, 1152, 896)
    assert use_tiling(p, 2048, 2048) and use_tiling(p, 1536, 1536)
    assert not use_tiling(PROFILES["full"], 2048, 2048)
    assert use_tiling(PROFILES["16gb"], 1024, 1024) and not use_tiling(PROFILES["16gb"], 896, 896)
