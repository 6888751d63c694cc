"""Screenshots of every tab for the README, at 1366×768, on the shipped demo model.

    .venv/bin/python scripts/make_screenshots.py [--out docs/screenshots]

Runs the real studio (one CPU worker, a throw-away home) and the real app in headless Chromium
(/usr/bin/chromium), in Chinese, and asks for two "白色背景上的红色星形" and two "a blue ring on a
yellow background" at the demo model's defaults, then sends a Gallery image to img2img (the image panel).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = ("白色背景上的红色星形", "a blue ring on a yellow background")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/screenshots")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    os.environ["ZAOXIANG_HOME"] = tempfile.mkdtemp(prefix="zx-shots-")
    os.environ["ZAOXIANG_NO_OPEN"] = "1"
    from playwright.sync_api import sync_playwright

    from studio.app import Studio
    from studio.ui.server import serve

    studio = Studio(workers="cpu:1")
    studio.start()
    url, stop = serve(studio, "127.0.0.1", 7871, lang="zh")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN").new_page()
            page.set_default_timeout(120_000)
            page.goto(url)
            page.wait_for_selector("#prompt textarea")
            field = page.locator("#count input[type=number]").first
            field.fill("2")
            field.press("Tab")
            for n, prompt in enumerate(PROMPTS):
                page.locator("#prompt textarea").first.fill(prompt)
                page.click("#generate")
                if n:  # the previous request's "2/2" must give way first
                    page.wait_for_function("!document.querySelector('#progress').innerText.includes('2/2')")
                page.wait_for_function("document.querySelector('#progress').innerText.includes('2/2')")
                page.locator("#results img").nth(1).wait_for()
                if n == 0:
                    page.screenshot(path=str(out / "generate.png"), full_page=True)
            page.get_by_role("tab", name="历史").first.click()
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / "history.png"), full_page=True)
            page.get_by_role("tab", name="图库").first.click()
            page.locator("#gallery img").nth(3).wait_for()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out / "gallery.png"), full_page=True)
            # a Gallery image sent to img2img: the Generate tab's image panel with the ControlNet chooser
            page.locator("#gallery img").first.click()
            page.wait_for_selector("#gallery-viewer #viewer-image img")
            page.click("#viewer-send-img2img")
            page.locator("#image-editor canvas").first.wait_for(state="visible")
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / "image-input.png"), full_page=True)
            page.get_by_role("tab", name="GPU 监控").first.click()
            page.wait_for_timeout(3000)  # two samples of the monitor's timer
            page.screenshot(path=str(out / "monitor.png"), full_page=True)
            page.get_by_role("tab", name="设置").first.click()
            page.locator("#settings-workers").wait_for()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out / "settings.png"), full_page=True)
            browser.close()
    finally:
        stop()
        studio.close()
    print(f"screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
