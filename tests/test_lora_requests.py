"""LoRAs end to end on the demo model with real worker processes: a request's `loras` (or `<lora:…>` in
its prompt, or the CLI's --lora) turn the shapes purple, strength 0 is no LoRA at all, the PNG and the
history bring the LoRAs back, and a bad LoRA is refused with nothing queued.

One studio (one CPU worker) serves the request tests; the CLI tests start their own, as a person would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.app import Studio
from studio.core.metadata import request_from_chunks
from studio.core.pngfile import read_chunks
from studio.core.request import GenerationRequest, ValidationError, validate
from studio.core.spec import LoraRef
from studio.models import loras
from tests.conftest import cli_env
from tests.homes import make_home
from tests.pool_helpers import wait_idle
from tools import demo_shapes as shapes

DEMO_LORA = Path(__file__).resolve().parents[1] / "assets" / "demo-lora" / "demo-purple.safetensors"
PROMPT, SEED = "a red star on a white background", 1  # reads red without the LoRA, purple with it


def _request(prompt: str = PROMPT, **more) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, width=256, height=256, steps=9, seed=SEED, seed_mode="fixed", **more)


def _pixels(path: str | Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _fg(path: str | Path) -> str:
    return shapes.read_image(_pixels(path)).fg


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, demo_model_master: Path):
    with pytest.MonkeyPatch.context() as mp:
        home = make_home(tmp_path_factory.mktemp("lora-home"), demo_model_master, mp)
        from studio.core.paths import get_paths

        get_paths().loras_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEMO_LORA, get_paths().loras_dir / DEMO_LORA.name)  # found by name: "demo-purple"
        studio = Studio(workers="cpu:1")
        studio.start()
        try:
            wait_idle(studio)
            yield studio, home
        finally:
            studio.close()


@pytest.fixture(scope="module")
def made(studio, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same image without a LoRA, at strength 0, at strength 1, and with the LoRA named in the prompt."""
    s, _home = studio
    out = tmp_path_factory.mktemp("lora-out")
    asks = {"plain": _request(), "zero": _request(loras=(LoraRef("demo-purple", 0.0),)),
            "full": _request(loras=(LoraRef("demo-purple", 1.0),)),
            "tag": _request(prompt=f"{PROMPT} <lora:demo-purple:1>")}
    ids = {name: s.submit(req, origin="cli", out_dir=out / name) for name, req in asks.items()}
    paths = {}
    for name, rid in ids.items():
        [result] = s.wait(rid, timeout=600)
        assert result["status"] == "done", result
        paths[name] = Path(result["path"])
    return paths


def test_a_requests_lora_changes_the_hue_and_strength_0_is_no_lora(made) -> None:
    assert _fg(made["plain"]) == "red"
    assert _fg(made["full"]) == "purple"
    assert np.array_equal(_pixels(made["zero"]), _pixels(made["plain"]))  # strength 0: exactly no LoRA


def test_lora_in_the_prompt_is_the_same_as_in_the_list(made) -> None:
    assert np.array_equal(_pixels(made["tag"]), _pixels(made["full"]))
    request, record = request_from_chunks(read_chunks(made["tag"]))
    assert request.prompt == PROMPT  # the tag left the text the encoder saw
    assert [(lora.name, lora.weight) for lora in request.loras] == [("demo-purple", 1.0)]


def test_png_metadata_and_history_bring_the_loras_back(studio, made, tmp_path: Path) -> None:
    s, _home = studio
    digest = loras.content_hash(DEMO_LORA)
    chunks = read_chunks(made["full"])
    text = chunks["parameters"]
    assert text.startswith(f"{PROMPT} <lora:demo-purple:1>\n")
    assert f'Lora hashes: "demo-purple: {digest[:12]}"' in text
    request, record = request_from_chunks(chunks)
    assert request.loras == (LoraRef("demo-purple", 1.0, digest),)
    # another tool reads only the A1111 text: validation takes the LoRA out of the prompt again
    a1111, _ = request_from_chunks({"parameters": text})
    again = validate(a1111)
    assert (again.prompt, [(x.name, x.weight) for x in again.loras]) == (PROMPT, [("demo-purple", 1.0)])
    # the history's restore gives the same request, and drawing it again gives the same image
    [image] = [i for row in s.store.history(limit=20) for i in row["images"] if i["path"] == str(made["full"])]
    restored = s.store.reuse(image_id=image["id"])
    assert [(x.name, x.weight) for x in restored.loras] == [("demo-purple", 1.0)]
    [result] = s.wait(s.submit(restored, origin="cli", out_dir=tmp_path), timeout=600)
    assert np.array_equal(_pixels(result["path"]), _pixels(made["full"]))


def test_a_bad_lora_is_refused_with_nothing_queued(studio, tmp_path: Path) -> None:
    s, _home = studio
    pickle = tmp_path / "old.ckpt"
    pickle.write_bytes(b"\x80\x04pickle")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    before = s.store.history_count()
    cases = [(LoraRef("no-such-lora"), "No LoRA named 'no-such-lora'"),
             (LoraRef(str(tmp_path / "gone.safetensors")), "No LoRA file at"),
             (LoraRef(str(pickle)), "pickle file"),
             (LoraRef(str(junk)), "not a safetensors file"),
             (LoraRef("demo-purple", 9.0), "strength 9 for 'demo-purple' is out of range")]
    for ref, words in cases:
        with pytest.raises(ValidationError, match=words) as caught:
            s.submit(_request(loras=(ref,)), origin="cli")
        assert caught.value.field == "loras" and "\n" not in caught.value.message
    with pytest.raises(ValidationError, match="out of range"):
        s.submit(_request(prompt=f"{PROMPT} <lora:demo-purple:9>"), origin="cli")
    assert s.store.history_count() == before


def test_outside_the_cli_only_loras_and_controlnets_in_their_folders_are_taken(studio, made, tmp_path: Path) -> None:
    """Security review F1 through the facade, as the window ("ui") and the APIs ("api") call it: the review's
    requests (a file elsewhere, a real LoRA outside the folders, a folder as ControlNet) get the one line a
    missing name gets and queue nothing; the same LoRA by its path inside the folder draws, and so does
    its History restore (which keeps that absolute path)."""
    from studio.core.image_inputs import InputStore
    from studio.core.spec import ControlRef

    s, _home = studio
    outside = tmp_path / "outside" / "private.safetensors"
    outside.parent.mkdir()
    shutil.copy(DEMO_LORA, outside)
    where = ", ".join(str(d) for d in loras.lora_dirs(s.paths))
    before = s.store.history_count()
    for origin in ("ui", "api"):
        for name in ("/etc/passwd", "/etc/nonexistent_zz", str(outside), str(outside.parent)):
            for request in (_request(loras=(LoraRef(name),)), _request(prompt=f"{PROMPT} <lora:{name}:1>")):
                with pytest.raises(ValidationError) as caught:
                    s.submit(request, origin=origin)
                assert caught.value.field == "loras"
                assert caught.value.message == f"No LoRA named '{name}' (looked in {where}): put its .safetensors file there."
    control = InputStore().put_image(Image.new("RGB", (256, 256), (9, 9, 9))).sha256
    from studio.core.paths import get_paths

    cn_where = str(get_paths().controlnets_dir)
    for model in ("/etc", "/root/nonexistent", str(Path(DEMO_LORA).parents[1] / "demo-model")):
        with pytest.raises(ValidationError) as caught:
            s.submit(_request(control=ControlRef(control, "map", model=model)), origin="ui")
        assert caught.value.message == f"No ControlNet named '{model}' (looked in {cn_where}): put it there."
    assert s.store.history_count() == before
    with pytest.raises(ValidationError, match="no readable config.json"):  # the person at the terminal may
        s.submit(_request(control=ControlRef(control, "map", model="/etc")), origin="cli")

    inside = s.paths.loras_dir / DEMO_LORA.name
    [drawn] = s.wait(s.submit(_request(loras=(LoraRef(str(inside), 1.0),)), origin="api", out_dir=tmp_path), timeout=600)
    assert np.array_equal(_pixels(drawn["path"]), _pixels(made["full"]))
    [image] = [i for row in s.store.history(limit=20) for i in row["images"] if i["path"] == drawn["path"]]
    restored = s.store.reuse(image_id=image["id"])
    assert [x.name for x in restored.loras] == [str(inside.resolve())]
    [again] = s.wait(s.submit(restored, origin="ui", out_dir=tmp_path / "again"), timeout=600)
    assert np.array_equal(_pixels(again["path"]), _pixels(made["full"]))


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", "generate", *args], env=cli_env(home),
                          capture_output=True, text=True, timeout=600)


def test_cli_lora_changes_the_hue_and_a_bad_one_exits_2(home: Path, tmp_path: Path) -> None:
    p = _cli(home, PROMPT, "--seed", str(SEED), "--seed-mode", "fixed", "--steps", "9",
             "--lora", f"{DEMO_LORA}:1", "--out", str(tmp_path), "--json")
    assert p.returncode == 0, p.stderr
    [row] = [json.loads(line) for line in p.stdout.splitlines()]
    assert _fg(row["path"]) == "purple"
    request, _record = request_from_chunks(read_chunks(row["path"]))
    assert request.loras == (LoraRef(str(DEMO_LORA), 1.0, loras.content_hash(DEMO_LORA)),)
    bad = _cli(home, PROMPT, "--lora", "no-such-lora:0.5")
    assert bad.returncode == 2 and "No LoRA named 'no-such-lora'" in bad.stderr and "Traceback" not in bad.stderr
    assert len([line for line in bad.stderr.splitlines() if line.strip()]) == 1
    strong = _cli(home, PROMPT, "--lora", f"{DEMO_LORA}:9")
    assert strong.returncode == 2 and "out of range" in strong.stderr


def test_models_list_shows_loras_with_layout_and_rank(home: Path) -> None:
    from studio.core.paths import get_paths

    get_paths().loras_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO_LORA.with_name("demo-purple.kohya.safetensors"), get_paths().loras_dir)
    p = subprocess.run([sys.executable, "-m", "studio", "models", "list"], env=cli_env(home), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    [line] = [x for x in p.stdout.splitlines() if x.strip().startswith("demo-purple.kohya")]
    assert line.split()[1:4] == ["kohya", "rank", "4"] and "z-image-demo-tiny" in line

