"""Nobody in: the window's server refused as an attacker would try it, over real HTTP to 127.0.0.1.

One real studio (demo model, one CPU worker) served by the real server; forged Host and Origin
headers stand for a DNS-rebinding or cross-site page, a missing cookie for any other local program.
Each refusal has its positive control: the same call with the page's cookie works, and the real
page in Chromium saves. Tests run in file order on one app instance.
"""

from __future__ import annotations

import json
import stat
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from studio.core.passwords import verify_password
from tests.e2e.test_ui_e2e import box, open_tab

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "s3cret-Pass-42"
# do_save's inputs: model, memory profile, workers, output folder, language, host, port, user, password
SAVE = ["", "12gb", "cpu:1", "", "zh", "127.0.0.1", 7860, "", "", "never"]  # the Settings form, in FORM_FIELDS order


def call(base: str, api: str, data: list, headers: dict[str, str] | None = None) -> tuple[int, object]:
    """A Gradio API call as a script would make it: (status of the POST, the handler's output or None)."""
    with httpx.Client(base_url=base, timeout=60, headers=headers or {}) as client:
        posted = client.post(f"/gradio_api/call/{api}", json={"data": data})
        if posted.status_code != 200:
            return posted.status_code, None
        event = posted.json()["event_id"]
        with client.stream("GET", f"/gradio_api/call/{api}/{event}") as stream:
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    return posted.status_code, json.loads(line[5:]) if kind == "complete" else "error"
    return posted.status_code, None


def saved(app) -> dict:
    path = app.studio.paths.settings_file
    return tomllib.loads(path.read_text()) if path.exists() else {}


def test_the_settings_call_needs_the_page_cookie_its_host_and_its_origin(app):
    from studio.ui.settings import FORM_FIELDS

    assert len(SAVE) == len(FORM_FIELDS)  # a new setting adds a value here, or every call below errs
    base, cookie = app.base, app.headers
    before = saved(app)
    forged = {
        "foreign Host (DNS rebinding)": {**cookie, "Host": "evil.example:7901"},
        "foreign Origin": {**cookie, "Origin": "http://evil.example"},
        "foreign Origin, our host name": {**cookie, "Origin": f"http://localhost.evil.example:{app.port}"},
        "null Origin": {**cookie, "Origin": "null"},
        "no cookie": {},
        "no cookie, our Origin": {"Origin": base},
        "wrong cookie": {"Cookie": f"zx_session_{app.port}=guess"},
        "bearer without keys": {"Authorization": "Bearer anything"},
    }
    for name, headers in forged.items():
        status, result = call(base, "do_save", SAVE, headers)
        assert status in (401, 403) and result is None, name
        assert saved(app) == before, name
    with httpx.Client(base_url=base, timeout=30) as client:
        for path in ("/gradio_api/queue/join", "/gradio_api/upload", "/gradio_api/reset", "/gradio_api/cancel",
                     "/gradio_api/run/do_save", "/gradio_api/api/do_save", "/gradio_api/call/v2/do_save"):
            assert client.post(path, json={}).status_code == 403, path
        for path in ("/config", "/gradio_api/info", "/gradio_api/openapi.json", "/gradio_api/heartbeat/x"):
            assert client.get(path).status_code == 403, path
        gate = client.get("/")  # the page without the launch link: a pointer, no app
        assert gate.status_code == 200 and "gradio_config" not in gate.text and "zaoxiang" in gate.text
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 403
    # The positive control: the same call from the studio's own page (cookie, own Origin) saves.
    status, result = call(base, "do_save", SAVE, {**cookie, "Origin": base})
    assert status == 200 and "设置已保存" in json.dumps(result, ensure_ascii=False)
    assert saved(app)["memory_profile"] == "12gb"


def test_the_launch_link_becomes_a_private_cookie(app):
    with httpx.Client(timeout=30) as client:
        answer = client.get(app.url)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    set_cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    with httpx.Client(timeout=30) as client:  # a wrong token sets nothing and opens nothing
        wrong = client.get(f"{app.base}/?zx_token=guess")
        assert wrong.status_code == 200 and "set-cookie" not in wrong.headers and "gradio_config" not in wrong.text


def test_the_real_page_saves_and_shows_no_password(page, app):
    open_tab(page, "设置")
    box(page, "settings-workers").wait_for()
    page.locator("#settings-memory input").first.click()
    page.get_by_role("option", name="24 GB").click()
    box(page, "settings-user").fill("me")
    box(page, "settings-password").fill(PASSWORD)
    page.click("#settings-save")
    page.wait_for_function("document.querySelector('#settings-status').innerText.includes('设置已保存')")
    stored = saved(app)
    assert stored["memory_profile"] == "24gb" and stored["auth_user"] == "me"
    assert verify_password(PASSWORD, stored["auth_password"])
    path = app.studio.paths.settings_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and PASSWORD not in path.read_text()

    # Nothing the server answers holds the password or its hash: /config, the tab's reload, the page.
    secret_bits = (PASSWORD, stored["auth_password"], stored["auth_password"].split("$")[-1])
    with httpx.Client(base_url=app.base, timeout=30, headers=app.headers) as client:
        config = client.get("/config")
        assert config.status_code == 200 and "settings-password" in config.text
        assert not any(bit in config.text for bit in secret_bits)
    status, result = call(app.base, "reload", [], app.headers)
    assert status == 200 and result is not None and "me" in json.dumps(result)
    assert not any(bit in json.dumps(result) for bit in secret_bits)
    page.reload()
    page.wait_for_selector("#prompt textarea")
    open_tab(page, "设置")
    page.wait_for_function("document.querySelector('#settings-user input, #settings-user textarea').value === 'me'")
    assert box(page, "settings-password").input_value() == ""
    assert not any(bit in page.content() for bit in secret_bits)

    # Saving again with the box empty keeps the password.
    page.click("#settings-save")
    page.wait_for_function("document.querySelector('#settings-status').innerText.includes('没有改动')")
    assert saved(app)["auth_password"] == stored["auth_password"]


def test_a_system_folder_as_output_folder_is_refused(page, app):
    before = saved(app)
    open_tab(page, "设置")
    box(page, "settings-output").fill("/etc")
    page.click("#settings-save")
    page.wait_for_function("document.querySelector('#settings-status').innerText.includes('系统文件夹')")
    box(page, "settings-output").fill("")
    for folder in ("/", "/etc", "/proc/1", str(Path.home()), str(app.studio.paths.config_dir.parent)):
        status, result = call(app.base, "do_save", [*SAVE[:3], folder, *SAVE[4:7], "me", "", SAVE[9]],
                              {**app.headers, "Origin": app.base})
        assert status == 200 and "⚠" in json.dumps(result, ensure_ascii=False), folder
    assert saved(app) == before and app.studio.settings.output_dir == ""


def test_files_are_served_only_when_the_studio_owns_them(app):
    from studio.core.request import GenerationRequest

    rid = app.studio.submit(GenerationRequest("a red star", width=256, height=256, steps=2))
    image = Path(app.studio.wait(rid, timeout=240)[0]["path"])
    stray = image.with_name("not-ours.png")  # in the output folder, but no image the store knows
    stray.write_bytes(image.read_bytes())
    with httpx.Client(base_url=app.base, timeout=30, headers=app.headers) as client:
        def get(target: str) -> int:
            return client.get(f"/gradio_api/file={quote(target, safe='/')}").status_code

        assert get(str(image)) == 200  # the positive control
        for target in ("/etc/passwd", "/etc/shadow", str(stray), str(app.studio.paths.settings_file),
                       str(app.studio.paths.database), f"{image.parent}/../../../config/settings.toml"):
            assert get(target) in (403, 404), target
        assert client.get("/gradio_api/proxy=http://127.0.0.1:9/").status_code == 403
    with httpx.Client(base_url=app.base, timeout=30) as client:  # without the cookie, not even our image
        assert client.get(f"/gradio_api/file={quote(str(image), safe='/')}").status_code == 403


def test_with_a_login_every_call_needs_it_and_guessing_is_slowed(app, browser):
    from studio.ui.server import serve

    url, stop = serve(app.studio, "127.0.0.1", app.port + 7, auth=("me", PASSWORD), lang="zh")
    base = url.partition("/?")[0]
    secret_bits = [bit for bit in (PASSWORD, saved(app).get("auth_password")) if bit]  # the hash, once saved above
    try:
        # The real login page in Chromium lets the person in.
        context = browser.new_context(locale="zh-CN")
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(base)
        page.locator("input[type=text]").first.fill("me")
        page.locator("input[type=password]").first.fill(PASSWORD)
        page.get_by_role("button").last.click()
        page.wait_for_selector("#prompt textarea")
        assert not any(bit in page.content() for bit in secret_bits)
        context.close()

        with httpx.Client(base_url=base, timeout=30) as client:
            shell = client.get("/")  # the login page's shell: Gradio embeds the API's defaults here
            assert shell.status_code == 200 and not any(bit in shell.text for bit in secret_bits)
            config = client.get("/config")
            assert config.status_code == 401 and PASSWORD not in config.text
            for path in ("/gradio_api/reset", "/gradio_api/cancel", "/gradio_api/queue/join"):
                body = {"session_hash": "x", "fn_index": 0, "event_id": "x"}
                assert client.post(path, json=body).status_code == 401, path
            assert client.post("/login", data={"username": "me", "password": PASSWORD},
                               headers={"Origin": "http://evil.example"}).status_code == 403
            answers = []
            t0 = time.monotonic()
            for _ in range(40):
                answers.append(client.post("/login", data={"username": "me", "password": "guess"}).status_code)
            took = time.monotonic() - t0
            assert answers[:5] == [400] * 5 and answers.count(400) <= 6 and 429 in answers, (answers, took)
            locked = client.post("/login", data={"username": "me", "password": PASSWORD})
            assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
            time.sleep(float(locked.headers["retry-after"]))
            ok = client.post("/login", data={"username": "me", "password": PASSWORD})
            assert ok.status_code == 200
            config = client.get("/config")
            assert config.status_code == 200 and PASSWORD not in config.text
            assert client.post("/gradio_api/reset", json={"session_hash": "x", "fn_index": 0,
                                                          "event_id": "x"}).status_code == 200
    finally:
        stop()


def test_allowed_hosts_follow_the_bound_address():
    import socket

    from studio.ui.server import allowed_hosts

    local = allowed_hosts("127.0.0.1")
    assert {"127.0.0.1", "localhost", "::1"} <= local and socket.gethostname().lower() not in local
    everywhere = allowed_hosts("0.0.0.0")
    assert socket.gethostname().lower() in everywhere and local <= everywhere
    assert "evil.example" not in everywhere
