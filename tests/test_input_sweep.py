"""The inputs folder is emptied of inputs no history row holds (studio/store/input_sweep.py), through
the calls the window's Gallery and History make (`Studio.delete_image`, `undo_delete`, `empty_trash`),
on a real Studio with one CPU worker on the demo model and its real SQLite history."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PIL import Image

from studio.core.image_inputs import InputStore
from studio.core.request import GenerationRequest, ValidationError, validate
from studio.store import input_sweep
from tests.homes import make_home
from tests.pool_helpers import running_studio

SIZE = 256


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, demo_model_master: Path):
    with pytest.MonkeyPatch.context() as mp:
        make_home(tmp_path_factory.mktemp("input-sweep"), demo_model_master, mp)
        with running_studio("cpu:1") as started:
            yield started[0]


def stored(colour: tuple[int, int, int]) -> str:
    return InputStore().put_image(Image.new("RGB", (SIZE, SIZE), colour)).sha256


def age(*digests: str, hours: float = 2.0) -> None:
    """Make inputs look stored `hours` ago, past the sweep's grace period."""
    then = time.time() - hours * 3600
    for digest in digests:
        os.utime(InputStore().path(digest), (then, then))


def img2img(init: str, seed: int = 1) -> GenerationRequest:
    return GenerationRequest(prompt="a red circle", width=SIZE, height=SIZE, steps=2, seed=seed, init_image=init,
                             strength=0.5)


def made(studio, request: GenerationRequest) -> tuple[str, int]:
    rid = studio.submit(request)
    (result,) = studio.wait(rid, timeout=300)
    assert result["status"] == "done", result
    (entry,) = [e for e in studio.history(limit=50) if e["request_id"] == rid]
    return rid, entry["images"][0]["image_id"]


def there(digest: str) -> bool:
    return InputStore().path(digest) is not None


def test_deleted_images_take_their_inputs_once_nothing_can_bring_them_back(worker) -> None:
    studio = worker
    alone, shared, fresh, orphan = (stored(c) for c in ((200, 30, 30), (30, 200, 30), (30, 30, 200), (9, 9, 9)))
    r1, im1 = made(studio, img2img(alone))
    _, im2 = made(studio, img2img(shared, 2))
    _, im3 = made(studio, GenerationRequest(prompt="a mask", width=SIZE, height=SIZE, steps=2, seed=3,
                                            init_image=stored((120, 120, 120)), mask=shared))
    again = stored((3, 3, 3))
    age(alone, shared, orphan, again)
    assert stored((3, 3, 3)) == again  # given again (a form about to submit it): new to the grace period
    studio.delete_image(im1)
    assert there(alone)  # the deletion can still be undone
    assert studio.undo_delete() == im1
    studio.reuse(request_id=r1)
    studio.delete_image(im1)

    studio.empty_trash()  # nothing can be undone now
    assert not there(alone) and not there(orphan)
    assert there(shared) and there(fresh) and there(again)  # held by two requests with images; recent
    with pytest.raises(ValidationError, match="no longer in the studio's inputs folder"):
        studio.submit(studio.reuse(request_id=r1))  # History's rerun: one line, nothing queued

    studio.delete_image(im2)
    studio.empty_trash()
    assert there(shared)  # still the mask of the third request
    studio.delete_image(im3)
    studio.empty_trash()
    assert not there(shared) and there(fresh)
    age(fresh)
    studio.empty_trash()
    assert not there(fresh)


def test_a_deletion_falling_off_the_undo_list_frees_its_inputs(worker, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio import queries

    monkeypatch.setattr(queries, "UNDO_KEEP", 2)
    studio = worker
    studio.empty_trash()
    first, both = stored((1, 2, 3)), stored((4, 5, 6))
    _, a = made(studio, GenerationRequest(prompt="inpaint", width=SIZE, height=SIZE, steps=1, seed=1,
                                          init_image=first, mask=both))
    made(studio, img2img(both))  # keeps its image: holds `both`
    images = [made(studio, GenerationRequest(prompt=f"plain {i}", width=SIZE, height=SIZE, steps=1, seed=i))[1]
              for i in range(2)]
    age(first, both)
    studio.delete_image(a)
    studio.delete_image(images[0])
    assert there(first)  # two deletions: both can still be undone
    studio.delete_image(images[1])
    assert not there(first) and there(both)


def test_work_in_flight_holds_its_inputs(worker) -> None:
    studio = worker
    init = stored((77, 1, 1))
    age(init)
    rid = studio.submit(GenerationRequest(prompt="slow", width=SIZE, height=SIZE, steps=4, seed=5, count=2,
                                          init_image=init, strength=0.5))
    swept = studio.sweep_inputs(None)  # while its jobs are queued or running
    assert there(init) and init not in (swept.removed if swept else [])
    studio.wait(rid, timeout=300)


def test_a_request_recorded_after_a_sweep_removed_its_input_is_refused(worker) -> None:
    """A sweep that runs between a request's checks and its recording: the recording's own check,
    under the same database lock the sweep holds, refuses it and records nothing."""
    from studio.core.jobs import make_jobs

    studio = worker
    init = stored((5, 99, 5))
    request = validate(img2img(init))
    age(init)
    swept = input_sweep.sweep_inputs(studio.store, studio.store.inputs_dir)
    assert init in swept.removed
    before = studio.store.history_count()
    with pytest.raises(ValidationError, match="no longer in the studio's inputs folder"):
        studio.store.record_request(request, make_jobs(request, "r-late", studio.output_dir, studio.model.name))
    assert studio.store.history_count() == before
