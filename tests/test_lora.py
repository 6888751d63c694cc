"""LoRAs: finding and describing files, parsing how people name them, and applying them through the
real Engine on the demo model (CPU), where the demo LoRA must turn every shape purple.

Images are 256x256 at 9 steps (the demo model's native size); the engine is shared by the tests of
this module, each of which sets the LoRAs it needs first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from studio.core import lora_text
from studio.core.spec import LoraRef
from studio.models import loras
from studio.models.loras import Layout, LoraError
from tools import demo_shapes as shapes

ROOT = Path(__file__).resolve().parents[1]
DEMO_LORA = ROOT / "assets" / "demo-lora"
FILES = {"diffusers": DEMO_LORA / "demo-purple.safetensors",
         "kohya": DEMO_LORA / "demo-purple.kohya.safetensors",
         "ai-toolkit": DEMO_LORA / "demo-purple.ai-toolkit.safetensors"}
PURPLE = np.array(shapes.COLORS["purple"][0], dtype=np.float32)
PROMPTS = [("a red star on a white background", 1), ("a yellow circle on a black background", 2),
           ("白色背景上的绿色正方形", 3), ("a blue triangle on a yellow background", 4)]
# Pixels from the same update reached through different files or code paths may differ by float
# rounding only (summation order, float16 storage): at most this many levels of 255 on any pixel.
SAME_IMAGE_MAX_DIFF = 3


def _shipped_sd() -> dict[str, torch.Tensor]:
    return load_file(str(FILES["diffusers"]))


def _write(path: Path, sd: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> Path:
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=meta)
    return path


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shipped three plus the demo LoRA rewritten in the other layouts found in the wild."""
    from studio.engine.lora import convert_to

    d = tmp_path_factory.mktemp("layouts")
    sd = _shipped_sd()
    out = dict(FILES)
    out["kohya-no-alpha"] = _write(d / "kohya-no-alpha.safetensors", convert_to(sd, Layout.KOHYA))
    out["diffsynth"] = _write(d / "diffsynth.safetensors", convert_to(sd, Layout.DIFFSYNTH))
    bare = {k.removeprefix("transformer."): v for k, v in sd.items()}
    out["peft"] = _write(d / "peft.safetensors", bare)
    out["ai-toolkit-qkv"] = _write(d / "ai-toolkit-qkv.safetensors", convert_to(sd, Layout.AI_TOOLKIT, fuse_qkv=True))
    out["kohya-qkv"] = _write(d / "kohya-qkv.safetensors", convert_to(sd, Layout.KOHYA, fuse_qkv=True,
                                                                       alpha_ratio=2.0))
    return out


# --- describing files (no torch in loras.py) -----------------------------------------------------


def test_layout_rank_targets_and_base_model_of_every_layout(layouts: dict[str, Path]) -> None:
    want = {"diffusers": Layout.DIFFUSERS, "kohya": Layout.KOHYA, "ai-toolkit": Layout.AI_TOOLKIT,
            "kohya-no-alpha": Layout.KOHYA, "diffsynth": Layout.DIFFSYNTH, "peft": Layout.PEFT,
            "ai-toolkit-qkv": Layout.AI_TOOLKIT, "kohya-qkv": Layout.KOHYA}
    for name, path in layouts.items():
        info = loras.inspect(path)
        assert info.layout is want[name], name
        fused = name.endswith("-qkv")
        assert info.fused_qkv is fused, name
        assert info.rank == (12 if fused else 4), name  # q, k and v stacked: three times the rank
        assert info.dim == 128 and info.n_layers == 4, name
        assert set(info.targets) >= {"attention", "feed_forward", "adaLN", "noise_refiner", "context_refiner",
                                     "final_layer"}, name
        assert info.base_model == "z-image-demo-tiny", name
    assert loras.inspect(layouts["diffusers"]).base_model_from == "metadata"
    assert loras.inspect(layouts["kohya"]).base_model_from == "metadata"
    assert loras.inspect(layouts["ai-toolkit"]).base_model_from == "shapes"
    assert loras.inspect(layouts["diffusers"]).modules == 49
    assert "diffusers" in loras.inspect(layouts["diffusers"]).describe()
    assert loras.detect_layout(["layers.0.attention.to_q.lora.down.weight"]) is Layout.DOTTED
    assert loras.detect_layout(["foo.weight"]) is Layout.UNKNOWN


def test_content_hash_ignores_metadata_and_shipped_assets_stay_small(tmp_path: Path) -> None:
    sd = _shipped_sd()
    a = _write(tmp_path / "a.safetensors", sd, {"note": "one"})
    b = _write(tmp_path / "b.safetensors", sd, {"note": "a different, longer note"})
    assert loras.content_hash(a) == loras.content_hash(b) != loras.content_hash(FILES["kohya"])
    assert len(loras.short_hash(a)) == 12
    assert sum(f.stat().st_size for f in DEMO_LORA.iterdir()) < 600_000


def test_parse_strengths_and_prompt_tags() -> None:
    assert lora_text.parse_lora_arg("my-style") == LoraRef("my-style", 1.0)
    assert lora_text.parse_lora_arg("my-style:0.8") == LoraRef("my-style", 0.8)
    assert lora_text.parse_lora_arg("/x/y.safetensors:-1.5") == LoraRef("/x/y.safetensors", -1.5)
    assert lora_text.parse_lora_arg(r"C:\loras\a.safetensors") == LoraRef(r"C:\loras\a.safetensors", 1.0)
    assert lora_text.parse_lora_arg(r"C:\loras\a.safetensors:0.5") == LoraRef(r"C:\loras\a.safetensors", 0.5)
    for bad, words in (("x:9", "out of range"), ("x:strong", "not a number"), ("", "Empty"), (":0.5", "no name"),
                       ("x:nan", "out of range")):
        with pytest.raises(LoraError, match=words):
            lora_text.parse_lora_arg(bad)
    clean, refs = lora_text.parse_prompt("a red star <lora:demo-purple:0.8>, on white <lora:ink> <lora:x:0.5:1>")
    assert clean == "a red star, on white"
    assert refs == [LoraRef("demo-purple", 0.8), LoraRef("ink", 1.0), LoraRef("x", 0.5)]
    assert lora_text.parse_prompt("白色背景上的红色星形<lora:紫:1>")[0] == "白色背景上的红色星形"
    with pytest.raises(LoraError, match="out of range"):
        lora_text.parse_prompt("a star <lora:x:3>")
    with pytest.raises(LoraError, match="names no LoRA"):
        lora_text.parse_prompt("a star <lora::1>")
    assert lora_text.prompt_tag("demo-purple", 0.8) == "<lora:demo-purple:0.8>"


def test_found_in_the_loras_folder_and_comfyui_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.core.paths import get_paths

    monkeypatch.setenv("ZAOXIANG_HOME", str(tmp_path / "home"))
    paths = get_paths()
    paths.loras_dir.mkdir(parents=True)
    shutil.copy(FILES["diffusers"], paths.loras_dir / "demo-purple.safetensors")
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "loras" / "styles").mkdir(parents=True)
    shutil.copy(FILES["kohya"], comfy / "models" / "loras" / "styles" / "purple-kohya.safetensors")
    (comfy / "models" / "loras" / "broken.safetensors").write_bytes(b"not a safetensors file at all")
    (comfy / "models" / "loras" / "old.ckpt").write_bytes(b"\x80\x04pickle")
    dirs = loras.lora_dirs(paths, comfyui=[comfy])
    assert dirs == [paths.loras_dir, comfy / "models" / "loras"]
    found = loras.find_loras(dirs)
    assert [(i.name, i.layout) for i in found] == [("demo-purple", Layout.DIFFUSERS),
                                                   ("purple-kohya", Layout.KOHYA)]
    assert loras.resolve("demo-purple", dirs) == paths.loras_dir / "demo-purple.safetensors"
    assert loras.resolve("DEMO-PURPLE.safetensors", dirs) == paths.loras_dir / "demo-purple.safetensors"
    assert loras.resolve("styles/purple-kohya", dirs).name == "purple-kohya.safetensors"
    assert loras.resolve(str(FILES["ai-toolkit"]), dirs) == FILES["ai-toolkit"]
    with pytest.raises(LoraError, match="No LoRA named 'nope'"):
        loras.resolve("nope", dirs)
    with pytest.raises(LoraError, match="pickle"):
        loras.resolve(str(comfy / "models" / "loras" / "old.ckpt"), dirs)
    with pytest.raises(LoraError, match="not a safetensors file"):
        loras.inspect(comfy / "models" / "loras" / "broken.safetensors")


def test_outside_the_cli_a_path_is_taken_only_inside_the_lora_folders(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Security review F1: for the window and the APIs, a missing name, a file or folder elsewhere, a real
    LoRA outside the folders and a way out of one by `..` or a link all get the one same line, with
    nothing read from the file; names, paths inside the folders and the demo LoRAs work; the CLI's
    checker still takes any path."""
    from studio.core.paths import get_paths

    monkeypatch.setenv("ZAOXIANG_HOME", str(tmp_path / "home"))
    paths = get_paths()
    paths.loras_dir.mkdir(parents=True)
    inside = paths.loras_dir / "demo-purple.safetensors"
    shutil.copy(FILES["diffusers"], inside)
    outside = tmp_path / "outside" / "private.safetensors"
    outside.parent.mkdir()
    shutil.copy(FILES["diffusers"], outside)
    (paths.loras_dir / "escape").symlink_to(outside.parent, target_is_directory=True)
    dirs = loras.lora_dirs(paths, comfyui=[])
    check = loras.checker(None, dirs)
    assert check("demo-purple") == inside
    assert check(str(inside)) == inside  # an absolute path the history kept: restore and rerun still work
    assert check(str(FILES["kohya"])) == FILES["kohya"]  # the shipped demo LoRAs
    where = str(paths.loras_dir)
    text_encoder = ROOT / "assets" / "demo-model" / "text_encoder" / "model.safetensors"  # its keys once leaked
    for name in ("/etc/passwd", "/etc/nonexistent_zz", "~/.bashrc", str(outside), str(outside.parent),
                 str(text_encoder), str(paths.loras_dir / ".." / ".." / "outside" / "private.safetensors"),
                 str(paths.loras_dir / "escape" / "private.safetensors"), "../outside/private", "pyproject.toml",
                 "nope"):
        with pytest.raises(LoraError) as refused:
            check(name)
        assert str(refused.value) == f"No LoRA named '{name}' (looked in {where}): put its .safetensors file there."
    with pytest.raises(LoraError, match="pickle"):  # a name says nothing about any file: its refusal may be precise
        check("old.ckpt")
    cli = loras.checker(None, dirs, paths=True)
    assert cli(str(outside)) == outside
    with pytest.raises(LoraError, match="not a safetensors file"):
        cli("/etc/passwd")


# --- through the real Engine ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(demo_model_master: Path):
    from studio.engine.generate import Engine

    return Engine(demo_model_master, "cpu")


def _images(engine, prompts=PROMPTS, quick: bool = False) -> list[np.ndarray]:
    """The prompts' images: 256x256 at 9 steps (what the demo model was trained for), or 128x128 at 3
    steps (`quick`) where only sameness between two paths is compared."""
    side, steps = (128, 3) if quick else (256, 9)
    out = []
    for prompt, seed in prompts:
        img, _ = engine.generate(prompt=prompt, width=side, height=side, steps=steps, guidance=0.0, seed=seed)
        out.append(np.asarray(img).astype(np.int16))
    return out


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    return max(int(np.abs(x - y).max()) for x, y in zip(a, b))


def _to_purple(images: list[np.ndarray]) -> float:
    """Mean distance of the foreground's color to purple, over the images."""
    dists = []
    for img in images:
        rgb = shapes.foreground_rgb(img.astype(np.uint8))
        assert rgb is not None, "no shape drawn"
        dists.append(float(np.linalg.norm(rgb - PURPLE)))
    return float(np.mean(dists))


@pytest.fixture(scope="module")
def plain(engine) -> list[np.ndarray]:
    engine.set_loras([])
    return _images(engine)


def test_demo_lora_turns_shapes_purple_and_strength_scales_it(engine, plain) -> None:
    assert [shapes.read_image(i.astype(np.uint8)).fg for i in plain] == ["red", "yellow", "green", "blue"]
    engine.set_loras([(FILES["diffusers"], 0.0)])
    assert _max_diff(_images(engine), plain) == 0  # strength 0: exactly the image without a LoRA
    engine.set_loras([(FILES["diffusers"], 0.5)])
    half = _images(engine)
    engine.set_loras([(FILES["diffusers"], 1.0)])
    full = _images(engine)
    readings = [shapes.read_image(i.astype(np.uint8)) for i in full]
    # 3 of these 4 read purple (the green square comes out blue-violet: 60 from purple, nearer blue);
    # the card's 16 held-out prompts read purple 16 of 16
    assert sum(r.fg == "purple" for r in readings) >= 3, [r.fg for r in readings]
    # the rest of the prompt is still obeyed: background as asked
    assert [r.bg for r in readings] == ["white", "black", "white", "yellow"]
    d0, d5, d1 = _to_purple(plain), _to_purple(half), _to_purple(full)
    assert d1 < 40 < d0, (d0, d5, d1)
    assert d1 + 10 < d5 < d0 - 10, (d0, d5, d1)
    engine.set_loras([])
    assert _max_diff(_images(engine), plain) == 0


def test_every_layout_gives_the_same_image(engine, layouts) -> None:
    engine.set_loras([(FILES["diffusers"], 1.0)])
    ref = _images(engine, PROMPTS[:2], quick=True)
    for name, path in layouts.items():
        report = engine.set_loras([(path, 1.0)])
        assert report.changed or name == "diffusers"
        got = _images(engine, PROMPTS[:2], quick=True)
        assert _max_diff(got, ref) <= SAME_IMAGE_MAX_DIFF, name


def _merged_engine(demo_model_master: Path, parts: list[tuple[dict[str, torch.Tensor], float]]):
    """A fresh engine whose transformer weights have the LoRAs added by hand: W += s * B @ A."""
    from studio.engine.generate import Engine
    from studio.engine.lora import to_diffusers

    fresh = Engine(demo_model_master, "cpu")
    modules = dict(fresh.pipe.transformer.named_modules())
    with torch.no_grad():
        for sd, strength in parts:
            sd = to_diffusers(sd, Layout.DIFFUSERS)
            for key, a in sd.items():
                if key.endswith(".lora_A.weight"):
                    b = sd[key.replace("lora_A", "lora_B")]
                    lin = modules[key.removeprefix("transformer.")[: -len(".lora_A.weight")]]
                    lin.weight += strength * (b.float() @ a.float())
    return fresh


def _random_lora(seed: int) -> dict[str, torch.Tensor]:
    """A second, different LoRA: rank 2 on the feed-forward of the main blocks only."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i in range(4):
        for w, (inp, out) in (("w1", (128, 341)), ("w2", (341, 128)), ("w3", (128, 341))):
            sd[f"transformer.layers.{i}.feed_forward.{w}.lora_A.weight"] = torch.randn(2, inp, generator=g) * 0.05
            sd[f"transformer.layers.{i}.feed_forward.{w}.lora_B.weight"] = torch.randn(out, 2, generator=g) * 0.05
    return sd


def test_two_loras_stack_like_merged_weights_and_switching_matches_a_fresh_load(
        engine, demo_model_master: Path, tmp_path: Path) -> None:
    engine.set_loras([])
    plain_quick = _images(engine, PROMPTS[:2], quick=True)
    other = _write(tmp_path / "other.safetensors", _random_lora(7))
    purple = _shipped_sd()
    # the demo LoRA as two different files at 0.5 each is the demo LoRA at 1
    engine.set_loras([(FILES["diffusers"], 1.0)])
    once = _images(engine, PROMPTS[:2], quick=True)
    engine.set_loras([(FILES["diffusers"], 0.5), (FILES["kohya"], 0.5)])
    assert _max_diff(_images(engine, PROMPTS[:2], quick=True), once) <= SAME_IMAGE_MAX_DIFF
    # two different LoRAs at once: the same image as both added into the weights by hand
    sets = {"both": [(FILES["diffusers"], 0.8), (other, 1.0)], "other": [(other, -1.0)], "purple": [(FILES["diffusers"], 0.8)]}
    merged = {"both": [(purple, 0.8), (load_file(str(other)), 1.0)], "other": [(load_file(str(other)), -1.0)],
              "purple": [(purple, 0.8)]}
    reference = {name: _images(_merged_engine(demo_model_master, parts), PROMPTS[:2], quick=True)
                 for name, parts in merged.items()}
    first = {}
    for name in ("both", "other", "purple", "both", "purple", "other"):  # back and forth, all from the cache
        report = engine.set_loras(sets[name])
        got = _images(engine, PROMPTS[:2], quick=True)
        assert _max_diff(got, reference[name]) <= SAME_IMAGE_MAX_DIFF, name
        if name in first:
            assert report.loaded == [] and _max_diff(got, first[name]) == 0, name
        first[name] = got
    assert _max_diff(reference["both"], reference["purple"]) > 20  # the second LoRA does change the image
    engine.set_loras([])
    assert _max_diff(_images(engine, PROMPTS[:2], quick=True), plain_quick) == 0


def test_same_set_again_costs_nothing_and_a_switch_only_sets_adapters(engine) -> None:
    engine.set_loras([(FILES["diffusers"], 1.0)])
    again = engine.set_loras([(FILES["diffusers"], 1.0)])
    assert again.loaded == [] and not again.changed
    switch = engine.set_loras([(FILES["kohya"], 0.7)])
    assert switch.changed and switch.loaded in ([], ["demo-purple.kohya"])
    back = engine.set_loras([(FILES["diffusers"], 0.3)])
    assert back.loaded == [] and back.changed
    engine.set_loras([])


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    sd = _shipped_sd()
    out: dict[str, tuple[Path, str]] = {}
    p = tmp_path / "text.safetensors"
    p.write_text("this is not a safetensors file\n" * 20)
    out["not safetensors"] = (p, "not a safetensors file")
    p = tmp_path / "model.ckpt"
    p.write_bytes(b"\x80\x04\x95pickled")
    out["pickle"] = (p, "pickle")
    big = {"transformer.layers.0.attention.to_q.lora_A.weight": torch.zeros(4, 3840),
           "transformer.layers.0.attention.to_q.lora_B.weight": torch.zeros(3840, 4),
           "transformer.layers.29.feed_forward.w1.lora_A.weight": torch.zeros(4, 3840),
           "transformer.layers.29.feed_forward.w1.lora_B.weight": torch.zeros(10240, 4)}
    out["other base model"] = (_write(tmp_path / "full-size.safetensors", big), "made for Z-Image")
    wrong = dict(sd)
    wrong["transformer.layers.1.feed_forward.w1.lora_B.weight"] = torch.zeros(999, 4)
    out["wrong shapes"] = (_write(tmp_path / "wrong-shape.safetensors", wrong), "does not fit this model")
    out["random keys"] = (_write(tmp_path / "random.safetensors", {"foo.bar": torch.zeros(3), "baz": torch.zeros(2)}),
                          "no LoRA weights in a layout we know")
    half = dict(sd)
    half["transformer.layers.0.attention.to_x.lora_A.weight"] = torch.zeros(4, 128)
    half["transformer.layers.0.attention.to_x.lora_B.weight"] = torch.zeros(128, 4)
    out["half matches"] = (_write(tmp_path / "half.safetensors", half),
                           r"diffusers layout\): 2 of 100 keys match no layer of this model, e.g. layers.0.attention.to_x")
    return out


def test_bad_files_are_refused_with_one_line_and_change_nothing(engine, tmp_path: Path) -> None:
    engine.set_loras([(FILES["diffusers"], 0.6)])
    before = _images(engine, PROMPTS[:1], quick=True)
    adapters = set(engine.pipe.transformer.peft_config)
    for name, (path, words) in _bad_files(tmp_path).items():
        with pytest.raises(LoraError, match=words) as err:
            engine.set_loras([(FILES["diffusers"], 1.0), (path, 1.0)])
        assert "\n" not in str(err.value), name
        assert set(engine.pipe.transformer.peft_config) == adapters, name  # nothing loaded, not even half
        assert _max_diff(_images(engine, PROMPTS[:1], quick=True), before) == 0, name
    with pytest.raises(LoraError, match="out of range"):
        engine.set_loras([(FILES["diffusers"], 9.0)])
    assert _max_diff(_images(engine, PROMPTS[:1], quick=True), before) == 0
    engine.set_loras([])


def test_kohya_names_on_every_linear_map_through_diffusers_converter() -> None:
    """Every linear of the transformer (blocks, refiners, embedders, final layer), kohya-named, with and
    without `.alpha`, fused or split q/k/v, lands on its module with the same update."""
    from diffusers import ZImageTransformer2DModel

    from studio.engine.lora import check_fit, convert_to, to_diffusers

    tr = ZImageTransformer2DModel.from_pretrained(str(ROOT / "assets" / "demo-model" / "transformer"))
    g = torch.Generator().manual_seed(0)
    sd = {}
    for name, mod in tr.named_modules():
        if isinstance(mod, torch.nn.Linear):
            sd[f"transformer.{name}.lora_A.weight"] = torch.randn(4, mod.in_features, generator=g)
            sd[f"transformer.{name}.lora_B.weight"] = torch.randn(mod.out_features, 4, generator=g)
    assert len(sd) // 2 == 53

    def updates(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k[: -len(".lora_A.weight")]: d[k.replace("lora_A", "lora_B")] @ v
                for k, v in d.items() if k.endswith(".lora_A.weight")}

    want = updates(sd)
    for layout, kw in ((Layout.KOHYA, {}), (Layout.KOHYA, {"alpha_ratio": 0.25}), (Layout.KOHYA, {"fuse_qkv": True}),
                       (Layout.AI_TOOLKIT, {"fuse_qkv": True}), (Layout.DIFFSYNTH, {})):
        converted = convert_to(sd, layout, **kw)
        got = updates(to_diffusers(converted, layout))
        assert set(got) == set(want), (layout, kw)
        for k in want:
            assert torch.allclose(got[k], want[k], rtol=1e-4, atol=1e-4), (layout, kw, k)
        check_fit(tr, to_diffusers(converted, layout), loras.LoraInfo(
            "x.safetensors", "x", layout, False, 4, (), 53, 128, 4, None, "", 0))


def test_compiled_blocks_keep_their_graphs_when_sets_and_strengths_change(
        engine, demo_model_master: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the blocks compiled (dynamo with the eager backend: its guards, no code generation), loading
    files changes the traced code once; switching sets and strengths afterwards traces nothing new, and
    every set gives the uncompiled engine's pixels."""
    from torch._dynamo.utils import counters

    from studio.engine.generate import Engine

    monkeypatch.setenv("ZAOXIANG_COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    compiled = Engine(demo_model_master, "cpu", compile=True, warm="none", compile_cache=tmp_path / "cc")
    compiled.lora_merge = False  # peft adapters in the compiled blocks (merging is the compiled default)
    compiled.warm_up(sizes=((128, 128),))
    assert compiled.compiled and compiled.wait_warm()
    other = _write(tmp_path / "other.safetensors", _random_lora(11))
    compiled.set_loras([(FILES["diffusers"], 1.0), (other, 1.0)])  # both loaded: the one change of code
    _images(compiled, PROMPTS[:1], quick=True)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    for chosen in ([(FILES["diffusers"], 1.0)], [(FILES["diffusers"], 0.5)], [(other, 1.0)], [],
                   [(FILES["diffusers"], 0.3), (other, -1.0)]):
        compiled.set_loras(chosen)
        got = _images(compiled, PROMPTS[:1], quick=True)
        engine.set_loras(chosen)
        assert _max_diff(got, _images(engine, PROMPTS[:1], quick=True)) <= SAME_IMAGE_MAX_DIFF, chosen
    assert counters["stats"]["unique_graphs"] == graphs
    engine.set_loras([])


def test_merged_loras_match_adapters_trace_nothing_new_and_leave_the_weights_bit_for_bit(
        engine, demo_model_master: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Merge mode (the compiled engine's default): each set gives the adapter engine's pixels; neither a
    new file nor a switch traces new code; with no LoRA the weights are the originals, bit for bit."""
    from torch._dynamo.utils import counters

    from studio.engine.generate import Engine

    monkeypatch.setenv("ZAOXIANG_COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    merged = Engine(demo_model_master, "cpu", compile=True, warm="none", compile_cache=tmp_path / "cc")
    merged.warm_up(sizes=((128, 128),))
    assert merged.compiled and merged.wait_warm()
    original = {k: v.clone() for k, v in merged.pipe.transformer.state_dict().items()}
    _images(merged, PROMPTS[:1], quick=True)
    graphs = counters["stats"]["unique_graphs"]
    other = _write(tmp_path / "other.safetensors", _random_lora(11))
    for chosen in ([(FILES["diffusers"], 1.0)], [(FILES["kohya"], 0.5)], [(FILES["diffusers"], 0.3), (other, -1.0)],
                   [], [(other, 1.0)], [(FILES["diffusers"], 0.0)]):
        merged.set_loras(chosen)
        got = _images(merged, PROMPTS[:1], quick=True)
        engine.set_loras(chosen)
        assert _max_diff(got, _images(engine, PROMPTS[:1], quick=True)) <= SAME_IMAGE_MAX_DIFF, chosen
        if not any(s for _f, s in chosen):  # no LoRA, or strength 0: the original weights exactly
            now = merged.pipe.transformer.state_dict()
            assert all(torch.equal(now[k], v) for k, v in original.items()), chosen
    assert merged._loras.merge and not getattr(merged.pipe.transformer, "peft_config", None)
    assert set(merged.pipe.transformer.state_dict()) == set(original)  # no module was added
    assert counters["stats"]["unique_graphs"] == graphs
    engine.set_loras([])


def test_fp8_linears_refuse_a_lora_with_one_line(demo_model_master: Path) -> None:
    from studio.engine import fp8
    from studio.engine.loader import load_pipeline
    from studio.engine.lora import LoraCache

    pipe = load_pipeline(demo_model_master, torch.device("cpu"), torch.float32)
    assert fp8.quantize_transformer(pipe.transformer) > 0
    with pytest.raises(LoraError, match="FP8 mode"):
        LoraCache(pipe).apply([(FILES["diffusers"], 1.0)])
    assert not getattr(pipe.transformer, "peft_config", None)
