"""LoRAs from the outside (issue 19): the Generate tab's picker in headless Chromium, the OpenAI images
route through the real `openai` client and the MCP tool through the real `mcp` client, all on one real
studio (demo model, one CPU worker) whose `loras` folder holds the demo LoRA in three layouts.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e import test_api_e2e
from tests.e2e.test_api_e2e import landed, mcp_client, run_async

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
# the fixtures: the module's app once its worker has loaded, and a key for the API calls
ready, keys, key, auth = test_api_e2e.ready, test_api_e2e.keys, test_api_e2e.key, test_api_e2e.auth

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "demo-lora"
# the demo LoRA as three differently named files (its diffusers, kohya and ai-toolkit copies)
NAMES = {"demo-purple": "demo-purple.safetensors", "ink-kohya": "demo-purple.kohya.safetensors",
         "ink-toolkit": "demo-purple.ai-toolkit.safetensors"}


@pytest.fixture(scope="module")
def studio_home(studio_home: Path) -> Path:
    """The module's home with the demo LoRAs in its `loras` folder, before the studio starts."""
    from studio.core.paths import get_paths

    folder = get_paths().loras_dir
    folder.mkdir(parents=True, exist_ok=True)
    for name, file in NAMES.items():
        shutil.copyfile(ASSETS / file, folder / f"{name}.safetensors")
    return studio_home


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")).astype(int)


def _loras(app, prompt: str) -> list[tuple[str, float]]:
    (row,) = landed(app, prompt)
    request = app.studio.store.reuse(image_id=row["images"][0]["id"])
    return [(x.name, x.weight) for x in request.loras]


def test_openai_route_takes_loras_in_the_body_and_in_the_prompt(ready, key):
    import openai

    client = openai.OpenAI(base_url=f"{ready.base}/v1", api_key=key, max_retries=0, timeout=300)

    def draw(prompt: str, **extra) -> np.ndarray:
        got = client.images.generate(prompt=prompt, size="256x256", response_format="b64_json",
                                     extra_body={"seed": 21, "steps": 2, **extra})
        return _pixels(got.data[0].b64_json)

    plain = draw("a green square lora api")
    body = draw("a green square lora api", loras=[{"name": "demo-purple", "strength": 1.0}])
    tagged = draw("a green square lora api <lora:demo-purple:1>")
    kohya = draw("a green square lora api", loras=["ink-kohya:1"])
    assert np.abs(body - plain).mean() > 5  # the LoRA changed the picture...
    assert np.array_equal(body, tagged)  # ...the same way, asked in the body or in the prompt
    assert np.abs(kohya - body).max() <= 8  # another layout of the same LoRA: the same picture
    rows = landed(ready, "a green square lora api")
    assert sorted(len(r["images"]) for r in rows) == [1, 1, 1, 1]

    before = ready.studio.store.history_count()
    cases = [({"loras": [{"name": "no-such-lora"}]}, "loras: No LoRA named 'no-such-lora'"),
             ({"loras": [{"name": "demo-purple", "strength": 9}]},
              "loras: LoRA strength 9 for 'demo-purple' is out of range"),
             ({"loras": [{"name": "old-lora.ckpt"}]}, "loras: old-lora.ckpt is a pickle file (.ckpt)")]
    for extra, words in cases:
        with pytest.raises(openai.BadRequestError) as bad:
            client.images.generate(prompt="never drawn lora", size="256x256", extra_body=extra)
        assert bad.value.status_code == 400 and bad.value.body["param"] == "loras", bad.value.body
        assert bad.value.body["message"].startswith(words) and "\n" not in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad:  # a tag in the prompt is checked the same way
        client.images.generate(prompt="never drawn lora <lora:gone:0.5>", size="256x256")
    assert bad.value.body["message"].startswith("loras: No LoRA named 'gone'")
    assert ready.studio.store.history_count() == before  # nothing was queued


def test_mcp_generate_takes_loras_and_refuses_a_bad_one_in_one_line(ready, auth):
    async def session():
        async with mcp_client(f"{ready.base}/mcp", auth) as client:
            tools = await client.list_tools()
            made = await client.call_tool("generate", {
                "prompt": "mcp lora circle", "size": "256x256", "seed": 3, "steps": 2,
                "loras": [{"name": "demo-purple", "strength": 0.5}, {"name": "ink-toolkit"}]})
            bad = await client.call_tool("generate", {"prompt": "never drawn mcp lora", "size": "256x256",
                                                      "loras": [{"name": "demo-purple", "strength": 9}]})
            models = await client.call_tool("list_models", {})
            return tools, made, bad, models

    tools, made, bad, models = run_async(session)
    schema = next(t for t in tools.tools if t.name == "generate").input_schema
    assert "loras" in schema["properties"] and "loras" not in schema.get("required", [])
    item = json.dumps(schema)  # the item's fields, wherever pydantic put the definition
    assert '"name"' in item and '"strength"' in item
    assert not made.is_error, made.content
    assert _loras(ready, "mcp lora circle") == [("demo-purple", 0.5), ("ink-toolkit", 1.0)]
    assert bad.is_error
    (text,) = [c.text for c in bad.content if c.type == "text"]
    # the SDK puts "Error executing tool generate: " before the studio's line
    assert text.split(": ", 1)[1].startswith("loras: LoRA strength 9 for 'demo-purple' is out of range")
    assert "\n" not in text
    assert landed(ready, "never drawn mcp lora") == []
    listed = json.loads(models.content[0].text)[0]["loras"]
    assert {x["name"]: (x["layout"], x["rank"]) for x in listed} == {
        "demo-purple": ("diffusers", 4), "ink-kohya": ("kohya", 4), "ink-toolkit": ("ai-toolkit", 4)}


def test_a_path_outside_the_lora_folders_is_no_lora_and_one_inside_draws(ready, key, auth, tmp_path):
    """Security review F1 with the real clients: a file elsewhere (there or not), a real LoRA outside the
    folders, a folder, a model file whose keys were once quoted: each gets the one line a missing name
    gets, nothing is queued; the folder's LoRA by its absolute path draws what its name draws."""
    import openai

    from studio.models.loras import lora_dirs

    outside = tmp_path / "outside" / "private.safetensors"
    outside.parent.mkdir()
    shutil.copyfile(ASSETS / NAMES["demo-purple"], outside)
    text_encoder = ASSETS.parent / "demo-model" / "text_encoder" / "model.safetensors"
    where = ", ".join(str(d) for d in lora_dirs(ready.studio.paths))
    client = openai.OpenAI(base_url=f"{ready.base}/v1", api_key=key, max_retries=0, timeout=300)
    before = ready.studio.store.history_count()
    names = ["/etc/passwd", "/etc/nonexistent_zz", "/root/.bashrc", str(outside), str(outside.parent), str(text_encoder)]
    for name in names:
        line = f"loras: No LoRA named '{name}' (looked in {where}): put its .safetensors file there."
        for prompt, extra in ((f"never drawn outside <lora:{name}:1>", {}),
                              ("never drawn outside", {"loras": [{"name": name}]})):
            with pytest.raises(openai.BadRequestError) as bad:
                client.images.generate(prompt=prompt, size="256x256", extra_body=extra)
            assert (bad.value.status_code, bad.value.body["param"], bad.value.body["message"]) == (400, "loras", line)

    async def session():
        async with mcp_client(f"{ready.base}/mcp", auth) as client:
            return [await client.call_tool("generate", {"prompt": "never drawn outside", "size": "256x256",
                                                        "loras": [{"name": name}]}) for name in names[2:4]]

    for name, answer in zip(names[2:4], run_async(session)):
        (text,) = [c.text for c in answer.content if c.type == "text"]
        assert answer.is_error and text.split(": ", 1)[1] == (
            f"loras: No LoRA named '{name}' (looked in {where}): put its .safetensors file there.")
    assert ready.studio.store.history_count() == before

    inside = ready.studio.paths.loras_dir / "demo-purple.safetensors"
    drawn = [client.images.generate(prompt="a green square lora path", size="256x256", response_format="b64_json",
                                    extra_body={"seed": 4, "steps": 2, "loras": [{"name": name}]})
             for name in (str(inside), "demo-purple")]
    assert np.array_equal(*(_pixels(d.data[0].b64_json) for d in drawn))
    assert len(landed(ready, "a green square lora path")) == 2


def _options(page) -> list[str]:
    return [o.inner_text().strip() for o in page.locator("[role=option]").all() if o.is_visible()]


def _search(page, text: str) -> list[str]:
    """Type `text` into the picker's search box; the names it still offers."""
    pick = page.locator("#lora-pick input").first
    pick.click()
    pick.fill("")
    pick.press_sequentially(text, delay=30)  # key by key, as a person types
    page.wait_for_timeout(500)
    return [o.split(" ·")[0] for o in _options(page)]


def _rows(page) -> list[str]:
    return [r.inner_text().split("\n")[0].strip() for r in page.locator("#loras .zx-lora-row").all()]


def test_picker_searches_as_you_type_and_gives_each_lora_a_slider(page, ready, shots):
    """Typing filters the found LoRAs (by name, and by layout); choosing one adds a row with its own
    strength slider; several rows, a removed one, a changed strength: the request gets exactly those."""
    from tests.e2e.test_ui_e2e import box, fill_form, wait_finished

    fill_form(page, prompt="a blue circle picker lora", count=1, steps=2, guidance="0", seed=4, mode="固定")
    page.locator("#loras-box").first.click()
    assert sorted(_search(page, "")) == ["demo-purple", "ink-kohya", "ink-toolkit"]
    assert sorted(_search(page, "ink")) == ["ink-kohya", "ink-toolkit"]
    assert _search(page, "kohya") == ["ink-kohya"]
    page.locator("[role=option]", has_text="ink-kohya").first.click()
    page.wait_for_function("document.querySelectorAll('#loras .zx-lora-row').length === 1")
    assert _search(page, "purp") == ["demo-purple"]
    page.locator("[role=option]", has_text="demo-purple").first.click()
    _search(page, "toolkit")
    page.locator("[role=option]", has_text="ink-toolkit").first.click()
    page.wait_for_function("document.querySelectorAll('#loras .zx-lora-row').length === 3")
    assert _rows(page) == ["ink-kohya", "demo-purple", "ink-toolkit"]

    page.locator("#loras .zx-lora-row", has_text="ink-toolkit").locator(".zx-lora-remove").click()
    page.wait_for_function("document.querySelectorAll('#loras .zx-lora-row').length === 2")
    strength = page.locator("#loras .zx-lora-row", has_text="ink-kohya").locator("input[type=number]").first
    strength.fill("0.5")
    strength.press("Enter")
    strength.blur()
    page.wait_for_timeout(1000)  # the table takes the new strength; the rows are drawn again from it
    page.wait_for_function("document.querySelectorAll('#loras .zx-lora-row').length === 2")
    assert page.locator("#loras .zx-lora-row", has_text="ink-kohya").locator(
        "input[type=number]").first.input_value() == "0.5"
    page.screenshot(path=str(shots / "ui-lora-picker-zh.png"), full_page=True)

    before = ready.studio.store.history_count()
    page.click("#generate")
    wait_finished(page)
    assert ready.studio.store.history_count() == before + 1
    assert _loras(ready, "a blue circle picker lora") == [("ink-kohya", 0.5), ("demo-purple", 1.0)]
    assert box(page, "prompt").input_value() == "a blue circle picker lora"
