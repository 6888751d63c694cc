"""Serving the studio window: loopback by default, a password beyond it, files only from our folders.

`serve` is what the desktop launcher (and tests) call; it returns the URL and a stop function.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.core.assets import assets_dir
from studio.ui.settings import is_loopback

log = logging.getLogger("zaoxiang.ui")
ASSETS_DIR = assets_dir("studio.css")
PORT_TRIES = 50


class ServeError(RuntimeError):
    """The window cannot be served as asked; the message says why and what to do."""


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def find_port(host: str, start: int, tries: int = PORT_TRIES) -> int:
    """`start`, or the next free port after it."""
    for port in range(start, min(start + tries, 65536)):
        if port_is_free(host, port):
            return port
    raise ServeError(f"No free port from {start} to {start + tries - 1} on {host}; pass --port.")


def auth_for(host: str, settings: Any, auth: tuple[str, str] | None) -> tuple[str, str] | None:
    """Credentials to require: none on loopback; beyond it, given or configured ones, else refuse."""
    if is_loopback(host):
        return auth
    auth = auth or ((settings.auth_user, settings.auth_password)
                    if getattr(settings, "auth_user", "") and getattr(settings, "auth_password", "") else None)
    if not auth or not auth[0] or not auth[1]:
        raise ServeError(
            f"Listening on {host} lets other computers in, so it needs a username and password: "
            "set auth_user and auth_password in Settings (or ZAOXIANG_AUTH_USER / ZAOXIANG_AUTH_PASSWORD)."
        )
    return auth


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
          lang: str | None = None, quiet: bool = True) -> tuple[str, Callable[[], None]]:
    """Start the window's server in background threads; returns (url, stop)."""
    from studio.ui.app import build_app

    host = host or "127.0.0.1"
    credentials = auth_for(host, studio.settings, auth)
    port = find_port(host, int(port or 7860))
    Path(studio.output_dir).mkdir(parents=True, exist_ok=True)
    demo = build_app(studio, lang=lang)
    demo.queue(default_concurrency_limit=8)
    icon = ASSETS_DIR / "icon-64.png"
    css = ASSETS_DIR / "studio.css"
    demo.launch(
        server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
        auth=credentials, show_error=False, quiet=quiet, allowed_paths=served_folders(studio),
        favicon_path=str(icon) if icon.is_file() else None, ssr_mode=False, pwa=False, mcp_server=False,
        enable_monitoring=False, footer_links=[], max_file_size="50mb", css_paths=[css] if css.is_file() else None,
        theme=_theme(), run_history=False,
    )
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{'[' + url_host + ']' if ':' in url_host else url_host}:{port}/"
    log.info("studio window at %s (auth %s)", url, "on" if credentials else "off")

    def stop() -> None:
        demo.close()

    return url, stop


def _theme():
    """Local fonts only (an offline studio must not fetch web fonts), CJK first."""
    import gradio as gr

    font = ["Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "system-ui", "sans-serif"]
    mono = ["Noto Sans Mono CJK SC", "ui-monospace", "Consolas", "monospace"]
    return gr.themes.Soft(primary_hue="red", secondary_hue="amber", neutral_hue="stone", font=font, font_mono=mono)
