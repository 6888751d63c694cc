"""The window server's door: who may call it, from which page, and which files it hands out.

A pure ASGI middleware in front of Gradio's routes (the Jupyter design):
- every request must name an allowed Host (loopback, the bound host, this machine's own addresses
  when bound to all of them), so a web page cannot reach the studio through DNS rebinding;
- `serve` returns a URL carrying a per-launch token; opening it trades the token for an HttpOnly,
  SameSite=Strict cookie, so only pages the studio served (and processes that can read the 0600
  instance file) can call anything beyond the page shell and its static files;
- a request that carries an Origin must come from the studio's own origin (no cross-site calls);
- with a login on, the login is what counts (Gradio's own /reset and /cancel included), and
  failed logins from one address wait longer and longer;
- `/file=` serves only files the studio owns (see `ServedFiles` in server.py).
`api_key_check` is the seam for API keys (issue 21): a `Authorization: Bearer <key>` it accepts
counts like the cookie. Paths `api_path` names (/v1, /mcp) pass the Host and Origin checks here and
then go to the APIs' own gate (studio/api/access.py), which asks for keys instead of the cookie.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.ui.i18n import t

log = logging.getLogger("zaoxiang.ui.guard")

TOKEN_PARAM = "zx_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# The page shell's static parts: no state, no data, the same for everyone.
STATIC_PREFIXES = ("/assets/", "/svelte/", "/static/", "/pwa_icon", "/gradio_api/pwa_icon")
STATIC_PATHS = frozenset({"/favicon.ico", "/theme.css", "/gradio_api/theme.css", "/robots.txt", "/manifest.json",
                          "/gradio_api/startup-events"})
# With a login on, the login page and the routes it needs (Gradio checks the login on /config).
LOGIN_PATHS = frozenset({"/", "/login", "/login/", "/logout", "/config", "/config/", "/gradio_api/login_check",
                         "/gradio_api/login_check/", "/gradio_api/user", "/gradio_api/user/"})
FILE_PREFIXES = ("/gradio_api/file=", "/file=", "/gradio_api/file/", "/file/")
PROXY_PREFIXES = ("/gradio_api/proxy=", "/proxy=")
LOGIN_POST = frozenset({"/login", "/login/"})


def new_token() -> str:
    return secrets.token_urlsafe(32)


def host_of(header: str) -> str:
    """The host part of a Host header (`[::1]:7860` -> `::1`), lower case, no trailing dot."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    if header.count(":") == 1:
        header = header.split(":", 1)[0]
    return header.rstrip(".")


@dataclass
class LoginThrottle:
    """Per client address: after `free_tries` failed logins, each further try waits twice as long."""

    free_tries: int = 5
    max_wait_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)  # address -> (count, locked until)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_s(self, address: str) -> float:
        """Seconds before `address` may try again (0: now)."""
        with self._lock:
            _count, until = self._failures.get(address, (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, address: str) -> None:
        with self._lock:
            count, _until = self._failures.get(address, (0, 0.0))
            count += 1
            over = count - self.free_tries
            until = self.clock() + min(self.max_wait_s, 2.0 ** (over - 1)) if over > 0 else 0.0
            self._failures[address] = (count, until)
            if len(self._failures) > 10_000:  # a flood of addresses must not grow memory without end
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


@dataclass
class GuardPolicy:
    """What the guard enforces for one launch of the window."""

    token: str
    allowed_hosts: frozenset[str]
    login: bool = False  # Gradio's username/password login is on
    file_allowed: Callable[[str], bool] = lambda _path: False
    api_key_check: Callable[[str], bool] | None = None  # issue 21: API keys plug in here
    api_path: Callable[[str], bool] = lambda _path: False  # paths whose own gate checks keys
    lang: str = "en"
    cookie_name: str = "zx_session"
    throttle: LoginThrottle = field(default_factory=LoginThrottle)


def _refuse(status: int, message: str) -> Response:
    """`detail` for Gradio's page, `error` in OpenAI's shape so API clients print the reason too."""
    kind = "authentication_error" if status == 401 else "permission_error"
    return JSONResponse({"detail": message, "error": {"message": message, "type": kind, "param": None,
                                                      "code": "refused"}}, status_code=status)


class WindowGuard:
    """ASGI middleware enforcing a GuardPolicy (see the module docstring)."""

    def __init__(self, app: ASGIApp, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        response = self.check(scope)
        if response is None:
            if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in LOGIN_POST:
                await self._login(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await response(scope, receive, send)

    # ---------------------------------------------------------------- the decision

    def check(self, scope: Scope) -> Response | None:
        """None to let the request through, else the answer that refuses (or redirects) it."""
        p = self.policy
        headers = Headers(scope=scope)
        host_header = headers.get("host", "")
        if host_of(host_header) not in p.allowed_hosts:
            log.warning("refused a request for host %r", host_header)
            return _refuse(403, "Host not allowed.")
        path: str = scope["path"]
        method: str = scope.get("method", "GET")
        origin = headers.get("origin")
        if origin is not None and not self._same_origin(origin, host_header):
            log.warning("refused a %s %s from origin %r", method, path, origin)
            return _refuse(403, "Cross-origin request refused.")
        if p.api_path(path):
            return None
        if scope["type"] == "http" and method in ("GET", "HEAD"):
            swapped = self._token_exchange(scope)
            if swapped is not None:
                return swapped
        if any(path.startswith(prefix) for prefix in PROXY_PREFIXES):
            return _refuse(403, "The studio fetches nothing from other sites.")
        if method in SAFE_METHODS and (path in STATIC_PATHS or path.startswith(STATIC_PREFIXES)):
            return None
        if p.login and path in LOGIN_PATHS:
            return None  # Gradio's login page, and /config, which Gradio itself keeps behind the login
        if p.login and method == "POST" and path in LOGIN_POST:
            return None
        if not self._authorized(scope, headers):
            if not p.login and path == "/" and method in ("GET", "HEAD"):
                title, body = t("title", p.lang), t("gate.body", p.lang)
                return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>{title}</title>"
                                    f"<p style='font:16px system-ui;margin:3em'>{body}</p>")
            return _refuse(403 if not p.login else 401, "Open the studio from the link it gives (or log in).")
        if path.startswith(FILE_PREFIXES):
            wanted = next(path[len(prefix):] for prefix in FILE_PREFIXES if path.startswith(prefix))
            if not p.file_allowed(wanted):
                return _refuse(403, "File not served.")
        return None

    @staticmethod
    def _same_origin(origin: str, host_header: str) -> bool:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.strip().lower()

    def _token_exchange(self, scope: Scope) -> Response | None:
        """`?zx_token=<launch token>`: set the session cookie and drop the token from the address."""
        query = scope.get("query_string", b"").decode("latin-1")
        if TOKEN_PARAM not in query:
            return None
        pairs = parse_qsl(query, keep_blank_values=True)
        given = [v for k, v in pairs if k == TOKEN_PARAM]
        if not given or not secrets.compare_digest(given[0].encode(), self.policy.token.encode()):
            return None
        rest = urlencode([(k, v) for k, v in pairs if k != TOKEN_PARAM])
        response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
        response.set_cookie(self.policy.cookie_name, self.policy.token, httponly=True, samesite="strict", path="/")
        return response

    def _authorized(self, scope: Scope, headers: Headers) -> bool:
        p = self.policy
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and p.api_key_check is not None:
            try:
                if p.api_key_check(auth[7:].strip()):
                    return True
            except Exception:  # a broken key store must fail closed, not open
                log.exception("API key check failed")
        if p.login:
            return self._logged_in(scope, headers)
        cookie = _cookies(headers).get(p.cookie_name, "")
        return bool(cookie) and secrets.compare_digest(cookie.encode(), p.token.encode())

    @staticmethod
    def _logged_in(scope: Scope, headers: Headers) -> bool:
        """Whether the request carries a Gradio login cookie that Gradio issued."""
        app = scope.get("app")
        cookie_id = getattr(app, "cookie_id", None)
        tokens = getattr(app, "tokens", None)
        if cookie_id is None or tokens is None:
            return False
        jar = _cookies(headers)
        for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            if jar.get(name) and jar[name] in tokens:
                return True
        return False

    # ---------------------------------------------------------------- logins slowed after failures

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        address = (scope.get("client") or ("?", 0))[0]
        wait = self.policy.throttle.wait_s(address)
        if wait > 0:
            response = _refuse(429, f"Too many failed logins; try again in {wait:.0f} s.")
            response.headers["Retry-After"] = str(int(wait) + 1)
            await response(scope, receive, send)
            return
        status: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] == 200:
            self.policy.throttle.succeeded(address)
        elif status and status[0] in (400, 401):
            self.policy.throttle.failed(address)
            log.warning("failed login from %s", address)


def _cookies(headers: Headers) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in headers.get("cookie", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out.setdefault(name, value)
    return out
