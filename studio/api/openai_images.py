"""OpenAI's images API on the window's server: `POST /v1/images/generations`, `GET /v1/models`.

What chat front-ends (Open WebUI, LibreChat, Dify) and the `openai` package send, answered the way
they expect: `{"created", "data": [{"b64_json" | "url", "revised_prompt"}]}` (each item also carries
its `seed`), errors in OpenAI's shape. `url` items point at `/v1/images/files/<job id>.png`, served
only to the caller that made it (the same key, or keyless to keyless; studio/store/caller_images.py).
`POST /v1/images/edits` (multipart or JSON; studio/api/edits.py) edits an image.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from studio.api.edits import edit_request
from studio.api.errors import ApiError
from studio.api.multipart import MULTIPART, bounded, content_type, read_form
from studio.api.service import ApiService, build_request, caller_of
from studio.api.upload_budget import UploadBudget

RESPONSE_FORMATS = ("b64_json", "url")
MULTIPART_PATHS = ("/images/edits",)  # the one route the API gate lets a multipart body through to
GENERATION_BODY_MAX_BYTES = 1 << 20  # a prompt and some numbers; no image comes in this way
GENERATION_HINT = "the most a generation takes (it carries no images): send a shorter body"
STARTED = int(time.time())


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise ApiError(400, "The body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.", code="invalid_json")
    return body


def routes(service: ApiService, uploads: UploadBudget | None = None) -> list[Route]:
    """The routes, relative to `/v1` where `studio.api.mount` mounts them; `uploads`: the edits
    route's budget of body bytes in flight (studio/api/upload_budget.py)."""
    uploads = uploads or UploadBudget(lambda: service.keys.config().uploads_mb << 20)

    async def models(_request: Request) -> Response:
        data = [{"id": name, "object": "model", "created": STARTED, "owned_by": "zaoxiang"}
                for name in service.model_ids()]
        return JSONResponse({"object": "list", "data": data})

    async def generations(request: Request, edit: bool = False) -> Response:
        hold = uploads.hold() if edit else None
        try:
            request = bounded(request, hold=hold) if edit else bounded(request, GENERATION_BODY_MAX_BYTES,
                                                                       GENERATION_HINT)
            body = await (read_form(request) if edit and content_type(request) == MULTIPART else _body(request))
            service.check_model(body.get("model"))
            fmt = body.get("response_format") or "b64_json"
            if fmt not in RESPONSE_FORMATS:
                raise ApiError(400, f"response_format={fmt!r}: give one of {', '.join(RESPONSE_FORMATS)}.",
                               param="response_format")
            check_lora = service.studio.lora_check()
            if edit:  # its images are stored only once the call is admitted
                call = await anyio.to_thread.run_sync(edit_request, body, check_lora)
                spec, prepare = call.request, call.store
            else:
                spec = await anyio.to_thread.run_sync(build_request, body, service.studio.default_size, check_lora)
                prepare = None
            images = await service.generate(spec, gone=request.is_disconnected, prepare=prepare,
                                            caller=caller_of(request.scope.get("state")))
            base = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}/v1/images/files/"
            data = [{"b64_json": im.b64()} if fmt == "b64_json" else {"url": f"{base}{im.job_id}.png"}
                    for im in images]
            for item, im in zip(data, images):
                item.update(revised_prompt=None, seed=im.seed)
            return JSONResponse({"created": int(time.time()), "data": data})
        except ApiError as exc:
            return exc.response()
        except ClientDisconnect:  # gone while its body came in: nobody reads an answer, its bytes are let go
            return Response(status_code=400)
        finally:
            if hold is not None:
                hold.release()

    async def edits(request: Request) -> Response:
        return await generations(request, edit=True)

    async def image_file(request: Request) -> Response:
        path = service.image_path(request.path_params["job_id"], caller_of(request.scope.get("state")))
        if path is None:  # not this caller's: the same answer as no such image
            return ApiError(404, "No such image.", code="image_not_found").response()
        return FileResponse(path, media_type="image/png")

    return [
        Route("/models", models, methods=["GET"]),
        Route("/images/generations", generations, methods=["POST"]),
        Route("/images/edits", edits, methods=["POST"]),
        Route("/images/files/{job_id}.png", image_file, methods=["GET", "HEAD"]),
    ]
