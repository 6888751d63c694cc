"""The inputs sweep (studio/store/input_sweep.py) against what runs beside it, on a real Store (SQLite
file) and a real inputs folder: a writer holding the history's locks while the sweep scans, an
`InputStore.put` of the same image landing inside the sweep's check-then-remove window (each order
forced by running the put, or the sweep, from inside the other's file call), and a crash that left a
file set aside."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from studio.core.image_inputs import InputStore
from studio.core.jobs import make_jobs
from studio.core.request import GenerationRequest, validate
from studio.store import input_sweep

SIZE = 64


def png(colour: tuple[int, int, int]) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), colour).save(buf, format="PNG")
    return buf.getvalue()


def stored(colour: tuple[int, int, int], hours: float = 2.0) -> str:
    """An input stored `hours` ago (past the sweep's grace period)."""
    digest = InputStore().put(png(colour)).sha256
    then = time.time() - hours * 3600
    os.utime(InputStore().path(digest), (then, then))
    return digest


def there(digest: str) -> bool:
    return InputStore().path(digest) is not None


def fresh(digest: str) -> bool:
    path = InputStore().path(digest)
    return path is not None and path.stat().st_mtime > time.time() - 60


def record(store, init: str, rid: str) -> None:
    request = validate(GenerationRequest(prompt="held", width=SIZE * 4, height=SIZE * 4, steps=1, seed=1,
                                         init_image=init, strength=0.5))
    store.record_request(request, make_jobs(request, rid, store.path.parent / "out", "demo"))


def in_thread(fn, *args) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    thread.start()
    return thread, out


def test_the_scan_takes_no_lock_and_each_removal_checks_again(store, paths) -> None:
    """While another thread holds the Store's lock and the database's write lock (recording a request
    that holds `kept`), the scan still finishes: neither the pool's events nor History wait on it. Its
    snapshot cannot see the uncommitted request, so `kept` is a candidate; the removal, which waits for
    the write lock, checks it again and keeps it."""
    kept, gone = stored((200, 10, 10)), stored((10, 200, 10))
    recorded, go = threading.Event(), threading.Event()

    def writer() -> None:
        with store.transaction("a long write"):
            record(store, kept, "r-held")
            recorded.set()
            go.wait(30)

    holder = threading.Thread(target=writer, daemon=True)
    holder.start()
    try:
        assert recorded.wait(30)
        scan, found = in_thread(input_sweep.unheld, store, input_sweep.stored_files(paths.inputs_dir))
        scan.join(20)
        assert not scan.is_alive(), "the scan waited for the write lock"
        assert found == [{kept, gone}]
        remove, swept = in_thread(input_sweep.sweep_inputs, store, paths.inputs_dir, found[0])
        remove.join(0.5)
        assert remove.is_alive()  # the removal waits for the writer
    finally:
        go.set()
        holder.join(30)
    remove.join(30)
    assert swept[0].removed == [gone]
    assert there(kept) and not there(gone)
    assert not list(paths.inputs_dir.glob(f"*/{input_sweep.ASIDE}*"))


def test_a_sweep_inside_puts_check_and_touch_leaves_the_file(store, paths) -> None:
    """The image is given again; the sweep runs (and removes the old file) between put's check that
    the file is there and its touch: put writes it again, so what it returns is there."""
    digest = stored((1, 2, 250))
    utime, swept = os.utime, []

    def sweep_then_touch(path, *args, **kwargs):
        if not swept and Path(path).name.startswith(digest):
            swept.append(input_sweep.sweep_inputs(store, paths.inputs_dir))
        return utime(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "utime", sweep_then_touch)
        given = InputStore().put(png((1, 2, 250)))
    assert swept[0].removed == [digest]  # the sweep did land in the window
    assert given.path.is_file() and fresh(digest)


@pytest.mark.parametrize("call", ["rename", "unlink"])
def test_a_put_inside_the_sweeps_check_and_remove_leaves_the_file(store, paths, call) -> None:
    """The image is given again right as the sweep removes it: just before it is set aside (the touch
    is seen after, and the file goes back), or just before the set-aside file is unlinked (put finds
    none and writes it again). Either way the put's file is there, and stays through the next sweep."""
    digest = stored((250, 2, 1))
    real, given = getattr(os, call), []

    def put_first(src, *args, **kwargs):
        if not given and digest in Path(src).name:
            given.append(None)
            given[0] = InputStore().put(png((250, 2, 1)))
        return real(src, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, call, put_first)
        swept = input_sweep.sweep_inputs(store, paths.inputs_dir)
    assert given, "the put did not land in the window"
    assert there(digest) and fresh(digest) and given[0].path.is_file()
    assert swept.removed == ([] if call == "rename" else [digest])  # an unlink took the old copy only
    assert not list(paths.inputs_dir.glob(f"*/{input_sweep.ASIDE}*"))
    assert input_sweep.sweep_inputs(store, paths.inputs_dir).removed == [] and there(digest)


def test_a_crash_while_a_file_was_set_aside_loses_nothing(store, paths) -> None:
    """Files a crashed sweep left set aside: a held one goes back under its name, an unheld one goes,
    and one whose input was stored again since is dropped in favour of the new copy."""
    held, unused, again = stored((9, 9, 90)), stored((9, 90, 9)), stored((90, 9, 9))
    record(store, held, "r-crash")
    for digest in (held, unused, again):
        path = InputStore().path(digest)
        os.rename(path, input_sweep.aside_path(path))
    assert not there(held)
    InputStore().put(png((90, 9, 9)))
    swept = input_sweep.sweep_inputs(store, paths.inputs_dir)
    assert swept.removed == [unused]
    assert there(held) and there(again) and not there(unused)
    assert not list(paths.inputs_dir.glob(f"*/{input_sweep.ASIDE}*"))
