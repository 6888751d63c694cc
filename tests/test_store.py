"""The store on a real SQLite file: recording, job states, resume, queries, trash, export, threads."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import threading
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from studio.core import jobs as js
from studio.core.request import GenerationRequest
from studio.store import Store, StoreError
from studio.store.schema import SCHEMA_VERSION
from tests.store_helpers import split, write_job_png


def record(store: Store, gallery: Path, prompt: str = "一只猫 a cat", count: int = 3, origin: str = "ui",
           created: datetime | None = None, **fields):
    req = GenerationRequest(prompt=prompt, width=256, height=256, steps=2, count=count, **fields)
    jobs = split(req, gallery, created)
    rid = store.record_request(req, jobs, origin=origin, model="demo",
                               created=created.timestamp() if created else None)
    return rid, jobs


def test_schema_version_wal_and_reopen(paths) -> None:
    s = Store()
    s.close()
    conn = sqlite3.connect(paths.database)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    Store().close()  # opening an up-to-date database again changes nothing


def test_newer_database_is_refused_with_a_clear_message(paths) -> None:
    Store().close()
    conn = sqlite3.connect(paths.database)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer version of the studio"):
        Store()


def test_request_and_jobs_recorded_together(store: Store, paths) -> None:
    rid, jobs = record(store, paths.gallery_dir, negative_prompt="blurry, 模糊", origin="cli", seed=42,
                       seed_mode="increment")
    [row] = store.history()
    assert row["request_id"] == rid and row["origin"] == "cli" and row["state"] == js.QUEUED
    assert row["request"] == GenerationRequest(prompt="一只猫 a cat", negative_prompt="blurry, 模糊", width=256,
                                               height=256, steps=2, seed=42, seed_mode="increment",
                                               count=3).to_dict()
    assert row["jobs"] == row["jobs_queued"] == 3 and row["images"] == []
    assert [j.spec.seed for j in store.unfinished_jobs()] == [42, 43, 44]
    with pytest.raises(ValueError, match="origin"):
        store.record_request(GenerationRequest(prompt="x"), split(GenerationRequest(prompt="x"), paths.gallery_dir),
                             origin="web")


def test_a_failed_record_leaves_nothing_half_written(store: Store, paths) -> None:
    _, jobs = record(store, paths.gallery_dir, count=2)
    req = GenerationRequest(prompt="second 第二", width=256, height=256, count=2)
    new = split(req, paths.gallery_dir)
    clash = [new[0], new[1].__class__(**{**new[1].to_dict(), "job_id": jobs[0].job_id})]  # duplicate job id
    with pytest.raises(StoreError, match="Nothing was half-saved"):
        store.record_request(req, clash)
    assert [r["prompt"] for r in store.history()] == ["一只猫 a cat"]
    assert store.history_count(search="第二") == 0


def test_job_lifecycle_and_request_state(store: Store, paths) -> None:
    rid, jobs = record(store, paths.gallery_dir, count=3)
    a, b, c = jobs
    assert store.mark_running(a.job_id, "cpu:0")
    assert store.history()[0]["state"] == js.RUNNING
    write_job_png(a)
    image_id = store.mark_done(a.job_id, a.output_path, worker="cpu:0", timings={"elapsed_s": 1.25})
    assert store.mark_done(a.job_id, a.output_path) == image_id  # a repeated event adds no second image
    assert not store.mark_running(a.job_id)  # finished jobs do not go back
    assert not store.mark_cancelled(a.job_id)
    assert store.mark_failed(a.job_id, "RuntimeError", "late") == js.DONE
    assert store.mark_failed(b.job_id, "NonFiniteError", "The image came out non-finite.") == js.FAILED
    assert store.requeue(b.job_id) and store.job_state(b.job_id)["state"] == js.QUEUED
    assert store.mark_failed(b.job_id, "NonFiniteError", "again") == js.FAILED
    assert store.mark_cancelled(c.job_id)
    [row] = store.history()
    assert (row["jobs_done"], row["jobs_failed"], row["jobs_cancelled"]) == (1, 1, 1)
    assert row["state"] == js.FAILED and row["errors"] == ["again"]
    assert [im["path"] for im in row["images"]] == [os.path.abspath(a.output_path)]
    assert store.job_state(a.job_id)["worker"] == "cpu:0"
    assert store.image_info(image_id)["elapsed_s"] == 1.25


def test_full_disk_keeps_the_job_queued_with_a_clear_message(store: Store, paths) -> None:
    _, (a, b, c) = record(store, paths.gallery_dir, count=3)
    store.mark_running(a.job_id, "cpu:0")
    try:  # a real ENOSPC, as a PNG write on a full disk raises it
        with open("/dev/full", "wb") as fh:
            fh.write(b"x" * 65536)
            fh.flush()
    except OSError as exc:
        full = exc
    else:  # pragma: no cover
        pytest.skip("/dev/full is not available")
    assert store.mark_failed(a.job_id, full) == js.QUEUED
    state = store.job_state(a.job_id)
    assert state["error_kind"] == "storage" and "disk is full" in state["error"]
    assert "stays queued" in state["error"] and state["attempts"] == 1
    # the same error after crossing a process pipe as text, and a read-only folder
    assert store.mark_failed(b.job_id, "OSError", "[Errno 28] No space left on device: '/x/.part-1.png'") == js.QUEUED
    assert store.mark_failed(c.job_id, "OSError", "[Errno 30] Read-only file system: '/x'") == js.QUEUED
    assert "read-only" in store.job_state(c.job_id)["error"]
    assert {j.job_id for j in store.unfinished_jobs()} == {a.job_id, b.job_id, c.job_id}
    assert store.history()[0]["state"] == js.QUEUED


def test_unfinished_jobs_resume_without_redoing_written_images(store: Store, paths) -> None:
    _, jobs = record(store, paths.gallery_dir, count=4)
    for j in jobs[:3]:
        store.mark_running(j.job_id, "cpu:0")
    store.mark_done(jobs[0].job_id, write_job_png(jobs[0]))
    write_job_png(jobs[1])  # written, then the process died before the store heard of it
    resumed = store.unfinished_jobs()
    assert [j.job_id for j in resumed] == [jobs[2].job_id, jobs[3].job_id]
    assert resumed[0] == jobs[2]  # the same seed and output path as first planned
    assert store.job_state(jobs[1].job_id)["state"] == js.DONE
    assert store.job_state(jobs[2].job_id)["state"] == js.QUEUED  # was running: back in the queue
    [row] = store.history()
    assert row["jobs_done"] == 2 and len(row["images"]) == 2
    assert store.image_info(row["images"][1]["id"])["worker"] == "cpu:0"  # read from the PNG's record


TRICKY = [
    'a "quoted" prompt with \'single\' quotes',
    "100% off, 50%% more",
    "snake_case_name and a_b",
    "emoji 🐱🚀 и кириллица",
    "'; DROP TABLE requests; --",
    'x" OR 1=1 --',
    r"back\slash \% \_ literal",
    "山水画 水墨 ink-wash 风格",
    "NEAR(a b) AND OR NOT * ^ :",
]


@pytest.mark.parametrize("prompt", TRICKY)
def test_tricky_prompts_are_stored_and_found_intact(store: Store, paths, prompt: str) -> None:
    record(store, paths.gallery_dir, prompt="plain filler prompt 普通", count=1)
    rid, _ = record(store, paths.gallery_dir, prompt=prompt, count=1)
    for query in (prompt, *prompt.split()):
        found = store.history(search=query)
        assert rid in [r["request_id"] for r in found], query
        assert all(query in r["prompt"] for r in found)
        assert store.history_count(search=query) == len(found)
    assert store.history(search=prompt)[0]["prompt"] == prompt
    assert store.reuse(request_id=rid).prompt == prompt
    assert store.history_count() == 2  # nothing was dropped or injected


def test_search_chinese_english_and_wildcards(store: Store, paths) -> None:
    prompts = ["一只橘色的猫咪在雪山下", "古风少女 水墨山水画", "a red CAT on the mountain",
               "cyberpunk city at night, 霓虹灯", "100% pure_water", "1000 pure-water"]
    ids = {p: record(store, paths.gallery_dir, prompt=p, count=1)[0] for p in prompts}

    def found(q: str) -> set[str]:
        return {r["prompt"] for r in store.history(search=q)}

    assert found("猫") == {prompts[0]}  # one character (LIKE path)
    assert found("猫咪") == {prompts[0]}  # two characters
    assert found("水墨山水") == {prompts[1]}  # trigram index
    assert found("cat") == {prompts[0 + 2]} == found("Cat")  # English, case-insensitive
    assert found("city 霓虹") == {prompts[3]}  # every term must match
    assert found("cat 霓虹") == set()
    assert found("%") == {prompts[4]}  # a literal percent sign, not a wildcard
    assert found("_") == {prompts[4]} and found("e_w") == {prompts[4]}  # a literal underscore
    assert found("") == set(prompts) == found(None) == found("   ")
    assert store.history_count(search="山") == 2  # 雪山 and 山水
    assert ids


def test_common_term_page_matches_the_index(store: Store, paths) -> None:
    """A term in thousands of prompts takes the date-walk path; the page must be the same rows."""
    base = datetime(2025, 3, 1)
    with store.batch():
        for i in range(2100):
            word = "星空" if i % 3 else "sunset"
            record(store, paths.gallery_dir, prompt=f"夜晚的星空 {word} #{i}", count=1,
                   created=base + timedelta(minutes=i))
    hits = store.history(search="夜晚的星空", limit=50, offset=10)  # > 2000 matches
    assert [r["prompt"] for r in hits] == [f"夜晚的星空 {'星空' if i % 3 else 'sunset'} #{i}"
                                           for i in range(2089, 2039, -1)]
    rare = store.history(search="sunset 夜晚的星空", limit=1000)  # 700 matches: index path
    assert len(rare) == 700 and all("sunset" in r["prompt"] for r in rare)
    assert [r["created"] for r in rare] == sorted((r["created"] for r in rare), reverse=True)
    assert store.history_count(search="夜晚的星空") == 2100


def test_history_paging_favorites_and_dates(store: Store, paths) -> None:
    base = datetime(2025, 5, 1, 12)
    made = [record(store, paths.gallery_dir, prompt=f"day {d} 第{d}天", count=2, created=base + timedelta(days=d))
            for d in range(10)]
    for _, jobs in made:
        for j in jobs:
            store.mark_done(j.job_id, write_job_png(j))
    pages = [store.history(limit=4, offset=o) for o in (0, 4, 8)]
    assert [len(p) for p in pages] == [4, 4, 2]
    order = [r["prompt"] for p in pages for r in p]
    assert order == [f"day {d} 第{d}天" for d in range(9, -1, -1)]
    fav_image = store.history(search="第3天")[0]["images"][1]["id"]
    assert store.set_favorite(fav_image, True)
    assert [r["prompt"] for r in store.history(favorites_only=True)] == ["day 3 第3天"]
    assert store.history(favorites_only=True, search="第4天") == []
    since = store.history(since=base + timedelta(days=7))
    assert [r["prompt"] for r in since] == ["day 9 第9天", "day 8 第8天", "day 7 第7天"]
    assert [r["prompt"] for r in store.history(since=(base + timedelta(days=2)).date().isoformat(),
                                               until=base + timedelta(days=4))] == ["day 3 第3天", "day 2 第2天"]
    assert store.history_count(since=base + timedelta(days=7)) == 3
    assert store.set_favorite(fav_image, False) and store.history(favorites_only=True) == []


def test_gallery_pages_newest_first_and_missing_hidden(store: Store, paths) -> None:
    base = datetime(2025, 6, 1)
    images = []
    for d in range(5):
        _, jobs = record(store, paths.gallery_dir, prompt=f"gallery {d}", count=2, created=base + timedelta(hours=d))
        for k, j in enumerate(jobs):
            images.append(store.mark_done(j.job_id, write_job_png(j),
                                          finished=(base + timedelta(hours=d, minutes=k)).timestamp()))
    first, second = store.gallery(0, 4), store.gallery(1, 4)
    assert [im["id"] for im in first + second + store.gallery(2, 4)] == images[::-1]
    assert first[0]["prompt"] == "gallery 4" and first[0]["width"] == 256
    assert store.gallery_count() == 10
    store.set_missing([images[-1]], True)
    assert store.gallery(0, 1)[0]["id"] == images[-2] and store.gallery_count() == 9
    assert store.gallery(0, 1, include_missing=True)[0]["missing"] is True
    store.set_favorite(images[0], True)
    assert [im["id"] for im in store.gallery(favorites_only=True)] == [images[0]]


def test_image_info_and_reuse(store: Store, paths) -> None:
    rid, jobs = record(store, paths.gallery_dir, prompt="复用 reuse me", count=3, seed=7, seed_mode="increment",
                       negative_prompt="low quality")
    image_id = store.mark_done(jobs[2].job_id, write_job_png(jobs[2], worker="cuda:1"), worker="cuda:1",
                               timings={"elapsed_s": 2.0, "denoise_s": 1.5})
    info = store.image_info(image_id)
    assert info["request"] == GenerationRequest(prompt="复用 reuse me", negative_prompt="low quality", width=256,
                                                height=256, steps=2, seed=9, seed_mode="fixed", count=1).to_dict()
    assert info["model"] == "demo" and info["worker"] == "cuda:1"
    assert info["timings"]["denoise_s"] == 1.5 and "Seed: 9" in info["parameters"]
    assert store.reuse(image_id=image_id) == GenerationRequest.from_dict(info["request"])
    again = store.reuse(request_id=rid)
    assert (again.seed, again.seed_mode, again.count) == (7, "increment", 3)
    with pytest.raises(StoreError, match="No image with id 999"):
        store.image_info(999)
    with pytest.raises(StoreError, match="No request"):
        store.reuse(request_id="nope")
    with pytest.raises(ValueError):
        store.reuse()


def test_delete_to_trash_and_empty(store: Store, paths) -> None:
    _, jobs = record(store, paths.gallery_dir, count=3)
    ids = [store.mark_done(j.job_id, write_job_png(j)) for j in jobs]
    size = Path(jobs[0].output_path).stat().st_size
    moved = store.delete_image(ids[0])
    assert moved is not None and moved.is_file() and moved.is_relative_to(paths.trash_dir)
    assert not Path(jobs[0].output_path).exists()
    assert [im["id"] for im in store.history()[0]["images"]] == ids[1:]
    os.unlink(jobs[1].output_path)  # already gone by hand: the row still goes, nothing crashes
    assert store.delete_image(ids[1]) is None
    with pytest.raises(StoreError, match="No image"):
        store.delete_image(ids[0])
    assert store.empty_trash() == {"files": 1, "bytes": size}
    assert store.empty_trash() == {"files": 0, "bytes": 0}
    assert store.gallery_count() == 1


def test_delete_keeps_the_row_when_the_file_cannot_move(store: Store, paths) -> None:
    _, jobs = record(store, paths.gallery_dir, count=1)
    image_id = store.mark_done(jobs[0].job_id, write_job_png(jobs[0]))
    paths.trash_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.trash_dir.write_text("a file where the trash folder should be")
    with pytest.raises(StoreError, match="Could not move"):
        store.delete_image(image_id)
    assert Path(jobs[0].output_path).is_file() and store.gallery_count() == 1


def test_export_zip_with_csv_and_json(store: Store, paths, tmp_path: Path) -> None:
    _, jobs = record(store, paths.gallery_dir, prompt='导出 "export", 100%', count=2, seed=5, seed_mode="fixed")
    ids = [store.mark_done(j.job_id, write_job_png(j)) for j in jobs]
    out = store.export(ids, tmp_path / "export" / "选中.zip")
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert sorted(n for n in names if n.startswith("images/")) == sorted(
            f"images/{Path(j.output_path).name}" for j in jobs)
        text = zf.read("parameters.csv").decode("utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text)))
        data = json.loads(zf.read("parameters.json"))
        assert zf.read(f"images/{Path(jobs[0].output_path).name}") == Path(jobs[0].output_path).read_bytes()
    assert [r["prompt"] for r in rows] == ['导出 "export", 100%'] * 2 and rows[0]["seed"] == "5"
    assert [d["id"] for d in data] == ids and data[0]["request"]["prompt"] == '导出 "export", 100%'
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".part-")]
    with pytest.raises(StoreError):
        store.export([], tmp_path / "none.zip")


def test_threads_share_one_store(store: Store, paths) -> None:
    errors: list[BaseException] = []
    all_jobs = [record(store, paths.gallery_dir, prompt=f"thread {i}", count=5)[1] for i in range(4)]

    def work(jobs) -> None:
        try:
            for j in jobs:
                store.mark_running(j.job_id, threading.current_thread().name)
                store.mark_done(j.job_id, j.output_path)
                store.history(search="thread")
                store.gallery(0, 10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(jobs,)) for jobs in all_jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.gallery_count() == 20 and all(r["state"] == js.DONE for r in store.history())
    # a second process-like reader sees the committed data through WAL
    other = Store()
    assert other.history_count(search="thread") == 4
    other.close()
