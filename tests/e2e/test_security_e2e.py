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
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from studio.core.launch_link import TICKET_LIFE_S, TOKEN_PARAM, link_base, make_ticket, new_secret
from studio.core.passwords import verify_password
from studio.core.request import GenerationRequest
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


def test_a_launch_link_opens_the_window_once_and_only_for_a_minute(app):
    """A browser's command line shows its link to every local user, as long as the window is open: the
    link becomes a private cookie once, within a minute, and then opens nothing."""
    link = app.url
    ticket = link.split(f"{TOKEN_PARAM}=", 1)[1]
    with httpx.Client(timeout=30) as client:
        assert client.head(link).status_code == 200  # a probe does not use the link up
        answer = client.get(link)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    set_cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    # The cookie is a session made for this opening, not the ticket nor the run's secret.
    cookie = answer.cookies[f"zx_session_{app.port}"]
    assert cookie not in (ticket, app.secret, app.cookie) and len(cookie) >= 40
    with httpx.Client(base_url=app.base, timeout=30) as client:
        assert client.get("/config", headers={"Cookie": f"zx_session_{app.port}={cookie}"}).status_code == 200
        assert client.get("/config", headers=app.headers).status_code == 200  # the fixture's session lives on
        for word in (ticket, app.secret):
            assert client.get("/config", headers={"Cookie": f"zx_session_{app.port}={word}"}).status_code == 403
        # The same link again, as a local user who read it in the browser's command line: refused, said why.
        again = client.get(link)
        assert again.status_code == 403 and "set-cookie" not in again.headers and "gradio_config" not in again.text
        assert "已经用过或已过期" in again.text
        # Opened again in the window that used it (its cookie): back to the page, no new session.
        back = client.get(link, headers={"Cookie": f"zx_session_{app.port}={cookie}"})
        assert back.status_code == 303 and back.headers["location"] == "/" and "set-cookie" not in back.headers
        # A link made with the run's own secret, but over a minute ago: refused the same way.
        stale = client.get(f"/?{TOKEN_PARAM}={make_ticket(app.secret, time.time() - TICKET_LIFE_S - 2)}")
        assert stale.status_code == 403 and "set-cookie" not in stale.headers and "已经用过或已过期" in stale.text
        # The cookie, the secret or a guess as the ticket: the plain gate page, nothing set.
        for word in (cookie, app.secret, "guess", make_ticket(new_secret())):
            wrong = client.get(f"/?{TOKEN_PARAM}={word}")
            assert wrong.status_code == 200 and "set-cookie" not in wrong.headers, word
            assert "gradio_config" not in wrong.text
    # Each fresh link (the tray's Open makes one each time) opens a session of its own.
    sessions = {httpx.get(app.url, timeout=30).cookies[f"zx_session_{app.port}"] for _ in range(2)}
    assert len(sessions) == 2 and cookie not in sessions


def test_a_cookie_of_one_run_opens_nothing_in_another(app):
    """Browsers send a 127.0.0.1 cookie to every port of it: another studio run (another port) gets this
    run's cookie too. It names its cookie for its port and knows only the sessions it made itself."""
    from studio.ui.server import serve

    secret = new_secret()
    first, stop = serve(app.studio, "127.0.0.1", app.port + 9, lang="zh", secret=secret)
    other = link_base(first).rstrip("/")
    port = int(other.rsplit(":", 1)[1])
    try:
        with httpx.Client(base_url=other, timeout=30) as client:
            for name in (f"zx_session_{app.port}", f"zx_session_{port}"):  # as sent, and renamed for that port
                assert client.get("/config", headers={"Cookie": f"{name}={app.cookie}"}).status_code == 403, name
            theirs = client.get("/?" + app.url.split("?", 1)[1])  # this run's link opens nothing there either
            assert theirs.status_code == 200 and "set-cookie" not in theirs.headers
            own = client.get(first)  # the positive control: that run's own link and cookie work there
            assert own.status_code == 303
            cookie = own.cookies[f"zx_session_{port}"]
            assert client.get("/config", headers={"Cookie": f"zx_session_{port}={cookie}"}).status_code == 200
        with httpx.Client(base_url=app.base, timeout=30) as client:  # and its cookie opens nothing here
            for name in (f"zx_session_{app.port}", f"zx_session_{port}"):
                assert client.get("/config", headers={"Cookie": f"{name}={cookie}"}).status_code == 403, name
    finally:
        stop()


def fn_index(app, api_name: str) -> int:
    """The fn_index the page uses for one of its events (as the review found them, from /config)."""
    config = httpx.get(f"{app.base}/config", headers=app.headers, timeout=30).json()
    (index,) = [d["id"] for d in config["dependencies"] if d.get("api_name") == api_name]
    return index


def join(app, headers: dict[str, str], body: dict) -> httpx.Response:
    return httpx.post(f"{app.base}/gradio_api/queue/join", json=body, headers=headers, timeout=30)


def completed(app, headers: dict[str, str], session_hash: str) -> dict:
    """The page's way to hear back from a joined event: its session's stream, until the event completes."""
    with httpx.stream("GET", f"{app.base}/gradio_api/queue/data", params={"session_hash": session_hash},
                      headers=headers, timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event never completed")


def test_an_api_key_reaches_only_the_named_endpoints(app):
    """The review's F3: a key minted a key by fn_index. Now a key calls the named endpoints (through
    gradio_client too) and nothing of the page's own: no key minting, no settings, at its rate limit."""
    from gradio_client import Client

    from studio.api.keys import KeyStore

    keys = KeyStore(app.studio.paths.config_dir)
    record, key = keys.create("limited-script")
    auth = {"Authorization": f"Bearer {key}"}
    before_keys, before_settings = {k.id for k in keys.list()}, saved(app)
    create = fn_index(app, "on_create")
    # The review's exact request, then the same by api_name, by another route, and with the index as text.
    minted = join(app, auth, {"data": ["minted-by-key"], "fn_index": create, "session_hash": "sh1", "event_data": None})
    assert minted.status_code == 403 and "generate" in minted.json()["detail"]
    assert join(app, auth, {"data": ["minted-by-key"], "fn_index": str(create), "session_hash": "sh1"}).status_code == 403
    assert join(app, auth, {"data": ["minted-by-key"], "session_hash": "sh1"}).status_code == 403
    assert call(app.base, "on_create", ["minted-by-key"], auth) == (403, None)
    assert call(app.base, "do_save", SAVE, auth) == (403, None)
    for path in ("/gradio_api/run/generate", "/gradio_api/api/generate", "/gradio_api/call/v2/generate"):
        body = {"data": ["minted-by-key"], "fn_index": create}
        assert httpx.post(f"{app.base}{path}", json=body, headers=auth, timeout=30).status_code == 403, path
    for path in ("/gradio_api/upload", "/gradio_api/cancel", "/gradio_api/reset"):
        assert httpx.post(f"{app.base}{path}", json={}, headers=auth, timeout=30).status_code == 403, path
    assert httpx.get(f"{app.base}/", headers=auth, timeout=30).status_code == 403
    big = {"data": ["x" * (2 << 20)], "fn_index": fn_index(app, "generate"), "session_hash": "sh1"}
    assert join(app, auth, big).status_code == 413
    assert {k.id for k in keys.list()} == before_keys and saved(app) == before_settings
    # The window's own session still mints keys this way (the positive control for the refusals above).
    window = {**app.headers, "Origin": app.base}
    own = join(app, window, {"data": ["minted-by-window"], "fn_index": create, "session_hash": "sh2",
                             "event_data": None})
    assert own.status_code == 200 and completed(app, window, "sh2")["success"]

    # What a key is for: gradio_client's named endpoints.
    client = Client(app.base, headers=auth, verbose=False, download_files=False, analytics_enabled=False)
    out = client.predict(prompt="a key's green star", width=256, height=256, steps=2, seed=5, api_name="/generate")
    (image,) = out["images"]
    assert (image["status"], image["seed"]) == ("done", 5)
    assert call(app.base, "history", ["a key's green star", False, 5], auth)[0] == 200

    # Revoked, the key opens nothing, and it left no key of its own behind.
    keys.revoke(record.id)
    assert call(app.base, "history", ["", False, 5], auth) == (403, None)
    assert join(app, auth, {"data": ["x"], "fn_index": create, "session_hash": "sh3"}).status_code == 403
    assert [k.name for k in keys.list() if k.active and k.id not in before_keys] == ["minted-by-window"]


def test_a_key_downloads_the_images_its_calls_made_and_no_other(app, tmp_path):
    """gradio_client downloads every path in an answer from `/gradio_api/file=`, with the call's key: a key
    gets the images its own calls made there, and no other file (another key's image, the window's)."""
    from gradio_client import Client

    from studio.api.keys import KeyStore

    keys = KeyStore(app.studio.paths.config_dir)
    record, key = keys.create("downloads")
    _other_record, other_key = keys.create("downloads-other")

    def client(plain: str, download: Path | None = None) -> Client:
        return Client(app.base, headers={"Authorization": f"Bearer {plain}"}, verbose=False, analytics_enabled=False,
                      download_files=str(download) if download else False)

    def generate(plain: str, prompt: str, seed: int, download: Path | None = None) -> dict:
        return client(plain, download).predict(prompt=prompt, width=256, height=256, steps=2, seed=seed,
                                               api_name="/generate")

    def fetch(path: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.get(f"{app.base}/gradio_api/file={quote(path, safe='/')}", headers=headers, timeout=30)

    # The real client, downloading as it does by default: the image lands here, byte for byte.
    (local,) = generate(key, "a key's own blue star", 9, tmp_path)["images"]
    (row,) = [r for r in app.studio.history(limit=50) if r["prompt"] == "a key's own blue star"]
    assert tmp_path in Path(local).parents
    assert Path(local).read_bytes() == Path(row["images"][0]["path"]).read_bytes()

    # The paths, and what else a key may fetch from there.
    (mine,) = generate(key, "a key's own red ring", 10)["images"]
    (theirs,) = generate(other_key, "another key's ring", 11)["images"]
    auth, other = {"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {other_key}"}
    own = fetch(mine["path"], auth)
    assert own.status_code == 200 and own.content == Path(mine["path"]).read_bytes()
    assert fetch(theirs["path"], other).status_code == 200
    refused = fetch(theirs["path"], auth)  # another key's image
    assert refused.status_code == 403 and "自己的调用" in refused.json()["detail"]
    assert fetch(mine["path"], other).status_code == 403
    window = app.studio.wait(app.studio.submit(GenerationRequest("the window's star", width=256, height=256,
                                                                  steps=2)), timeout=240)[0]["path"]
    for path in (window, "/etc/passwd", str(app.studio.paths.settings_file), str(Path(mine["path"]).parent),
                 f"{Path(mine['path']).parent}/../{Path(mine['path']).parent.name}/{Path(theirs['path']).name}"):
        assert fetch(path, auth).status_code == 403, path
    assert fetch(mine["path"], {}).status_code == 403  # no key, no cookie
    assert fetch(window, app.headers).status_code == 200  # the window's session sees every image the store knows
    keys.revoke(record.id)
    assert fetch(mine["path"], auth).status_code == 403  # revoked, the key fetches nothing


def test_a_key_keeps_to_its_rate_and_the_queue_limit_on_gradio_routes(app):
    from studio.api.keys import KeyStore

    keys = KeyStore(app.studio.paths.config_dir)
    _record, key = keys.create("rate-test")
    auth = {"Authorization": f"Bearer {key}"}
    old = keys.config()
    keys.set_options(rate_per_min=2)
    try:
        answers = [call(app.base, "history", ["", False, 1], auth)[0] for _ in range(3)]
        assert answers == [200, 200, 429], answers
        refused = httpx.post(f"{app.base}/gradio_api/call/history", json={"data": ["", False, 1]}, headers=auth)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["type"] == "rate_limit_error"
    finally:
        keys.set_options(rate_per_min=old.rate_per_min)
    # A full queue refuses the named generate endpoint as it refuses /v1 and /mcp.
    auth = {"Authorization": f"Bearer {keys.create('queue-test')[1]}"}  # a key with its whole rate left
    keys.set_options(queue_limit=1)
    app.studio.pause()
    held = app.studio.submit(GenerationRequest("held for the queue limit", width=256, height=256, steps=2))
    try:
        status, result = call(app.base, "generate", ["over the queue limit", "", 256, 256, 2, 0.0, 1, 1], auth)
        assert (status, result) == (200, "error")
        assert not [r for r in app.studio.history(limit=50) if r["prompt"] == "over the queue limit"]
    finally:
        app.studio.cancel(held)
        app.studio.resume()
        keys.set_options(queue_limit=old.queue_limit)


def test_the_pwa_icon_is_no_open_door(app):
    """The review's F5: /pwa_icon/6000 resized an icon for 12 s on the event loop, for anyone."""
    with httpx.Client(base_url=app.base, timeout=30) as client:
        for path in ("/pwa_icon/6000", "/gradio_api/pwa_icon/6000"):
            t0 = time.monotonic()
            answer = client.get(path)
            took = time.monotonic() - t0
            assert answer.status_code == 403 and took < 2.0, (path, answer.status_code, took)
        assert client.get("/favicon.ico").status_code == 200  # the page's real static files stay open


def test_no_page_may_frame_the_studio(app, browser):
    """The review's F6: a page on another 127.0.0.1 port framed the logged-in window. Every answer now
    forbids frames, and Chromium shows nothing of the studio in such a page's iframe."""
    with httpx.Client(base_url=app.base, timeout=30) as client:
        for path, headers in (("/", app.headers), ("/config", app.headers), ("/", {}), ("/config", {}),
                              ("/?" + app.url.split("?", 1)[1], {}), ("/v1/models", {}), ("/favicon.ico", {})):
            answer = client.get(path, headers=headers)
            assert answer.headers["x-frame-options"] == "DENY", path
            assert answer.headers["content-security-policy"] == "frame-ancestors 'none'", path
    pages: dict[str, bytes] = {}

    class Other(BaseHTTPRequestHandler):  # a page on another 127.0.0.1 port (a dev server, a notebook)
        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    other = f"http://127.0.0.1:{server.server_address[1]}"
    pages["/"] = f"<iframe id=studio src='{app.base}/'></iframe><iframe id=own src='{other}/own'></iframe>".encode()
    pages["/own"] = b"<p id=own-text>framed fine</p>"
    context = browser.new_context()
    context.add_cookies([{"name": f"zx_session_{app.port}", "value": app.cookie, "url": app.base,
                          "httpOnly": True, "sameSite": "Strict"}])
    try:
        page = context.new_page()
        studio_url = f"{app.base}/"
        with page.expect_response(lambda r: r.url == studio_url) as answered, \
                page.expect_event("requestfailed", lambda r: r.url == studio_url) as failed:
            page.goto(f"{other}/")
        assert answered.value.status == 200  # the cookie went along (same site): only the headers keep it out
        assert failed.value.failure == "net::ERR_BLOCKED_BY_RESPONSE"
        page.frame_locator("#own").locator("#own-text").wait_for()  # a frame that may be shown is
        framed = page.query_selector("#studio").content_frame()
        assert framed is not None and not framed.url.startswith(app.base)
        assert framed.query_selector("#prompt") is None
    finally:
        context.close()
        server.shutdown()


def test_an_oversized_generation_body_gets_a_clear_413(app):
    """The review's F7: /v1/images/generations read any body whole. Now 1 MiB, as said, or as sent."""
    from studio.api.keys import KeyStore

    _record, key = KeyStore(app.studio.paths.config_dir).create("body-test")
    url = f"{app.base}/v1/images/generations"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = json.dumps({"prompt": "never drawn " + "x" * (2 << 20)}).encode()

    def chunks():
        for at in range(0, len(body), 65536):
            yield body[at:at + 65536]

    for content in (body, chunks()):  # a Content-Length over the limit, then a chunked body that passes it
        answer = httpx.post(url, content=content, headers=headers, timeout=60)
        assert answer.status_code == 413
        error = answer.json()["error"]
        assert error["code"] == "body_too_large" and error["type"] == "invalid_request_error"
        assert "1 MB" in error["message"] and "generation" in error["message"]
    assert not [r for r in app.studio.history(limit=50) if r["prompt"].startswith("never drawn")]


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
