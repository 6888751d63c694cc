"""Atomic writes of a file or a folder: write beside the target under a `.part-` name, then rename.

A crash, a cancel or a full disk leaves either the old file or the new one, never half of one; the
stray `.part-` files a killed process can leave are what store reconciliation cleans up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PART_PREFIX = ".part-"


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (not possible on every OS or filesystem: skipped there)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def temp_prefix(target: Path) -> str:
    """The start of `target`'s temp file names: named for it, so a killed writer's leftovers can be
    found and removed by whoever requeues its job (`remove_partials`)."""
    return f"{PART_PREFIX}{target.stem[:120]}-"


def remove_partials(target: str | os.PathLike[str]) -> int:
    """Remove the temp files a killed writer of `target` left; returns how many. Call it only when no
    one else can be writing `target` (its writer is dead and the job is not handed out again yet)."""
    target = Path(target)
    prefix = temp_prefix(target)
    removed = 0
    try:
        names = os.listdir(target.parent)
    except OSError:
        return 0
    for name in names:
        if name.startswith(prefix) and name.endswith(target.suffix):
            try:
                os.unlink(target.parent / name)
                removed += 1
            except OSError:
                pass
    return removed


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `target` to write to; renamed over `target` (and synced) when the
    block ends without error, deleted when it raises."""
    target = Path(target)
    made = _missing_folders(target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    for folder in made:  # a folder made here is durable only once its own parent is synced too
        _fsync_dir(folder.parent)


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its ancestors that do not exist yet, innermost first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing



@contextmanager
def atomic_dir(target: str | os.PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """A temporary folder beside `target` to fill; it becomes `target` when the block ends without
    error, and is removed when it raises. An existing `target` is moved aside, then removed once the
    new one is in place (put back if that fails); with `replace=False` it is kept instead and the
    new folder dropped: another writer got there first, with the same content."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), dir=target.parent))
    aside = None
    try:
        yield tmp
        if target.exists() and replace:
            aside = Path(tempfile.mkdtemp(prefix=f"{PART_PREFIX}old-", dir=target.parent)) / target.name
            os.replace(target, aside)
        try:
            os.rename(tmp, target)
        except OSError:
            if aside is not None:
                os.replace(aside, target)
            elif target.is_dir() and not replace:
                return
            raise
        _fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside.parent, ignore_errors=True)
