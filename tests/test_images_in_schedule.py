"""The host schedule for the image pipelines (`ImagesIn.host_timesteps`, studio/engine/images_in.py):
the same pixels as the device schedule on the real Engine with the demo model and ControlNet, the
schedule in CPU memory, and the timestep hook on the transformer and the ControlNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONTROLNET = ROOT / "assets" / "demo-controlnet"
ARGS = dict(prompt="a red circle on a blue background 蓝色背景上的红色圆形", width=128, height=128, steps=3,
            guidance=0.0)


@pytest.fixture(scope="module")
def engine(demo_model_master: Path):
    from studio.engine.generate import Engine

    return Engine(demo_model_master, "cpu", warm="off")


def test_host_schedule_draws_the_same_pixels(engine) -> None:
    from studio.engine.images_in import ControlInput, Hires, ImageInputs, ImagesIn, Task

    picture, _ = engine.generate(seed=11, **ARGS)
    mask = Image.new("L", picture.size, 0)
    mask.paste(255, (32, 32, 96, 96))
    cn = str(DEMO_CONTROLNET)
    cases = {
        "img2img": ImageInputs(init_image=picture, strength=0.6),
        "inpaint": ImageInputs(init_image=picture, mask=mask, mask_blur=4),
        "control window": ImageInputs(control=ControlInput(image=picture, controlnet=cn, start=0.25, end=0.75)),
        "control inpaint": ImageInputs(init_image=picture, mask=mask, control=ControlInput(picture, cn, "canny")),
        "hires": ImageInputs(hires=Hires(scale=1.25, strength=0.5)),
    }
    device, host = ImagesIn(engine), ImagesIn(engine)
    assert host.host_timesteps  # the default since a GPU measured it (docs/benchmarks.md)
    device.host_timesteps = False
    for name, inputs in cases.items():
        a = device.run(seed=7, inputs=inputs, **ARGS).image
        b = host.run(seed=7, inputs=inputs, **ARGS).image
        assert np.array_equal(np.asarray(a), np.asarray(b)), name
    controlnet = host.controlnet(cn)
    for task in (Task.IMG2IMG, Task.CONTROL, Task.CONTROL_INPAINT):
        pipe = host.pipeline(task, controlnet if task is not Task.IMG2IMG else None)
        assert type(pipe.scheduler).__mro__[1] is type(engine.pipe.scheduler)  # the same scheduler, subclassed
        assert pipe.scheduler.timesteps.device.type == pipe.scheduler.sigmas.device.type == "cpu"
    # inpaint keeps the device schedule: its loop copies the schedule to the device every step anyway
    assert type(host.pipeline(Task.INPAINT).scheduler) is type(engine.pipe.scheduler)
    assert engine.pipe.transformer._zx_timestep_hook and controlnet._zx_timestep_hook
    assert host.pipeline(Task.IMG2IMG) is not device.pipeline(Task.IMG2IMG)
    # the host schedule stays in CPU memory whatever device a pipeline names, by keyword or position
    schedule = host.pipeline(Task.IMG2IMG).scheduler
    schedule.set_timesteps(4, device="meta")
    assert schedule.timesteps.device.type == schedule.sigmas.device.type == "cpu"
    schedule.set_timesteps(4, "meta")
    assert schedule.timesteps.device.type == "cpu" and len(schedule.timesteps) == 4


def test_timestep_hook_moves_only_a_host_timestep() -> None:
    import torch

    from studio.engine.images_in import _timestep_to_device

    class Seen(torch.nn.Module):
        def forward(self, x, t, cap, scale=1.0):  # the transformer's and ControlNet's argument order
            return x, t, cap, scale

    module = Seen()
    _timestep_to_device(module, torch.device("meta"))
    x, t, cap, scale = module("x", torch.ones(2), "cap", scale=0.5)
    assert t.device.type == "meta" and t.shape == (2,) and (x, cap, scale) == ("x", "cap", 0.5)
    already = torch.ones(2, device="meta")
    assert module("x", already, "cap")[1] is already
    plain = Seen()
    _timestep_to_device(plain, torch.device("cpu"))  # a CPU engine: nothing to move
    host_t = torch.ones(2)
    assert plain("x", host_t, "cap")[1] is host_t
