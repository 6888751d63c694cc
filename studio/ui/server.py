"""Serving the studio window: loopback by default, a password beyond it, files only from our folders.

`serve` is what the desktop launcher (and tests) call; it returns a one-time link to the window (a
ticket made with the run's `secret`, see studio/core/launch_link.py) and a stop function. Whoever
holds the secret makes further links (the tray's Open, a second launch).
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.core.assets import assets_dir
from studio.core.launch_link import TicketBook, new_secret, open_link
from studio.core.passwords import hash_password, is_password_hash, verify_password
from studio.core.ports import find_port
from studio.core.settings_check import is_loopback
from studio.ui.guard import GuardPolicy, WindowGuard

log = logging.getLogger("zaoxiang.ui")
ASSETS_DIR = assets_dir("studio.css")


class ServeError(RuntimeError):
    """The window cannot be served as asked; the message says why and what to do."""


def auth_for(host: str, settings: Any, auth: tuple[str, str] | None) -> tuple[str, str] | None:
    """(user, password hash) to require: none on loopback unless given; beyond it, given or configured
    ones, else refuse. A given plain password is hashed here, so only its hash stays in memory."""
    if auth and auth[0] and auth[1]:
        return auth[0], auth[1] if is_password_hash(auth[1]) else hash_password(auth[1])
    if is_loopback(host):
        return None
    user, stored = getattr(settings, "auth_user", ""), getattr(settings, "auth_password", "")
    if not user or not stored:
        raise ServeError(
            f"Listening on {host} lets other computers in, so it needs a username and password: "
            "set auth_user and auth_password in Settings (or ZAOXIANG_AUTH_USER / ZAOXIANG_AUTH_PASSWORD)."
        )
    return user, stored if is_password_hash(stored) else hash_password(stored)


def login_checker(credentials: tuple[str, str]) -> Callable[[str, str], bool]:
    """Gradio's `auth=` callable: the user name, then the password against its salted hash."""
    user, stored = credentials

    def check(username: str, password: str) -> bool:
        same_user = hmac.compare_digest(username.encode("utf-8", "replace"), user.encode("utf-8", "replace"))
        return verify_password(password, stored) and same_user  # the hash is checked either way: no timing hint

    return check


def allowed_hosts(host: str) -> frozenset[str]:
    """Host header values the window answers: loopback names, the bound host, and, when bound to
    every interface, this machine's own addresses and names (what another computer would type)."""
    names = {"127.0.0.1", "localhost", "::1", host.strip().strip("[]").lower()}
    if host in ("0.0.0.0", "::", ""):
        import psutil

        for addrs in psutil.net_if_addrs().values():
            for addr in addrs:
                if addr.family in (socket.AF_INET, socket.AF_INET6):
                    names.add(addr.address.split("%", 1)[0].lower())
        hostname = socket.gethostname().lower()
        names |= {hostname, f"{hostname}.local", socket.getfqdn().lower()}
    return frozenset(n.rstrip(".") for n in names if n)


class ServedFiles:
    """Which files `/file=` may hand out: the assets, Gradio's own upload/cache folder, and images
    the store knows (not any file that happens to sit in the output folder)."""

    REFRESH_S = 1.0

    def __init__(self, studio: Any, roots: list[Path]) -> None:
        self.studio = studio
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self._known: set[str] = set()
        self._loaded_at = 0.0
        self._listed_wall = 0.0  # time.time() of the last listing, to compare with files' mtimes
        self._lock = threading.Lock()

    def _new_since_listed(self, path: str) -> bool:
        """Whether `path` is a file written about when or after the store was last listed (an image just made)."""
        try:
            return os.stat(path).st_mtime > self._listed_wall - self.REFRESH_S
        except OSError:
            return False

    def _knows(self, path: str) -> bool:
        """Whether the store knows `path`; the list is read again at most once a second, unless the file
        is newer than the list (an image made a moment ago must not get a 403 until the next second)."""
        with self._lock:
            if path in self._known:
                return True
            if time.monotonic() - self._loaded_at < self.REFRESH_S and not self._new_since_listed(path):
                return False
            try:
                self._known = set(self.studio.store.known_images())
            except Exception:  # a damaged store serves nothing rather than everything
                log.exception("cannot list the store's images")
                self._known = set()
            self._loaded_at, self._listed_wall = time.monotonic(), time.time()
            return path in self._known

    def __call__(self, wanted: str) -> bool:
        if "://" in wanted or "\0" in wanted or not wanted:
            return False
        real = Path(os.path.realpath(wanted))
        if any(real == root or root in real.parents for root in self.roots):
            return True
        return self._knows(os.path.abspath(wanted)) or self._knows(str(real))


def named_fn_indices(demo: Any) -> frozenset[int]:
    """The fn_index of each endpoint meant for scripts, the only ones an API key may join the queue for."""
    from studio.ui.app import NAMED_ENDPOINTS

    return frozenset(fn._id for fn in demo.fns.values()
                     if fn.api_name in NAMED_ENDPOINTS and getattr(fn.fn, "zx_endpoint", False))


def key_wait(access: Any) -> Callable[[str], float]:
    """The guard's rate limit for a key's Gradio calls: the same per-key budget as its /v1 and /mcp calls."""

    def wait(plain: str) -> float:
        record = access.keys.verify(plain)
        return 0.0 if record is None else access.limiter.take(record.id, access.keys.config().rate_per_min)

    return wait


def key_file_check(access: Any, studio: Any) -> Callable[[str, str], bool]:
    """The guard's `/file=` rule for a key: only the images its own calls made (store/caller_images.py)."""

    def allowed(plain: str, path: str) -> bool:
        try:
            record = access.keys.verify(plain)
            return record is not None and studio.store.caller_image_path(record.id, path)
        except Exception:  # a broken key store or database must fail closed, not open
            log.exception("API key file check failed")
            return False

    return allowed


def served_folders(studio: Any) -> list[str]:
    """The only folders whose files the app serves: the output folder, the gallery, the assets."""
    folders = [Path(studio.output_dir), Path(studio.paths.gallery_dir), ASSETS_DIR]
    out = []
    for folder in folders:
        folder = folder.expanduser().resolve()
        if str(folder) not in out:
            out.append(str(folder))
    return out


def serve(studio: Any, host: str = "127.0.0.1", port: int = 7860, *, auth: tuple[str, str] | None = None,
          lang: str | None = None, quiet: bool = True, secret: str | None = None) -> tuple[str, Callable[[], None]]:
    """Start the window's server in background threads; returns (a one-time link to it, stop).

    `secret` makes the run's links (a new one when not given); keep it out of URLs and command lines."""
    from gradio.utils import get_upload_folder
    from starlette.middleware import Middleware

    from studio.api.mount import build_api, is_api_path
    from studio.ui.app import NAMED_ENDPOINTS, build_app

    host = host or "127.0.0.1"
    credentials = auth_for(host, studio.settings, auth)
    port = find_port(host, int(port or 7860))
    Path(studio.output_dir).mkdir(parents=True, exist_ok=True)
    demo = build_app(studio, lang=lang)
    demo.queue(default_concurrency_limit=8)
    secret = secret or new_secret()
    api = build_api(studio, host)  # /v1 (OpenAI images) and /mcp, on this same port (issue 21)
    policy = GuardPolicy(
        tickets=TicketBook(secret), allowed_hosts=allowed_hosts(host), login=credentials is not None,
        file_allowed=ServedFiles(studio, [ASSETS_DIR, Path(get_upload_folder())]),
        lang=demo.zx_context.lang, cookie_name=f"zx_session_{port}",
        api_key_check=api.access.key_ok, api_key_wait=key_wait(api.access), api_path=is_api_path,
        key_endpoints=frozenset(NAMED_ENDPOINTS), key_fn_indices=named_fn_indices(demo),
        key_file_allowed=key_file_check(api.access, studio),
    )
    demo.zx_guard, demo.zx_api = policy, api
    icon = ASSETS_DIR / "icon-64.png"
    css = ASSETS_DIR / "studio.css"
    demo.launch(
        server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
        auth=login_checker(credentials) if credentials else None, show_error=False, quiet=quiet,
        allowed_paths=served_folders(studio), blocked_paths=[str(studio.paths.config_dir)],
        app_kwargs={"middleware": [Middleware(WindowGuard, policy=policy)], "routes": api.routes,
                    "lifespan": api.lifespan},
        favicon_path=str(icon) if icon.is_file() else None, ssr_mode=False, pwa=False, mcp_server=False,
        enable_monitoring=False, footer_links=[], max_file_size="50mb", css_paths=[css] if css.is_file() else None,
        theme=_theme(), run_history=False,
    )
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{'[' + url_host + ']' if ':' in url_host else url_host}:{port}/"
    log.info("studio window at %s (login %s)", base, "on" if credentials else "off")
    url = open_link(base, secret)

    def stop() -> None:
        demo.close()

    return url, stop


def _theme():
    """Local fonts only (an offline studio must not fetch web fonts), CJK first."""
    import gradio as gr

    font = ["Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "system-ui", "sans-serif"]
    mono = ["Noto Sans Mono CJK SC", "ui-monospace", "Consolas", "monospace"]
    return gr.themes.Soft(primary_hue="red", secondary_hue="amber", neutral_hue="stone", font=font, font_mono=mono)
