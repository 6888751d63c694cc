"""The compile cache file that every worker of a machine saves as its warm-up ends."""

from __future__ import annotations

import threading
from pathlib import Path

from studio.engine.fastpath import write_replacing


def test_workers_saving_at_once_leave_one_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "mega-cache.bin"
    blobs = [bytes([i]) * (200_000 + i) for i in range(8)]
    start = threading.Barrier(len(blobs))
    results: list[bool] = []

    def save(blob: bytes) -> None:
        start.wait()
        for _ in range(20):
            results.append(write_replacing(path, blob))

    threads = [threading.Thread(target=save, args=(b,)) for b in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results and all(results)
    assert path.read_bytes() in blobs  # one writer's whole file, never a mix or a torn one
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_a_cache_that_cannot_be_saved_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "torch-compile"
    blocker.write_text("a file where the cache folder should be")
    assert write_replacing(blocker / "mega-cache.bin", b"x" * 10) is False
    assert [p.name for p in tmp_path.iterdir()] == ["torch-compile"]
