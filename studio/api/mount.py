"""The APIs as routes for the window's FastAPI app: `/v1` (OpenAI images) and `/mcp` (MCP).

`serve` passes `routes` and `lifespan` to Gradio's app (they go ahead of Gradio's own routes), sets
the window guard's key seam to `access.key_ok`, and lets `/v1` and `/mcp` past the window cookie:
their own gate (`access.py`) asks for keys instead.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute, Mount, Route, Router

from studio.api import mcp_server, openai_images
from studio.api.access import ApiAccess, ApiGate
from studio.api.keys import KeyStore
from studio.api.service import ApiService
from studio.core.settings_check import is_loopback


def is_api_path(path: str) -> bool:
    """Paths the window guard hands to the APIs' own gate (after its Host and Origin checks)."""
    return path.startswith("/v1/") or path == "/mcp" or path.startswith("/mcp/")


@dataclass
class ApiMount:
    routes: list[BaseRoute]
    lifespan: Callable[[Any], AbstractAsyncContextManager[None]]
    access: ApiAccess
    service: ApiService


def build_api(studio: Any, host: str) -> ApiMount:
    """The routes and lifespan for one launch of the window's server bound to `host`."""
    keys = KeyStore(studio.paths.config_dir)
    access = ApiAccess(keys, loopback_only=is_loopback(host))
    service = ApiService(studio, keys)
    v1 = ApiGate(Router(openai_images.routes(service)), access, multipart=openai_images.MULTIPART_PATHS)
    mcp_app, lifespan = mcp_server.http_app(mcp_server.build_server(service))
    gated_mcp = ApiGate(mcp_app, access)
    routes: list[BaseRoute] = [Mount("/v1", app=v1), Route("/mcp", gated_mcp), Route("/mcp/", gated_mcp)]
    return ApiMount(routes=routes, lifespan=lifespan, access=access, service=service)
