"""Who may call /v1 and /mcp: keys, the per-key rate limit, and JSON-only bodies.

It sits behind the window guard, which already refused foreign Hosts (DNS rebinding) and foreign
Origins; what is left here is what the APIs need on top:
- every call needs `Authorization: Bearer <key>`, on loopback too unless the person turned that
  off in Settings → API (bound beyond loopback always); a wrong or revoked studio key (`zx-...`)
  is refused either way, while any other word is ignored where no key is needed (the `openai`
  package insists on sending one);
- a POST must say `Content-Type: application/json`, which a web page can only send after a CORS
  preflight that the guard's same-origin rule fails (so no form-post CSRF, even keyless); the routes
  that take multipart (`/v1/images/edits`, as the `openai` package sends it) take it only with an
  `Authorization: Bearer` header, which no HTML form can send and `fetch` sends only after that
  same preflight (on keyless loopback any word will do, as for JSON);
- each key gets `rate_per_min` calls a minute.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from studio.api.errors import ApiError
from studio.api.keys import KEY_PREFIX, KeyStore, RateLimiter
from studio.core.key_store import bearer  # noqa: F401  (re-exported: the gate's callers read it here)

BODY_METHODS = ("POST", "PUT", "PATCH")


class ApiAccess:
    """The decision, shared by the ASGI gate and by the window guard's key seam."""

    def __init__(self, keys: KeyStore, loopback_only: bool, limiter: RateLimiter | None = None) -> None:
        self.keys = keys
        self.loopback_only = loopback_only
        self.limiter = limiter or RateLimiter()

    def key_required(self) -> bool:
        return not self.loopback_only or self.keys.config().require_key_on_loopback

    def key_ok(self, plain: str) -> bool:
        """For the guard's `api_key_check`: an active key lets gradio_client call the named endpoints."""
        return self.keys.verify(plain) is not None

    def check(self, method: str, headers: Headers, reads_body: bool = True, multipart: bool = False) -> str | None:
        """The calling key's id (None: keyless loopback call); raises ApiError to refuse.

        `multipart`: the route also takes multipart/form-data, from callers that send a bearer key."""
        if method in BODY_METHODS and reads_body:
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if multipart and ctype == "multipart/form-data":
                if bearer(headers) is None:
                    raise ApiError(401, "A multipart body needs an 'Authorization: Bearer <key>' header (on this "
                                        "machine without keys any word will do, e.g. the openai package's api_key).",
                                   code="missing_api_key")
            elif ctype != "application/json":
                raise ApiError(415, f"Send the body as JSON (Content-Type: application/json), not {ctype or 'nothing'!r}.",
                               code="unsupported_media_type")
        plain = bearer(headers)
        if plain is not None and not plain.startswith(KEY_PREFIX) and not self.key_required():
            plain = None  # clients that insist on some key (the openai package) may send any word here
        if plain is None:
            if self.key_required():
                raise ApiError(401, "This studio needs an API key: send 'Authorization: Bearer <key>' "
                                    "(create one with `zaoxiang keys create` or in Settings).", code="missing_api_key")
            return None
        record = self.keys.verify(plain)
        if record is None:
            raise ApiError(401, "Invalid or revoked API key.", code="invalid_api_key")
        wait_s = self.limiter.take(record.id, self.keys.config().rate_per_min)
        if wait_s > 0:
            raise ApiError(429, f"Key {record.id} is over its rate limit; try again in {wait_s:.0f} s.",
                           code="rate_limit_exceeded", retry_after_s=wait_s)
        return record.id


class ApiGate:
    """ASGI wrapper applying `ApiAccess` in front of one API app (the OpenAI routes, the MCP app)."""

    def __init__(self, app: ASGIApp, access: ApiAccess, bodyless: tuple[str, ...] = (),
                 multipart: tuple[str, ...] = ()) -> None:
        self.app = app
        self.access = access
        self.bodyless = bodyless  # paths that never read the body (so its type does not matter)
        self.multipart = multipart  # paths (below the mount) that also take multipart/form-data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, root = scope["path"], scope.get("root_path", "")
            below = path[len(root):] if root and path.startswith(root) else path
            try:
                key_id = self.access.check(scope["method"], Headers(scope=scope),
                                           reads_body=scope["path"] not in self.bodyless,
                                           multipart=below in self.multipart)
            except ApiError as exc:
                await exc.response()(scope, receive, send)
                return
            scope.setdefault("state", {})["api_key_id"] = key_id
        await self.app(scope, receive, send)
