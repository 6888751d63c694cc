"""The Gallery's queries on a real store: search and favorites filter, delete with undo, empty trash."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.app import StoreError, Studio
from studio.core.request import GenerationRequest
from tests.store_helpers import split, write_job_png


@pytest.fixture
def studio(paths):
    s = Studio()
    for prompt in ("一只红色的星星 red star", "blue moon over 山"):
        request = GenerationRequest(prompt=prompt, width=256, height=256, steps=1, seed=5, seed_mode="increment",
                                    count=2)
        jobs = split(request, paths.gallery_dir)
        s.store.record_request(request, jobs)
        for job in jobs:
            s.store.mark_done(job.job_id, write_job_png(job))
    yield s
    s.close()


def test_search_and_favorites_filter_the_gallery(studio) -> None:
    assert studio.gallery()["total"] == 4
    moon = studio.gallery(search="moon")
    assert moon["total"] == 2 and all("moon" in im["prompt"] for im in moon["items"])
    assert studio.gallery(search="红色")["total"] == 2  # a 2-character Chinese word
    assert studio.gallery(search="moon 红色")["total"] == 0
    studio.set_favorite(moon["items"][0]["image_id"])
    assert [im["image_id"] for im in studio.gallery(favorites_only=True)["items"]] == [moon["items"][0]["image_id"]]
    assert studio.gallery(search="star", favorites_only=True)["total"] == 0


def test_undo_brings_the_file_and_the_row_back(studio) -> None:
    image = studio.gallery()["items"][1]
    studio.set_favorite(image["image_id"])
    before = studio.image_info(image["image_id"])
    trashed = studio.delete_image(image["image_id"])
    assert trashed.is_file() and not Path(image["path"]).exists()
    assert studio.gallery()["total"] == 3 and studio.can_undo_delete()
    assert studio.undo_delete() == image["image_id"]
    assert not trashed.exists() and studio.image_info(image["image_id"]) == before  # same id, favorite, request
    assert studio.gallery()["total"] == 4 and studio.undo_delete() is None


def test_undo_after_the_trash_was_emptied_says_so(studio) -> None:
    first, second = studio.gallery()["items"][:2]
    studio.delete_image(first["image_id"])
    studio.empty_trash()  # the studio's own empty: nothing is left to undo
    assert not studio.can_undo_delete() and studio.undo_delete() is None
    studio.delete_image(second["image_id"])
    studio.store.empty_trash()  # emptied behind the studio's back (another window, a file manager)
    with pytest.raises(StoreError, match="no longer in the trash"):
        studio.undo_delete()
    assert studio.gallery()["total"] == 2
