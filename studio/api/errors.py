"""Errors in OpenAI's JSON shape, so every client (the `openai` package, Open WebUI) shows our message.

`{"error": {"message", "type", "param", "code"}}` with the status codes clients act on: 400 for bad
input (the field named in `param` and the message), 401 for a missing or wrong key, 408 for a body
that stopped arriving, 413 for one too large, 429 for too much at once (clients back off), 503 while
no worker is ready (clients retry).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import JSONResponse

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 408: "invalid_request_error", 409: "cancelled", 413: "invalid_request_error",
         415: "invalid_request_error", 429: "rate_limit_error", 501: "not_implemented", 503: "service_unavailable"}


@dataclass
class ApiError(Exception):
    """One refusal: HTTP status, a one-sentence message, the field it is about (if any)."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": TYPES.get(self.status, "api_error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(max(1, round(self.retry_after_s)))} if self.retry_after_s else None
        if self.status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="zaoxiang"'}
        return JSONResponse(self.body(), status_code=self.status, headers=headers)
