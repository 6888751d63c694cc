"""Reconciliation on real files: hand-copied PNGs indexed, deleted files reported, crashes tidied."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from studio.core import jobs as js
from studio.core.metadata import format_a1111
from studio.core.request import GenerationRequest
from studio.core.spec import ImageSpec
from studio.store import Store, reconcile
from tests.store_helpers import split, write_job_png


def made_elsewhere(tmp_path: Path, prompt: str, count: int = 1, **fields) -> list[Path]:
    """PNGs made by another studio (its own request and job ids), as a person would copy them over."""
    other = tmp_path / "other-machine"
    jobs = split(GenerationRequest(prompt=prompt, width=256, height=256, steps=3, count=count, **fields), other)
    return [write_job_png(j, model="Z-Image-Turbo", worker="cuda:0") for j in jobs]


def test_hand_copied_png_shows_up_with_its_parameters(store: Store, paths, tmp_path: Path) -> None:
    mine = GenerationRequest(prompt="own 自己的", width=256, height=256, count=1)
    [own] = split(mine, paths.gallery_dir)
    rid = store.record_request(mine, [own])
    store.mark_done(own.job_id, write_job_png(own))
    [src] = made_elsewhere(tmp_path, '手抄 "copied" 100% by_hand', negative_prompt="blur", seed=1234,
                           seed_mode="fixed")
    dest = paths.gallery_dir / "2024-01-02" / src.name
    dest.parent.mkdir(parents=True)
    shutil.copy2(src, dest)
    report = reconcile(store, [paths.gallery_dir])
    assert (report["scanned"], report["known"], report["indexed"], report["missing"]) == (2, 1, 1, 0)
    [row] = store.history(search="by_hand")
    assert row["origin"] == "import" and row["state"] == js.DONE and row["model"] == "Z-Image-Turbo"
    assert row["request"]["negative_prompt"] == "blur" and row["request"]["seed"] == 1234
    [image] = row["images"]
    assert image["path"] == str(dest) and image["seed"] == 1234 and (image["width"], image["height"]) == (256, 256)
    info = store.image_info(image["id"])
    assert info["request"]["prompt"] == '手抄 "copied" 100% by_hand' and info["worker"] == "cuda:0"
    assert store.reuse(image_id=image["id"]).seed == 1234
    assert row["created"] == pytest.approx(os.path.getmtime(src), abs=1)  # copy2 kept the time
    assert [r["request_id"] for r in store.history()][-1] == rid
    again = reconcile(store, [paths.gallery_dir])  # idempotent
    assert (again["indexed"], again["missing"], again["known"]) == (0, 0, 2)
    assert store.last_reconciliation() == again


def test_images_of_one_request_group_together(store: Store, paths, tmp_path: Path) -> None:
    pngs = made_elsewhere(tmp_path, "four of one 一组四张", count=4, seed=10, seed_mode="increment")
    paths.gallery_dir.mkdir(parents=True)
    for p in pngs:
        shutil.copy(p, paths.gallery_dir / p.name)
    assert reconcile(store, [paths.gallery_dir])["indexed"] == 4
    [row] = store.history()
    assert row["jobs_done"] == 4 and sorted(im["seed"] for im in row["images"]) == [10, 11, 12, 13]
    assert row["request"]["count"] == 1  # the parameters of one image; the images are all there


def test_deleted_file_is_reported_missing_then_restored(store: Store, paths) -> None:
    req = GenerationRequest(prompt="will vanish 会消失", width=256, height=256, count=2)
    jobs = split(req, paths.gallery_dir)
    store.record_request(req, jobs)
    ids = [store.mark_done(j.job_id, write_job_png(j)) for j in jobs]
    kept = Path(jobs[0].output_path).read_bytes()
    os.unlink(jobs[0].output_path)
    report = reconcile(store, [paths.gallery_dir])
    assert (report["missing"], report["restored"], report["indexed"]) == (1, 0, 0)
    assert store.gallery_count() == 1 and store.image_info(ids[0])["missing"] is True
    assert store.reuse(image_id=ids[0]).prompt == "will vanish 会消失"  # still described from the database
    [row] = store.history()
    assert {im["id"]: im["missing"] for im in row["images"]} == {ids[0]: True, ids[1]: False}
    assert reconcile(store, [paths.gallery_dir])["missing"] == 0  # reported once
    Path(jobs[0].output_path).write_bytes(kept)
    assert reconcile(store, [paths.gallery_dir])["restored"] == 1 and store.gallery_count() == 2


def test_missing_outside_the_scanned_folders_is_checked_directly(store: Store, paths, tmp_path: Path) -> None:
    elsewhere = tmp_path / "cli-out"
    jobs = split(GenerationRequest(prompt="--out folder", width=256, height=256, count=2), elsewhere)
    store.record_request(GenerationRequest(prompt="--out folder", width=256, height=256, count=2), jobs, origin="cli")
    for j in jobs:
        store.mark_done(j.job_id, write_job_png(j))
    os.unlink(jobs[1].output_path)
    report = reconcile(store, [paths.gallery_dir])
    assert (report["missing"], report["scanned"]) == (1, 0)


def test_crash_between_write_and_record_completes_the_job(store: Store, paths) -> None:
    req = GenerationRequest(prompt="crash 崩溃", width=256, height=256, count=2)
    jobs = split(req, paths.gallery_dir)
    store.record_request(req, jobs)
    store.mark_running(jobs[0].job_id, "cpu:1")
    write_job_png(jobs[0], worker="cpu:1")
    report = reconcile(store, [paths.gallery_dir])
    assert (report["jobs_completed"], report["indexed"]) == (1, 0)
    assert store.job_state(jobs[0].job_id)["state"] == js.DONE
    assert [j.job_id for j in store.unfinished_jobs()] == [jobs[1].job_id]
    [row] = store.history()
    assert row["jobs_done"] == 1 and len(row["images"]) == 1 and row["state"] == js.RUNNING  # part done


def test_foreign_and_broken_files_are_handled(store: Store, paths, tmp_path: Path) -> None:
    day = paths.gallery_dir / "2025-02-02"
    day.mkdir(parents=True)
    info = PngImagePlugin.PngInfo()  # an AUTOMATIC1111 image: only the `parameters` text
    info.add_text("parameters", format_a1111(ImageSpec("masterpiece, 1girl", "lowres", width=512, height=768, steps=20, guidance=7.0, seed=99,
                                                   model="sdxl")))
    Image.new("RGB", (512, 768)).save(day / "a1111.png", pnginfo=info)
    Image.new("RGB", (32, 32)).save(day / "no-params.png")
    (day / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (day / "notes.txt").write_text("not an image")
    stale = day / f".part-{uuid.uuid4().hex}.png"
    stale.write_bytes(b"half")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    fresh = day / ".part-fresh.png"
    fresh.write_bytes(b"being written")
    report = reconcile(store, [paths.gallery_dir])
    assert (report["indexed"], report["skipped"], report["partials_removed"]) == (1, 2, 1)
    assert sorted(Path(p).name for p in report["skipped_paths"]) == ["broken.png", "no-params.png"]
    assert not stale.exists() and fresh.exists() and (day / "no-params.png").exists()
    [row] = store.history(search="1girl")
    assert row["request"]["steps"] == 20 and row["request"]["seed"] == 99
    assert store.image_info(row["images"][0]["id"])["request"]["width"] == 512


def test_reconcile_of_an_empty_or_absent_gallery(store: Store, paths) -> None:
    report = reconcile(store, [paths.gallery_dir / "does-not-exist"])
    assert report["scanned"] == report["indexed"] == report["missing"] == 0
    assert store.last_reconciliation()["scanned"] == 0
