"""The studio as MCP tools, for agents: `generate`, `list_history`, `get_image`, `list_models`,
`studio_status`.

Built on the official SDK's `MCPServer` (the former FastMCP). The same tools are served over
streamable HTTP at `/mcp` on the window's server (stateless, JSON answers: every call stands alone,
so nothing is kept per client) and over stdio by `zaoxiang mcp`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ImageContent, TextContent
from pydantic import BaseModel, Field

from studio.api.errors import ApiError
from studio.api.service import ApiService, build_request, caller_of

INSTRUCTIONS = ("造相 Z-Image Studio: local text-to-image with Z-Image. `generate` draws images from a prompt "
                "(Chinese or English) and returns them with their file paths and seeds; the same seed and "
                "prompt give the same image again. `list_history` and `get_image` read past results.")
MAX_INLINE_IMAGES = 8  # more images are returned as paths only: agents' context windows are small


class LoraArg(BaseModel):
    """One LoRA of a `generate` call (its range is checked by the studio, which answers in one line)."""

    name: str = Field(description="A LoRA's name, as list_models lists it (paths are for the terminal only).")
    strength: float = Field(1.0, description="-2 to 2; 1 is full strength, 0 turns it off.")


def _text(data: Any) -> TextContent:
    return TextContent(type="text", text=json.dumps(data, ensure_ascii=False, indent=1))


def _image(path: str) -> ImageContent:
    return ImageContent(type="image", data=base64.b64encode(Path(path).read_bytes()).decode("ascii"),
                        mime_type="image/png")


def http_caller(ctx: Context) -> str | None:
    """Who calls a tool: over HTTP the key (or keyless) the gate let in (`caller_of`); over stdio None,
    the person's own agent, which started the studio with the person's rights and reads everything."""
    try:
        request = ctx.request_context.request
    except ValueError:  # no request: called outside the SDK's dispatch
        return None
    scope = getattr(request, "scope", None)
    return caller_of(scope.get("state")) if isinstance(scope, dict) else None


def build_server(service: ApiService,
                 lifespan: Callable[[MCPServer], AbstractAsyncContextManager[Any]] | None = None,
                 ready_wait_s: float = 0.0, stdio: bool = False) -> MCPServer:
    """One MCP server over `service`'s studio (one per launch: its HTTP session manager runs once).
    `stdio`: served to the person's own agent, which reads every image; over HTTP a call whose caller
    cannot be told reads none (should the SDK ever stop handing the request to tools).

    `ready_wait_s`: how long `generate` waits for a loading worker (stdio: the workers start with it)."""
    mcp: MCPServer = MCPServer("zaoxiang", title="造相 Z-Image Studio", instructions=INSTRUCTIONS,
                               lifespan=lifespan, log_level="WARNING")
    studio = service.studio

    @mcp.tool()
    async def generate(
        prompt: Annotated[str, Field(description="What to draw, in Chinese or English.")],
        n: Annotated[int, Field(ge=1, le=64, description="How many images.")] = 1,
        size: Annotated[str, Field(description='"WIDTHxHEIGHT" (multiples of 16, 256-2048) or "auto".')] = "auto",
        seed: Annotated[int | None, Field(description="Fixed seed for a reproducible image; none: random.")] = None,
        negative_prompt: str = "",
        steps: Annotated[int | None, Field(description="Sampling steps; none: the model's default.")] = None,
        guidance: Annotated[float | None, Field(description="Guidance scale; none: the model's default.")] = None,
        loras: Annotated[list[LoraArg] | None, Field(
            description="LoRAs to apply, each with a strength; `<lora:name:0.8>` in the prompt works too.")] = None,
        ctx: Context = None,  # type: ignore[assignment]  # the SDK fills it in
    ) -> list[TextContent | ImageContent]:
        """Generate images; returns the PNGs plus a JSON list of their paths and seeds."""
        body = {"prompt": prompt, "n": n, "size": size, "seed": seed, "negative_prompt": negative_prompt,
                "steps": steps, "guidance": guidance, "loras": [x.model_dump() for x in loras or ()]}
        try:
            request = build_request(body, studio.default_size, check_lora=studio.lora_check())
            images = await service.generate(request, ready_wait_s=ready_wait_s, caller=http_caller(ctx))
        except ApiError as exc:
            raise ToolError(exc.message) from None
        listing = {"images": [{"path": im.path, "seed": im.seed, "index": im.index} for im in images]}
        return [_text(listing), *(_image(im.path) for im in images[:MAX_INLINE_IMAGES])]

    @mcp.tool()
    def list_history(
        limit: Annotated[int, Field(ge=1, le=200)] = 10,
        search: Annotated[str | None, Field(description="Only prompts containing these words.")] = None,
    ) -> list[TextContent]:
        """Past requests, newest first: prompt, state, origin and each image's id, path and seed."""
        rows = studio.history(search=search or None, limit=limit)
        out = [{"request_id": r["request_id"], "created": r["created_iso"], "origin": r["origin"],
                "state": r["state"], "prompt": r["prompt"],
                "images": [{k: im[k] for k in ("id", "path", "seed", "width", "height")} for im in r["images"]]}
               for r in rows]
        return [_text(out)]

    @mcp.tool()
    def get_image(image_id: int, include_image: bool = True,
                  ctx: Context = None,  # type: ignore[assignment]  # the SDK fills it in
                  ) -> list[TextContent | ImageContent]:
        """One image of the history by id: its parameters and path, and the PNG itself (over HTTP, only
        images this key's own `generate` calls made)."""
        caller = http_caller(ctx)
        try:
            if (caller is None and not stdio) or \
                    (caller is not None and not studio.store.caller_image_id(caller, image_id)):
                raise ToolError(f"No image with id {image_id} in the history.")  # the unknown id's words
            info = studio.image_info(image_id)
        except Exception as exc:  # StoreError: one readable sentence
            raise ToolError(str(exc)) from None
        keep = {k: info.get(k) for k in ("id", "path", "seed", "width", "height", "origin", "model", "request",
                                         "parameters", "missing")}
        content: list[TextContent | ImageContent] = [_text(keep)]
        if include_image and info.get("path") and Path(info["path"]).is_file():
            content.append(_image(info["path"]))
        return content

    @mcp.tool()
    def list_models() -> list[TextContent]:
        """The model this studio draws with (one at a time; Settings changes it) and the LoRAs found for it."""
        m = studio.model
        loras = [{"name": i.name, "layout": i.layout.value, "rank": i.rank, "base_model": i.base_model}
                 for i in studio.available_loras()]
        return [_text([{"id": m.name, "source": m.source, "format": m.format, "path": str(m.path),
                        "default_size": "x".join(map(str, studio.default_size)), "loras": loras}])]

    @mcp.tool()
    def studio_status() -> list[TextContent]:
        """Workers (state, speed), queued images, whether the queue is paused."""
        return [_text(service.status())]

    return mcp


def http_app(mcp: MCPServer) -> tuple[Any, Callable[[Any], AbstractAsyncContextManager[None]]]:
    """The streamable-HTTP ASGI endpoint and the lifespan that must wrap the server's life.

    Host and Origin are checked by the window guard in front, so the SDK's own localhost-only
    check is off (it would refuse a LAN client the guard and a key let in)."""
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
    from mcp.server.transport_security import TransportSecuritySettings

    mcp.streamable_http_app(stateless_http=True, json_response=True,
                            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    manager = mcp.session_manager

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return StreamableHTTPASGIApp(manager), lifespan
