"""The atomic folder writer: a reader sees the old folder or the new one, never half of one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from studio.core.atomic import PART_PREFIX, atomic_dir


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_folder_appears_whole_and_replaces_the_old_one(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a.json").write_text("1")
        assert not target.exists()  # nothing at the target while it is being written
    assert (target / "a.json").read_text() == "1"
    with atomic_dir(target) as tmp:
        (tmp / "b.json").write_text("2")
        assert (target / "a.json").is_file()  # the old one stays readable until the new one is done
    assert _names(target) == ["b.json"]
    assert _names(tmp_path) == ["model"]  # no temp folder and no moved-aside old one is left


def test_a_failed_write_leaves_the_old_folder_and_no_temp(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "a.json").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.json").write_text("x")
        raise RuntimeError("disk full")
    assert _names(target) == ["a.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(PART_PREFIX)]


def test_without_replace_the_first_writer_wins(tmp_path):
    target = tmp_path / "configs"
    with atomic_dir(target, replace=False) as first:
        with atomic_dir(target, replace=False) as second:  # another process, racing
            (second / "x.json").write_text("second")
        (first / "x.json").write_text("first")
    assert (target / "x.json").read_text() == "second" and _names(tmp_path) == ["configs"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_a_new_folder_is_made_durable_with_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reliability review: the first input of a new hash shard made `inputs/ab/` and synced only it, so a
    power cut could lose the folder (and the file in it) although the write had returned."""
    from studio.core import atomic

    synced: list[Path] = []
    real = os.fsync

    def fsync(fd: int) -> None:  # the OS call itself, watched: which folders were made durable
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if path.is_dir():
            synced.append(path)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "inputs" / "ab" / "abcd.png"
    with atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"
    assert synced == [tmp_path / "inputs" / "ab", tmp_path / "inputs", tmp_path]
    synced.clear()
    with atomic.atomic_path(target.with_name("abce.png")) as tmp:  # the folders exist now: only the file's
        tmp.write_bytes(b"png")
    assert synced == [tmp_path / "inputs" / "ab"]
