"""The window server's door: who may call it, from which page, and which files it hands out.

A pure ASGI middleware in front of Gradio's routes (the Jupyter design):
- every request must name an allowed Host (loopback, the bound host, this machine's own addresses
  when bound to all of them), so a web page cannot reach the studio through DNS rebinding;
- a browser opens the window through a one-time link (`?zx_token=<ticket>`, studio/core/launch_link.py):
  a ticket made with this run's secret, used at most once and within a minute, is traded for an
  HttpOnly, SameSite=Strict cookie holding a fresh random session value of this run (never the
  ticket), named for the port, so only pages the studio served (and processes that can read the
  0600 instance file, which holds the secret) can call anything beyond the page shell and its
  static files; a ticket seen later in a process list opens nothing, and neither does a cookie
  another run made (cookies are not kept apart by port, so each run knows only its own sessions);
- a request that carries an Origin must come from the studio's own origin (no cross-site calls);
- with a login on, the login is what counts (Gradio's own /reset and /cancel included), and
  failed logins from one address wait longer and longer;
- `/file=` serves only files the studio owns (see `ServedFiles` in server.py);
- no page may show the studio in a frame (X-Frame-Options and CSP frame-ancestors on every answer),
  so a page on another 127.0.0.1 port, which the cookie's SameSite does not tell apart, cannot
  trick clicks on it.
`api_key_check` is the seam for API keys (issue 21): an `Authorization: Bearer <key>` it accepts
reaches only what a key is for, gradio_client's routes for the named endpoints (`key_endpoints`;
`/queue/join` only with such an endpoint's `fn_index`), under the key's rate limit
(`api_key_wait`), and `/file=` only for the images its own calls made (`key_file_allowed`); every other event of the page (settings, keys, quit, delete) needs the window's
session. Paths `api_path` names (/v1, /mcp) pass the Host and Origin checks here and then go to
the APIs' own gate (studio/api/access.py), which asks for keys instead of the cookie.
"""

from __future__ import annotations

import json
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

from studio.core.launch_link import TOKEN_PARAM, Ticket, TicketBook
from studio.ui.i18n import t

log = logging.getLogger("zaoxiang.ui.guard")

__all__ = ["TOKEN_PARAM", "GuardPolicy", "LoginThrottle", "Sessions", "WindowGuard"]

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# The page shell's static parts: no state, no data, the same for everyone.
# Not /pwa_icon: the app runs with pwa off, and Gradio resizes that icon to any size asked, on its event loop.
STATIC_PREFIXES = ("/assets/", "/svelte/", "/static/")
STATIC_PATHS = frozenset({"/favicon.ico", "/theme.css", "/gradio_api/theme.css", "/robots.txt", "/manifest.json",
                          "/gradio_api/startup-events"})
# With a login on, the login page and the routes it needs (Gradio checks the login on /config).
LOGIN_PATHS = frozenset({"/", "/login", "/login/", "/logout", "/config", "/config/", "/gradio_api/login_check",
                         "/gradio_api/login_check/", "/gradio_api/user", "/gradio_api/user/"})
FILE_PREFIXES = ("/gradio_api/file=", "/file=", "/gradio_api/file/", "/file/")
PROXY_PREFIXES = ("/gradio_api/proxy=", "/proxy=")
LOGIN_POST = frozenset({"/login", "/login/"})
# What gradio_client needs around a named endpoint, besides `/gradio_api/call/<name>[/<event id>]`.
KEY_GET_PATHS = frozenset({"/config", "/config/", "/gradio_api/info", "/gradio_api/info/", "/gradio_api/queue/data",
                           "/gradio_api/queue/data/"})
KEY_GET_PREFIXES = ("/gradio_api/heartbeat/",)
JOIN_PATH = "/gradio_api/queue/join"
CALL_PREFIX = "/gradio_api/call/"
KEY_BODY_MAX_BYTES = 1 << 20  # a named endpoint's arguments are a prompt and a few numbers
FRAME_HEADERS = [(b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'")]


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
class Sessions:
    """The window sessions of one run: random values made when a one-time link is used, kept in
    memory only. The cookie is never the ticket, so a cookie opens no link, and a ticket seen in a log
    or a process list is no cookie. Browsers send the cookie to every port of 127.0.0.1, so another
    run of the studio sees it too: that run never made it, so it opens nothing there."""

    limit: int = 256  # windows opened in one run; the oldest session ends past it
    _values: list[bytes] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def mint(self) -> str:
        value = secrets.token_urlsafe(32)
        with self._lock:
            self._values.append(value.encode())
            del self._values[:-self.limit]
        return value

    def valid(self, value: str) -> bool:
        """Whether `value` is a session this run made; compares with every one in constant time."""
        given = value.encode("utf-8", "replace")
        with self._lock:
            values = list(self._values)
        found = False
        for known in values:
            found |= secrets.compare_digest(given, known)
        return found and bool(value)


@dataclass
class GuardPolicy:
    """What the guard enforces for one run of the window."""

    tickets: TicketBook  # the one-time links this run accepts
    allowed_hosts: frozenset[str]
    login: bool = False  # Gradio's username/password login is on
    file_allowed: Callable[[str], bool] = lambda _path: False
    api_key_check: Callable[[str], bool] | None = None  # issue 21: API keys plug in here
    api_key_wait: Callable[[str], float] = lambda _key: 0.0  # seconds a key waits before its next call (rate limit)
    key_endpoints: frozenset[str] = frozenset()  # api_names a key may call
    key_fn_indices: frozenset[int] = frozenset()  # their fn_index, for /gradio_api/queue/join
    api_path: Callable[[str], bool] = lambda _path: False  # paths whose own gate checks keys
    key_file_allowed: Callable[[str, str], bool] = lambda _key, _path: False  # (key, path): its own calls' images
    lang: str = "en"
    cookie_name: str = "zx_session"
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    sessions: Sessions = field(default_factory=Sessions)


def _refuse(status: int, message: str) -> Response:
    """`detail` for Gradio's page, `error` in OpenAI's shape so API clients print the reason too."""
    kind = {401: "authentication_error", 413: "invalid_request_error", 429: "rate_limit_error"}.get(
        status, "permission_error")
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
        if scope["type"] == "http":
            send = _unframeable(send)
        response, key = self._decide(scope)
        if response is None and key is not None:
            response, receive = await self._key_call(scope, receive, key)
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
        return self._decide(scope)[0]

    def _decide(self, scope: Scope) -> tuple[Response | None, str | None]:
        """`check`'s answer, and the API key when only a key lets the request in (its body and rate
        are checked next, in `_key_call`)."""
        p = self.policy
        headers = Headers(scope=scope)
        host_header = headers.get("host", "")
        if host_of(host_header) not in p.allowed_hosts:
            log.warning("refused a request for host %r", host_header)
            return _refuse(403, "Host not allowed."), None
        path: str = scope["path"]
        method: str = scope.get("method", "GET")
        origin = headers.get("origin")
        if origin is not None and not self._same_origin(origin, host_header):
            log.warning("refused a %s %s from origin %r", method, path, origin)
            return _refuse(403, "Cross-origin request refused."), None
        if p.api_path(path):
            return None, None
        if scope["type"] == "http" and method == "GET":  # not HEAD: a probe must not use up the link
            swapped = self._token_exchange(scope, headers)
            if swapped is not None:
                return swapped, None
        if any(path.startswith(prefix) for prefix in PROXY_PREFIXES):
            return _refuse(403, "The studio fetches nothing from other sites."), None
        if method in SAFE_METHODS and (path in STATIC_PATHS or path.startswith(STATIC_PREFIXES)):
            return None, None
        if p.login and path in LOGIN_PATHS:
            return None, None  # Gradio's login page, and /config, which Gradio itself keeps behind the login
        if p.login and method == "POST" and path in LOGIN_POST:
            return None, None
        if not self._window_session(scope, headers):
            key = self._live_key(headers)
            if key is not None and scope["type"] == "http":
                if self._key_route(method, path):
                    return None, key
                wanted = _file_wanted(path)
                if wanted is not None and method in ("GET", "HEAD"):
                    if p.key_file_allowed(key, wanted):
                        return None, None
                    log.warning("refused an API key's download of %r (not made by its calls)", wanted)
                    return _refuse(403, t("gate.key_file", p.lang)), None
                log.warning("refused an API key on %s %s", method, path)
                return _refuse(403, t("gate.key_route", p.lang)), None
            if not p.login and path == "/" and method in ("GET", "HEAD"):
                return _page(t("gate.body", p.lang), p.lang), None
            return _refuse(403 if not p.login else 401, "Open the studio from the link it gives (or log in)."), None
        wanted = _file_wanted(path)
        if wanted is not None:
            if not p.file_allowed(wanted):
                return _refuse(403, "File not served."), None
        return None, None

    @staticmethod
    def _same_origin(origin: str, host_header: str) -> bool:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.strip().lower()

    def _token_exchange(self, scope: Scope, headers: Headers) -> Response | None:
        """`?zx_token=<ticket>`: a good ticket sets a new session cookie and leaves the address; a window
        that is in already just leaves it (an old link opened again); a spent one gets a page that says so."""
        p = self.policy
        query = scope.get("query_string", b"").decode("latin-1")
        if TOKEN_PARAM not in query:
            return None
        pairs = parse_qsl(query, keep_blank_values=True)
        given = [v for k, v in pairs if k == TOKEN_PARAM]
        if not given:
            return None
        verdict = p.tickets.take(given[0])
        rest = urlencode([(k, v) for k, v in pairs if k != TOKEN_PARAM])
        target = scope["path"] + (f"?{rest}" if rest else "")
        if verdict is Ticket.GOOD:
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(p.cookie_name, p.sessions.mint(), httponly=True, samesite="strict", path="/")
            return response
        if self._window_session(scope, headers):
            return RedirectResponse(target, status_code=303)
        if verdict is Ticket.SPENT:
            log.warning("refused a used or expired window link")
            return _page(t("gate.link_spent", p.lang, s=f"{p.tickets.life_s:.0f}"), p.lang, status=403)
        return None

    def _window_session(self, scope: Scope, headers: Headers) -> bool:
        """Whether the request comes from the window: its session cookie, or, with a login on, the login."""
        p = self.policy
        if p.login:
            return self._logged_in(scope, headers)
        return p.sessions.valid(_cookies(headers).get(p.cookie_name, ""))

    def _live_key(self, headers: Headers) -> str | None:
        """The request's bearer key when the key store knows it as active, else None."""
        p = self.policy
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or p.api_key_check is None:
            return None
        key = auth[7:].strip()
        try:
            return key if key and p.api_key_check(key) else None
        except Exception:  # a broken key store must fail closed, not open
            log.exception("API key check failed")
            return None

    def _key_route(self, method: str, path: str) -> bool:
        """Whether a key may use this route (the body of a queue join is checked later)."""
        named = self.policy.key_endpoints
        call = path[len(CALL_PREFIX):].rstrip("/").split("/") if path.startswith(CALL_PREFIX) else []
        if method in ("GET", "HEAD"):
            return (path in KEY_GET_PATHS or path.startswith(KEY_GET_PREFIXES)
                    or (len(call) == 2 and call[0] in named and bool(call[1])))
        if method == "POST":
            return path == JOIN_PATH or (len(call) == 1 and call[0] in named)
        return False

    async def _key_call(self, scope: Scope, receive: Receive, key: str) -> tuple[Response | None, Receive]:
        """A key's request on its routes: a queue join must name a named endpoint's fn_index; each call
        (a join or a POST to /call/<name>) takes one from the key's rate limit."""
        p = self.policy
        if scope["method"] != "POST":
            return None, receive
        if scope["path"] == JOIN_PATH:
            body = await _read_body(scope, receive, KEY_BODY_MAX_BYTES)
            if body is None:
                return _refuse(413, t("gate.too_large", p.lang, mb=KEY_BODY_MAX_BYTES >> 20)), receive
            try:
                fn_index = json.loads(body or b"{}").get("fn_index")
            except (ValueError, AttributeError):
                fn_index = None
            if type(fn_index) is not int or fn_index not in p.key_fn_indices:
                log.warning("refused an API key's queue join for fn_index %r", fn_index)
                return _refuse(403, t("gate.key_route", p.lang)), receive
            receive = _replay(body, receive)
        wait = p.api_key_wait(key)
        if wait > 0:
            response = _refuse(429, t("gate.key_rate", p.lang, key_id=key[3:11], s=f"{wait:.0f}"))
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response, receive
        return None, receive

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


def _page(body: str, lang: str, status: int = 200) -> HTMLResponse:
    """The one-line page a browser gets instead of the window."""
    return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>{t('title', lang)}</title>"
                        f"<p style='font:16px system-ui;margin:3em'>{body}</p>", status_code=status)


def _file_wanted(path: str) -> str | None:
    """The file a `/file=` route asks for, or None for any other route."""
    return next((path[len(prefix):] for prefix in FILE_PREFIXES if path.startswith(prefix)), None)


def _cookies(headers: Headers) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in headers.get("cookie", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out.setdefault(name, value)
    return out


def _unframeable(send: Send) -> Send:
    """`send` adding the headers that forbid showing the answer in a frame of any page."""

    async def framed(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-frame-options"]
            message = {**message, "headers": headers + FRAME_HEADERS}
        await send(message)

    return framed


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes `limit` bytes (said or sent)."""
    length = Headers(scope=scope).get("content-length", "")
    if length.strip().isdigit() and int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once (it was read to be checked), then what the client sends."""
    given = False

    async def again() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
