"""Images in (issue 20) on the demo model: input checks, image-to-image, inpaint, outpaint, hires, ControlNet.

The engine tests run the real diffusers pipelines derived from the real Engine's pipe on the CPU and
measure pixels; the input tests feed real files (a text file, cut-off PNG and JPEG, a 20000×20000 PNG).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.i18n import t
from studio.core.image_inputs import (
    InputImageError,
    InputStore,
    Outpaint,
    Problem,
    check_image,
    decode,
    extend_canvas,
    feather,
    fit_mask,
    fit_size,
    paste_back,
    read_input,
)

ROOT = Path(__file__).resolve().parents[1]
SIZE = 128  # the demo model draws at 256; 128 keeps these CPU runs short and the measures apart
DEMO_CONTROLNET = ROOT / "assets" / "demo-controlnet"
ARGS = dict(prompt="a red circle on a blue background 蓝色背景上的红色圆形", width=SIZE, height=SIZE, steps=4,
            guidance=0.0)


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def gradient(size: tuple[int, int] = (256, 256)) -> Image.Image:
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(255, 0, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, (x // 2 + y // 2)], -1))


# --- inputs: checked from the header, one line in both languages -------------------------------


def refused(data: bytes, name: str) -> InputImageError:
    with pytest.raises(InputImageError) as err:
        check_image(data, name)
    e = err.value
    for lang in ("en", "zh"):
        line = e.message(lang)
        assert name in line and "\n" not in line and "Traceback" not in line
    assert e.message("zh") != e.message("en")
    return e


def test_non_image_truncated_and_huge_inputs_are_refused_with_one_line() -> None:
    assert refused(b"just some text, not pixels", "notes.txt").problem is Problem.NOT_IMAGE
    good = png_bytes(gradient((64, 48)))
    assert check_image(good, "ok.png").size == (64, 48)
    assert refused(good[: len(good) // 2], "cut.png").problem is Problem.TRUNCATED
    jpeg = png_bytes(gradient((64, 48)), "JPEG")
    assert refused(jpeg[:-200], "cut.jpg").problem is Problem.TRUNCATED
    tiny = png_bytes(Image.new("RGB", (4, 4)))
    assert refused(tiny, "dot.png").problem is Problem.TOO_SMALL


def test_a_20000_pixel_png_is_refused_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, format="PNG")  # 400 Mpx, a few KB compressed
    e = refused(buf.getvalue(), "huge.png")
    assert e.problem is Problem.TOO_LARGE and "20000×20000" in e.message("en")


def test_missing_file_and_gone_stored_input(tmp_path: Path) -> None:
    with pytest.raises(InputImageError) as err:
        read_input(tmp_path / "nope.png")
    assert err.value.problem is Problem.MISSING
    store = InputStore(tmp_path / "inputs")
    with pytest.raises(InputImageError) as err:
        store.open("ab" * 32)
    assert err.value.problem is Problem.NOT_STORED and "give the image again" in err.value.message("en")


def test_inputs_are_stored_once_by_content_and_survive_the_original_moving(tmp_path: Path) -> None:
    import hashlib

    original = tmp_path / "photo.png"
    original.write_bytes(png_bytes(gradient((80, 64))))
    store = InputStore(tmp_path / "inputs")
    a = store.put(original)
    b = store.put(original.read_bytes(), "again.png")
    assert a.sha256 == b.sha256 == hashlib.sha256(original.read_bytes()).hexdigest()
    assert a.path.read_bytes() == original.read_bytes()
    assert len(list((tmp_path / "inputs").rglob("*.png"))) == 1
    original.unlink()
    assert pixels(store.open(a.sha256)).tolist() == pixels(gradient((80, 64))).tolist()
    with pytest.raises(InputImageError):
        store.put(b"not an image", "bad.txt")
    assert len(list((tmp_path / "inputs").rglob("*"))) == 2  # its folder and the one image: nothing half-written


def test_mask_of_another_size_is_resized_and_said_so() -> None:
    mask, note = fit_mask(Image.new("L", (100, 50), 255), (256, 128))
    assert mask.size == (256, 128) and note is not None
    assert "100×50" in note.message("en") and "256×128" in note.message("zh")
    same, none = fit_mask(Image.new("L", (256, 128)), (256, 128))
    assert none is None and same.size == (256, 128)


def test_transparent_mask_uses_its_alpha_and_rgba_image_goes_on_white() -> None:
    layer = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    layer.paste((255, 0, 0, 255), (8, 8, 24, 24))
    mask = decode(png_bytes(layer), "mask.png", "L")
    assert mask.getpixel((0, 0)) == 0 and mask.getpixel((16, 16)) == 255
    image = decode(png_bytes(layer), "layer.png", "RGB")
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((16, 16)) == (255, 0, 0)


def test_outpaint_canvas_keeps_the_image_and_masks_only_the_new_area() -> None:
    img = gradient((200, 120))
    canvas, mask, used = extend_canvas(img, Outpaint(left=30, right=20, up=0, down=10))
    assert canvas.size[0] % 16 == 0 and canvas.size[1] % 16 == 0
    assert (used.left, used.up) == (30, 0) and used.right >= 20 and used.down >= 10
    box = (used.left, used.up, used.left + 200, used.up + 120)
    assert np.array_equal(pixels(canvas.crop(box)), pixels(img))
    m = np.asarray(mask)
    assert (m[box[1]:box[3], box[0]:box[2]] == 0).all()
    assert m.sum() == 255 * (canvas.size[0] * canvas.size[1] - 200 * 120)
    for bad in ("1,2,3", "a,b,c,d", "-1,0,0,0", "0,0,0,5000"):
        with pytest.raises(InputImageError) as err:
            Outpaint.parse(bad)
        assert err.value.problem is Problem.OUTPAINT
    assert Outpaint.parse(" 64, 0,32,0 ") == Outpaint(64, 0, 32, 0)


def test_paste_back_keeps_outside_pixels_exactly_and_feathers_inside() -> None:
    original, generated = gradient(), Image.new("RGB", (256, 256), (0, 255, 0))
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (64, 64, 192, 192))
    soft = np.asarray(feather(mask, 8))
    hard = np.asarray(mask) > 0
    assert (soft[~hard] == 0).all() and soft[128, 128] == 255
    ramp = soft[64:96, 128]
    assert ramp[0] < 32 and 0 < ramp[8] < 255 and (np.diff(ramp.astype(int)) >= 0).all()  # inwards, rising
    out = pixels(paste_back(original, generated, mask, blur=8))
    assert np.array_equal(out[~hard], pixels(original)[~hard])
    assert (out[128, 128] == (0, 255, 0)).all()


def test_fit_size_keeps_aspect_within_limits() -> None:
    assert fit_size(4000, 3000) == (2048, 1536)
    assert fit_size(100, 100) == (256, 256)
    w, h = fit_size(1023, 577)
    assert w % 16 == 0 and h % 16 == 0 and abs(w / h - 1023 / 577) < 0.05


# --- ControlNet files ----------------------------------------------------------------------------


def test_demo_controlnet_is_small_and_fits_only_the_demo_model(tmp_path: Path) -> None:
    from studio.models import controlnets
    from studio.models.architecture import FULL, TINY

    size = sum(f.stat().st_size for f in DEMO_CONTROLNET.iterdir())
    assert size < 4 * 2**20
    folder = controlnets.inspect(DEMO_CONTROLNET)
    assert controlnets.fits(folder, TINY.transformer) is None
    why = controlnets.fits(folder, FULL.transformer)
    assert why is not None and "width 128" in why and "\n" not in why
    # The single file alone (as ComfyUI keeps it) gives the same config back from its shapes.
    single = tmp_path / "demo-cn.safetensors"
    single.write_bytes((DEMO_CONTROLNET / "diffusion_pytorch_model.safetensors").read_bytes())
    info = controlnets.inspect(single, n_layers=TINY.transformer["n_layers"])
    assert info.format == "single-file"
    assert {k: info.config[k] for k in folder.config if k in info.config} == \
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in folder.config.items() if k in info.config}


def test_published_layouts_place_hints_like_their_configs() -> None:
    from studio.models.controlnets import places_for

    assert places_for(6, 30) == [0, 5, 10, 15, 20, 25]  # Fun-Controlnet-Union 1.0
    assert places_for(15, 30) == list(range(0, 30, 2))  # 2.0 / 2.1


def test_not_a_controlnet_and_pickles_are_refused(tmp_path: Path) -> None:
    from studio.models import controlnets

    lora = next((ROOT / "assets" / "demo-lora").glob("*.safetensors"))
    with pytest.raises(controlnets.ControlNetError, match="not a Z-Image ControlNet"):
        controlnets.inspect(lora)
    (tmp_path / "cn.pth").write_bytes(b"\x80\x04")
    with pytest.raises(controlnets.ControlNetError, match="pickle"):
        controlnets.inspect(tmp_path / "cn.pth")


def test_controlnets_found_in_studio_and_comfyui_folders(tmp_path: Path) -> None:
    import shutil

    from studio.core.paths import Paths
    from studio.models import controlnets

    root = tmp_path / "h"
    paths = Paths(root / "c", root / "d", root / "k", root / "l", root / "r")
    shutil.copytree(DEMO_CONTROLNET, paths.controlnets_dir / "mine")
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "model_patches").mkdir(parents=True)
    shutil.copy(DEMO_CONTROLNET / "diffusion_pytorch_model.safetensors",
                comfy / "models" / "model_patches" / "union.safetensors")
    dirs = controlnets.controlnet_dirs(paths, comfyui=[comfy])
    names = sorted(i.name for i in controlnets.find_controlnets(dirs, n_layers=4))
    assert names == ["mine", "union"]
    assert controlnets.resolve("union", dirs, n_layers=4).format == "single-file"
    with pytest.raises(controlnets.ControlNetError, match="No ControlNet named 'other'"):
        controlnets.resolve("other", dirs)


def test_outside_the_cli_a_controlnet_path_is_taken_only_inside_its_folders(tmp_path: Path) -> None:
    """Security review F1: a folder or file elsewhere gets the line a missing name gets, nothing read
    from it (a folder's config.json was); names, paths inside the folders and the demo one work."""
    import shutil

    from studio.core.paths import Paths
    from studio.models import controlnets

    root = tmp_path / "h"
    paths = Paths(root / "c", root / "d", root / "k", root / "l", root / "r")
    shutil.copytree(DEMO_CONTROLNET, paths.controlnets_dir / "mine")
    elsewhere = shutil.copytree(DEMO_CONTROLNET, tmp_path / "elsewhere")
    dirs = controlnets.controlnet_dirs(paths, comfyui=[])

    def named(ref: str) -> controlnets.ControlNetInfo:
        return controlnets.resolve(ref, dirs, n_layers=4, paths=False)

    assert named("mine").path == str(paths.controlnets_dir / "mine")
    assert named(str(paths.controlnets_dir / "mine")).name == "mine"  # the absolute path a request keeps
    assert named(str(DEMO_CONTROLNET)).name == "demo-controlnet"
    for ref in ("/etc", "/root/nonexistent", "/etc/passwd", str(elsewhere), str(ROOT / "assets" / "demo-model"),
                str(paths.controlnets_dir / ".." / ".." / ".." / "elsewhere"), "../elsewhere", "other"):
        with pytest.raises(controlnets.ControlNetError) as refused:
            named(ref)
        assert str(refused.value) == f"No ControlNet named '{ref}' (looked in {paths.controlnets_dir}): put it there."
    assert controlnets.resolve(str(elsewhere), dirs, n_layers=4).name == "elsewhere"  # the CLI's paths
    with pytest.raises(controlnets.ControlNetError, match="no readable config.json"):
        controlnets.resolve("/etc", dirs, n_layers=4)


# --- control maps -------------------------------------------------------------------------------


def test_canny_map_and_missing_annotator_models_say_what_to_do(tmp_path: Path) -> None:
    from studio.engine.control_maps import ControlMapError, control_map

    img = Image.new("RGB", (128, 128), (0, 0, 0))
    img.paste((255, 255, 255), (32, 32, 96, 96))
    edges = np.asarray(control_map(img, "canny"))
    assert edges.shape == (128, 128, 3) and edges.max() == 255
    assert edges[64, 64].max() == 0 and edges[29:35, 64].max() == 255  # the square's outline, not its inside
    assert control_map(img, "map").tobytes() == img.tobytes()
    for kind in ("depth", "pose"):
        with pytest.raises(ControlMapError) as err:
            control_map(img, kind, folder=tmp_path)
        assert str(tmp_path / kind) in str(err.value) and "canny" in str(err.value)
    with pytest.raises(ControlMapError, match="Unknown control type"):
        control_map(img, "sketchy")


# --- the engine on the demo model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(demo_model_master: Path):
    from studio.engine.generate import Engine

    return Engine(demo_model_master, "cpu")


@pytest.fixture(scope="module")
def images_in(engine):
    from studio.engine.images_in import ImagesIn

    return ImagesIn(engine)


@pytest.fixture(scope="module")
def picture(engine) -> Image.Image:
    image, _ = engine.generate(seed=11, **ARGS)
    return image


def distance(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


def test_derived_pipelines_share_the_engines_weights(engine, images_in) -> None:
    from studio.engine.images_in import Task

    controlnet = images_in.controlnet(str(DEMO_CONTROLNET))
    base = {name: id(p) for name, p in engine.pipe.transformer.named_parameters()}
    for task in (Task.IMG2IMG, Task.INPAINT, Task.CONTROL, Task.CONTROL_INPAINT):
        pipe = images_in.pipeline(task, controlnet if task in (Task.CONTROL, Task.CONTROL_INPAINT) else None)
        for part in ("transformer", "text_encoder", "vae", "tokenizer"):
            assert getattr(pipe, part) is getattr(engine.pipe, part), (task, part)
        assert {name: id(p) for name, p in pipe.transformer.named_parameters()} == base
        assert images_in.pipeline(task, controlnet if task in (Task.CONTROL, Task.CONTROL_INPAINT) else None) is pipe
    # the ControlNet's embedders and refiners are the transformer's own, not copies
    assert controlnet.t_embedder is engine.pipe.transformer.t_embedder
    assert controlnet.noise_refiner is engine.pipe.transformer.noise_refiner
    shared = {id(p) for p in engine.pipe.transformer.parameters()}
    own = [n for n, p in controlnet.named_parameters() if id(p) not in shared]
    assert own and all(n.startswith(("control_", "control_noise_refiner")) for n in own)


def test_images_in_keep_a_bf16_engine_in_bf16(demo_model_master: Path, picture) -> None:
    """On a GPU the Engine runs in bf16: deriving the image pipelines must not cast the shared modules
    (diffusers' `from_pipe` casts them to float32 unless told), and the init image must reach the VAE."""
    import torch

    from studio.engine.generate import Engine
    from studio.engine.images_in import ControlInput, ImageInputs, ImagesIn

    engine = Engine(demo_model_master, "cpu", torch.bfloat16, warm="off")
    runner = ImagesIn(engine)
    mask = Image.new("L", picture.size, 0)
    mask.paste(255, (0, 0, SIZE // 2, SIZE // 2))
    control = runner.controlnet(str(DEMO_CONTROLNET))
    for inputs in (ImageInputs(init_image=picture, strength=0.5), ImageInputs(init_image=picture, mask=mask),
                   ImageInputs(control=ControlInput(picture, str(DEMO_CONTROLNET), "map"))):
        made = runner.run(seed=5, inputs=inputs, **{**ARGS, "steps": 2})
        assert made.image.size == picture.size
    kinds = {p.dtype for m in (engine.pipe.transformer, engine.pipe.vae, engine.pipe.text_encoder, control)
             for p in m.parameters()}
    assert kinds == {torch.bfloat16}


def test_img2img_low_strength_stays_closer_to_the_init_image(images_in, picture) -> None:
    from studio.engine.images_in import ImageInputs, denoise_steps

    seen: list[tuple[int, int]] = []
    low = images_in.run(seed=5, inputs=ImageInputs(init_image=picture, strength=0.2), **ARGS)
    high = images_in.run(seed=5, inputs=ImageInputs(init_image=picture, strength=0.9),
                         on_step=lambda i, n: seen.append((i, n)), **ARGS)
    d_low, d_high = distance(low.image, picture), distance(high.image, picture)
    print(f"img2img mean |Δ| per channel: strength 0.2 -> {d_low:.2f}, 0.9 -> {d_high:.2f}")
    assert d_low < d_high and d_high > 2 * d_low
    assert low.image.size == picture.size
    n = denoise_steps(4, 0.9)
    assert seen == [(i, n) for i in range(1, n + 1)]
    again = images_in.run(seed=5, inputs=ImageInputs(init_image=picture, strength=0.2), **ARGS)
    assert np.array_equal(pixels(again.image), pixels(low.image))


def test_inpaint_keeps_outside_pixels_identical_and_changes_the_inside(images_in, picture) -> None:
    from studio.engine.images_in import ImageInputs

    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (SIZE // 4, SIZE // 4, 3 * SIZE // 4, 3 * SIZE // 4))
    made = images_in.run(seed=9, inputs=ImageInputs(init_image=picture, mask=mask, mask_blur=6),
                         **{**ARGS, "prompt": "a green square on a yellow background"})
    inside = np.asarray(mask) > 0
    out, before = pixels(made.image), pixels(picture)
    assert np.array_equal(out[~inside], before[~inside])
    changed = float(np.abs(out[inside] - before[inside]).mean())
    print(f"inpaint: outside identical, inside mean |Δ| {changed:.2f}")
    assert changed > 3


def test_inpaint_encodes_once_and_matches_diffusers_own_pipeline(engine, picture, monkeypatch) -> None:
    """The inpaint pipeline skips diffusers' unused encode of the masked image: one VAE encode, and
    the very pixels diffusers' own pipeline gives (same seed, same random stream)."""
    import diffusers

    from studio.engine import images_in as mod

    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (SIZE // 4, SIZE // 4, 3 * SIZE // 4, 3 * SIZE // 4))
    inputs = mod.ImageInputs(init_image=picture, mask=mask, strength=0.8)
    encodes: list[int] = []
    handle = engine.pipe.vae.encoder.register_forward_hook(lambda *_: encodes.append(1))
    try:
        lean = mod.ImagesIn(engine).run(seed=3, inputs=inputs, **ARGS).image
        assert len(encodes) == 1
        monkeypatch.setattr(mod, "_lean_inpaint", lambda: diffusers.ZImageInpaintPipeline)
        encodes.clear()
        stock = mod.ImagesIn(engine).run(seed=3, inputs=inputs, **ARGS).image
        assert len(encodes) == 2
    finally:
        handle.remove()
    assert np.array_equal(pixels(lean), pixels(stock))


def test_mask_of_another_size_is_resized_in_a_run(images_in, picture) -> None:
    from studio.engine.images_in import ImageInputs

    small = Image.new("L", (64, 64), 0)
    small.paste(255, (16, 16, 48, 48))
    made = images_in.run(seed=9, inputs=ImageInputs(init_image=picture, mask=small), **ARGS)
    assert [n.key for n in made.notes] == ["mask_resized"]
    assert np.array_equal(pixels(made.image)[:SIZE // 8], pixels(picture)[:SIZE // 8])


def test_outpaint_keeps_the_original_region(images_in, picture) -> None:
    from studio.engine.images_in import ImageInputs

    original = picture.crop((0, 0, SIZE - 64, SIZE))
    canvas, mask, used = extend_canvas(original, Outpaint(left=64))
    assert canvas.size == (SIZE, SIZE) and used == Outpaint(left=64)
    made = images_in.run(seed=3, inputs=ImageInputs(init_image=canvas, mask=mask), **ARGS)
    assert np.array_equal(pixels(made.image.crop((64, 0, SIZE, SIZE))), pixels(original))
    assert distance(made.image.crop((0, 0, 64, SIZE)), canvas.crop((0, 0, 64, SIZE))) > 1


def test_hires_fix_returns_the_larger_size(images_in) -> None:
    from studio.engine.images_in import Hires, ImageInputs

    seen: list[tuple[int, int]] = []
    made = images_in.run(seed=2, inputs=ImageInputs(hires=Hires(scale=1.5, strength=0.5)),
                         on_step=lambda i, n: seen.append((i, n)), **ARGS)
    assert made.image.size == (SIZE * 3 // 2, SIZE * 3 // 2)
    assert [i for i, _ in seen] == list(range(1, len(seen) + 1)) and len({n for _, n in seen}) == 1
    assert seen[-1][0] == seen[-1][1] == 4 + 2


def test_controlnet_changes_the_output_and_repeats_with_seed_and_control(engine, images_in, picture) -> None:
    from studio.engine.images_in import ControlInput, ImageInputs

    plain, _ = engine.generate(seed=4, **ARGS)
    control = ImageInputs(control=ControlInput(image=picture, controlnet=str(DEMO_CONTROLNET), kind="canny"))
    a = images_in.run(seed=4, inputs=control, **ARGS)
    b = images_in.run(seed=4, inputs=control, **ARGS)
    assert np.array_equal(pixels(a.image), pixels(b.image))
    d = distance(a.image, plain)
    other = ImageInputs(control=ControlInput(image=gradient((SIZE, SIZE)), controlnet=str(DEMO_CONTROLNET), kind="map"))
    c = images_in.run(seed=4, inputs=other, **ARGS)
    print(f"ControlNet: mean |Δ| vs no control {d:.2f}, vs another control image {distance(a.image, c.image):.2f}")
    assert d > 1 and distance(a.image, c.image) > 1
    # the hints only on the second half of the steps: between none and all of them
    late = ImageInputs(control=ControlInput(image=picture, controlnet=str(DEMO_CONTROLNET), start=0.5))
    half = images_in.run(seed=4, inputs=late, **ARGS)
    assert 0 < distance(half.image, plain) and not np.array_equal(pixels(half.image), pixels(a.image))


def test_demo_controlnet_draws_along_the_control_edges(engine) -> None:
    """The shipped demo ControlNet is trained (tools/train_demo_controlnet.py): off-centre shapes of
    held-out combos, each drawn with and without it (same prompt and seed); with it, the edges of
    the image follow the control map's edges, without it they do not."""
    from tools.train_demo_controlnet import measure

    effect = measure(DEMO_CONTROLNET, engine, n=4, steps=8)
    print(f"demo ControlNet edge correlation: {effect['edge_corr_with']:.3f} with, "
          f"{effect['edge_corr_without']:.3f} without ({effect['scenes']} scenes)")
    assert effect["scenes"] == 4
    assert all(w > wo for w, wo in zip(effect["per_scene_with"], effect["per_scene_without"])), effect
    assert effect["edge_corr_with"] > effect["edge_corr_without"] + 0.15, effect


def test_controlnet_is_not_run_outside_its_window(images_in, picture) -> None:
    """Steps outside start/end run no ControlNet block at all (counted on its real first block), and
    the window still changes the image: between none and all of the hints."""
    from studio.engine.images_in import ControlInput, ImageInputs

    model = images_in.controlnet(str(DEMO_CONTROLNET))
    calls: list[int] = []
    handle = model.control_layers[0].register_forward_hook(lambda *_: calls.append(1))
    made = {}
    try:
        for start, end, runs in ((0.0, 1.0, 4), (0.0, 0.5, 2), (0.5, 1.0, 2), (0.25, 0.75, 2)):
            calls.clear()
            inputs = ImageInputs(control=ControlInput(image=picture, controlnet=str(DEMO_CONTROLNET), start=start,
                                                      end=end))
            made[start, end] = images_in.run(seed=4, inputs=inputs, **ARGS).image
            assert len(calls) == runs, (start, end, len(calls))
    finally:
        handle.remove()
    assert "forward" not in model.__dict__  # the window leaves the model as it found it
    assert not np.array_equal(pixels(made[0.0, 0.5]), pixels(made[0.0, 1.0]))


def test_control_hint_stack_grows_in_one_buffer_as_diffusers_stacks() -> None:
    """The compiled control blocks keep the growing hint stack in one buffer: same values as diffusers'
    unbind-and-stack at every depth, the same storage throughout, a plain stack for anything else."""
    import torch

    from studio.engine.fastpath import _grow

    depth, shape = 4, (1, 6, 8)
    draws = [(torch.randn(shape), torch.randn(shape)) for _ in range(depth)]
    want: torch.Tensor | None = None
    got: torch.Tensor | None = None
    for pos, (hint, c) in enumerate(draws):
        done = list(torch.unbind(want))[:-1] if want is not None else []
        want = torch.stack([*done, hint, c])
        got = _grow(got, hint, c, pos, depth)
        assert torch.equal(got, want), pos
        if pos == 0:
            first = got.data_ptr()
        assert got.data_ptr() == first and got._base is not None and got._base.shape[0] == depth + 1
    foreign = torch.randn(2, *shape)  # not a view of a chain's buffer: stacked anew, values the same
    out = _grow(foreign, draws[0][0], draws[0][1], 1, depth)
    assert torch.equal(out, torch.stack([foreign[0], *draws[0]]))


def test_compiled_controlnet_blocks_trace_one_graph_and_keep_the_pixels(
        images_in, picture, demo_model_master: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a compiled Engine (dynamo with the eager backend: its guards and graphs, no code generation)
    the ControlNet's blocks run compiled: one new graph for all of them, none for the transformer's
    refiners it shares, nothing new for another size or window; the pixels are the eager ones."""
    import torch
    from torch._dynamo.utils import counters

    from studio.engine import fastpath
    from studio.engine.fused_attention import FusedZImageAttnProcessor
    from studio.engine.generate import Engine
    from studio.engine.images_in import ControlInput, ImageInputs, ImagesIn

    monkeypatch.setenv("ZAOXIANG_COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    compiled = Engine(demo_model_master, "cpu", compile=True, warm="none", compile_cache=tmp_path / "cc")
    # the GPU's attention (the fused processor, real-valued RoPE; torch's SDPA kernel on a CPU)
    compiled.attention = fastpath.set_attention_backend(compiled.pipe.transformer, "fused-sdpa")
    compiled.warm_up(sizes=((SIZE, SIZE),))
    assert compiled.compiled and compiled.wait_warm()
    fast = ImagesIn(compiled)
    model = fast.controlnet(str(DEMO_CONTROLNET))
    blocks = [*model.control_layers, *model.control_noise_refiner]
    assert all(hasattr(b, "_zx_eager") for b in blocks)
    assert all(isinstance(b.attention.processor, FusedZImageAttnProcessor) for b in blocks)
    control = ControlInput(image=picture, controlnet=str(DEMO_CONTROLNET))
    graphs = counters["stats"]["unique_graphs"]
    got = fast.run(seed=4, inputs=ImageInputs(control=control), **ARGS).image
    assert counters["stats"]["unique_graphs"] == graphs + 1
    want = images_in.run(seed=4, inputs=ImageInputs(control=control), **ARGS).image
    assert np.abs(pixels(got) - pixels(want)).max() <= 2
    late = ControlInput(image=picture, controlnet=str(DEMO_CONTROLNET), end=0.5)
    fast.run(seed=5, inputs=ImageInputs(control=late), **{**ARGS, "height": SIZE + 32})
    assert counters["stats"]["unique_graphs"] == graphs + 1


def test_controlnet_inpaint_keeps_outside_pixels(images_in, picture) -> None:
    from studio.engine.images_in import ControlInput, ImageInputs, Task

    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (0, SIZE // 2, SIZE, SIZE))
    inputs = ImageInputs(init_image=picture, mask=mask,
                         control=ControlInput(image=picture, controlnet=str(DEMO_CONTROLNET)))
    assert inputs.task is Task.CONTROL_INPAINT
    made = images_in.run(seed=4, inputs=inputs, **ARGS)
    assert np.array_equal(pixels(made.image)[:SIZE // 2], pixels(picture)[:SIZE // 2])


def test_unusable_combinations_and_foreign_controlnets_are_one_line(images_in, picture, tmp_path: Path) -> None:
    from studio.engine.images_in import ControlInput, ImageInputs, ImagesInError

    with pytest.raises(ImagesInError, match="needs a mask"):
        images_in.run(seed=1, inputs=ImageInputs(init_image=picture, strength=0.5,
                                                 control=ControlInput(image=picture, controlnet=str(DEMO_CONTROLNET))),
                      **ARGS)
    foreign = tmp_path / "big-cn"
    foreign.mkdir()
    cfg = json.loads((DEMO_CONTROLNET / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({**cfg, "dim": 3840, "n_heads": 30, "n_kv_heads": 30}))
    (foreign / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    with pytest.raises(ImagesInError) as err:
        images_in.run(seed=1, inputs=ImageInputs(control=ControlInput(image=picture, controlnet=str(foreign))),
                      **ARGS)
    assert "width 3840" in str(err.value) and "\n" not in str(err.value)
    assert (err.value.key, err.value.fmt["dim"]) == ("input.controlnet_width", 3840)  # the window's zh line
    with pytest.raises(ImagesInError) as err:  # the ControlNet's own reason kept, after a zh line
        images_in.run(seed=1, inputs=ImageInputs(control=ControlInput(image=picture, controlnet="no-such-cn")),
                      **ARGS)
    assert err.value.key == "input.controlnet_unusable" and "no-such-cn" in str(err.value)
    assert t(err.value.key, "zh", **err.value.fmt) == f"ControlNet 不可用，请选择一个适用于当前模型的 ControlNet：{err.value}"


def test_cancel_between_img2img_steps(images_in, picture) -> None:
    from studio.engine.generate import Cancelled
    from studio.engine.images_in import ImageInputs

    steps: list[int] = []
    with pytest.raises(Cancelled):
        images_in.run(seed=1, inputs=ImageInputs(init_image=picture, strength=1.0),
                      on_step=lambda i, n: steps.append(i), should_cancel=lambda: len(steps) >= 2, **ARGS)
    assert steps == [1, 2]


# --- what a person gives, stored before anything is queued ----------------------------------------


def test_given_images_are_stored_and_size_the_request(tmp_path: Path) -> None:
    from studio.core.image_args import GivenImages, store_images

    store = InputStore(tmp_path / "inputs")
    photo, small_mask = tmp_path / "photo.png", tmp_path / "mask.png"
    gradient((640, 480)).save(photo)
    Image.new("L", (320, 240), 255).save(small_mask)
    got = store_images(GivenImages(image=str(photo), mask=str(small_mask), control=photo.read_bytes()), store)
    assert got.fields()["width"] == 640 and got.fields()["height"] == 480
    assert store.path(got.init_image) is not None and store.path(got.mask) is not None
    assert got.control_image == got.init_image  # the same bytes: one stored file
    assert [n.key for n in got.notes] == ["mask_resized"]
    out = store_images(GivenImages(image=str(photo), outpaint="64,64,0,0"), store)
    canvas, mask = store.open(out.init_image), store.open(out.mask, "L")
    assert canvas.size == (768, 480) == out.size and out.outpaint == Outpaint(64, 64, 0, 0)
    assert np.array_equal(pixels(canvas.crop((64, 0, 704, 480))), pixels(gradient((640, 480))))
    assert np.asarray(mask)[:, 64:704].max() == 0 and np.asarray(mask)[:, :64].min() == 255


def test_mask_or_outpaint_without_an_image_and_bad_files_queue_nothing(tmp_path: Path) -> None:
    from studio.core.image_args import GivenImages, store_images

    store = InputStore(tmp_path / "inputs")
    with pytest.raises(InputImageError) as err:
        store_images(GivenImages(outpaint="8,8,8,8"), store)
    assert err.value.problem is Problem.NEEDS_IMAGE
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(InputImageError) as err:
        store_images(GivenImages(image=str(text)), store)
    assert "notes.png" in err.value.message("zh")
    assert not (tmp_path / "inputs").exists() or not any((tmp_path / "inputs").rglob("*.*"))


def test_a_phone_portrait_jpeg_is_sized_upright(tmp_path: Path) -> None:
    """EXIF Orientation 6 (a phone held upright): the stored 640×480 pixels are shown as 480×640, so the
    generation size follows the upright picture the engine is given, and a mask drawn on it fits."""
    from studio.core.image_args import GivenImages, store_images

    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "portrait.jpg"
    gradient((640, 480)).save(photo, format="JPEG", exif=exif)
    mask = tmp_path / "mask.png"
    Image.new("L", (480, 640), 255).save(mask)
    assert check_image(photo.read_bytes(), "portrait.jpg").size == (480, 640)
    store = InputStore(tmp_path / "inputs")
    got = store_images(GivenImages(image=str(photo), mask=str(mask)), store)
    assert got.size == (480, 640) == store.open(got.init_image).size
    assert got.notes == []  # the upright mask is the image's size: nothing resized


def test_a_mask_pillow_cannot_convert_is_one_line() -> None:
    """A LAB TIFF opens but cannot become a greyscale mask: the input's one line, not Pillow's ValueError."""
    lab = png_bytes(Image.new("LAB", (64, 64)), "TIFF")
    with pytest.raises(InputImageError) as err:
        decode(lab, "mask", "L")
    assert err.value.problem is Problem.FORMAT
    for lang in ("en", "zh"):
        line = err.value.message(lang)
        assert "mask" in line and "LAB" in line and "\n" not in line


def test_a_damaged_stored_input_is_made_whole_by_giving_it_again(tmp_path: Path) -> None:
    """A stored input cut short (or changed) is rewritten when the same image is given again."""
    data = png_bytes(gradient((80, 64)))
    store = InputStore(tmp_path / "inputs")
    first = store.put(data, "photo.png")
    first.path.write_bytes(data[: len(data) // 2])  # cut short
    with pytest.raises(InputImageError):
        store.open(first.sha256)
    again = store.put(data, "photo.png")
    assert again.path == first.path and again.path.read_bytes() == data
    changed = bytearray(data)
    changed[-20] ^= 0xFF  # same size, one byte changed
    first.path.write_bytes(bytes(changed))
    assert store.put(data, "photo.png").path.read_bytes() == data
    assert pixels(store.open(first.sha256)).tolist() == pixels(gradient((80, 64))).tolist()
    assert sorted(q.name for q in first.path.parent.iterdir()) == [first.path.name]  # no temp file left


# --- the Generate tab's image panel (Gradio-free parts) --------------------------------------------


def test_panel_values_become_stored_fields_and_come_back_for_history(home: Path) -> None:
    from studio.core.spec import ControlRef, HiresRef
    from studio.ui.image_panel import PANEL_FIELDS, image_fields, panel_values

    picture = gradient((320, 256))
    layer = Image.new("RGBA", (320, 256), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (100, 100, 200, 180))  # the brush strokes
    fields = image_fields({"background": picture, "layers": [layer], "composite": None}, 0.6, 8, False, "",
                          True, 1.5, 0.3, Image.new("RGB", (64, 64), (9, 9, 9)), "map", 1.1, "/cn/union", 0.1, 0.8)
    assert (fields["width"], fields["height"]) == (320, 256) and fields["strength"] == 0.6
    assert fields["hires"] == HiresRef(1.5, 0.3) and isinstance(fields["control"], ControlRef)
    store = InputStore()
    mask = np.asarray(store.open(fields["mask"], "L"))
    assert mask[150, 150] == 255 and mask[10, 10] == 0
    inverted = image_fields({"background": picture, "layers": [layer]}, 0.6, 0, True, "", False, 2, 0.35, None,
                            "canny", 0.75)
    assert np.asarray(store.open(inverted["mask"], "L"))[10, 10] == 255
    from studio.core.request import GenerationRequest

    values = panel_values(GenerationRequest(prompt="p", **fields), "en")
    assert len(values) == len(PANEL_FIELDS)
    editor = values[0]
    assert np.array_equal(pixels(editor["background"]), pixels(picture))
    assert np.asarray(editor["layers"][0].getchannel("A"))[150, 150] == 255
    assert values[5:8] == [True, 1.5, 0.3] and values[9:14] == ["map", 1.1, "/cn/union", 0.1, 0.8]
    assert image_fields(None, 0.6, 4, False, "", False, 2, 0.35, None, "canny", 0.75) == {}
    import gradio as gr

    store.path(fields["mask"]).unlink()  # a restore never leaves a slot quietly empty: it says why, in the window's language
    with pytest.raises(gr.Error, match=f"{fields['mask'][:12]} 已不在工作室的输入文件夹中"):
        panel_values(GenerationRequest(prompt="p", **fields), "zh")


def test_a_restored_soft_mask_is_given_again_as_stored_until_the_editor_changes_it(home: Path) -> None:
    """Release review finding 5: the editor holds a 0/255 copy of a soft mask; while the person leaves
    the restored image and layer alone, Generate gives the stored init image and mask again (same
    hashes, grey levels kept); a new stroke or "invert" makes a mask from the editor as before."""
    from PIL import ImageFilter

    from studio.core.image_args import GivenImages, store_images
    from studio.core.request import GenerationRequest
    from studio.ui.image_panel import image_fields, panel_values

    soft = Image.new("L", (256, 256), 0)
    soft.paste(255, (80, 80, 176, 176))
    soft = soft.filter(ImageFilter.GaussianBlur(12))
    buf, mbuf = io.BytesIO(), io.BytesIO()
    gradient((256, 256)).convert("RGB").save(buf, format="JPEG")  # a JPEG: the editor's PNG would be another hash
    soft.save(mbuf, format="PNG")
    stored = store_images(GivenImages(image=buf.getvalue(), mask=mbuf.getvalue()))
    request = GenerationRequest(prompt="p", strength=0.75, **stored.fields())
    values = panel_values(request, "en")
    again = image_fields(*values)
    assert (again["init_image"], again["mask"]) == (request.init_image, request.mask)

    stroke = values[0]["layers"][0].copy()
    stroke.paste((255, 255, 255, 255), (0, 0, 20, 20))
    edited = image_fields({**values[0], "layers": [stroke]}, *values[1:])
    assert edited["init_image"] == request.init_image and edited["mask"] != request.mask
    inverted = image_fields(values[0], *values[1:3], True, *values[4:])
    assert inverted["mask"] != request.mask
    other = image_fields({**values[0], "background": gradient((256, 256)).rotate(90)}, *values[1:])
    assert other["init_image"] != request.init_image
