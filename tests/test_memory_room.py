"""Room for a ControlNet under a memory profile (studio/engine/memory.py): the plan on the published
full-size layouts (built on the meta device: real shapes, no memory), the move of the text encoder's
layers on the real Engine with the demo model and demo ControlNet, and tools/bench_images_in.py on
the CPU (its layouts, FLOP ratios and cap flag)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from studio.engine.memory import (
    PROFILES,
    GiB,
    LayerSwap,
    Sizes,
    device_budget,
    plan_room,
    planned_gib,
    tensor_bytes,
)
from tools.bench_images_in import LAYOUTS, control_flop_ratio, published_config

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONTROLNET = ROOT / "assets" / "demo-controlnet"
ARGS = dict(prompt="a red circle on a blue background 蓝色背景上的红色圆形", width=128, height=128, steps=3,
            guidance=0.0)


@pytest.fixture(scope="module")
def full_size() -> tuple[Sizes, dict[str, float], dict]:
    """Full-size Z-Image-Turbo and each published ControlNet layout, built on the meta device."""
    from diffusers import ZImageControlNetModel

    from studio.models.architecture import ARCHITECTURES
    from studio.models.build import build_components

    tr = dict(ARCHITECTURES["full"].transformer)
    with torch.device("meta"):
        parts = build_components(ARCHITECTURES["full"], 151936, dtype=torch.bfloat16)
        controlnets = {layout: ZImageControlNetModel(**published_config(tr, layout)).to(torch.bfloat16)
                       for layout in LAYOUTS}
    sizes = Sizes.of(SimpleNamespace(**parts))
    return sizes, {layout: tensor_bytes(m) / GiB for layout, m in controlnets.items()}, tr


def test_full_size_weights_match_the_profiles_figures(full_size) -> None:
    sizes, cn, _ = full_size
    assert sizes.transformer == pytest.approx(11.5, abs=0.1)
    assert sizes.text_layers + sizes.text_embed == pytest.approx(7.5, abs=0.1)
    assert sizes.text_embed == pytest.approx(0.7, abs=0.05) and sizes.vae < 0.2
    assert cn["2.1"] * GiB / 1e9 == pytest.approx(6.7, abs=0.1)  # the published file's 6.7 GB
    assert cn["lite"] < cn["1.0"] < cn["2.1"]


def test_24gb_moves_the_text_encoder_out_for_any_published_controlnet(full_size) -> None:
    sizes, cn, _ = full_size
    p24 = PROFILES["24gb"]
    alone = plan_room(p24, sizes, 0.0)
    assert alone.text_encoder == "resident" and alone.fits  # the profile's own premise: 22 GiB
    for layout, gib in cn.items():
        placed = plan_room(p24, sizes, gib)
        resident = planned_gib(p24, sizes, gib, text_swapped=False)
        # with the text encoder resident each layout crosses the budget (2.1: as the GPU measured, 26.9 GiB)
        assert resident > p24.budget_gib, layout
        assert placed.text_encoder == "swap" and placed.fits, (layout, placed)
        assert placed.planned_gib == pytest.approx(resident - sizes.text_layers, abs=0.01)
    # no budget: everything stays; 16gb swaps already and cannot fit 2.1 beside the transformer (said, not hidden)
    assert plan_room(PROFILES["full"], sizes, cn["2.1"]).text_encoder == "resident"
    sixteen = plan_room(PROFILES["16gb"], sizes, cn["2.1"])
    assert sixteen.text_encoder == "swap" and not sixteen.fits
    assert plan_room(PROFILES["12gb"], sizes, cn["2.1"]).fits  # its transformer streams
    # without a GPU the profile's own budget is the plan's (on one, what the process can have there if less)
    assert device_budget(p24, torch.device("cpu")) == 22.0 and device_budget(PROFILES["full"], torch.device("cpu")) is None


def test_flop_ratios_of_the_published_layouts(full_size) -> None:
    """ControlNet work per step against the transformer's, 1024² (4096 image tokens, 64 caption)."""
    _, _, tr = full_size
    ratio = {layout: control_flop_ratio(tr, published_config(tr, layout), 4096, 64) for layout in LAYOUTS}
    assert ratio["2.1"] == pytest.approx(0.63, abs=0.01)  # last session's figure, docs/benchmarks.md
    assert ratio["lite"] < ratio["1.0"] < ratio["2.1"] and ratio["1.0"] == pytest.approx(0.32, abs=0.01)
    one = published_config(tr, "1.0")
    assert one["control_layers_places"] == [0, 5, 10, 15, 20, 25] and one["control_in_dim"] == 16
    assert one["add_control_noise_refiner"] is None and one["control_refiner_layers_places"] == []


# --- the real Engine on the demo model -----------------------------------------------------------


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_controlnet_moves_the_text_encoder_out_and_images_stay_the_same(demo_model_master: Path) -> None:
    """Two Engines on the demo model under 24gb: one with the profile's budget (room to spare), one
    with a budget just under its plan with the demo ControlNet. Loading the ControlNet moves the
    second one's text encoder layers behind swap hooks (and drops its text graphs); prompts then
    encode through them, and ControlNet, img2img and text-to-image draw the same pixels on both."""
    from studio.engine.generate import Engine
    from studio.engine.images_in import ControlInput, ImageInputs

    roomy = Engine(demo_model_master, "cpu", memory_profile="24gb", warm="off")
    tight = Engine(demo_model_master, "cpu", memory_profile="24gb", warm="off")
    cn_gib = tensor_bytes(roomy.images_in.controlnet(str(DEMO_CONTROLNET)), exclude=[roomy.pipe.transformer]) / GiB
    sizes = Sizes.of(tight.pipe)
    # over the plan with the text encoder resident, within it with its layers out
    budget = planned_gib(tight.profile, sizes, cn_gib, text_swapped=False) - sizes.text_layers / 2
    tight.profile = dataclasses.replace(tight.profile, budget_gib=budget)
    controlnet = tight.images_in.controlnet(str(DEMO_CONTROLNET))  # before any prompt is encoded
    placement = tight.images_in.placement
    assert placement.text_encoder == "swap" and placement.fits
    assert placement.planned_gib == pytest.approx(budget - sizes.text_layers / 2, abs=1e-3)
    assert placement.extra_gib * GiB == pytest.approx(tensor_bytes(controlnet, exclude=[tight.pipe.transformer]),
                                                      rel=1e-3)
    swap = tight._memory["layers"]
    assert isinstance(swap, LayerSwap) and len(swap.swaps) == len(tight.pipe.text_encoder.layers)
    assert all(layer._forward_pre_hooks and layer._forward_hooks for layer in tight.pipe.text_encoder.layers)
    assert tight.text_graphs is None and any("text encoder to CPU memory" in n for n in tight.notes)

    picture, _ = roomy.generate(seed=11, **ARGS)
    control = ImageInputs(control=ControlInput(image=picture, controlnet=str(DEMO_CONTROLNET), kind="canny"))
    img2img = ImageInputs(init_image=picture, strength=0.6)
    made = {}
    for name, engine in (("roomy", roomy), ("tight", tight)):
        made[name] = {"control": engine.images_in.run(seed=3, inputs=control, **ARGS).image,
                      "img2img": engine.images_in.run(seed=3, inputs=img2img, **ARGS).image,
                      "text": engine.generate(seed=3, **ARGS)[0]}
    assert roomy.images_in.placement.text_encoder == "resident" and roomy._memory.get("layers") is None
    assert not any(layer._forward_pre_hooks for layer in roomy.pipe.text_encoder.layers)
    for task in made["roomy"]:
        assert np.array_equal(pixels(made["roomy"][task]), pixels(made["tight"][task])), task
    assert not np.array_equal(pixels(made["tight"]["control"]), pixels(made["tight"]["text"]))
    # between its runs each layer's parameters point at their host copies again
    layer, layer_swap = tight.pipe.text_encoder.layers[0], swap.swaps[0]
    assert all(p.data_ptr() == layer_swap.host[n].data_ptr() for n, p in layer.named_parameters())
    # another ControlNet load keeps the one swap
    tight.images_in.adopt_controlnet("again", controlnet, compile=False)
    assert tight._memory["layers"] is swap


def test_union_1_0_with_a_mask_is_one_line(demo_model_master: Path) -> None:
    """The 1.0 layout has no inpaint input: a mask with it is refused in one line, not a diffusers error."""
    from studio.engine.generate import Engine
    from studio.engine.images_in import ControlInput, ImageInputs, ImagesInError
    from tools.bench_images_in import random_controlnet

    engine = Engine(demo_model_master, "cpu", warm="off")
    tr = dict(engine.pipe.transformer.config)
    engine.images_in.adopt_controlnet("union-1.0", random_controlnet(tr, engine.device, engine.dtype, "1.0"),
                                      compile=False)
    picture = Image.new("RGB", (128, 128), (200, 40, 40))
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (32, 32, 96, 96))
    made = engine.images_in.run(seed=1, inputs=ImageInputs(control=ControlInput(picture, "union-1.0", "map")), **ARGS)
    assert made.image.size == (128, 128)
    with pytest.raises(ImagesInError, match="takes no mask"):
        engine.images_in.run(seed=1, inputs=ImageInputs(init_image=picture, mask=mask,
                                                        control=ControlInput(picture, "union-1.0", "map")), **ARGS)


def test_a_replaced_controlnet_is_let_go(demo_model_master: Path) -> None:
    """Its pipelines and the Engine's images-in hold it no longer once another is adopted (after it ran,
    its control window included), so its memory can go back before the next one's moves in."""
    import gc
    import weakref

    from studio.engine.generate import Engine
    from studio.engine.images_in import ControlInput, ImageInputs
    from tools.bench_images_in import random_controlnet

    engine = Engine(demo_model_master, "cpu", warm="off")
    tr = dict(engine.pipe.transformer.config)
    first = random_controlnet(tr, engine.device, engine.dtype, "2.1")
    gone = weakref.ref(first)
    engine.images_in.adopt_controlnet("first", first, compile=False)
    picture = Image.new("RGB", (64, 64), (200, 40, 40))
    small = {**ARGS, "width": 64, "height": 64, "steps": 2}
    for end in (1.0, 0.5):
        engine.images_in.run(seed=1, inputs=ImageInputs(control=ControlInput(picture, "first", "map", end=end)),
                             **small)
    del first
    engine.images_in.adopt_controlnet("second", random_controlnet(tr, engine.device, engine.dtype, "1.0"),
                                      compile=False)
    gc.collect()
    assert gone() is None


def test_bench_images_in_runs_on_a_cpu_with_both_layouts_and_a_cap(tmp_path: Path) -> None:
    """`--cap-gib` and `--controlnet-layout` on a machine without CUDA: the rows, no crash, no peak."""
    from tools.bench_images_in import main

    out = tmp_path / "bench"
    assert main(["--arch", "tiny", "--device", "cpu", "--size", "64", "--steps", "2", "--runs", "1",
                 "--tasks", "controlnet", "--control-ends", "", "--controlnet-compile", "off",
                 "--controlnet-layout", "2.1,1.0", "--cap-gib", "22", "--profile", "24gb", "--out", str(out)]) == 0
    data = json.loads((out / "images_in.json").read_text("utf-8"))
    rows = data["results"]
    assert set(rows) == {"text2img", "controlnet 2.1 eager end=1.0", "controlnet 2.1 inpaint eager",
                         "controlnet 1.0 eager end=1.0"}
    assert all("error" not in r and r["s_per_image"] > 0 and r["peak_gib"] is None for r in rows.values())
    meta = data["meta"]
    assert meta["cap_gib"] == 22 and meta["cap_fraction"] is None and meta["fits_cap"] is None
    assert set(meta["placements"]) == {"2.1", "1.0"} and meta["profile"] == "24gb"
    assert all(p["text_encoder"] == "resident" for p in meta["placements"].values())  # a tiny model has room
    assert meta["controlnet_flops_per_step_vs_transformer"]["1.0"] < \
        meta["controlnet_flops_per_step_vs_transformer"]["2.1"]
    assert "controlnet 1.0 eager end=1.0" in (out / "images_in.md").read_text("utf-8")


def test_a_text_job_after_a_controlnet_gets_the_text_encoder_back(home: Path, demo_model_master: Path) -> None:
    """Jobs through `run_job.make_image` (each worker job's path) on an Engine whose budget the demo
    ControlNet crosses with the text encoder resident: a control job moves the layers out, the text jobs
    after it keep that ControlNet for two (a person may switch back), the third lets it go and the layers come back (hooks gone, no host copies, the plan
    resident again, the text graphs rebuilt); its pixels are those of an Engine that never swapped, and a
    control job after it moves them out again and draws what the first one drew. On an Engine with room
    to spare the ControlNet stays loaded across the text job (it costs that job nothing)."""
    from studio.core.image_inputs import InputStore
    from studio.core.jobs import Job
    from studio.core.spec import ControlRef, ImageSpec
    from studio.engine.generate import Engine
    from studio.engine.run_job import make_image
    from studio.engine.text_graphs import TextGraphs

    roomy = Engine(demo_model_master, "cpu", memory_profile="24gb", warm="off")
    tight = Engine(demo_model_master, "cpu", memory_profile="24gb", warm="off")
    cn_gib = tensor_bytes(roomy.images_in.controlnet(str(DEMO_CONTROLNET)), exclude=[roomy.pipe.transformer]) / GiB
    sizes = Sizes.of(tight.pipe)
    tight.profile = dataclasses.replace(
        tight.profile, budget_gib=planned_gib(tight.profile, sizes, cn_gib, text_swapped=False) - sizes.text_layers / 2)
    picture, _ = roomy.generate(seed=11, **ARGS)
    control = ControlRef(image=InputStore().put_image(picture).sha256, kind="canny", model=str(DEMO_CONTROLNET))
    text = ImageSpec(seed=3, **ARGS)
    jobs = iter(range(100))

    def run(engine: Engine, spec: ImageSpec) -> np.ndarray:
        job = Job(f"j{next(jobs)}", "r", 0, spec, str(home / "out.png"))
        return pixels(make_image(engine, job, model_name="demo", worker="cpu:0").image)

    layers = tight.pipe.text_encoder.layers
    tight.text_graphs = "graphs"  # stands for a GPU engine's text graphs (the swap drops them; CPU has none)
    tight.images_in.controlnet(str(DEMO_CONTROLNET))  # as a control job loads it, before encoding its prompt
    first = run(tight, dataclasses.replace(text, control=control))
    swap = tight._memory["layers"]
    assert tight.images_in.placement.text_encoder == "swap" and tight.text_graphs is None
    assert all(layer._forward_pre_hooks for layer in layers)
    assert sum("LayerSwap" in h.__qualname__ for layer in layers for h in layer._forward_hooks.values()) == len(layers)

    from studio.engine.controlnet_slot import LET_GO_AFTER

    kept = [run(tight, text) for _ in range(LET_GO_AFTER - 1)]
    assert tight._memory.get("layers") is swap and tight.images_in.slot.loaded is not None
    drawn = run(tight, text)
    assert all(np.array_equal(k, drawn) for k in kept)  # the layers' place never changes the picture
    assert tight._memory.get("layers") is None and tight.images_in.slot.loaded is None
    assert tight.images_in.placement.text_encoder == "resident" and tight.images_in.placement.extra_gib == 0
    swap_hooks = [h for layer in layers for h in (*layer._forward_pre_hooks.values(), *layer._forward_hooks.values())
                  if "LayerSwap" in h.__qualname__]
    assert not swap_hooks and not any(layer._forward_pre_hooks for layer in layers)
    assert not swap.swaps and isinstance(tight.text_graphs, TextGraphs)
    assert any("text encoder back on the device" in n for n in tight.notes)
    tight.text_graphs = None  # CPU: no graphs to capture
    assert np.array_equal(drawn, run(roomy, text))
    assert roomy.images_in.slot.loaded is not None  # it never moved roomy's text encoder out

    again = run(tight, dataclasses.replace(text, control=control))
    assert tight.images_in.placement.text_encoder == "swap" and tight._memory.get("layers") is not None
    assert np.array_equal(first, again) and not np.array_equal(first, drawn)

    # 16gb keeps the layers out whatever is loaded: a text job there has nothing to win by a reload
    sixteen = Engine(demo_model_master, "cpu", memory_profile="16gb", warm="off")
    run(sixteen, dataclasses.replace(text, control=control))
    assert sixteen.images_in.placement.text_encoder == "swap"
    assert np.array_equal(run(sixteen, text), drawn) and sixteen.images_in.slot.loaded is not None
