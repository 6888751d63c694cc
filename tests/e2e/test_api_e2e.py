"""Scripts and agents (issue 21): the real `openai`, `mcp` and `gradio_client` packages against the
real studio (demo model, one CPU worker) over HTTP to 127.0.0.1.

One studio serves every test: the module's loopback window server (conftest `app`), plus, for the
key tests, a second server of the same studio bound to 0.0.0.0 (traffic still only to 127.0.0.1).
Every generation uses its own prompt, so "lands in History once" is checked per call.

LoRAs from the outside (issue 19) on the same studio, whose `loras` folder holds the demo LoRA in three
layouts: the OpenAI route, the MCP tool and the Generate tab's picker (one app start for both issues).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import httpx
import numpy as np
import pytest
from PIL import Image

from studio.api.keys import KeyStore
from studio.core.request import GenerationRequest
from tests.conftest import cli_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOOLS = {"generate", "list_history", "get_image", "list_models", "studio_status"}
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


@pytest.fixture(scope="module")
def ready(app):
    """The module's app once its worker has loaded (before that the API answers 503)."""
    deadline = time.monotonic() + 120
    while not any(w["state"] in ("idle", "busy") for w in app.studio.pool_status()):
        assert time.monotonic() < deadline, app.studio.pool_status()
        time.sleep(0.2)
    return app


@pytest.fixture(scope="module")
def keys(app) -> KeyStore:
    return KeyStore(app.studio.paths.config_dir)


@pytest.fixture(scope="module")
def key(keys) -> str:
    """A key for this module's calls: every API call needs one, on loopback too (F2 of the review). The
    module calls faster than a person's script, so the rate limit is raised for it (600 a minute); the
    limit itself is tested in tests/e2e/test_security_e2e.py and tests/test_api.py."""
    keys.set_options(rate_per_min=600)
    return keys.create("e2e")[1]


@pytest.fixture(scope="module")
def auth(key) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def mcp_client(url: str, headers: dict[str, str] | None = None, statuses: list[int] | None = None):
    """The real `mcp` Client over streamable HTTP, sending `headers` (a key) with every call; each
    HTTP status it gets is added to `statuses` (the SDK's own error does not say it)."""
    from mcp import Client
    from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

    http = create_mcp_http_client(headers=headers)
    if statuses is not None:
        async def note(response) -> None:
            statuses.append(response.status_code)

        http.event_hooks = {**http.event_hooks, "response": [*http.event_hooks["response"], note]}
    return Client(streamable_http_client(url, http_client=http))


def run_async(fn):
    """`anyio.run(fn)` on a thread of its own: sync Playwright (the `page` fixture) keeps an event
    loop running on the main thread once a test of this module has used it."""
    out: dict = {}

    def target() -> None:
        try:
            out["value"] = anyio.run(fn)
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def landed(app, prompt: str) -> list[dict]:
    """History requests with exactly this prompt."""
    return [r for r in app.studio.history(limit=500) if r["prompt"] == prompt]


def test_openai_client_generates_b64_and_url_images_and_names_a_bad_size(ready, key):
    import openai

    client = openai.OpenAI(base_url=f"{ready.base}/v1", api_key=key, max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == [ready.studio.model.name]

    first = client.images.generate(model="demo", prompt="一个红色的圆 openai b64", n=1, size="256x256",
                                   response_format="b64_json", extra_body={"seed": 7, "steps": 2})
    second = client.images.generate(model="demo", prompt="a blue square openai url", n=1, size="256x256",
                                    response_format="url", extra_body={"seed": 8, "steps": 2, "user": "ignored"})

    (row_b64,) = landed(ready, "一个红色的圆 openai b64")
    (row_url,) = landed(ready, "a blue square openai url")
    for row, seed in ((row_b64, 7), (row_url, 8)):
        assert (row["origin"], row["state"], len(row["images"])) == ("api", "done", 1)
        assert row["images"][0]["seed"] == seed
    # The bytes delivered are the file the history holds, in both forms.
    with open(row_b64["images"][0]["path"], "rb") as fh:
        assert base64.b64decode(first.data[0].b64_json) == fh.read()
    assert first.data[0].model_dump()["seed"] == 7
    fetched = httpx.get(second.data[0].url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    with open(row_url["images"][0]["path"], "rb") as fh:
        assert fetched.content == fh.read()

    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(prompt="never drawn 13x7", size="13x7")  # type: ignore[arg-type]
    assert bad.value.status_code == 400
    assert bad.value.body["param"] == "size" and "13x7" in bad.value.body["message"]
    assert landed(ready, "never drawn 13x7") == []


def test_an_image_url_opens_only_for_the_caller_that_made_it(ready, keys, key):
    """`/v1/images/files/<job id>.png` for its own caller only: another key, a keyless call and the
    window's images get OpenAI's 404, the same as an id that never existed (job ids are listed by
    the named /history endpoint, so they are no secret); MCP's `get_image` keeps to the same rule."""
    import openai

    _other_record, other_key = keys.create("e2e-other")
    body = {"size": "256x256", "response_format": "url", "extra_body": {"steps": 2}}
    mine = openai.OpenAI(base_url=f"{ready.base}/v1", api_key=key, max_retries=0, timeout=120)
    theirs = openai.OpenAI(base_url=f"{ready.base}/v1", api_key=other_key, max_retries=0, timeout=120)
    my_url = mine.images.generate(prompt="scoped url mine", **body).data[0].url
    their_url = theirs.images.generate(prompt="scoped url theirs", **body).data[0].url
    (window,) = ready.studio.wait(ready.studio.submit(GenerationRequest("scoped url window", width=256, height=256,
                                                                        steps=2)), timeout=240)
    base = my_url.rsplit("/", 1)[0]
    window_url, never_url = f"{base}/{window['job_id']}.png", f"{base}/{'0' * 32}.png"

    def get(url: str, plain: str | None) -> httpx.Response:
        return httpx.get(url, headers={"Authorization": f"Bearer {plain}"} if plain else {}, timeout=30)

    never = get(never_url, key)
    assert never.status_code == 404 and never.json()["error"]["code"] == "image_not_found"
    for url, plain in ((their_url, key), (my_url, other_key), (window_url, key), (window_url, other_key)):
        refused = get(url, plain)
        assert (refused.status_code, refused.json()) == (404, never.json()), (url, plain)
    for url, plain in ((my_url, key), (their_url, other_key)):
        own = get(url, plain)
        assert own.status_code == 200 and own.content.startswith(b"\x89PNG")

    # Keyless loopback (the person turned keys off): keyless calls are one caller, reading only their own.
    keys.set_options(require_key_on_loopback=False)
    try:
        keyless = openai.OpenAI(base_url=f"{ready.base}/v1", api_key="local", max_retries=0, timeout=120)
        keyless_url = keyless.images.generate(prompt="scoped url keyless", **body).data[0].url
        assert get(keyless_url, None).status_code == 200 and get(keyless_url, "local").status_code == 200
        for url in (my_url, window_url):
            assert get(url, None).status_code == 404
        assert get(keyless_url, key).status_code == 404
    finally:
        keys.set_options(require_key_on_loopback=True)
    assert get(keyless_url, None).status_code == 401

    # MCP's get_image: its own image by id, and another key's refused in the words of an unknown id.
    (my_row,) = landed(ready, "scoped url mine")
    my_image = my_row["images"][0]["id"]

    async def get_image(plain: str, image_id: int = my_image) -> object:
        async with mcp_client(f"{ready.base}/mcp", {"Authorization": f"Bearer {plain}"}) as client:
            return await client.call_tool("get_image", {"image_id": image_id})

    own, other = run_async(lambda: get_image(key)), run_async(lambda: get_image(other_key))
    unknown = run_async(lambda: get_image(other_key, 10**9))
    assert not own.is_error and json.loads(own.content[0].text)["path"] == my_row["images"][0]["path"]
    assert other.is_error and unknown.is_error
    assert other.content[0].text == unknown.content[0].text.replace(str(10**9), str(my_image))
    assert len(other.content) == 1  # neither its parameters nor its bytes


def test_requests_from_web_pages_are_refused_even_without_a_key(ready, keys):
    """Foreign Host/Origin and form posts fail before any key is looked at (so also where the person
    turned keyless loopback on)."""
    keys.set_options(require_key_on_loopback=False)  # the weakest setting the person can choose
    try:
        url = f"{ready.base}/v1/images/generations"
        body = {"prompt": "a page must not draw this"}
        for headers in ({"Origin": "http://evil.example"}, {"Host": "evil.example"}):
            refused = httpx.post(url, json=body, headers=headers)
            # in OpenAI's error shape, so an API client prints the reason rather than a bare 403
            assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
            assert refused.json()["error"]["message"] in ("Cross-origin request refused.", "Host not allowed.")
        form = httpx.post(url, content=b"prompt=x", headers={"Content-Type": "text/plain"})
        assert form.status_code == 415 and form.json()["error"]["code"] == "unsupported_media_type"
        assert httpx.post(f"{ready.base}/mcp", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
        # A <form> can post multipart but cannot add a bearer header; only the edits route takes multipart.
        page_form = {"prompt": "a page must not draw this"}
        edits = httpx.post(f"{ready.base}/v1/images/edits", files={"image": b"png"}, data=page_form)
        assert edits.status_code == 401 and edits.json()["error"]["code"] == "missing_api_key"
        elsewhere = httpx.post(url, files={"image": b"png"}, data=page_form, headers={"Authorization": "Bearer x"})
        assert elsewhere.status_code == 415 and elsewhere.json()["error"]["code"] == "unsupported_media_type"
    finally:
        keys.set_options(require_key_on_loopback=True)
    assert landed(ready, "a page must not draw this") == []


def test_json_edits_repaint_only_where_the_openai_mask_is_transparent(ready, auth):
    """Issue 20: /v1/images/edits with a data-URL image and an OpenAI mask (transparent = edit)."""
    import io

    import numpy as np
    from PIL import Image

    def data_url(img: Image.Image) -> str:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    picture = Image.new("RGB", (256, 256), (230, 230, 230))
    picture.paste((20, 20, 200), (40, 40, 216, 216))
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (96, 96, 160, 160))  # the hole is what gets repainted
    body = {"prompt": "api edit yellow star", "images": [{"image_url": data_url(picture)}],
            "mask": {"image_url": data_url(mask)}, "steps": 2, "seed": 5}
    r = httpx.post(f"{ready.base}/v1/images/edits", json=body, headers=auth, timeout=300)
    assert r.status_code == 200, r.text
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"]))).convert("RGB"))
    hole = np.zeros((256, 256), bool)
    hole[96:160, 96:160] = True
    assert out.shape == (256, 256, 3) and np.array_equal(out[~hole], np.asarray(picture)[~hole])
    bad = httpx.post(f"{ready.base}/v1/images/edits", json={"prompt": "never drawn edit", "image": "bm90IGEgcGljdHVyZQ=="},
                     headers=auth)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "image"
    assert "not an image" in bad.json()["error"]["message"]
    assert landed(ready, "never drawn edit") == []


def test_openai_client_edits_with_a_mask_keeping_the_pixels_outside_it(ready, key, tmp_path):
    """Issue 20: `client.images.edit(image=..., mask=...)` posts multipart; the hole is repainted, the
    rest comes back identical. Bad files and oversized bodies are refused before anything is queued."""
    import io
    import socket

    import numpy as np
    import openai
    from PIL import Image

    from studio.api.multipart import EDIT_BODY_MAX_BYTES

    picture = Image.new("RGB", (256, 256), (230, 230, 230))
    picture.paste((200, 30, 30), (48, 48, 208, 208))
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (64, 96, 192, 160))  # OpenAI's rule: the transparent hole is repainted
    picture.save(tmp_path / "picture.png")
    mask.save(tmp_path / "mask.png")
    client = openai.OpenAI(base_url=f"{ready.base}/v1", api_key=key, max_retries=0, timeout=300)
    with open(tmp_path / "picture.png", "rb") as image, open(tmp_path / "mask.png", "rb") as mask_file:
        made = client.images.edit(image=image, mask=mask_file, prompt="openai multipart edit", n=1, size="256x256",
                                  response_format="b64_json", extra_body={"seed": 3, "steps": 2})
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(made.data[0].b64_json))).convert("RGB"))
    hole = np.zeros((256, 256), bool)
    hole[96:160, 64:192] = True
    before = np.asarray(picture)
    assert out.shape == (256, 256, 3) and np.array_equal(out[~hole], before[~hole])
    assert np.abs(out[hole].astype(int) - before[hole]).mean() > 5  # the inside was repainted
    (row,) = landed(ready, "openai multipart edit")
    assert (row["origin"], row["state"]) == ("api", "done")

    with pytest.raises(openai.BadRequestError) as bad:
        client.images.edit(image=("notes.png", b"not a picture at all", "image/png"), prompt="never drawn multipart")
    assert bad.value.body["param"] == "image" and "not an image" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as strength:
        with open(tmp_path / "picture.png", "rb") as image:
            client.images.edit(image=image, prompt="never drawn multipart", extra_body={"strength": 1.5})
    assert strength.value.body["param"] == "strength"

    # A body declared over the limit is answered 413 from its headers: the server reads none of it.
    with socket.create_connection(("127.0.0.1", ready.port), timeout=30) as sock:
        sock.sendall((f"POST /v1/images/edits HTTP/1.1\r\nHost: 127.0.0.1:{ready.port}\r\n"
                      f"Authorization: Bearer {key}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      f"Content-Length: {EDIT_BODY_MAX_BYTES + 1}\r\n\r\n").encode())
        answer = b""
        while b"body_too_large" not in answer and (chunk := sock.recv(65536)):  # headers and body may part
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"body_too_large" in answer
    assert landed(ready, "never drawn multipart") == []


def test_a_refused_edit_stores_nothing(ready, keys, key, auth):
    """Relreview 4 and 7: an edits call refused for its fields, a LoRA, a full queue or a mask Pillow
    cannot convert leaves the inputs folder as it was, and the LAB mask is
    the input's one line in OpenAI's shape, not a bare 500."""
    import openai

    inputs = ready.studio.paths.inputs_dir

    def stored() -> set[str]:
        return {str(p.relative_to(inputs)) for p in inputs.rglob("*")} if inputs.exists() else set()

    def picture(shade: int) -> bytes:  # a new picture per call: one kept would be a new file
        buf = io.BytesIO()
        Image.new("RGB", (256, 256), (shade, 255 - shade, 90)).save(buf, format="PNG")
        return buf.getvalue()

    def data_url(data: bytes) -> str:
        return "data:image/png;base64," + base64.b64encode(data).decode()

    before = stored()
    url = f"{ready.base}/v1/images/edits"
    client = openai.OpenAI(base_url=f"{ready.base}/v1", api_key=key, max_retries=0, timeout=60)
    refused = {
        "n": httpx.post(url, json={"prompt": "never drawn refused edit", "image": data_url(picture(11)), "n": 999},
                        headers=auth, timeout=60),
        "prompt": httpx.post(url, files={"image": ("a.png", picture(22), "image/png")}, headers=auth, timeout=60),
        "loras": httpx.post(url, json={"prompt": "never drawn refused edit", "image": data_url(picture(33)),
                                       "loras": [{"name": "no-such-lora", "strength": 0.8}]}, headers=auth, timeout=60),
    }
    with pytest.raises(openai.BadRequestError) as strength:
        client.images.edit(image=("b.png", picture(44), "image/png"), prompt="never drawn refused edit",
                           extra_body={"strength": 1.5})
    lab = io.BytesIO()
    Image.new("LAB", (256, 256)).save(lab, format="TIFF")
    with pytest.raises(openai.BadRequestError) as lab_mask:
        client.images.edit(image=("c.png", picture(55), "image/png"), mask=("m.tiff", lab.getvalue(), "image/tiff"),
                           prompt="never drawn refused edit")
    keys.set_options(queue_limit=1)
    try:
        refused["queue"] = httpx.post(url, json={"prompt": "never drawn refused edit", "image": data_url(picture(66)),
                                                 "n": 2, "size": "256x256"}, headers=auth, timeout=60)
    finally:
        keys.set_options(queue_limit=256)

    assert {k: (r.status_code, r.json()["error"].get("param")) for k, r in refused.items()} == {
        "n": (400, "n"), "prompt": (400, "prompt"), "loras": (400, "loras"), "queue": (429, None)}
    assert strength.value.body["param"] == "strength"
    message = lab_mask.value.body["message"]
    assert lab_mask.value.body["param"] == "mask" and "LAB" in message and "\n" not in message
    assert stored() == before
    assert landed(ready, "never drawn refused edit") == []

def test_concurrent_large_edit_uploads_are_bounded_and_let_go(ready, keys, key, tmp_path):
    """Edit bodies in flight share one budget (Settings' `uploads_mb`): while a raw connection holds a
    large body half sent, a second large edit from the `openai` client gets 429 in OpenAI's shape with
    a Retry-After, a small one still gets through to its checks, and once the first connection goes
    its bytes are let go and the large edit gets through too."""
    import socket

    import openai

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1400, 1400, 3), dtype=np.uint8))
    noise.save(tmp_path / "noise.png")  # ~5.6 MiB: random pixels do not compress
    big = (tmp_path / "noise.png").read_bytes()
    assert 5 << 20 < len(big) < 6 << 20
    small = io.BytesIO()
    Image.new("RGB", (256, 256), (10, 200, 10)).save(small, format="PNG")
    client = openai.OpenAI(base_url=f"{ready.base}/v1", api_key=key, max_retries=0, timeout=60)

    def edit(data: bytes) -> Exception:
        """An edit refused only by its strength once its body is in: 400 means it got past the budget."""
        try:
            client.images.edit(image=("e.png", data, "image/png"), prompt="never drawn upload",
                               extra_body={"strength": 1.5})
        except (openai.RateLimitError, openai.BadRequestError) as exc:
            return exc
        raise AssertionError("the edit was not refused")

    keys.set_options(uploads_mb=10)
    try:
        with socket.create_connection(("127.0.0.1", ready.port), timeout=30) as holder:
            holder.sendall((f"POST /v1/images/edits HTTP/1.1\r\nHost: 127.0.0.1:{ready.port}\r\n"
                            f"Authorization: Bearer {key}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                            f"Content-Length: {6 << 20}\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"image\"; "
                            'filename="a.png"\r\nContent-Type: image/png\r\n\r\n').encode() + bytes(4096))
            busy = None
            deadline = time.monotonic() + 30
            while busy is None or not isinstance(busy, openai.RateLimitError):  # until the server holds its share
                assert time.monotonic() < deadline, busy
                time.sleep(0.3)
                busy = edit(big)
            error = busy.body
            assert busy.status_code == 429 and (error["type"], error["code"]) == ("rate_limit_error", "uploads_busy")
            assert "send this edit again" in error["message"] and "\n" not in error["message"]
            assert float(busy.response.headers["retry-after"]) >= 1
            assert edit(small.getvalue()).body["param"] == "strength"  # room left for ordinary edits
        deadline = time.monotonic() + 30
        while isinstance(after := edit(big), openai.RateLimitError):  # the holder's bytes go as it disconnects
            assert time.monotonic() < deadline, after.body
            time.sleep(0.5)
        assert after.body["param"] == "strength"
    finally:
        keys.set_options(uploads_mb=1024)
    assert landed(ready, "never drawn upload") == []


def test_edit_bodies_that_never_fit_or_stop_arriving_let_the_budget_go(ready, keys, key, tmp_path, monkeypatch):
    """A body larger than the whole `uploads_mb` gets 413 naming the setting (no 429 the `openai` client
    would retry); a raw connection that declares a large body and then sends nothing gets 408 in
    OpenAI's shape once the read deadline passes, and its share is let go at once."""
    import socket

    import openai

    from studio.api import multipart

    big = bytes(np.random.default_rng(1).integers(0, 256, 3 << 20, dtype=np.uint8))  # no image: never read
    client = openai.OpenAI(base_url=f"{ready.base}/v1", api_key=key, max_retries=0, timeout=60)
    keys.set_options(uploads_mb=1)
    try:
        with pytest.raises(openai.APIStatusError) as never:
            client.images.edit(image=("e.png", big, "image/png"), prompt="never drawn budget")
        assert never.value.status_code == 413 and never.value.body["code"] == "over_uploads_budget"
        assert "uploads_mb" in never.value.body["message"] and "\n" not in never.value.body["message"]
        keys.set_options(uploads_mb=10)
        monkeypatch.setattr(multipart, "BODY_IDLE_S", 1.0)  # the server runs in this process
        with socket.create_connection(("127.0.0.1", ready.port), timeout=30) as holder:
            holder.sendall((f"POST /v1/images/edits HTTP/1.1\r\nHost: 127.0.0.1:{ready.port}\r\n"
                            f"Authorization: Bearer {key}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                            f"Content-Length: {8 << 20}\r\n\r\n--b\r\n").encode())
            started, answer = time.monotonic(), b""
            while b"}}" not in answer:
                chunk = holder.recv(65536)
                assert chunk, answer
                answer += chunk
            waited = time.monotonic() - started
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), head
        error = json.loads(body)["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "body_timeout") and 0.5 < waited < 20
        with pytest.raises(openai.BadRequestError) as through:  # 8 MB let go: a 3 MB body fits the 10 MB
            client.images.edit(image=("e.png", big, "image/png"), prompt="never drawn budget")
        assert through.value.status_code == 400
    finally:
        keys.set_options(uploads_mb=1024)
    assert landed(ready, "never drawn budget") == []


def test_mcp_client_lists_the_tools_and_generates(ready, auth):
    async def session():
        async with mcp_client(f"{ready.base}/mcp", auth) as client:
            tools = await client.list_tools()
            made = await client.call_tool("generate", {"prompt": "mcp green triangle", "size": "256x256",
                                                       "seed": 11, "steps": 2})
            status = await client.call_tool("studio_status", {})
            history = await client.call_tool("list_history", {"limit": 3})
            image = await client.call_tool("get_image", {"image_id": json.loads(history.content[0].text)[0]
                                                         ["images"][0]["id"]})
            return tools, made, status, history, image

    tools, made, status, history, got = run_async(session)
    assert {t.name for t in tools.tools} == TOOLS
    assert not made.is_error, made.content
    listing = json.loads(made.content[0].text)
    (image,) = listing["images"]
    assert image["seed"] == 11
    assert made.content[1].type == "image" and made.content[1].mime_type == "image/png"
    with open(image["path"], "rb") as fh:
        assert base64.b64decode(made.content[1].data) == fh.read()
    assert json.loads(status.content[0].text)["ready_workers"] == 1
    assert json.loads(history.content[0].text)[0]["prompt"] == "mcp green triangle"
    (row,) = landed(ready, "mcp green triangle")
    assert (row["origin"], row["state"], row["images"][0]["path"]) == ("api", "done", image["path"])
    assert json.loads(got.content[0].text)["path"] == image["path"] and got.content[1].data == made.content[1].data


def test_mcp_tools_need_a_key_on_loopback_too(ready, auth):
    """Without a key (or with a wrong one) the MCP client cannot even list the tools, let alone read the
    history or an image's bytes; the person may turn keyless loopback on in Settings (tested below)."""
    async def attempt(headers: dict[str, str] | None, statuses: list[int]) -> str:
        try:
            async with mcp_client(f"{ready.base}/mcp", headers, statuses) as client:
                await client.call_tool("get_image", {"image_id": 1})
        except Exception:  # the SDK's "Server returned an error response", inside a task group
            return "refused"
        return "answered"

    for headers in (None, {"Authorization": "Bearer local"}, {"Authorization": "Bearer zx-00000000-forged"}):
        statuses: list[int] = []
        assert run_async(lambda h=headers, s=statuses: attempt(h, s)) == "refused", headers
        assert statuses and set(statuses) == {401}, (headers, statuses)
    statuses = []
    assert run_async(lambda: attempt(auth, statuses)) == "answered" and statuses and max(statuses) < 300
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "list_history", "arguments": {"limit": 5}}}
    accept = {"Accept": "application/json, text/event-stream"}
    refused = httpx.post(f"{ready.base}/mcp", json=call, headers=accept)
    assert refused.status_code == 401 and "prompt" not in refused.text
    allowed = httpx.post(f"{ready.base}/mcp", json=call, headers={**accept, **auth}, timeout=60)
    assert allowed.status_code == 200, allowed.text[:300]
    rows = json.loads(allowed.json()["result"]["content"][0]["text"])
    assert rows and all("prompt" in row for row in rows)


# ---------------------------------------------------------------- LoRAs (issue 19)


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


# ---------------------------------------------------------------- keys, pause, settings


def test_gradio_client_calls_the_named_endpoint_with_a_key(ready, keys):
    from gradio_client import Client

    _record, key = keys.create("gradio-test")
    client = Client(ready.base, headers={"Authorization": f"Bearer {key}"}, verbose=False, download_files=False,
                    analytics_enabled=False)
    out = client.predict(prompt="gradio yellow star", width=256, height=256, steps=2, seed=21, api_name="/generate")
    (image,) = out["images"]
    assert (image["status"], image["seed"]) == ("done", 21) and os.path.isfile(image["path"])
    (row,) = landed(ready, "gradio yellow star")
    assert row["images"][0]["path"] == image["path"]
    # Without the window's cookie and without a key the same endpoint stays shut.
    refused = httpx.post(f"{ready.base}/gradio_api/call/generate", json={"data": ["gradio never"]})
    assert refused.status_code == 403
    assert landed(ready, "gradio never") == []


def test_pause_holds_api_calls_cancel_ends_them_and_a_full_queue_says_429(ready, keys, auth):
    studio = ready.studio
    url = f"{ready.base}/v1/images/generations"
    answers: dict[str, httpx.Response] = {}

    def call(prompt: str) -> None:
        answers[prompt] = httpx.post(url, json={"prompt": prompt, "size": "256x256", "steps": 2}, headers=auth,
                                     timeout=120)

    keys.set_options(queue_limit=1)
    studio.pause()
    try:
        held = threading.Thread(target=call, args=("held while paused",))
        held.start()
        deadline = time.monotonic() + 30
        while not landed(ready, "held while paused"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.5)
        assert held.is_alive() and studio.queue_length() == 1  # waiting, not drawn, not refused
        full = httpx.post(url, json={"prompt": "over the limit", "size": "256x256"}, headers=auth, timeout=30)
        assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full"
        (row,) = landed(ready, "held while paused")
        assert studio.cancel(row["request_id"])
        held.join(30)
        assert answers["held while paused"].status_code == 409
        assert answers["held while paused"].json()["error"]["code"] == "cancelled"

        resumed = threading.Thread(target=call, args=("drawn after resume",))
        resumed.start()
        time.sleep(1.0)
        assert resumed.is_alive()
    finally:
        studio.resume()
        keys.set_options(queue_limit=256)
    resumed.join(60)
    assert answers["drawn after resume"].status_code == 200
    assert landed(ready, "over the limit") == []
    assert [r["state"] for r in landed(ready, "drawn after resume")] == ["done"]


def test_settings_creates_a_key_shown_once_and_revokes_it(ready, page, keys):
    """Settings → API in the real window (Chinese): the new key is shown once and works; revoked, it stops."""
    from tests.e2e.test_ui_e2e import box, open_tab

    open_tab(page, "设置")
    page.locator("#settings-api").get_by_text("API（脚本与智能体）").first.click()
    box(page, "api-key-name").fill("界面密钥")
    page.locator("#api-key-create").click()
    shown = page.locator("#api-key-shown code")
    shown.wait_for()
    plain = shown.inner_text().strip()
    (record,) = [k for k in keys.list() if k.name == "界面密钥"]
    assert plain.startswith(f"zx-{record.id}-") and keys.verify(plain) == record
    page.locator("#api-keys").get_by_text(record.id).wait_for()
    assert plain not in page.locator("#api-keys").inner_text()

    assert keys.config().require_key_on_loopback and page.locator("#api-require input").is_checked()
    assert httpx.get(f"{ready.base}/v1/models").status_code == 401
    assert httpx.get(f"{ready.base}/v1/models", headers={"Authorization": f"Bearer {plain}"}).status_code == 200
    box(page, "api-key-id").fill(record.id)
    page.locator("#api-key-revoke").click()
    page.locator("#api-key-shown").get_by_text(f"密钥 {record.id} 已吊销").wait_for()
    assert httpx.get(f"{ready.base}/v1/models", headers={"Authorization": f"Bearer {plain}"}).status_code == 401

    # The person may let this machine's programs in without a key: their choice, made in the window.
    page.locator("#api-require input").uncheck()
    try:
        deadline = time.monotonic() + 30
        while keys.config().require_key_on_loopback:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.get(f"{ready.base}/v1/models").status_code == 200
    finally:
        page.locator("#api-require input").check()
        deadline = time.monotonic() + 30
        while not keys.config().require_key_on_loopback:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert httpx.get(f"{ready.base}/v1/models").status_code == 401


def test_settings_sets_the_api_limits_and_refuses_a_bad_one_in_one_line(ready, page, keys, key):
    """Settings → API's limits in the real window (Chinese): the boxes show api.json's values; a bad upload
    budget is one line and saves nothing; a good one is saved through the page and the edits route
    holds to it at once (an edit body over the whole budget gets 413), and the default back lets it in."""
    import openai

    from tests.e2e.test_ui_e2e import box, open_tab

    open_tab(page, "设置")
    if not page.locator("#api-uploads-mb").is_visible():
        page.locator("#settings-api").get_by_text("API（脚本与智能体）").first.click()
    from playwright.sync_api import expect

    before = keys.config()  # the module's key fixture raised the rate after the window was built: shown all the same
    for name, value in (("rate-per-min", before.rate_per_min), ("queue-limit", before.queue_limit),
                        ("uploads-mb", before.uploads_mb)):
        expect(box(page, f"api-{name}")).to_have_value(str(value))
    said = page.locator("#api-limits-said")

    def save(uploads: str, expect: str) -> None:
        box(page, "api-uploads-mb").fill(uploads)
        page.locator("#api-limits-save").click()
        said.get_by_text(expect).wait_for()

    save("0", "编辑上传总量应为 1 到 65536 的整数（MB）。")
    assert "⚠" in said.inner_text() and "Traceback" not in said.inner_text()
    assert keys.config() == before  # nothing saved, the other boxes' values neither
    save("1.5", "编辑上传总量应为 1 到 65536 的整数（MB）。")
    assert keys.config() == before

    noise = io.BytesIO()  # about 2 MB of PNG: incompressible pixels
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (832, 832, 3), dtype=np.uint8)).save(noise, "PNG")
    assert noise.tell() > 1 << 20
    client = openai.OpenAI(base_url=f"{ready.base}/v1", api_key=key, max_retries=0, timeout=60)
    save("1", f"已保存：每分钟 {before.rate_per_min} 次，队列 {before.queue_limit} 张，上传 1 MB。")
    try:
        assert keys.config().uploads_mb == 1
        with pytest.raises(openai.APIStatusError) as over:  # a body over the whole budget: 413, never retried
            client.images.edit(image=("big.png", noise.getvalue(), "image/png"), prompt="never drawn over budget")
        assert over.value.status_code == 413 and over.value.body["code"] == "over_uploads_budget"
        assert "1 MB" in over.value.body["message"]
    finally:
        save(str(before.uploads_mb), f"上传 {before.uploads_mb} MB。")
    assert keys.config() == before
    assert landed(ready, "never drawn over budget") == []


@pytest.fixture(scope="module")
def lan(ready):
    """The same studio served again, bound to every interface (so a login and keys are required)."""
    from studio.ui.server import serve

    url, stop = serve(ready.studio, "0.0.0.0", 7870, auth=("admin", "pass-word-42"), lang="en")
    port = int(url.split("/?", 1)[0].rsplit(":", 1)[1])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop()


def test_beyond_loopback_every_api_call_needs_a_live_key(lan, ready, keys):
    record, key = keys.create("lan-test")
    body = {"prompt": "lan blue circle", "size": "256x256", "steps": 2}
    mcp_list = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    mcp_headers = {"Accept": "application/json, text/event-stream"}
    for headers in ({}, {"Authorization": "Bearer local"}, {"Authorization": "Bearer zx-00000000-forged"}):
        assert httpx.get(f"{lan}/v1/models", headers=headers).status_code == 401
        refused = httpx.post(f"{lan}/v1/images/generations", json=body, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        assert httpx.post(f"{lan}/mcp", json=mcp_list, headers={**headers, **mcp_headers}).status_code == 401
        multipart = httpx.post(f"{lan}/v1/images/edits", files={"image": b"png"}, data={"prompt": "lan never"},
                               headers=headers)
        assert multipart.status_code == 401
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{lan}/v1/models", headers=auth).status_code == 200
    assert httpx.post(f"{lan}/mcp", json=mcp_list, headers={**auth, **mcp_headers}).status_code == 200
    made = httpx.post(f"{lan}/v1/images/generations", json={**body, "response_format": "url"}, headers=auth,
                      timeout=120)
    assert made.status_code == 200 and len(made.json()["data"]) == 1
    image_url = made.json()["data"][0]["url"]
    assert image_url.startswith(f"{lan}/v1/images/files/")
    assert httpx.get(image_url).status_code == 401  # the image too is for the key holder only
    assert httpx.get(image_url, headers=auth).content.startswith(b"\x89PNG")

    revoked = subprocess.run([sys.executable, "-m", "studio", "keys", "revoke", record.id], env=cli_env(ready.home),
                             capture_output=True, text=True, timeout=120)
    assert revoked.returncode == 0, revoked.stderr
    listed = subprocess.run([sys.executable, "-m", "studio", "keys", "list"], env=cli_env(ready.home),
                            capture_output=True, text=True, timeout=120)
    assert f"{record.id}  revoked" in listed.stdout and key not in listed.stdout
    assert httpx.get(f"{lan}/v1/models", headers=auth).status_code == 401
    assert httpx.post(f"{lan}/v1/images/generations", json=body, headers=auth).status_code == 401
    assert httpx.post(f"{lan}/gradio_api/call/generate", json={"data": ["x"]}, headers=auth).status_code == 401
    assert httpx.get(image_url, headers=auth).status_code == 401
    assert len(landed(ready, "lan blue circle")) == 1


def test_zaoxiang_keys_create_prints_a_working_key_once(ready, keys):
    """A person without the window gets a key from the terminal: printed once on stdout, stored hashed."""
    made = subprocess.run([sys.executable, "-m", "studio", "keys", "create", "terminal"], env=cli_env(ready.home),
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    (plain,) = made.stdout.split()
    assert plain.startswith("zx-") and "shown only now" in made.stderr and plain not in made.stderr
    assert plain not in keys.path.read_text() and keys.verify(plain).name == "terminal"
    assert httpx.get(f"{ready.base}/v1/models", headers={"Authorization": f"Bearer {plain}"}).status_code == 200
    listed = subprocess.run([sys.executable, "-m", "studio", "keys", "list"], env=cli_env(ready.home),
                            capture_output=True, text=True, timeout=120)
    assert "terminal" in listed.stdout and plain not in listed.stdout


def test_zaoxiang_mcp_over_stdio_generates(ready):
    """`zaoxiang mcp` as an agent starts it: its own workers, the same history, nothing but protocol on stdout."""
    from mcp import Client, StdioServerParameters

    env = cli_env(ready.home)
    params = StdioServerParameters(command=sys.executable, args=["-m", "studio", "mcp", "--workers", "cpu:1"],
                                   env=env, cwd=os.getcwd())

    async def session():
        async with Client(params, read_timeout_seconds=300) as client:
            tools = await client.list_tools()
            made = await client.call_tool("generate", {"prompt": "stdio purple ring", "size": "256x256",
                                                       "seed": 5, "steps": 2})
            return tools, made

    tools, made = run_async(session)
    assert {t.name for t in tools.tools} == TOOLS
    assert not made.is_error, made.content
    (image,) = json.loads(made.content[0].text)["images"]
    assert image["seed"] == 5 and os.path.isfile(image["path"])
    (row,) = landed(ready, "stdio purple ring")
    assert (row["origin"], row["state"]) == ("api", "done")
