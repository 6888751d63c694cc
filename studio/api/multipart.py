"""The bodies `POST /v1/images/edits` reads: multipart (what the `openai` package sends) or JSON.

Both are read under one byte limit, enforced before the first byte is read (a Content-Length over
it is refused at once) and while the body arrives (a chunked body is cut off the moment it passes
it), and under a deadline: a body that sends nothing for BODY_IDLE_S, or falls behind BODY_MIN_RATE
after that much grace, gets 408, so a declared length cannot hold the upload budget for ever. A
multipart body becomes the same dict the JSON form gives: files as bytes, repeated `image[]` parts
as a list, and the text fields the API takes as numbers (`n`, `seed`, `steps`, `strength`, ...) as
numbers, so `edits.edit_request` checks both forms the same way. Parts other than files are capped
(Starlette's `max_part_size`); files over 1 MiB spool to disk while parsing.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Message, Receive

from studio.api.errors import ApiError
from studio.api.upload_budget import UploadHold
from studio.core.image_inputs import MAX_FILE_BYTES

MULTIPART = "multipart/form-data"
EDIT_BODY_MAX_BYTES = 2 * MAX_FILE_BYTES + 2**20  # an image and a mask, each at the studio's file limit
MAX_FIELD_BYTES = 64 * 2**10  # one text field (a long prompt is a few KB)
MAX_PARTS = 64
BODY_IDLE_S = 30.0  # the longest a body may send nothing (its first bytes included)
BODY_MIN_RATE = 32 << 10  # bytes/s on average after that grace: a 1 Mbit/s uplink passes, a trickle does not
NUMBER_FIELDS: dict[str, type] = {"n": int, "seed": int, "steps": int, "mask_blur": int,
                                  "strength": float, "guidance": float}


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


EDIT_HINT = "the most an edit takes (the image and the mask together): send smaller files"


def too_large(limit: int, hint: str = EDIT_HINT) -> ApiError:
    return ApiError(413, f"The body is over {limit / 2**20:.0f} MB, {hint}.", code="body_too_large")


def too_slow() -> ApiError:
    return ApiError(408, f"The body stopped arriving (nothing for {BODY_IDLE_S:.0f} s, or slower than "
                         f"{BODY_MIN_RATE >> 10} KB/s): send the request again.", code="body_timeout")


class _Bounded:
    """A `receive` that raises 413 as soon as the body passes `limit` bytes, 429 when `hold` (the
    route's shared upload budget) has no room for the bytes so far, and 408 when the body stalls:
    more than `seen` bytes must be in by BODY_IDLE_S after the start plus `seen` at BODY_MIN_RATE,
    and no wait is longer than BODY_IDLE_S. Once the body is in, calls pass straight through (the
    route asks whether the client is still there while it works)."""

    def __init__(self, receive: Receive, limit: int, hint: str, hold: UploadHold | None = None) -> None:
        self.receive, self.limit, self.hint, self.seen, self.hold = receive, limit, hint, 0, hold
        self.start, self.done = time.monotonic(), False

    async def __call__(self) -> Message:
        if self.done:
            return await self.receive()
        wait = min(BODY_IDLE_S, self.start + BODY_IDLE_S + self.seen / BODY_MIN_RATE - time.monotonic())
        if wait <= 0:
            raise too_slow()
        try:
            with anyio.fail_after(wait):
                message = await self.receive()
        except TimeoutError:
            raise too_slow() from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                raise too_large(self.limit, self.hint)
            if self.hold is not None:
                self.hold.cover(self.seen)
        return message


def bounded(request: Request, limit: int = EDIT_BODY_MAX_BYTES, hint: str = EDIT_HINT,
            hold: UploadHold | None = None) -> Request:
    """`request` whose body cannot be read past `limit` bytes; ApiError 413 at once when its
    Content-Length already says more. `hint` ends the message (what the limit is for).

    hold: the call's share of an upload budget (studio/api/upload_budget.py), covering the declared
    length before anything is read, then the bytes as they arrive (ApiError 429 when it has no room)."""
    length = request.headers.get("content-length", "")
    if length.strip().isdigit() and int(length) > limit:
        raise too_large(limit, hint)
    if hold is not None and length.strip().isdigit():
        hold.cover(int(length))
    return Request(request.scope, _Bounded(request.receive, limit, hint, hold))


def _typed(name: str, text: str) -> Any:
    """A form field as the JSON form would carry it; text that is no number stays text, so the
    request's own check names the field."""
    kind = NUMBER_FIELDS.get(name)
    if kind is None:
        return text
    try:
        return kind(text.strip())
    except ValueError:
        return text


async def read_form(request: Request) -> dict[str, Any]:
    """A multipart edit as a body dict; ApiError 400 for a body that is no valid multipart."""
    try:
        form = await request.form(max_files=4, max_fields=MAX_PARTS, max_part_size=MAX_FIELD_BYTES)
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", None) or str(exc)
        raise ApiError(400, f"The multipart body could not be read: {detail}.", code="invalid_multipart") from None
    body: dict[str, Any] = {}
    try:
        for key, value in form.multi_items():
            name = key[:-2] if key.endswith("[]") else key  # `image[]`: the openai package's list of files
            if isinstance(value, UploadFile):
                data = await value.read()
                body.setdefault(name, []).append(data)
            else:
                body[name] = _typed(name, value)
    finally:
        await form.close()
    return {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in body.items()}
