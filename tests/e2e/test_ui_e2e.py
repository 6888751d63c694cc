"""The studio window end to end: headless Chromium against the real app (demo model, one CPU worker).

Tests run in file order on one app instance (CI has two cores): the first request made here is what
History and Gallery then show. Screenshots of every tab go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROMPT = "一只红色的星星，水墨画风格 a red star"
NEGATIVE = "模糊，低质量"
FIRST_SEED = 123456
SEED_JS = "document.querySelector('#seed textarea, #seed input').value"


def box(page, elem_id: str):
    """The text input inside a Gradio textbox/number/slider by its elem_id."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input[type=number], #{elem_id} input[type=text], "
                        f"#{elem_id} input[type=password]").first


def set_number(page, elem_id: str, value) -> None:
    field = box(page, elem_id)
    field.fill(str(value))
    field.press("Tab")


def choose(page, elem_id: str, label: str) -> None:
    page.locator(f"#{elem_id} label", has_text=label).first.click()


def checked(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} input:checked").first.evaluate("e => e.parentElement.innerText").strip()


ROWS_JS = ("[...document.querySelectorAll('#history [role=row]')]"
           ".filter(r => r.parentElement.tagName !== 'THEAD' && r.innerText.trim() !== '')")


def history_rows(page) -> list[str]:
    return page.evaluate(f"{ROWS_JS}.map(r => r.innerText)")


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).first.click()


def wait_finished(page, request_count_before: int | None = None, timeout: float = 180) -> None:
    page.wait_for_selector("#progress [data-state=finished]", timeout=timeout * 1000)


def fill_form(page, *, prompt=PROMPT, count=2, steps=3, guidance="1.5", seed=FIRST_SEED, mode="递增") -> None:
    box(page, "prompt").fill(prompt)
    choose(page, "size", "自定义")
    set_number(page, "width", 256)
    set_number(page, "height", 256)
    set_number(page, "steps", steps)
    if not page.locator("#guidance").is_visible():  # guidance and seed mode are folded under "more"
        page.locator("#gen-more").first.click()
        page.locator("#guidance").wait_for(state="visible")
    set_number(page, "guidance", guidance)
    if float(guidance) > 0:  # the negative prompt only shows (and only matters) with guidance
        page.wait_for_selector("#negative textarea", state="visible")
        box(page, "negative").fill(NEGATIVE)
    set_number(page, "count", count)
    box(page, "seed").fill(str(seed))
    choose(page, "seed-mode", mode)


def test_demo_model_is_announced_and_bad_input_shows_next_to_the_field(page, shots):
    banner = page.locator("#demo-banner")
    assert "演示模型" in banner.inner_text() and "Z-Image-Turbo" in banner.inner_text()
    box(page, "prompt").fill("")
    page.click("#generate")
    err = page.locator("#err-prompt")
    err.wait_for(state="visible")
    assert "请填写提示词" in err.inner_text() and "Prompt" not in err.inner_text()  # one language at a time
    box(page, "prompt").fill("猫")
    set_number(page, "count", 0)
    page.click("#generate")
    page.locator("#err-count").wait_for(state="visible")
    assert "数量必须在 1 到 64 之间" in page.locator("#err-count").inner_text()
    assert not page.locator("#err-prompt").is_visible()
    assert "Traceback" not in page.content()
    page.screenshot(path=str(shots / "ui-validation-zh.png"), full_page=True)
    set_number(page, "count", 1)


def test_chinese_prompt_two_images_appear_with_their_seeds(page, app, shots):
    fill_form(page)
    page.click("#generate")
    page.wait_for_selector("#progress .zx-job", timeout=60_000)
    progress_seen = page.locator("#progress").inner_text()
    wait_finished(page)
    results = page.locator("#results")
    results.locator("img").nth(1).wait_for()
    text = results.inner_text()
    assert f"种子 {FIRST_SEED} · cpu:0" in text and f"种子 {FIRST_SEED + 1} · cpu:0" in text
    assert "2/2 张完成" in page.locator("#progress").inner_text()
    assert "cpu:0" in progress_seen
    page.screenshot(path=str(shots / "ui-generate-zh.png"), full_page=True)
    images = sorted(app.studio.output_dir.rglob("*.png"))
    assert len(images) == 2

    # a click on a finished image restores its parameters (its own seed, one image)
    results.locator("img").nth(1).click()
    page.wait_for_function(f"{SEED_JS} === '{FIRST_SEED + 1}'")
    assert checked(page, "seed-mode") == "固定"
    assert box(page, "count").input_value() == "1"
    assert box(page, "prompt").input_value() == PROMPT

    # dice and reuse-last-seed
    page.click("#dice")
    page.wait_for_function(f"!['', '{FIRST_SEED + 1}'].includes({SEED_JS})")
    page.click("#reuse-seed")
    page.wait_for_function(f"{SEED_JS} === '{FIRST_SEED}'")


def test_history_lists_the_request_and_restores_every_field(page, shots):
    page.reload()
    page.wait_for_selector("#prompt textarea")
    open_tab(page, "历史")
    page.wait_for_function(f"{ROWS_JS}.length === 1")
    row = history_rows(page)[0]
    assert "一只红色的星星" in row and "256×256" in row and "2/2" in row and "完成" in row
    assert page.locator("#history img.zx-thumb").count() >= 1
    # search: a term that is not in the prompt empties the list, one that is brings the request back
    box(page, "history-search").fill("月亮")
    box(page, "history-search").press("Enter")
    page.wait_for_function(f"{ROWS_JS}.length === 0")
    box(page, "history-search").fill("星星")
    box(page, "history-search").press("Enter")
    page.wait_for_function(f"{ROWS_JS}.length === 1")
    page.locator("#history [role=row]", has_text="一只红色的星星").first.get_by_text("一只红色的星星").click()
    page.locator("#history-images img").nth(1).wait_for()
    page.screenshot(path=str(shots / "ui-history-zh.png"), full_page=True)
    page.click("#history-restore")
    page.wait_for_function("document.querySelector('#prompt textarea').value.length > 0")
    assert box(page, "prompt").input_value() == PROMPT
    assert box(page, "negative").input_value() == NEGATIVE
    assert checked(page, "size") == "自定义"
    assert box(page, "width").input_value() == "256" and box(page, "height").input_value() == "256"
    assert box(page, "steps").input_value() == "3"
    assert float(box(page, "guidance").input_value()) == 1.5
    assert box(page, "count").input_value() == "2"
    assert box(page, "seed").input_value() == str(FIRST_SEED)
    assert checked(page, "seed-mode") == "递增"


def test_gallery_shows_the_images_and_reads_dropped_pngs(page, app, shots):
    open_tab(page, "图库")
    gallery = page.locator("#gallery")
    gallery.locator("img").nth(1).wait_for()
    assert gallery.locator("img").count() == 2
    assert "共 2 张" in page.locator("#gallery-page").inner_text()
    gallery.locator("img").first.click()
    info = page.locator("#gallery-info")
    page.wait_for_function("document.querySelector('#gallery-info').innerText.includes('一只红色的星星')")
    assert "cpu:0" in info.inner_text() and "256×256" in info.inner_text()
    page.click("#gallery-favorite")
    page.wait_for_function("document.querySelector('#gallery').innerText.includes('★')")
    png = sorted(app.studio.output_dir.rglob("*.png"))[0]
    page.locator("#png-drop input[type=file]").set_input_files(str(png))
    page.wait_for_function("document.querySelector('#png-info').innerText.includes('一只红色的星星')")
    page.screenshot(path=str(shots / "ui-gallery-zh.png"), full_page=True)
    open_tab(page, "历史")
    box(page, "history-search").fill("")
    page.locator("#history-favorites input").check()
    page.wait_for_function(f"{ROWS_JS}.length === 1")
    assert "一只红色的星星" in history_rows(page)[0]


VIEWER_SRC_JS = "decodeURIComponent(document.querySelector('#viewer-image img')?.getAttribute('src') || '')"
THUMBS_JS = "document.querySelectorAll('#gallery img').length"


def test_gallery_viewer_arrow_keys_download_and_favorites_filter(page, app, shots):
    """A thumbnail opens the image whole with its seed; → shows the next one; it downloads as itself;
    a favorite made in the viewer is what "favorites only" then shows; the search box filters by prompt."""
    open_tab(page, "图库")
    page.locator("#gallery img").nth(1).wait_for()
    first, second = app.studio.gallery()["items"][:2]
    page.locator("#gallery img").first.click()
    page.wait_for_selector("#gallery-viewer #viewer-image img")
    assert Path(first["path"]).name in page.evaluate(VIEWER_SRC_JS)
    assert page.locator("#viewer-pos").inner_text().strip() == "1 / 2"
    assert box(page, "viewer-seed").input_value() == str(first["seed"])
    if first["favorite"]:  # the test above made it a favorite: take that back here
        page.click("#gallery-favorite")
        page.wait_for_function("document.querySelector('#gallery-status').innerText.includes('已取消收藏')")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("document.querySelector('#viewer-pos').innerText.trim() === '2 / 2'")
    assert Path(second["path"]).name in page.evaluate(VIEWER_SRC_JS)
    assert box(page, "viewer-seed").input_value() == str(second["seed"])
    page.screenshot(path=str(shots / "ui-gallery-viewer-zh.png"))
    with page.expect_download() as download:
        page.click("#viewer-download")
    assert download.value.suggested_filename == Path(second["path"]).name
    page.click("#gallery-favorite")
    page.wait_for_function("document.querySelector('#gallery-status').innerText.includes('已收藏')")
    page.locator("#gallery-favorites input").check()
    page.wait_for_function(f"{THUMBS_JS} === 1")
    assert f"★ 种子 {second['seed']}" in page.locator("#gallery").inner_text()
    page.locator("#gallery-favorites input").uncheck()
    page.wait_for_function(f"{THUMBS_JS} === 2")
    box(page, "gallery-search").fill("没有这个词")
    box(page, "gallery-search").press("Enter")
    page.wait_for_function(f"{THUMBS_JS} === 0")
    assert "没有符合条件的图像" in page.locator("#gallery-page").inner_text()
    box(page, "gallery-search").fill("星星")
    box(page, "gallery-search").press("Enter")
    page.wait_for_function(f"{THUMBS_JS} === 2")
    box(page, "gallery-search").fill("")  # leave the Gallery unfiltered for the tests after
    box(page, "gallery-search").press("Enter")
    page.wait_for_function("document.querySelector('#gallery-page').innerText.includes('共 2 张')")


def test_gallery_delete_then_undo_brings_the_file_and_the_row_back(page, app):
    target = app.studio.gallery()["items"][0]
    page.locator("#gallery img").first.click()
    page.wait_for_function("document.querySelector('#viewer-pos')?.innerText.trim() === '1 / 2'")
    page.click("#gallery-delete")
    page.wait_for_function(f"{THUMBS_JS} === 1")
    assert not Path(target["path"]).exists() and app.studio.gallery()["total"] == 1
    page.click("#gallery-undo")
    page.wait_for_function(f"{THUMBS_JS} === 2")
    assert Path(target["path"]).is_file()
    assert app.studio.image_info(target["image_id"])["path"] == target["path"]
    assert "已恢复" in page.locator("#gallery-status").inner_text()
    assert not page.locator("#gallery-undo").is_visible()
    page.locator("#gallery img").first.click()  # "use as seed" fills the Generate form's seed, fixed
    page.wait_for_function("document.querySelector('#viewer-pos')?.innerText.trim() === '1 / 2'")
    page.click("#viewer-use-seed")
    page.wait_for_function(f"{SEED_JS} === '{target['seed']}'")
    assert checked(page, "seed-mode") == "固定" and box(page, "prompt").is_visible()


def test_empty_trash_in_settings_asks_first(page, app):
    stray = app.studio.paths.trash_dir / "2026-01-01" / "left-over.png"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"x" * 2048)
    open_tab(page, "设置")
    page.click("#settings-empty-trash")
    page.locator("#settings-trash-confirm").wait_for(state="visible")
    page.click("#settings-trash-no")
    page.locator("#settings-trash-confirm").wait_for(state="hidden")
    assert stray.exists()
    page.click("#settings-empty-trash")
    page.click("#settings-trash-yes")
    page.wait_for_function("document.querySelector('#settings-trash-status').innerText.includes('回收站已清空')")
    assert not stray.exists() and "删除了 1 个文件" in page.locator("#settings-trash-status").inner_text()


def test_cancel_stops_a_six_image_request_and_the_ui_stays_usable(page, app):
    open_tab(page, "生成")
    fill_form(page, prompt="取消测试 cancel me", count=6, steps=4, guidance="0", seed=7, mode="随机")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#progress').innerText.includes('/4')", timeout=60_000)
    page.click("#cancel")
    wait_finished(page, timeout=60)
    text = page.locator("#progress").inner_text()
    done = int(re.search(r"已取消：(\d)/6", text).group(1))
    assert done < 6 and "已取消" in text
    rid = app.studio.history(limit=1)[0]["request_id"]
    assert app.studio.history(limit=1)[0]["status"] in ("cancelled", "done")  # partly done requests count as done
    assert len(app.studio.history(limit=1)[0]["images"]) == done and rid
    # still usable: one more image goes through
    set_number(page, "count", 1)
    page.click("#generate")
    page.wait_for_function("document.querySelector('#progress').innerText.includes('1/1 张完成')", timeout=120_000)


def test_monitor_renders_charts_and_the_pool_table(page, app, shots):
    open_tab(page, "GPU 监控")
    page.wait_for_function("document.querySelector('#monitor-pool').innerText.includes('cpu:0')")
    # the worker made the earlier tests' images: its GPU (here CPU) busy share of its last request shows
    page.wait_for_function("document.querySelector('#monitor-pool').innerText.includes('GPU 忙碌占比')")
    page.wait_for_function("/\\b\\d{1,3}%/.test(document.querySelector('#monitor-pool').innerText)")
    page.wait_for_selector("#monitor-util canvas, #monitor-util svg")
    page.wait_for_selector("#monitor-mem canvas, #monitor-mem svg")
    gpus = page.locator("#monitor-gpus").inner_text()
    assert "未找到 NVIDIA GPU" in gpus or "GPU 0" in gpus
    assert "负载均衡效率" in page.locator("#monitor-balance").inner_text()
    before = page.locator("#monitor-queue").inner_text()
    time.sleep(2.5)  # the timer redraws every second; give the chart a few points
    page.screenshot(path=str(shots / "ui-monitor-zh.png"), full_page=True)
    assert before


def test_settings_save_reload_and_restart_on_request(page, app, shots):
    open_tab(page, "设置")
    box(page, "settings-workers").wait_for()
    page.locator("#settings-memory input").first.click()
    page.get_by_role("option", name="16 GB").click()
    box(page, "settings-workers").fill("cpu:1")
    box(page, "settings-host").fill("0.0.0.0")
    page.click("#settings-save")
    page.wait_for_function("document.querySelector('#settings-status').innerText.includes('用户名和密码')")
    box(page, "settings-host").fill("127.0.0.1")
    page.click("#settings-save")
    page.wait_for_function("document.querySelector('#settings-status').innerText.includes('设置已保存')")
    status = page.locator("#settings-status").inner_text()
    assert "显存方案" in status and "GPU" in status  # the fields by their labels, in Chinese
    assert not re.search(r"memory_profile|workers|[A-Za-z]{3,}_[a-z]", status), status
    page.locator("#settings-restart").wait_for(state="visible")
    page.screenshot(path=str(shots / "ui-settings-zh.png"), full_page=True)
    pids = [w["pid"] for w in app.studio.pool_status()]
    page.click("#settings-restart")
    page.wait_for_function("document.querySelector('#settings-status').innerText.includes('工作进程已重启')",
                           timeout=120_000)
    assert [w["pid"] for w in app.studio.pool_status()] != pids
    from studio.core.settings import load_settings

    saved = load_settings(app.studio.paths)
    assert (saved.memory_profile, saved.workers) == ("16gb", "cpu:1")
    page.reload()
    page.wait_for_selector("#prompt textarea")
    open_tab(page, "设置")
    page.wait_for_function("document.querySelector('#settings-workers textarea, #settings-workers input')"
                           ".value === 'cpu:1'")
    assert page.locator("#settings-memory input").first.input_value() == "16 GB"

    # language: English relabels the window, and back
    choose(page, "settings-language", "English")
    page.click("#settings-save")
    page.get_by_role("tab", name="Generate").wait_for()
    page.screenshot(path=str(shots / "ui-settings-en.png"), full_page=True)
    open_tab(page, "Generate")  # every visible string switched, the progress box too
    page.wait_for_function("document.querySelector('#progress').innerText.includes('Ready.')")
    prompts = [r["request"]["prompt"] for r in app.studio.history(limit=500)]
    text = page.evaluate(VISIBLE_TEXT_JS)
    for prompt in sorted(prompts, key=len, reverse=True):
        text = text.replace(prompt, " ")
    chinese = {line for line in text.splitlines() if re.search(r"[\u4e00-\u9fff]", line.replace("造相", ""))}
    assert not chinese, f"Chinese left in the English window: {chinese}"
    _only_english(page, prompts)  # and on every other tab: the switch relabels everything it shows
    open_tab(page, "Settings")
    choose(page, "settings-language", "中文")
    page.click("#settings-save")
    try:  # a save clicked while the radio's own event is still in flight can read the old value: once more
        page.get_by_role("tab", name="生成").wait_for(timeout=20_000)
    except PlaywrightTimeoutError:
        page.click("#settings-save")
        page.get_by_role("tab", name="生成").wait_for(timeout=60_000)


def _get(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_files_outside_the_gallery_are_refused(app):
    base = app.base
    image = sorted(app.studio.output_dir.rglob("*.png"))[0]
    assert _get(f"{base}/gradio_api/file={quote(str(image))}", app.headers) == 200  # the positive control
    settings_file = app.studio.paths.settings_file
    repo_file = Path(__file__).resolve().parents[2] / "pyproject.toml"
    gallery = app.studio.output_dir
    for target in ("/etc/passwd", str(settings_file), str(repo_file), str(app.studio.paths.database),
                   f"{gallery}/../../config/settings.toml", "../../../../etc/passwd",
                   f"{gallery}/%2e%2e/%2e%2e/config/settings.toml"):
        status = _get(f"{base}/gradio_api/file={quote(target, safe='/%')}", app.headers)
        assert status in (403, 404), (target, status)
    assert _get(f"{base}/file=/etc/passwd", app.headers) in (403, 404)


def test_not_reachable_beyond_loopback_by_default(app):
    port = app.port
    listening = [c.laddr.ip for c in psutil.Process().net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert listening and all(ip == "127.0.0.1" for ip in listening)
    addrs = [a.address for nic in psutil.net_if_addrs().values() for a in nic
             if a.family == socket.AF_INET and not a.address.startswith("127.")]
    for ip in addrs:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((ip, port)) != 0, f"reachable on {ip}:{port}"
    from studio.ui.server import ServeError, serve

    with pytest.raises(ServeError, match="username and password"):
        serve(app.studio, "0.0.0.0", port + 1)


def _left_by_a_dead_studio(studio, prompt: str, count: int, seed: int) -> str:
    """A request whose studio died (a dead pid owns its jobs), as a crash leaves it; its request id."""
    import sqlite3
    import subprocess
    import sys

    from studio.app import make_jobs
    from studio.core.request import GenerationRequest, validate

    req = validate(GenerationRequest(prompt=prompt, width=256, height=256, steps=2, count=count, seed=seed,
                                     seed_mode="increment"))
    jobs = make_jobs(req, f"left-{seed}", studio.output_dir)
    owner = studio.store.register_owner()
    studio.store.record_request(req, jobs, origin="ui", model=studio.model.name, model_path=str(studio.model.path),
                                owner=owner)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with sqlite3.connect(studio.paths.database) as conn:
        conn.execute("UPDATE owners SET pid = ? WHERE id = ?", (gone.pid, owner))
    return jobs[0].request_id


def test_images_from_last_time_banner_resume_and_discard(browser, app, shots):
    """The next start asks about a stopped studio's images: Resume makes each once, Discard cancels."""
    studio = app.studio
    rid = _left_by_a_dead_studio(studio, "上次留下的 left from last time", 2, 900)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    try:
        page = context.new_page()
        page.goto(app.url)
        page.locator("#leftover").wait_for(state="visible", timeout=30_000)
        assert "上次还有 2 张图像没有完成（1 个请求）" in page.locator("#leftover-text").inner_text()
        page.screenshot(path=str(shots / "ui-leftover-zh.png"), full_page=True)
        page.click("#leftover-resume")
        page.locator("#leftover-done", has_text="已重新排队 2 张图像").wait_for()
        assert not page.locator("#leftover").is_visible()
        assert [r["status"] for r in studio.wait(rid, timeout=180)] == ["done", "done"]
        [row] = [r for r in studio.history() if r["request_id"] == rid]
        assert sorted(im["seed"] for im in row["images"]) == [900, 901]

        gone = _left_by_a_dead_studio(studio, "不要了 discard me", 3, 950)
        page.reload()
        page.locator("#leftover").wait_for(state="visible", timeout=30_000)
        assert "上次还有 3 张图像" in page.locator("#leftover-text").inner_text()
        page.click("#leftover-discard")
        page.locator("#leftover-done", has_text="已放弃 3 张图像").wait_for()
        [row] = [r for r in studio.history() if r["request_id"] == gone]
        assert row["state"] == "cancelled" and row["images"] == []
        page.reload()
        page.wait_for_selector("#prompt textarea")
        time.sleep(1)
        assert not page.locator("#leftover").is_visible()
    finally:
        context.close()


# ---------------------------------------------------------------- the window's second pass (issue 17)

# Words the Chinese window may show in Latin letters: proper names, units and technical names a
# Chinese studio would use as they are. Anything else in Latin letters is an untranslated string.
ALLOWED_LATIN = {"z", "image", "studio", "turbo", "gpu", "gpus", "cpu", "png", "lora", "cfg", "nvidia", "automatic1111",
                 "forge", "api", "mb", "gb", "w", "ctrl", "enter", "hf", "modelscope", "download", "model", "tongyi",
                 "mai", "demo", "cuda", "auto", "automatic", "utf", "ai", "openai", "mcp", "id", "english", "open", "webui",
                 "controlnet"}
VISIBLE_TEXT_JS = """() => {
  // the text a person sees: visible elements' own text nodes (not inputs' values, which hold what they typed)
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || !n.textContent.trim() || ['SCRIPT', 'STYLE', 'NOSCRIPT'].includes(el.tagName)) continue;
    const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
    if (r.width === 0 || r.height === 0 || cs.visibility === 'hidden' || cs.display === 'none' ||
        parseFloat(cs.fontSize) === 0 || el.closest('.sr-only') ||
        // an ancestor at opacity 0 hides it too (Gradio's hidden status text lives in such a wrapper)
        !el.checkVisibility({opacityProperty: true, visibilityProperty: true})) continue;
    out.push(n.textContent.trim() + '\t@' + (el.closest('[id]')?.id || el.className.toString() + '<' +
             el.parentElement?.className.toString()));
  }
  for (const el of document.querySelectorAll('[placeholder]'))
    if (el.getBoundingClientRect().width > 0) out.push(el.getAttribute('placeholder'));
  return out.join('\\n');
}"""


def english_words(text: str, prompts: list[str]) -> set[str]:
    """Latin-letter words in `text` outside prompts, paths, file names and the allowlist."""
    for prompt in sorted(prompts, key=len, reverse=True):
        text = text.replace(prompt, " ")
    text = re.sub(r"(?:[A-Za-z]:)?[/\\][^\s`'\"，。）]*|[\w.-]+\.(?:png|json|toml|db)\b|`[^`]*`", " ", text)
    return {w for w in re.findall(r"[A-Za-z]{2,}", text) if w.lower() not in ALLOWED_LATIN
            and not re.fullmatch(r"[a-f0-9]{6,}", w.lower())}


def in_viewport(page, selector: str) -> bool:
    rect = page.locator(selector).first.evaluate(
        "e => { const r = e.getBoundingClientRect();"
        " return [r.top, r.left, r.bottom, r.right, innerHeight, innerWidth, scrollY]; }")
    top, left, bottom, right, height, width, _scroll = rect
    ok = bottom > top and top >= 0 and left >= 0 and bottom <= height and right <= width
    if not ok:
        print(f"{selector} is outside the viewport: {rect}")
    return ok


def page_width(page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, innerWidth]")


def new_window(browser, app, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(app.url)
    page.wait_for_selector("#prompt textarea")
    return context, page


def small_request(page, prompt: str, count: int = 1, steps: int = 2) -> None:
    box(page, "prompt").fill(prompt)
    choose(page, "size", "自定义")
    set_number(page, "width", 256)
    set_number(page, "height", 256)
    set_number(page, "steps", steps)
    set_number(page, "count", count)


@pytest.mark.parametrize("width,height", [(1366, 768), (800, 720)])
def test_feedback_and_results_in_view_on_a_laptop_and_a_narrow_window(browser, app, shots, width, height):
    context, page = new_window(browser, app, width, height)
    try:
        assert in_viewport(page, "#generate"), "Generate must be in view without scrolling"
        assert "Ctrl+Enter" in page.locator("#generate").inner_text()
        assert not page.locator("#examples").is_visible()  # folded
        small_request(page, f"视口测试 {width} a blue circle")
        page.evaluate("window.scrollTo(0, 0)")
        page.keyboard.press("Control+Enter") if width == 800 else page.click("#generate")  # both ways generate
        page.wait_for_selector("#progress .zx-job", timeout=60_000)
        assert in_viewport(page, "#progress"), "progress must show where the person is looking"
        page.locator("#results img").first.wait_for(timeout=120_000)
        page.wait_for_function("document.querySelector('#results img').naturalWidth > 0")
        page.screenshot(path=str(shots / f"ui-window-{width}x{height}.png"))
        assert in_viewport(page, "#results img"), "the first result must be in view"
        # shown whole: the image box keeps the image's own aspect, and its seed caption shows
        img = page.locator("#results img").first.evaluate(
            "e => { const r = e.getBoundingClientRect(); const c = e.closest('button, .thumbnail-item') || e.parentElement;"
            " const b = c.getBoundingClientRect();"
            " return {w: r.width, h: r.height, bw: b.width, bh: b.height, top: r.top, ctop: b.top, cbottom: b.bottom,"
            " bottom: r.bottom}; }")
        assert img["w"] > 100 and img["h"] > 100
        assert page.locator("#results", has_text="种子").first.is_visible()
        caption = page.locator("#results .caption-label, #results [class*=caption]").first
        assert caption.is_visible() and "种子" in caption.inner_text() and in_viewport(
            page, "#results .caption-label, #results [class*=caption]")
        for tab in ("生成", "历史", "图库", "GPU 监控", "设置"):
            open_tab(page, tab)
            time.sleep(0.8)
            wide, inner = page_width(page)
            assert wide <= inner, f"{tab} at {width} px is {wide} px wide"
            page.screenshot(path=str(shots / f"ui-window-{width}-{tab}.png"), full_page=True)
    finally:
        context.close()


def test_a_second_click_queues_a_second_request_with_its_own_cancel(browser, app, shots):
    context, page = new_window(browser, app, 1366, 768)
    before = len(app.studio.history(limit=500))
    try:
        small_request(page, "队列第一个 queue one", count=2, steps=6)
        page.click("#generate")
        page.wait_for_selector("#progress .zx-job", timeout=60_000)
        # hold the queue (the running image finishes) so that the second and third are still waiting
        # when the third's cancel is clicked, however fast or loaded the machine is
        app.studio.pause()
        box(page, "prompt").fill("队列第二个 queue two")
        set_number(page, "count", 1)
        set_number(page, "steps", 4)
        page.click("#generate")
        page.locator("#gen-notice", has_text="已加入队列").wait_for()
        box(page, "prompt").fill("队列第三个 queue three")
        page.click("#generate")
        page.locator(".zx-queue-row").nth(2).wait_for()
        rows = page.locator(".zx-queue-row")
        assert "运行中" in rows.nth(0).inner_text() and "排队中" in rows.nth(1).inner_text()
        page.screenshot(path=str(shots / "ui-queue-zh.png"))
        rows.nth(2).locator("button").click()  # cancel the third only
        third = None
        for _ in range(100):
            third = next((r for r in app.studio.history(limit=10) if r["request"]["prompt"] == "队列第三个 queue three"),
                         None)
            if third and third["status"] == "cancelled":
                break
            time.sleep(0.2)
        assert third and third["status"] == "cancelled"
        app.studio.resume()
        # the second runs after the first, in the same progress box
        page.wait_for_function("document.querySelector('#progress').innerText.includes('1/1 张完成')",
                               timeout=180_000)
        page.wait_for_function("!document.querySelector('.zx-queue-row')", timeout=30_000)
        rows_now = app.studio.history(limit=500)
        assert len(rows_now) == before + 3
        second = next(r for r in rows_now if r["request"]["prompt"] == "队列第二个 queue two")
        first = next(r for r in rows_now if r["request"]["prompt"] == "队列第一个 queue one")
        assert (first["status"], len(first["images"]), second["status"], len(second["images"])) == ("done", 2, "done", 1)
    finally:
        app.studio.resume()  # never leave the shared app paused for the tests after this one
        context.close()


@pytest.mark.parametrize("field,value", [("steps", 0), ("steps", 500), ("count", 2.5)])
def test_bad_numbers_are_refused_with_the_clis_message(page, app, field, value):
    import subprocess
    import sys

    from studio.core.request import GenerationRequest, ValidationError, validate
    from studio.ui.i18n import field_error

    open_tab(page, "生成")
    small_request(page, "坏数字 bad numbers")
    set_number(page, field, value)
    before = len(app.studio.history(limit=500))
    page.click("#generate")
    err = page.locator(f"#err-{field}")
    err.wait_for(state="visible")
    with pytest.raises(ValidationError) as exc:
        validate(GenerationRequest("x", width=256, height=256, **{field: value}))
    cli = subprocess.run([sys.executable, "-m", "studio", "generate", "x", f"--{field}", str(value)],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode != 0 and exc.value.message in cli.stderr + cli.stdout  # the CLI's own line
    assert err.inner_text().strip() == "⚠ " + field_error(field, exc.value.message, "zh", exc.value.kind,
                                                          exc.value.got)
    assert str(value) in err.inner_text() and not re.search(r"[A-Za-z]{3,}", err.inner_text())
    time.sleep(0.5)
    assert len(app.studio.history(limit=500)) == before, "nothing may be queued"
    set_number(page, field, 1 if field == "count" else 2)


def test_the_chinese_window_speaks_only_chinese(browser, app, shots):
    """Checked with an English browser, as a person whose system is English but who chose 中文 sees it:
    Gradio's own words follow the browser, ours the window."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-US")
    try:
        page = context.new_page()
        page.goto(app.url)
        page.wait_for_selector("#prompt textarea")
        _only_chinese(page, app)
    finally:
        context.close()


def _only_chinese(page, app) -> None:
    prompts = [r["request"]["prompt"] for r in app.studio.history(limit=500)]
    found: dict[str, set[str]] = {}
    for tab in ("生成", "历史", "图库", "GPU 监控", "设置"):
        open_tab(page, tab)
        time.sleep(1.5)
        if tab == "历史":
            page.locator("#history [role=row]").nth(1).wait_for()
        if tab == "设置":
            page.locator("#settings-api").click()  # the folded API part too
            time.sleep(0.5)
        if tab == "生成":
            page.locator("#gen-more").first.click()
            page.locator("#image-panel").first.click()  # the image panel and its ControlNet chooser too
            page.locator("#img-controlnet").first.wait_for(state="visible")
            time.sleep(0.5)
        if tab == "图库" and page.locator("#gallery img").count():
            page.locator("#gallery img").first.click()  # the viewer with its send buttons
            page.wait_for_selector("#gallery-viewer #viewer-image img")
        for line in page.evaluate(VISIBLE_TEXT_JS).splitlines():
            text, _, where = line.partition("\t@")
            words = english_words(text, prompts)
            if words:
                found.setdefault(tab, set()).add(f"{' '.join(sorted(words))} (#{where})")
    assert not found, f"English in the Chinese window: {found}"


def _only_english(page, prompts: list[str]) -> None:
    """No Chinese on any tab of the window after the switch to English (prompts and the name 造相 aside)."""
    found: dict[str, set[str]] = {}
    for tab in ("Generate", "History", "Gallery", "GPU Monitor", "Settings"):
        open_tab(page, tab)
        time.sleep(1.5)
        if tab == "Settings":
            page.locator("#settings-api").click()
            time.sleep(0.5)
        if tab == "Generate" and not page.locator("#img-controlnet").first.is_visible():
            page.locator("#image-panel").first.click()
            page.locator("#img-controlnet").first.wait_for(state="visible")
        text = page.evaluate(VISIBLE_TEXT_JS)
        for prompt in sorted(prompts, key=len, reverse=True):
            text = text.replace(prompt, " ")
        for line in text.splitlines():
            if re.search(r"[\u4e00-\u9fff]", line.replace("造相", "").replace("中文", "")):
                found.setdefault(tab, set()).add(line)
    assert not found, f"Chinese left in the English window: {found}"


def test_scripts_see_only_the_named_endpoints_and_get_data(app):
    """view_api lists generate, cancel, history and image, nothing the page uses for itself; answers are data."""
    from gradio_client import Client

    client = Client(app.base + "/", headers=app.headers, verbose=False, download_files=False,
                    analytics_enabled=False)
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/generate", "/cancel", "/history", "/image"}
    assert not api["unnamed_endpoints"]
    rows = client.predict(search="星星", favorites_only=False, limit=5, api_name="/history")
    assert rows and all("<" not in json.dumps(r) for r in rows)  # data, not HTML
    image = next(im for r in rows for im in r["images"])
    assert os.path.isfile(image["path"]) and isinstance(image["seed"], int)
    info = client.predict(image_id=image["image_id"], api_name="/image")
    assert info["path"] == image["path"]
    assert client.predict("no-such-request", api_name="/cancel") == {
        "request_id": "no-such-request", "cancelled": False}


def test_a_lora_picked_in_the_form_is_drawn_recorded_and_restored(page, app, shots):
    """The picker lists a LoRA put in the loras folder; added to the table it turns the red star purple,
    the PNG records it, and a click on the result puts it back in the table."""
    import shutil

    from studio.core.metadata import request_from_chunks
    from studio.core.pngfile import read_chunks
    from tools import demo_shapes as shapes

    lora = Path(__file__).resolve().parents[2] / "assets" / "demo-lora" / "demo-purple.safetensors"
    app.studio.paths.loras_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(lora, app.studio.paths.loras_dir / lora.name)
    page.reload()
    page.wait_for_selector("#prompt textarea")
    fill_form(page, prompt="a red star on a white background", count=1, steps=9, guidance="0", seed=1, mode="固定")
    page.locator("#loras-box").first.click()
    pick = page.locator("#lora-pick input").first
    pick.click()  # the choices are read again when the box takes focus
    page.get_by_role("option", name="demo-purple").click()
    page.click("#lora-add")
    table_js = "document.querySelector('#loras').innerText"
    page.wait_for_function(f"{table_js}.includes('demo-purple')")
    before = set(app.studio.output_dir.rglob("*.png"))
    page.click("#generate")
    wait_finished(page)
    page.locator("#results img").first.wait_for()
    [made] = set(app.studio.output_dir.rglob("*.png")) - before
    import numpy as np
    from PIL import Image

    assert shapes.read_image(np.asarray(Image.open(made).convert("RGB"))).fg == "purple"
    request, _record = request_from_chunks(read_chunks(made))
    assert [(x.name, x.weight) for x in request.loras] == [("demo-purple", 1.0)]
    page.screenshot(path=str(shots / "ui-lora-zh.png"), full_page=True)
    page.click("#lora-clear")
    page.wait_for_function(f"!{table_js}.includes('demo-purple')")
    page.locator("#results img").first.click()  # restore: the LoRA comes back into the table
    page.wait_for_function(f"{table_js}.includes('demo-purple')")


def test_image_input_with_a_painted_mask_keeps_the_rest(page, app, shots, tmp_path):
    """Issue 20 in the window: an image dropped into the editor, a stroke painted on it, Generate: the
    PNG records the stored image and mask, and every pixel outside the painted mask is the image's own."""
    import io
    import json as _json

    import numpy as np
    from PIL import Image

    from studio.core.image_inputs import InputStore
    from studio.core.pngfile import read_chunks

    picture = Image.new("RGB", (256, 256), (230, 230, 230))
    picture.paste((20, 20, 200), (40, 40, 216, 216))
    path = tmp_path / "picture.png"
    picture.save(path)
    before = set(app.studio.output_dir.rglob("*.png"))
    page.reload()
    page.wait_for_selector("#prompt textarea")
    box(page, "prompt").fill("一个黄色的圆 a yellow circle")
    set_number(page, "count", 1)
    set_number(page, "steps", 3)
    page.locator("#image-panel").first.click()
    tools = page.locator("#image-editor button")  # pan, zoom -, zoom +, undo, redo, clear, image, brush, ...
    tools.nth(6).click()  # the image (upload) tool; its label follows the browser's language
    page.locator("#image-editor input[type=file]").last.set_input_files(str(path))
    page.wait_for_timeout(3000)
    tools.nth(7).click()  # the brush
    canvas = page.locator("#image-editor canvas").first
    canvas.scroll_into_view_if_needed()
    r = canvas.bounding_box()
    cx, cy = r["x"] + r["width"] / 2, r["y"] + r["height"] / 2
    page.mouse.move(cx - 30, cy)
    page.mouse.down()
    page.mouse.move(cx + 30, cy, steps=8)
    page.mouse.up()
    page.screenshot(path=str(shots / "ui-image-input-zh.png"), full_page=True)
    page.click("#generate")
    wait_finished(page)
    made = sorted(set(app.studio.output_dir.rglob("*.png")) - before)
    assert len(made) == 1
    request = _json.loads(read_chunks(made[0])["zaoxiang"])["request"]
    assert request["init_image"] and request["mask"] and request["width"] == 256
    store = InputStore(app.studio.paths.inputs_dir)
    assert np.array_equal(np.asarray(store.open(request["init_image"])), np.asarray(picture))
    mask = np.asarray(store.open(request["mask"], "L")) > 0
    assert 0 < mask.sum() < mask.size
    out = np.asarray(Image.open(io.BytesIO(made[0].read_bytes())).convert("RGB"))
    assert np.array_equal(out[~mask], np.asarray(picture)[~mask])
    assert "Denoising strength: 0.75, Mask blur: 4" in read_chunks(made[0])["parameters"]  # the sliders


PREVIEW_SEEN_JS = """() => {
  const img = document.querySelector('#progress .zx-preview img');
  if (!img || !img.complete || img.naturalWidth === 0) return null;
  return {src: img.src.slice(0, 30), width: img.naturalWidth, results: document.querySelectorAll('#results img').length,
          state: document.querySelector('#progress .zx-progress').dataset.state,
          text: document.querySelector('#progress').innerText};
}"""


def test_a_preview_appears_before_the_final_image_with_an_eta(browser, app, shots):
    """80 steps at 256 px: the running image's preview (a JPEG the browser decoded) shows in the
    progress box while no result is shown yet, with the ETA in Chinese; then the real image takes
    over and the preview goes."""
    context, page = new_window(browser, app, 1366, 768)
    try:
        small_request(page, "一个蓝色的圆形，黄色背景", count=1, steps=80)
        page.click("#generate")
        seen = page.wait_for_function(PREVIEW_SEEN_JS, timeout=120_000, polling=50).json_value()
        assert seen["src"].startswith("data:image/jpeg;base64,") and seen["width"] > 0
        assert seen["results"] == 0 and seen["state"] == "running", seen
        assert "预览" in seen["text"] and "约剩" in seen["text"], seen["text"]
        page.screenshot(path=str(shots / "ui-preview-zh.png"))
        wait_finished(page)
        page.locator("#results img").first.wait_for()
        assert page.locator("#progress .zx-preview").count() == 0
    finally:
        context.close()


# ---------------------------------------------------------------- images in, from the window (issue 20)


def _a_gallery_image(app) -> dict:
    """The newest Gallery image (one is made first when a test runs alone)."""
    items = app.studio.gallery()["items"]
    if not items:
        from studio.core.request import GenerationRequest

        rid = app.studio.submit(GenerationRequest("一个红色的星星 a red star", width=256, height=256, steps=2, seed=5))
        app.studio.wait(rid, timeout=180)
        items = app.studio.gallery()["items"]
    return items[0]


def _generate_one(page, app) -> tuple[dict, str, Path]:
    """Click Generate for one image in a fresh window; its request record, `parameters` text and PNG."""
    from studio.core.pngfile import read_chunks

    before = set(app.studio.output_dir.rglob("*.png"))
    page.click("#generate")
    page.wait_for_function("document.querySelector('#progress').innerText.includes('1/1 张完成')",
                           timeout=180_000)
    made = sorted(set(app.studio.output_dir.rglob("*.png")) - before)
    assert len(made) == 1, made
    chunks = read_chunks(made[0])
    return json.loads(chunks["zaoxiang"])["request"], chunks["parameters"], made[0]


def test_a_gallery_image_sent_to_img2img_is_the_init_image_of_the_next_one(browser, app, shots):
    """Gallery viewer → "send to img2img": the Generate tab opens with the image panel unfolded and the
    image in its editor; Generate makes an image whose stored init image is that picture."""
    import numpy as np
    from PIL import Image

    from studio.core.image_inputs import InputStore

    source = _a_gallery_image(app)
    context, page = new_window(browser, app, 1366, 768)
    try:
        open_tab(page, "图库")
        page.locator("#gallery img").first.wait_for()
        page.locator("#gallery img").first.click()
        page.wait_for_selector("#gallery-viewer #viewer-image img")
        assert Path(source["path"]).name in page.evaluate(VIEWER_SRC_JS)
        page.click("#viewer-send-img2img")
        page.locator("#image-editor canvas").first.wait_for(state="visible")  # the panel unfolded, in Generate
        assert box(page, "prompt").is_visible()
        toast = page.locator('[data-testid="toast-body"]').first
        toast.wait_for()
        assert "已放入图像输入" in toast.inner_text()
        prompts = [r["request"]["prompt"] for r in app.studio.history(limit=500)]
        shown = {w for line in page.evaluate(VISIBLE_TEXT_JS).splitlines()
                 for w in english_words(line.partition("\t@")[0], prompts)}
        assert not shown, f"English in the Chinese window after a send (the toast's title too): {shown}"
        page.wait_for_timeout(1500)  # the editor draws the image
        page.screenshot(path=str(shots / "ui-send-img2img-zh.png"), full_page=True)
        box(page, "prompt").fill("图生图 from the gallery")
        set_number(page, "count", 1)
        set_number(page, "steps", 3)
        request, parameters, _png = _generate_one(page, app)
        assert request["init_image"] and not request.get("mask") and request["strength"] == 0.75
        stored = np.asarray(InputStore(app.studio.paths.inputs_dir).open(request["init_image"]))
        assert np.array_equal(stored, np.asarray(Image.open(source["path"]).convert("RGB")))
        assert "Denoising strength: 0.75" in parameters
    finally:
        context.close()


def test_the_demo_controlnet_is_chosen_in_the_panel_and_drawn_with(browser, app, shots, tmp_path):
    """A control image dropped in, the demo ControlNet picked in the chooser, a type and a start/end:
    the image is made through it and its PNG names the ControlNet and those settings; then the
    results' "use as control image" puts that result in as the next control image."""
    from PIL import Image


    source = _a_gallery_image(app)
    control = tmp_path / "control.png"
    Image.open(source["path"]).convert("RGB").save(control)
    context, page = new_window(browser, app, 1366, 768)
    try:
        small_request(page, "一个蓝色的圆 a blue circle", count=1, steps=4)
        page.locator("#image-panel").first.click()
        page.locator("#img-control input[type=file]").set_input_files(str(control))
        page.locator("#img-control img").first.wait_for()
        page.locator("#img-controlnet input").first.click()
        page.get_by_role("option", name="demo-controlnet").click()
        page.locator("#img-control-type input").first.click()
        page.get_by_role("option", name="已是控制图（不预处理）").click()
        set_number(page, "img-control-start", 0.1)
        set_number(page, "img-control-end", 0.9)
        page.screenshot(path=str(shots / "ui-controlnet-zh.png"), full_page=True)
        record, parameters, _png = _generate_one(page, app)
        ctrl = record["control"]
        assert Path(ctrl["model"]).name == "demo-controlnet" and ctrl["kind"] == "map"
        assert (ctrl["start"], ctrl["end"]) == (0.1, 0.9) and ctrl["image"]
        assert 'ControlNet 0: "Module: map, Model: demo-controlnet' in parameters

        # the result goes back in as the control image of the next one, from the results' own button
        page.locator("#results img").first.wait_for()
        src_js = "document.querySelector('#img-control img')?.getAttribute('src') || ''"
        uploaded = page.evaluate(src_js)
        page.click("#results-send-control")
        page.wait_for_function(f"{src_js} !== {json.dumps(uploaded)} && {src_js} !== ''")
    finally:
        context.close()


def _an_inpaint_request(app, prompt: str, mask) -> str:
    """An inpaint request made (and finished) through the studio itself, on a picture of its own, so
    that a test may delete its inputs; its request id."""
    import io

    from PIL import Image

    from studio.core.image_args import GivenImages, store_images
    from studio.core.request import GenerationRequest

    def png(image) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()

    picture = Image.new("RGB", (256, 256), (200, 180, 40))
    picture.paste((30, 90, 160), (64, 64, 192, 192))
    picture.putpixel((0, 0), tuple(ord(c) % 256 for c in prompt[:3]))  # one picture (one hash) per test
    stored = store_images(GivenImages(image=png(picture), image_name="image", mask=png(mask), mask_name="mask"))
    rid = app.studio.submit(GenerationRequest(prompt, steps=2, seed=7, strength=0.75, mask_blur=4, **stored.fields()))
    app.studio.wait(rid, timeout=180)
    return rid


def _history_select(page, prompt: str) -> None:
    open_tab(page, "历史")
    box(page, "history-search").fill(prompt)
    box(page, "history-search").press("Enter")
    page.wait_for_function(f"{ROWS_JS}.length === 1")
    page.locator("#history [role=row]", has_text=prompt).first.get_by_text(prompt).click()
    page.locator("#history-images img").first.wait_for()


def test_a_rerun_of_a_soft_mask_inpaint_keeps_its_mask(browser, app, shots):
    """Finding 5 of the release review: Rerun in History of an inpaint whose mask has grey levels (the
    CLI's --mask, an API edit) goes through the window's editor and comes back with the very same
    stored init image and mask (same hashes), not the editor's 0/255 copy of the mask."""
    from PIL import Image, ImageFilter

    prompt = "柔边蒙版重绘 soft mask"
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (80, 80, 176, 176))
    mask = mask.filter(ImageFilter.GaussianBlur(12))
    assert len(set(mask.getdata())) > 2  # grey levels: what the old restore turned into 255
    rid = _an_inpaint_request(app, prompt, mask)
    first = next(r["request"] for r in app.studio.history(limit=500) if r["request_id"] == rid)
    before = {r["request_id"] for r in app.studio.history(limit=500)}
    context, page = new_window(browser, app, 1366, 768)
    try:
        _history_select(page, prompt)
        page.click("#history-rerun")
        deadline = time.monotonic() + 60
        while not (new := [r for r in app.studio.history(limit=500) if r["request_id"] not in before]):
            assert time.monotonic() < deadline, "Rerun queued nothing"
            time.sleep(0.5)
        assert len(new) == 1
        app.studio.wait(new[0]["request_id"], timeout=180)
        again = new[0]["request"]
        assert again["prompt"] == prompt and again["mask"] and again["init_image"]
        assert (again["init_image"], again["mask"]) == (first["init_image"], first["mask"])
    finally:
        context.close()


def test_restore_and_rerun_refuse_a_request_whose_input_is_gone(browser, app, shots):
    """Finding 2 of the release review: once a request's init image is no longer stored, History's
    Rerun says so in one Chinese line and changes nothing, and queues nothing (before, the slot was left
    empty and Rerun queued a text-to-image in one click). Restore brings back the rest with the same
    line as a warning, the image slot left empty where the person sees it."""
    from PIL import Image

    from studio.core.image_inputs import InputStore

    prompt = "遗失的输入图片 gone input"
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (96, 96, 160, 160))
    rid = _an_inpaint_request(app, prompt, mask)
    request = next(r["request"] for r in app.studio.history(limit=500) if r["request_id"] == rid)
    store = InputStore(app.studio.paths.inputs_dir)
    store.path(request["init_image"]).unlink()
    said = f"输入图片 {request['init_image'][:12]} 已不在工作室的输入文件夹中，请重新提供图片。"
    before = len(app.studio.history(limit=500))
    context, page = new_window(browser, app, 1366, 768)
    try:
        _history_select(page, prompt)
        toasts = page.locator('[data-testid="toast-body"]', has_text=said)
        page.click("#history-rerun")
        toasts.first.wait_for()
        page.screenshot(path=str(shots / "ui-rerun-input-gone-zh.png"), full_page=True)
        page.wait_for_timeout(3000)  # what .success(Generate) would have queued by now
        assert len(app.studio.history(limit=500)) == before
        assert box(page, "history-search").is_visible()  # still in History: the Generate tab did not open
        assert box(page, "prompt").input_value() == ""  # nothing of the request reached the form
        assert page.locator("#progress [data-state=running], #progress [data-state=queued]").count() == 0
        page.locator('[data-testid="toast-close"]').first.click()
        toasts.first.wait_for(state="detached")
        page.click("#history-restore")
        toasts.first.wait_for()
        box(page, "prompt").wait_for()
        page.wait_for_function("p => document.querySelector('#prompt textarea').value === p", arg=prompt)
        page.screenshot(path=str(shots / "ui-restore-input-gone-zh.png"), full_page=True)
        assert len(app.studio.history(limit=500)) == before  # a restore queues nothing
    finally:
        context.close()
