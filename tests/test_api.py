"""The API's pure parts: keys on disk, the rate limit, request parsing, readiness (issue 21)."""

from __future__ import annotations

import json
import stat
import time

import pytest

from studio.api.access import ApiAccess
from studio.api.errors import ApiError
from studio.api.keys import KeyStore, KeyStoreError, RateLimiter
from studio.api.service import ApiService, build_request, parse_size
from studio.core.request import MAX_COUNT


def test_keys_are_stored_hashed_in_a_private_file_and_revoked(tmp_path):
    keys = KeyStore(tmp_path)
    record, plain = keys.create("open-webui")
    assert plain.startswith(f"zx-{record.id}-") and len(plain) > 40
    text = keys.path.read_text()
    assert plain not in text and plain.split("-", 2)[2] not in text
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o600
    assert keys.verify(plain) == record
    assert keys.verify(plain[:-1] + ("A" if plain[-1] != "A" else "B")) is None
    assert keys.verify("local") is None
    other = KeyStore(tmp_path)  # another process (the CLI) revokes; this one sees it at its next check
    assert other.revoke(record.id).revoked is not None
    assert keys.verify(plain) is None
    with pytest.raises(KeyStoreError):
        other.revoke(record.id)
    assert [k.active for k in keys.list()] == [False]


def test_a_new_key_never_takes_a_revoked_keys_id(tmp_path, monkeypatch):
    """The history records which key asked for each image by its id (store/caller_images.py), so a new key
    drawing a revoked key's id would inherit its images: the id is drawn again."""
    import secrets

    keys = KeyStore(tmp_path)
    old, _plain = keys.create("old")
    keys.revoke(old.id)
    draws = iter([old.id, old.id, "0badc0de"])
    monkeypatch.setattr(secrets, "token_hex", lambda _n: next(draws))
    new, plain = keys.create("new")
    assert new.id == "0badc0de" and plain.startswith("zx-0badc0de-") and keys.verify(plain) == new
    assert [k.id for k in keys.list()] == [old.id, "0badc0de"]


def test_a_revoke_from_another_process_survives_a_settings_write_at_the_same_moment(tmp_path):
    """Relreview 3: Settings changes an option while `zaoxiang keys revoke` runs in another process,
    between Settings' read and its write. The revoke must not be undone by that write."""
    import subprocess
    import sys
    from dataclasses import replace
    from pathlib import Path

    server = KeyStore(tmp_path)
    record, plain = server.create("leaked")
    revoke = ("import sys; from studio.api.keys import KeyStore; print('go', flush=True); "
              "KeyStore(sys.argv[1]).revoke(sys.argv[2]); print('revoked', flush=True)")
    cli: list[subprocess.Popen] = []

    def change(config):  # what set_options does, with the other process let in while it runs
        proc = subprocess.Popen([sys.executable, "-c", revoke, str(tmp_path), record.id], stdout=subprocess.PIPE,
                                text=True, cwd=Path(__file__).resolve().parents[1])
        cli.append(proc)
        assert proc.stdout.readline().strip() == "go"
        try:
            proc.wait(timeout=3)  # unlocked, its revoke lands now; locked, it waits for this write
        except subprocess.TimeoutExpired:
            pass
        return replace(config, rate_per_min=7)

    server._update(change)
    assert cli[0].wait(timeout=60) == 0
    assert KeyStore(tmp_path).verify(plain) is None and server.verify(plain) is None
    assert server.config().rate_per_min == 7  # and the settings write stands too

def test_a_damaged_keys_file_fails_closed(tmp_path):
    keys = KeyStore(tmp_path)
    _record, plain = keys.create("a")
    keys.path.write_text("{not json")
    assert keys.verify(plain) is None
    assert ApiAccess(keys, loopback_only=True).key_required()


def test_rate_limit_per_key_refills_over_time():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("a", 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 3) == pytest.approx(20.0)  # 3 a minute: the next token in 20 s
    assert limiter.take("b", 3) == 0.0  # another key has its own bucket
    now[0] = 20.0
    assert limiter.take("a", 3) == 0.0
    assert limiter.take("a", 0) == 0.0  # 0: no limit


def test_keys_are_needed_on_loopback_too_until_the_person_turns_that_off(tmp_path):
    from starlette.datastructures import Headers

    keys = KeyStore(tmp_path)
    _record, plain = keys.create("k")
    json_post = {"content-type": "application/json"}
    local, lan = ApiAccess(keys, loopback_only=True), ApiAccess(keys, loopback_only=False)
    assert keys.config().require_key_on_loopback  # the default, written to the file with the first key
    for access, headers in ((local, {}), (local, {"authorization": "Bearer local"}),
                            (local, {"authorization": "Bearer zx-0-forged"}), (lan, {}),
                            (lan, {"authorization": "Bearer local"})):
        with pytest.raises(ApiError) as refused:
            access.check("POST", Headers({**json_post, **headers}))
        assert refused.value.status == 401 and refused.value.code in ("missing_api_key", "invalid_api_key")
    assert local.check("GET", Headers({"authorization": f"Bearer {plain}"})) == plain.split("-")[1]
    assert lan.check("GET", Headers({"authorization": f"Bearer {plain}"})) == plain.split("-")[1]
    # An api.json written before the setting existed (no such field) needs keys too.
    keys.path.write_text(json.dumps({"keys": []}))
    assert local.key_required() and ApiAccess(KeyStore(tmp_path / "none"), loopback_only=True).key_required()

    keys.set_options(require_key_on_loopback=False)  # Settings → API: the person's choice
    assert local.check("POST", Headers(json_post)) is None
    assert local.check("POST", Headers({**json_post, "authorization": "Bearer local"})) is None
    with pytest.raises(ApiError) as forged:  # a wrong studio key is refused even where none is needed
        local.check("POST", Headers({**json_post, "authorization": "Bearer zx-0-forged"}))
    assert forged.value.status == 401
    with pytest.raises(ApiError) as still:
        lan.check("POST", Headers(json_post))
    assert still.value.status == 401
    with pytest.raises(ApiError) as form:
        local.check("POST", Headers({"content-type": "application/x-www-form-urlencoded"}))
    assert form.value.status == 415


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    from starlette.datastructures import Headers

    keys = KeyStore(tmp_path)
    _record, plain = keys.create("k")
    local = ApiAccess(keys, loopback_only=True)
    keys.set_options(rate_per_min=1)
    with pytest.raises(ApiError):
        local.check("GET", Headers({}))
    assert local.check("GET", Headers({"authorization": f"Bearer {plain}"}))
    with pytest.raises(ApiError) as limited:
        local.check("GET", Headers({"authorization": f"Bearer {plain}"}))
    assert limited.value.status == 429 and limited.value.response().headers["retry-after"] == "60"


@pytest.mark.parametrize("size", ["13x7", "1024", "1000x1000", "4096x4096", "x", 512])
def test_a_bad_size_is_named(size):
    with pytest.raises(ApiError) as bad:
        parse_size(size, (1024, 1024))
    body = bad.value.body()["error"]
    assert (bad.value.status, body["param"], body["type"]) == (400, "size", "invalid_request_error")
    assert repr(size) in body["message"]


def test_openai_bodies_become_requests_with_openai_field_names():
    assert parse_size("auto", (256, 256)) == (256, 256) and parse_size("768X512", (0, 0)) == (768, 512)
    req = build_request({"prompt": " 猫 ", "n": 3, "size": "512x768", "seed": 9, "steps": 4, "guidance": 1.5,
                         "negative_prompt": "blur", "user": "ignored", "quality": "hd"}, (1024, 1024))
    assert (req.prompt, req.count, req.width, req.height, req.seed, req.seed_mode, req.steps, req.guidance,
            req.negative_prompt) == ("猫", 3, 512, 768, 9, "increment", 4, 1.5, "blur")
    for body, param in (({"prompt": ""}, "prompt"), ({}, "prompt"), ({"prompt": "x", "n": 0}, "n"),
                        ({"prompt": "x", "n": MAX_COUNT + 1}, "n"), ({"prompt": "x", "n": "2"}, "n"),
                        ({"prompt": "x", "steps": 0}, "steps"), ({"prompt": "x", "seed": -5}, "seed"),
                        ({"prompt": "x", "guidance": "lots"}, "guidance")):
        with pytest.raises(ApiError) as bad:
            build_request(body, (256, 256))
        assert bad.value.param == param, (body, bad.value)
        json.dumps(bad.value.body())


def test_no_ready_worker_is_503_and_a_full_queue_429(home):
    from studio.app import Studio

    studio = Studio(workers="cpu:1")  # not started: no worker is ready
    try:
        service = ApiService(studio, KeyStore(studio.paths.config_dir))
        with pytest.raises(ApiError) as unready:
            service.admit(1)
        assert unready.value.status == 503 and unready.value.response().headers["retry-after"] == "5"
        service.keys.set_options(queue_limit=2)
        with pytest.raises(ApiError) as full:
            service.admit(3)
        assert full.value.status == 429
    finally:
        studio.close()


def test_multipart_only_on_the_edits_route_and_only_with_a_bearer_header(tmp_path):
    from starlette.datastructures import Headers

    keys = KeyStore(tmp_path)
    keys.set_options(require_key_on_loopback=False)  # keyless loopback: still no multipart without the header
    local = ApiAccess(keys, loopback_only=True)
    form = {"content-type": "multipart/form-data; boundary=x"}
    assert local.check("POST", Headers({**form, "authorization": "Bearer sk-anything"}), multipart=True) is None
    with pytest.raises(ApiError) as headerless:  # what a web page's <form> would send
        local.check("POST", Headers(form), multipart=True)
    assert headerless.value.status == 401
    with pytest.raises(ApiError) as elsewhere:
        local.check("POST", Headers({**form, "authorization": "Bearer x"}))
    assert elsewhere.value.status == 415
    with pytest.raises(ApiError) as urlencoded:
        local.check("POST", Headers({"content-type": "application/x-www-form-urlencoded", "authorization": "Bearer x"}),
                    multipart=True)
    assert urlencoded.value.status == 415


def _request(body: bytes, content_type: str, chunk: int = 1 << 16, length: bool = True):
    from starlette.requests import Request

    parts = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    headers = [(b"content-type", content_type.encode())]
    if length:
        headers.append((b"content-length", str(len(body)).encode()))

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "path": "/v1/images/edits", "headers": headers,
                    "query_string": b""}, receive)


def _multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    import httpx

    req = httpx.Request("POST", "http://127.0.0.1/", data=fields, files=[(n, ("f.png", d, "image/png"))
                                                                        for n, d in files])
    return req.read(), req.headers["content-type"]


def test_multipart_edit_reads_like_the_json_form():
    import anyio

    from studio.api.multipart import read_form

    body, ctype = _multipart({"prompt": "猫", "n": "2", "seed": "7", "strength": "0.4", "steps": "many",
                              "size": "256x256"}, [("image[]", b"\x89PNG one"), ("image[]", b"two"), ("mask", b"m")])
    got = anyio.run(read_form, _request(body, ctype, chunk=50))
    assert got == {"prompt": "猫", "n": 2, "seed": 7, "strength": 0.4, "steps": "many", "size": "256x256",
                   "image": [b"\x89PNG one", b"two"], "mask": b"m"}
    with pytest.raises(ApiError) as broken:
        anyio.run(read_form, _request(b"--nope\r\n garbage", "multipart/form-data; boundary=zz"))
    assert broken.value.status == 400 and broken.value.code == "invalid_multipart"


def test_edit_bodies_in_flight_share_one_budget():
    """A declared length is held before anything is read; a chunked body holds its bytes as they come
    and is cut off with 429 the moment the budget has no room; released shares are room again."""
    import anyio

    from studio.api.multipart import bounded, read_form
    from studio.api.upload_budget import UploadBudget

    body, ctype = _multipart({"prompt": "x"}, [("image", bytes(5000))])
    budget = UploadBudget(lambda: 8000)
    first = budget.hold()
    bounded(_request(body, ctype), hold=first)
    assert budget.held == first.nbytes == len(body)
    second = budget.hold()
    with pytest.raises(ApiError) as declared:
        bounded(_request(body, ctype), hold=second)
    assert (declared.value.status, declared.value.code, declared.value.retry_after_s) == (429, "uploads_busy", 5.0)
    assert declared.value.response().headers["retry-after"] == "5" and second.nbytes == 0
    chunked = bounded(_request(body, ctype, chunk=1000, length=False), hold=second)
    with pytest.raises(ApiError) as streamed:
        anyio.run(read_form, chunked)
    assert streamed.value.status == 429 and budget.held <= 8000
    second.release()
    first.release()
    assert budget.held == 0
    third = budget.hold()
    assert anyio.run(read_form, bounded(_request(body, ctype, chunk=1000, length=False), hold=third))["image"] \
        == bytes(5000)
    assert third.nbytes == len(body)


def test_a_body_larger_than_the_whole_budget_gets_413_not_a_429_for_ever():
    """With `uploads_mb` below one body (it may be set as low as 1 MB), waiting cannot help: 413 naming
    the setting, declared or chunked, and nothing stays held."""
    import anyio

    from studio.api.multipart import bounded, read_form
    from studio.api.upload_budget import UploadBudget

    body, ctype = _multipart({"prompt": "x"}, [("image", bytes(5000))])
    budget = UploadBudget(lambda: 4000)
    hold = budget.hold()
    with pytest.raises(ApiError) as declared:
        bounded(_request(body, ctype), hold=hold)
    with pytest.raises(ApiError) as streamed:
        anyio.run(read_form, bounded(_request(body, ctype, chunk=1000, length=False), hold=hold))
    for refused in (declared.value, streamed.value):
        assert (refused.status, refused.code, refused.retry_after_s) == (413, "over_uploads_budget", None)
        assert "uploads_mb" in refused.message and "\n" not in refused.message
        assert refused.body()["error"]["type"] == "invalid_request_error"
    hold.release()
    assert budget.held == 0
    fits = budget.hold()  # a body within the budget still passes
    assert anyio.run(read_form, bounded(_request(*_multipart({"prompt": "x"}, [("image", bytes(2000))])),
                                        hold=fits))["image"] == bytes(2000)


def _trickle(body: bytes, content_type: str, chunk: int, pause_s: float, stall_after: int | None = None):
    """A Request whose body arrives `chunk` bytes every `pause_s` (its declared length sent first), and
    stops for good after `stall_after` chunks."""
    import anyio
    from starlette.requests import Request

    parts = [body[i:i + chunk] for i in range(0, len(body), chunk)]
    sent = 0

    async def receive():
        nonlocal sent
        if stall_after is not None and sent >= stall_after:
            await anyio.sleep_forever()
        await anyio.sleep(pause_s)
        sent += 1
        return {"type": "http.request", "body": parts[sent - 1], "more_body": sent < len(parts)}

    return Request({"type": "http", "method": "POST", "path": "/v1/images/edits", "query_string": b"",
                    "headers": [(b"content-type", content_type.encode()),
                                (b"content-length", str(len(body)).encode())]}, receive)


def test_a_body_that_stops_arriving_gets_408(monkeypatch):
    """Nothing for BODY_IDLE_S, or falling behind BODY_MIN_RATE after that grace: 408 in OpenAI's shape,
    so a declared length cannot hold the upload budget for ever; a body at a good pace passes."""
    import anyio

    from studio.api import multipart
    from studio.api.multipart import bounded, read_form

    monkeypatch.setattr(multipart, "BODY_IDLE_S", 0.5)
    monkeypatch.setattr(multipart, "BODY_MIN_RATE", 10_000)
    body, ctype = _multipart({"prompt": "x"}, [("image", bytes(5000))])
    for name, request in {"silent": _trickle(body, ctype, 1000, 0, stall_after=0),
                          "stalled": _trickle(body, ctype, 1000, 0, stall_after=2),
                          "trickle": _trickle(body, ctype, 10, 0.05)}.items():
        started = time.monotonic()
        with pytest.raises(ApiError) as slow:
            anyio.run(read_form, bounded(request))
        assert (slow.value.status, slow.value.code) == (408, "body_timeout"), name
        assert slow.value.body()["error"]["type"] == "invalid_request_error"
        assert time.monotonic() - started < 5, name
    assert anyio.run(read_form, bounded(_trickle(body, ctype, 1000, 0.02)))["image"] == bytes(5000)


def test_edit_bodies_are_limited_before_and_while_they_are_read():
    import anyio

    from studio.api.multipart import bounded, read_form

    body, ctype = _multipart({"prompt": "x"}, [("image", bytes(5000))])
    with pytest.raises(ApiError) as declared:  # refused from the header: nothing read
        bounded(_request(body, ctype), limit=4000)
    assert declared.value.status == 413 and declared.value.code == "body_too_large"
    unread = _request(body, ctype, chunk=1000, length=False)  # chunked: no length to go by
    limited = bounded(unread, limit=4000)
    with pytest.raises(ApiError) as streamed:
        anyio.run(read_form, limited)
    assert streamed.value.status == 413
    assert limited.receive.seen <= 4000 + 1000  # stopped at the chunk that crossed the limit
    assert anyio.run(read_form, bounded(_request(body, ctype), limit=len(body)))["image"] == bytes(5000)
