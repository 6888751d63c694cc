"""What the OpenAI route, the MCP tools and the benchmark share: one call in, images out, via Studio.

A call is parsed into today's `GenerationRequest` (one place to re-point once issue 14's image spec
exists), checked against the queue limit and the workers' readiness, submitted with origin `api`,
and awaited on the studio's own events, so an API call queues with the window's requests, pauses
with them and ends when someone cancels it in the window.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from studio.api.errors import ApiError
from studio.api.keys import KeyStore
from studio.core import events as ev
from studio.core.key_store import KEYLESS_CALLER
from studio.core.queue_limit import QueueFull, admit_to_queue
from studio.core.request import (
    MAX_COUNT,
    MAX_SIZE,
    MIN_SIZE,
    SIZE_STEP,
    GenerationRequest,
    LoraCheck,
    ValidationError,
    validate,
)

READY_STATES = ("idle", "busy")
SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
# Names clients send by default (Open WebUI, LibreChat): all mean the studio's one model.
MODEL_ALIASES = ("z-image", "z-image-turbo", "dall-e-2", "dall-e-3", "gpt-image-1")
# Request fields named as the API calls them (the OpenAI names where they differ).
API_FIELD = {"width": "size", "height": "size", "count": "n"}


@dataclass(frozen=True)
class ImageOut:
    """One finished image of an API call."""

    job_id: str
    index: int
    seed: int
    path: str

    def b64(self) -> str:
        return base64.b64encode(Path(self.path).read_bytes()).decode("ascii")


def parse_size(value: Any, default: tuple[int, int]) -> tuple[int, int]:
    """`"WxH"` (or `auto`/empty for the model's own size) -> (width, height); ApiError naming `size`."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return default
    match = SIZE_RE.match(value) if isinstance(value, str) else None
    w, h = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not match or not all(MIN_SIZE <= v <= MAX_SIZE and v % SIZE_STEP == 0 for v in (w, h)):
        raise ApiError(400, f"size={value!r} is not a size this studio makes: give WIDTHxHEIGHT, each a multiple "
                            f"of {SIZE_STEP} from {MIN_SIZE} to {MAX_SIZE} (e.g. \"1024x1024\"), or \"auto\".",
                       param="size", code="invalid_size")
    return w, h


def invalid(exc: ValidationError) -> ApiError:
    """A request field refused by validation as a 400 naming the field (by its API name) and why."""
    name = API_FIELD.get(exc.field, exc.field)
    return ApiError(400, f"{name}: {exc.message}", param=name)


def build_request(body: dict[str, Any], default_size: tuple[int, int],
                  check_lora: LoraCheck | None = None) -> GenerationRequest:
    """An OpenAI-style body (prompt, n, size, and the extra fields seed / negative_prompt / steps /
    guidance / loras) as a validated GenerationRequest; ApiError 400 naming the first bad field.

    `loras`: [{"name", "strength"}] (or "NAME:STRENGTH" strings), added to any `<lora:…>` in the
    prompt; `check_lora` (the studio's) checks each file, so a missing or unfit LoRA is a 400 too."""
    n = body.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_COUNT:
        raise ApiError(400, f"n={n!r}: give a whole number of images from 1 to {MAX_COUNT}.", param="n")
    width, height = parse_size(body.get("size"), default_size)
    values: dict[str, Any] = {"prompt": body.get("prompt"), "width": width, "height": height, "count": n}
    for name in ("negative_prompt", "steps", "guidance", "loras"):
        if body.get(name) is not None:
            values[name] = body[name]
    if body.get("seed") is not None:
        values["seed"] = body["seed"]
        values["seed_mode"] = "increment"  # n images from one seed: seed, seed+1, ... (reproducible, distinct)
    if not isinstance(values["prompt"], str):
        raise ApiError(400, "prompt is required: a text describing the image.", param="prompt")
    try:
        return validate(GenerationRequest(**values), check_lora=check_lora)
    except ValidationError as exc:
        raise invalid(exc) from None


class ApiService:
    """The studio as scripts and agents see it."""

    def __init__(self, studio: Any, keys: KeyStore) -> None:
        self.studio = studio
        self.keys = keys

    # ------------------------------------------------------------------ facts

    def model_ids(self) -> list[str]:
        return [self.studio.model.name]

    def check_model(self, model: Any) -> None:
        if model is None or model == "" or model in self.model_ids() or str(model).lower() in MODEL_ALIASES:
            return
        raise ApiError(400, f"model={model!r} is not served here; use {self.model_ids()[0]!r} "
                            "(see GET /v1/models).", param="model", code="model_not_found")

    def ready_workers(self) -> int:
        return sum(1 for w in self.studio.pool_status() if w.get("state") in READY_STATES)

    def status(self) -> dict[str, Any]:
        workers = self.studio.pool_status()
        return {"model": self.studio.model.name, "paused": bool(self.studio.paused),
                "queued_images": self.studio.queue_length(), "ready_workers": self.ready_workers(),
                "workers": [{k: w.get(k) for k in ("name", "device", "state", "images_done", "s_per_image",
                                                   "current_request")} for w in workers]}

    def admit(self, images: int) -> None:
        """429 over the queue limit, 503 while no worker can take work (clients retry both)."""
        self.admit_to_queue(images)
        if self.ready_workers() == 0:
            raise ApiError(503, "No worker is ready yet (the model is loading or a worker restarts); "
                                "try again in a few seconds.", code="no_worker_ready", retry_after_s=5)

    def admit_to_queue(self, images: int) -> None:
        """429 when `images` more would pass the queue limit (core/queue_limit.py, which the window's
        named generate endpoint checks too)."""
        try:
            admit_to_queue(self.studio, self.keys, images)
        except QueueFull as exc:
            raise ApiError(429, str(exc), code="queue_full", retry_after_s=5) from None

    # ------------------------------------------------------------------ one call

    async def generate(self, request: GenerationRequest, gone: Callable[[], Awaitable[bool]] | None = None,
                       ready_wait_s: float = 0.0,
                       prepare: Callable[[], GenerationRequest] | None = None,
                       caller: str | None = None) -> list[ImageOut]:
        """Submit with origin `api` and wait on the studio's events; cancelled in the studio (or the
        caller gone, per `gone`) ends it. Returns the finished images by index.

        `ready_wait_s`: how long to wait for a loading worker before answering 503 (stdio MCP waits:
        its own start-up just spawned the workers; HTTP answers at once and clients retry).
        `prepare`: run once the call is admitted, it gives the request to submit (an edit's images are
        stored there, so a refused call stores nothing).
        `caller`: who asked over HTTP (`caller_of`), recorded so it may read these images back; None for
        the person's own stdio MCP, which reads everything anyway."""
        deadline = time.monotonic() + ready_wait_s
        while self.ready_workers() == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        self.admit(request.count)
        if prepare is not None:
            request = await anyio.to_thread.run_sync(prepare)
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()
        request_id = uuid.uuid4().hex

        def on_event(event: ev.Event) -> None:
            if event.get("type") == ev.REQUEST_DONE and event.get("request_id") == request_id:
                try:
                    loop.call_soon_threadsafe(finished.set)
                except RuntimeError:  # the server's loop closed first
                    pass

        unsubscribe = self.studio.subscribe(on_event)
        try:
            try:
                await anyio.to_thread.run_sync(lambda: self.studio.submit(
                    request, origin="api", interactive=False, request_id=request_id, api_key=caller))
            except ValidationError as exc:  # the studio's own checks (a LoRA's file) not made before
                raise invalid(exc) from None
            while not finished.is_set():
                try:
                    await asyncio.wait_for(finished.wait(), 1.0)
                except asyncio.TimeoutError:
                    if gone is not None and await gone():
                        self.studio.cancel(request_id)
                        raise ApiError(499, "The caller went away; the request was cancelled.") from None
            results = await anyio.to_thread.run_sync(lambda: self.studio.wait(request_id, 30))
        finally:
            unsubscribe()
        return self._outcome(results)

    @staticmethod
    def _outcome(results: list[dict[str, Any]]) -> list[ImageOut]:
        done = [ImageOut(r["job_id"], r["index"], r["seed"], r["path"]) for r in results
                if r.get("status") == "done" and r.get("path")]
        if done:
            return done
        if results and all(r.get("status") == "cancelled" for r in results):
            raise ApiError(409, "The request was cancelled in the studio.", code="cancelled")
        errors = sorted({str(r.get("error") or r.get("message") or r.get("status")) for r in results})
        raise ApiError(500, "No image was made: " + "; ".join(errors), code="generation_failed")

    def image_path(self, job_id: str, caller: str) -> str | None:
        """A finished image's file by its job id, when `caller`'s own call made it (else None: the caller
        learns nothing about other callers' images, the window's, or whether an id exists)."""
        if not re.fullmatch(r"[0-9a-f]{32}", job_id):
            return None
        path = self.studio.store.caller_job_image(caller, job_id)
        return path if path and Path(path).is_file() else None


def caller_of(scope_state: Any) -> str:
    """The caller an HTTP API call is recorded as: its key's id (put in the scope by `ApiGate`), or
    `KEYLESS_CALLER` for a call without one (keyless loopback)."""
    key_id = (scope_state or {}).get("api_key_id") if isinstance(scope_state, dict) else None
    return key_id or KEYLESS_CALLER
