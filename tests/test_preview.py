"""Live preview: the projection against the demo model's real decodes, the throttle's budget, the x0
estimate, and the tiny autoencoder found on disk (never downloaded)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from studio.engine import preview as pv
from studio.engine.generate import Engine, initial_noise

PROMPTS = [("a red star on a white background", 1), ("a blue circle on a yellow background", 2),
           ("一个绿色的三角形，黑色背景", 3), ("一个白色的圆环，红色背景", 6)]


@pytest.fixture(scope="module")
def engine(demo_engine) -> Engine:
    return demo_engine  # the session's (tests/conftest.py): no test here changes it


def run_with_previews(engine: Engine, previewer: pv.Previewer, prompt: str, seed: int, steps: int,
                      size: int = 256) -> Image.Image:
    """One image through the real pipeline, its latents offered to `previewer` after every step."""
    pipe = engine.pipe
    latents = initial_noise(seed, size, size, pipe.transformer.config.in_channels, pipe.vae_scale_factor)
    previewer.begin(latents)

    def step_end(p, i, _t, kwargs):
        previewer.offer(i + 1, steps, kwargs["latents"], *pv.step_sigmas(p.scheduler))
        return kwargs

    with torch.no_grad():
        out = pipe(prompt_embeds=engine.encode(prompt), height=size, width=size, num_inference_steps=steps,
                   guidance_scale=0.0, latents=latents, output_type="latent", callback_on_step_end=step_end).images
    previewer.end()
    return engine.decode(out)


def likeness(preview: pv.PreviewImage, final: Image.Image) -> tuple[float, float]:
    """(Pearson correlation, mean absolute difference in 0..255) over every R, G and B value of the
    preview and of the final image brought to the preview's size."""
    got = np.asarray(Image.open(io.BytesIO(preview.jpeg)).convert("RGB"), dtype=float).reshape(-1)
    ref = np.asarray(final.resize((preview.width, preview.height), Image.BOX), dtype=float).reshape(-1)
    return float(np.corrcoef(got, ref)[0, 1]), float(np.abs(got - ref).mean())


def test_demo_model_ships_its_fitted_projection(demo_model_master: Path, engine: Engine, tmp_path: Path) -> None:
    stored = demo_model_master / "vae" / pv.PROJECTION_FILE
    assert stored.is_file()
    projection = pv.projection_for(engine.pipe.vae, demo_model_master)
    assert len(projection.factors) == engine.pipe.vae.config.latent_channels
    assert projection == pv.LatentProjection.from_json(projection.to_json())
    older = tmp_path / "zaoxiang-demo-copy"  # a data-dir copy made before the file shipped
    (older / "vae").mkdir(parents=True)
    shutil.copy(demo_model_master / "zaoxiang.json", older)
    assert pv.projection_for(engine.pipe.vae, older) == projection  # the shipped fit, no fit at load
    assert not pv.is_flux_space(engine.pipe.vae.config)  # its own small VAE: the Flux factors do not apply


def test_preview_colours_follow_the_final_decode(demo_model_master: Path, engine: Engine) -> None:
    """Measured on these prompts (docs/benchmarks.md): last preview r 0.70-0.98 (a black background
    previews dark red), mean difference 13-22 of 255; half-way the picture is already there."""
    projection = pv.projection_for(engine.pipe.vae, demo_model_master)
    last = []
    for prompt, seed in PROMPTS:
        got: list[pv.PreviewImage] = []
        previewer = pv.Previewer(projection, on_preview=got.append,
                                 throttle=pv.Throttle(budget=1.0, min_interval_s=0.0))
        final = run_with_previews(engine, previewer, prompt, seed, steps=10)
        assert [p.step for p in got] == list(range(1, 10))  # every step but the last (the real image follows)
        assert all(max(p.width, p.height) <= pv.MAX_SIDE and p.method is pv.Method.LINEAR for p in got)
        scores = [likeness(p, final) for p in got]
        corr = [r for r, _ in scores]
        assert corr[-1] >= 0.6 and scores[-1][1] <= 30, (prompt, scores)
        assert corr[4] >= 0.55 and corr[-1] > corr[0], (prompt, corr)  # x0 estimates: there half-way
        last.append(corr[-1])
    assert sum(last) / len(last) >= 0.8, last


def test_throttle_keeps_its_budget_on_a_simulated_run() -> None:
    now = [0.0]
    throttle = pv.Throttle(budget=0.03, min_interval_s=0.1, clock=lambda: now[0])
    throttle.observe(0.004)
    throttle.start()
    taken = []
    for step in range(1, 401):
        now[0] += 0.02  # a step
        if throttle.due(step, 400):
            throttle.taken(step)
            cost = 0.004 if step % 7 else 0.012  # some previews cost three times the usual
            now[0] += cost
            throttle.spend(cost)
            throttle.observe(cost)
            taken.append((step, now[0]))
    assert len(taken) >= 40
    assert throttle.share() <= 0.03
    gaps = [b - a for (_, a), (_, b) in zip(taken, taken[1:])]
    assert min(gaps) >= 0.1 - 1e-9
    assert taken[-1][0] < 400


def test_throttle_every_n_steps_and_no_preview_before_a_cost_is_known() -> None:
    now = [0.0]
    throttle = pv.Throttle(budget=1.0, min_interval_s=0.0, every_steps=3, clock=lambda: now[0])
    throttle.start()
    now[0] = 1.0
    assert not throttle.due(1, 10)  # uncalibrated: the budget cannot be checked yet
    throttle.observe(0.001)
    steps = []
    for step in range(1, 11):
        now[0] += 1.0
        if throttle.due(step, 10):
            throttle.taken(step)
            steps.append(step)
    assert steps == [1, 4, 7]


def test_real_run_stays_within_budget(demo_model_master: Path, engine: Engine) -> None:
    got: list[pv.PreviewImage] = []
    previewer = pv.Previewer(pv.projection_for(engine.pipe.vae, demo_model_master), on_preview=got.append)
    run_with_previews(engine, previewer, "a red star on a white background", 5, steps=60)
    assert got, "no preview in 60 steps"
    assert previewer.throttle.share() <= pv.BUDGET


def test_denoised_estimate_recovers_x0_on_a_flow_path() -> None:
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(1, 16, 8, 8, generator=gen), torch.randn(1, 16, 8, 8, generator=gen)
    path = [(1 - s) * x0 + s * noise for s in (0.9, 0.6)]
    assert torch.allclose(pv.denoised_estimate(path[0], 0.9, path[1], 0.6), x0, atol=1e-5)
    assert pv.denoised_estimate(path[1], 0.6, path[1], 0.6) is path[1]


def _flux_space_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                         up_block_types=("UpDecoderBlock2D",), latent_channels=16, norm_num_groups=8,
                         scaling_factor=pv.FLUX_SCALE, shift_factor=pv.FLUX_SHIFT)


def _save_tiny(folder: Path) -> None:
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(latent_channels=16, encoder_block_out_channels=(8, 8, 8, 8),
                    decoder_block_out_channels=(8, 8, 8, 8)).save_pretrained(folder)


def test_tiny_vae_used_when_on_disk_else_flux_factors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    pipe = SimpleNamespace(vae=_flux_space_vae())
    models = tmp_path / "models"
    models.mkdir()
    plain = pv.make_previewer(pipe, None, torch.device("cpu"), models_dir=models)
    assert plain.method is pv.Method.LINEAR and plain.projection == pv.FLUX_PROJECTION

    snapshot = tmp_path / "hub" / "models--madebyollin--taef1" / "snapshots" / "0123abc"
    _save_tiny(snapshot)
    got: list[pv.PreviewImage] = []
    previewer = pv.make_previewer(pipe, None, torch.device("cpu"), models_dir=models)
    assert previewer.method is pv.Method.TINY_VAE
    now = [0.0]
    previewer.on_preview = got.append
    previewer.throttle = pv.Throttle(budget=1.0, min_interval_s=0.0, clock=lambda: now[0])
    latents = torch.randn(1, 16, 128, 96)  # a 1024x768 image's latents
    previewer.begin(latents)
    now[0] += 60.0  # a slow step: the budget allows one
    previewer.offer(1, 4, latents * 0.5, 0.5, 1.0)
    assert len(got) == 1 and got[0].method is pv.Method.TINY_VAE
    assert (got[0].width, got[0].height) == (192, 256)
    assert Image.open(io.BytesIO(got[0].jpeg)).size == (192, 256)

    (models / "taef1").mkdir()
    _save_tiny(models / "taef1")
    assert pv.tiny_vae_folders(models)[0] == models / "taef1"  # the studio's own folder comes first


def test_step_sigmas_follow_each_new_schedule():
    """The host copy of the schedule is per schedule: a new `set_timesteps` (the next image, or
    img2img starting part-way) is read afresh, never the last image's table."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    for steps in (9, 4):
        sched.set_timesteps(steps)
        sched._step_index = 0
        for index in range(1, steps + 1):
            sched._step_index = index
            assert pv.step_sigmas(sched) == (float(sched.sigmas[index]), float(sched.sigmas[index - 1]))
