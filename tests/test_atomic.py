"""The atomic folder writer: a reader sees the old folder or the new one, never half of one."""

from __future__ import annotations

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
