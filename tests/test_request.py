"""Validation of every GenerationRequest field, and seed expansion."""

from __future__ import annotations

import random

import pytest

from studio.core.request import MAX_SEED, GenerationRequest, ValidationError, expand_seeds, validate


def ok(**kw) -> GenerationRequest:
    return validate(GenerationRequest(**{"prompt": "a cat", **kw}))


def bad(field: str, fragment: str, **kw) -> None:
    with pytest.raises(ValidationError) as info:
        validate(GenerationRequest(**{"prompt": "a cat", **kw}))
    assert info.value.field == field
    assert fragment in info.value.message
    assert "\n" not in info.value.message


def test_defaults_are_turbo_defaults() -> None:
    r = ok()
    assert (r.width, r.height, r.steps, r.guidance, r.seed, r.seed_mode, r.count) == (
        1024, 1024, 9, 0.0, None, "random", 1)


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_prompt_required(prompt: str) -> None:
    bad("prompt", "required", prompt=prompt)


def test_prompt_length_counts_characters_not_bytes() -> None:
    assert ok(prompt="猫" * 2000).prompt == "猫" * 2000
    bad("prompt", "at most 2000", prompt="猫" * 2001)
    bad("negative_prompt", "at most 2000", negative_prompt="x" * 2001)


def test_mixed_language_prompt_kept_and_stripped() -> None:
    assert ok(prompt="  一只猫 sitting on 月亮  ").prompt == "一只猫 sitting on 月亮"


@pytest.mark.parametrize("field", ["width", "height"])
@pytest.mark.parametrize("value", [0, 255, 240, 1000, 2064, -16, "abc", 512.5, True])
def test_size_rejected(field: str, value) -> None:
    with pytest.raises(ValidationError) as info:
        ok(**{field: value})
    assert info.value.field == field


@pytest.mark.parametrize("value", [256, 272, 1024, "1024", 1024.0, 2048])
def test_size_accepted(value) -> None:
    assert ok(width=value).width == int(float(value))


def test_size_message_names_range() -> None:
    bad("width", "multiple of 16 from 256 to 2048", width=1000)


@pytest.mark.parametrize("value", [0, 101, -1, "many"])
def test_steps_rejected(value) -> None:
    with pytest.raises(ValidationError) as info:
        ok(steps=value)
    assert info.value.field == "steps"


def test_steps_bounds_accepted() -> None:
    assert ok(steps=1).steps == 1 and ok(steps=100).steps == 100


@pytest.mark.parametrize("value", [-0.1, 20.5, float("nan"), float("inf"), "x"])
def test_guidance_rejected(value) -> None:
    with pytest.raises(ValidationError) as info:
        ok(guidance=value)
    assert info.value.field == "guidance"


def test_guidance_bounds() -> None:
    assert ok(guidance=0).guidance == 0.0 and ok(guidance="20").guidance == 20.0


@pytest.mark.parametrize("value", [MAX_SEED + 1, -2, "seed", 1.5])
def test_seed_rejected(value) -> None:
    with pytest.raises(ValidationError) as info:
        ok(seed=value)
    assert info.value.field == "seed"


@pytest.mark.parametrize("value,expected", [(0, 0), (MAX_SEED, MAX_SEED), ("42", 42), ("", None),
                                            (-1, None), ("random", None), (None, None)])
def test_seed_accepted(value, expected) -> None:
    assert ok(seed=value).seed == expected


def test_seed_mode_and_count() -> None:
    bad("seed_mode", "random, fixed, increment", seed_mode="sometimes")
    bad("count", "from 1 to 64", count=0)
    bad("count", "from 1 to 64", count=65)
    assert ok(seed_mode="FIXED").seed_mode == "fixed"


def test_expand_seeds_modes() -> None:
    rng = random.Random(0)
    assert expand_seeds(ok(seed=7, seed_mode="fixed", count=3), rng) == [7, 7, 7]
    assert expand_seeds(ok(seed=7, seed_mode="increment", count=3), rng) == [7, 8, 9]
    assert expand_seeds(ok(seed=MAX_SEED, seed_mode="increment", count=2), rng) == [MAX_SEED, 0]
    seeds = expand_seeds(ok(seed_mode="random", count=5), rng)
    assert len(set(seeds)) == 5 and all(0 <= s <= MAX_SEED for s in seeds)
    first = expand_seeds(ok(seed=11, seed_mode="random", count=3), rng)
    assert first[0] == 11 and len(first) == 3


def test_round_trip_dict() -> None:
    r = ok(seed=3, extra={"k": "v"})
    assert GenerationRequest.from_dict({**r.to_dict(), "unknown": 1}) == r


def test_loras_in_every_form_and_in_the_prompt_become_one_list() -> None:
    from studio.core.spec import LoraRef

    r = validate(GenerationRequest(prompt="a red star <lora:ink:0.5>, on white", loras=(
        "demo-purple:0.8", {"name": "b", "weight": -1}, ("c", "1.5"), LoraRef("d"))))
    assert r.prompt == "a red star, on white"
    assert [(x.name, x.weight) for x in r.loras] == [("demo-purple", 0.8), ("b", -1.0), ("c", 1.5), ("d", 1.0),
                                                     ("ink", 0.5)]
    assert validate(GenerationRequest(prompt="x", loras="a:0.5")).loras == (LoraRef("a", 0.5),)
    twice = validate(GenerationRequest(prompt="x <lora:a:0.2>", loras=("a:0.9",)))
    assert twice.loras == (LoraRef("a", 0.2),)  # a name given twice keeps its last strength
    assert GenerationRequest.from_dict(r.to_dict()) == r  # JSON and back
    for loras, words in ((("a:9",), "out of range"), ((("", 1),), "no name"), ((("a", "x"),), "not a number")):
        with pytest.raises(ValidationError, match=words) as caught:
            validate(GenerationRequest(prompt="x", loras=loras))
        assert caught.value.field == "loras"
    with pytest.raises(ValidationError, match="Prompt is required"):
        validate(GenerationRequest(prompt="<lora:a:1>"))  # a tag alone describes no image


def test_from_dict_reads_lora_dicts_of_other_writers():
    """API bodies say `strength`, later versions may add keys: read both; a LoRA without a name is one line."""
    from studio.core.errors import StudioError

    req = GenerationRequest.from_dict({"prompt": "x", "loras": [{"name": "a", "strength": 0.5, "later": 1}]})
    assert [(x.name, x.weight) for x in req.loras] == [("a", 0.5)]
    with pytest.raises(ValidationError) as err:
        GenerationRequest.from_dict({"prompt": "x", "loras": [{"strength": 0.5}]})
    assert isinstance(err.value, StudioError) and err.value.usage and err.value.field == "loras"
