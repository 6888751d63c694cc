"""The Generate tab's named endpoints for gradio_client (issue 21): `/generate`, `/cancel`, `/history`
and `/image`. Answers are data (paths, seeds, states), never HTML or localized words; `/generate` is
held to the same queue limit as /v1 and /mcp (core/queue_limit.py)."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from studio.core.key_store import KeyStore, bearer
from studio.core.queue_limit import QueueFull, admit_to_queue
from studio.core.request import DEFAULT_GUIDANCE, DEFAULT_STEPS, GenerationRequest, ValidationError
from studio.ui.context import Context


def api_record(row: dict[str, Any]) -> dict[str, Any]:
    """A history row as plain JSON data for scripts (no HTML, no localized words)."""
    data = json.loads(json.dumps(row, default=str))
    data["images"] = [{"image_id": im.get("image_id") or im.get("id"), "path": im.get("path"), "seed": im.get("seed"),
                       "favorite": bool(im.get("favorite"))} for im in row.get("images") or [] if isinstance(im, dict)]
    return data


def add_endpoints(ctx: Context, start_w: int, start_h: int) -> None:
    """Register the four named endpoints; `start_w`/`start_h`: `/generate`'s default size (the model's own)."""
    keys = KeyStore(ctx.studio.paths.config_dir)

    def generate_api(prompt: str, negative_prompt: str = "", width: int = start_w, height: int = start_h,
                     steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE, count: int = 1,
                     seed: int = -1, call: gr.Request = None) -> dict:  # type: ignore[assignment]
        """For gradio_client (`api_name="/generate"`): draw, wait, return each image's path and seed; the
        calling key may download these images (gradio_client does, unless download_files=False): the request
        records the key (store/caller_images.py), which the guard's `/file=` rule for keys reads."""
        request = GenerationRequest(prompt, negative_prompt, width, height, steps, guidance, seed, "increment",
                                    count)  # seed -1: random
        try:
            admit_to_queue(ctx.studio, keys, count if isinstance(count, int) else 1)  # the queue limit of /v1 and /mcp
        except QueueFull as exc:
            raise gr.Error(str(exc)) from None
        plain = bearer(call.headers) if call is not None else None
        record = keys.verify(plain) if plain else None  # None: the window's own session (no API caller)
        try:
            rid = ctx.studio.submit(request, origin="api", interactive=False,
                                    api_key=record.id if record is not None else None)
        except ValidationError as exc:
            raise gr.Error(f"{exc.field}: {exc.message}") from None
        results = ctx.studio.wait(rid)
        return {"request_id": rid, "images": [{"path": r["path"], "seed": r["seed"], "status": r["status"]}
                                              for r in results]}

    gr.api(generate_api, api_name="generate", concurrency_limit=None)  # named endpoint (issue 21)

    def cancel_api(request_id: str) -> dict:
        """For scripts: cancel a request; `cancelled` is False for an id the studio does not know."""
        return {"request_id": request_id, "cancelled": bool(ctx.studio.cancel(request_id))}

    def history_api(search: str = "", favorites_only: bool = False, limit: int = 50) -> list:
        """For scripts: past requests newest first, as data (ids, parameters, states, image paths and seeds)."""
        rows = ctx.studio.history(search=search.strip() or None, favorites_only=bool(favorites_only),
                                  limit=max(1, min(500, int(limit))))
        return [api_record(row) for row in rows]

    def image_api(image_id: int) -> dict:
        """For scripts: one image's path, seed and parameters."""
        info = ctx.studio.image_info(image_id)
        if not info:
            raise gr.Error(f"No image {image_id!r}.")
        return json.loads(json.dumps(info, default=str))

    gr.api(cancel_api, api_name="cancel", concurrency_limit=None)
    gr.api(history_api, api_name="history", concurrency_limit=None)
    gr.api(image_api, api_name="image", concurrency_limit=None)
    for fn in (generate_api, cancel_api, history_api, image_api):
        fn.zx_endpoint = True  # type: ignore[attr-defined]  # what app.hide_unnamed_endpoints keeps public
