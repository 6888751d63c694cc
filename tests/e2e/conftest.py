"""One real studio per test module: demo model, one CPU worker, the Gradio app on loopback, and a
headless Chromium page pointed at it."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from studio.core.launch_link import link_base, new_secret, open_link
from tests.conftest import ARTIFACTS
from tests.homes import make_home

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def studio_home(tmp_path_factory: pytest.TempPathFactory, demo_model_master: Path):
    """Like the `home` fixture, for a whole module (one app instance per module keeps the suite fast)."""
    root = tmp_path_factory.mktemp("e2e") / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("ZAOXIANG_HOME", str(root))
    mp.setenv("ZAOXIANG_NO_OPEN", "1")  # "open folder" must not launch a file manager during tests
    for var in ("ZAOXIANG_LANGUAGE", "ZAOXIANG_WORKERS"):
        mp.delenv(var, raising=False)
    make_home(root, demo_model_master, mp)
    yield root
    mp.undo()


class Served(SimpleNamespace):
    """The served studio as a test reaches it; `url` is a fresh one-time link at each use, as the tray's
    Open makes one (a link opens the window once)."""

    @property
    def url(self) -> str:
        return open_link(f"{self.base}/", self.secret)


@pytest.fixture(scope="module")
def app(studio_home: Path):
    """The real studio, served by the real server, in Chinese."""
    from studio.app import Studio
    from studio.ui.server import serve

    studio = Studio(workers="cpu:1")
    studio.start()
    secret = new_secret()
    first, stop = serve(studio, "127.0.0.1", 7860, lang="zh", secret=secret)
    base = link_base(first).rstrip("/")
    port = int(base.rsplit(":", 1)[1])
    try:
        cookie = httpx.get(first, timeout=60).cookies[f"zx_session_{port}"]  # what the page holds once it opened it
        yield Served(base=base, port=port, secret=secret, cookie=cookie,
                     headers={"Cookie": f"zx_session_{port}={cookie}"}, studio=studio, home=studio_home)
    finally:
        stop()
        studio.close()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium fonts-noto-cjk)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def page(browser, app):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(app.url)
    page.wait_for_selector("#prompt textarea")
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def shots() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
