"""The --workers grammar (core/workers_spec.py): what people type is read once, the same everywhere."""

from __future__ import annotations

import pytest

from studio.core.workers_spec import WorkerSpecError, parse_workers_text


@pytest.mark.parametrize("text, gpus", [("cuda:0,cuda:1", (0, 1)), ("cuda:0,1", (0, 1)), ("gpu:1, 2,3", (1, 2, 3)),
                                        ("cuda:0,1,ray", (0, 1))])
def test_gpu_lists_in_long_and_short_form(text: str, gpus: tuple[int, ...]) -> None:
    assert parse_workers_text(text).gpus == gpus


@pytest.mark.parametrize("text", ["0,1", "cpu:2,1", "cuda:0,0", "cuda:0,x", "bogus"])
def test_bad_lists_are_one_sentence(text: str) -> None:
    with pytest.raises(WorkerSpecError) as err:
        parse_workers_text(text)
    assert "\n" not in str(err.value) and text.replace(" ", "") in str(err.value).replace(" ", "")
