"""Unit tests of the studio window's pure parts: labels, the form, progress, tables, settings, serving."""

from __future__ import annotations

import socket

import pytest
from PIL import Image, PngImagePlugin

from studio.core import events as ev
from studio.core.metadata import build_record
from studio.core.pngfile import write_png
from studio.core.request import GenerationRequest
from studio.ui import form, i18n, records
from studio.ui.gallery import describe_png, page_items
from studio.ui.monitor import balance_text, gpu_lines, pool_rows, series_frame
from studio.ui.progress import RequestView, captions, render_progress
from studio.ui.server import ServeError, auth_for, find_port, served_folders
from studio.ui.settings import check_settings, is_loopback


def test_every_label_exists_in_both_languages():
    assert i18n.check_complete() == []
    assert i18n.t("tab.generate", "zh") == "生成" and i18n.t("tab.generate", "en") == "Generate"


@pytest.mark.parametrize("env,expected", [("zh_CN.UTF-8", "zh"), ("zh_TW.UTF-8", "zh"), ("en_US.UTF-8", "en"),
                                          ("de_DE.UTF-8", "en")])
def test_language_follows_the_system_locale(monkeypatch, env, expected):
    for var in ("LC_ALL", "LC_MESSAGES", "LANGUAGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LANG", env)
    assert i18n.system_language() == expected
    assert i18n.resolve_language("auto") == expected
    assert i18n.resolve_language("en") == "en" and i18n.resolve_language("zh") == "zh"


@pytest.mark.parametrize("field,value,zh", [
    ("steps", 0, "步数必须在 1 到 100 之间（现在是 0）。"),
    ("steps", 500, "步数必须在 1 到 100 之间（现在是 500）。"),
    ("count", 2.5, "数量必须是整数（现在是 2.5）。"),
    ("count", "2.5", "数量必须是整数（现在是 2.5）。"),
    ("width", 300, "宽度必须是 256 到 2048 之间 16 的倍数（现在是 300）。"),
    ("guidance", "abc", "引导系数必须是数字（现在是 abc）。"),
])
def test_validation_message_is_one_language_at_a_time(field, value, zh):
    """The English window shows core's sentence (the CLI's line); the Chinese one the same in Chinese only."""
    from studio.core.request import GenerationRequest, ValidationError, validate

    with pytest.raises(ValidationError) as caught:
        validate(GenerationRequest("x", **{field: value}))
    exc = caught.value
    assert i18n.field_error(field, exc.message, "en", exc.kind, exc.got) == exc.message
    assert i18n.field_error(field, exc.message, "zh", exc.kind, exc.got) == zh
    # a typed "2.5" and a number 2.5 give the CLI and the window the same line
    if field == "count":
        assert exc.message == "Count must be a whole number, not 2.5."


def test_window_queue_streams_once_lists_in_order_and_drops_what_was_cancelled_while_waiting():
    from studio.core import events as ev
    from studio.ui.window_queue import WindowQueue

    wq = WindowQueue()
    first, streams = wq.add("一只猫 a cat " * 10, 2)
    second, streams_too = wq.add("第二个", 1)
    third, _ = wq.add("第三个", 1)
    assert streams and not streams_too  # one handler streams; later clicks only queue
    assert [r["state"] for r in wq.listing()] == ["running", "queued", "queued"]
    assert len(wq.listing()[0]["label"]) <= 40
    assert wq.current() is first
    third.view.cancel_requested = True
    third.view.apply({"type": ev.REQUEST_DONE, "request_id": third.request_id})
    wq.finish(first)
    assert wq.current() is second
    wq.finish(second)
    assert wq.current() is None and not wq.streaming  # the cancelled third is never shown
    _again, streams_again = wq.add("再来", 1)
    assert streams_again
    wq.add("排在后面", 1)
    wq.abandon()  # the streaming handler died: the next click streams again, waiting on nothing old
    fresh, streams_fresh = wq.add("新的", 1)
    assert streams_fresh and wq.current() is fresh


def test_eta_comes_from_the_measured_step_time(monkeypatch):
    from studio.core import events as ev
    from studio.ui import progress

    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    view = progress.RequestView("r", 2)
    assert view.eta_s() is None
    for step in (1, 2, 3):
        view.apply({"type": ev.STEP, "request_id": "r", "job_id": "a", "index": 0, "worker": "cuda:0",
                    "step": step, "steps": 9})
        clock[0] += 0.5
    # 2 steps took 1 s: 0.5 s a step; 6 steps left of the first image and 9 of the second, one worker
    assert view.eta_s() == pytest.approx(15 * 0.5)
    assert "约剩 8 秒" in progress.summary(view, "zh") and "about 8 s left" in progress.summary(view, "en")


def test_notices_follow_the_window_language_and_keep_the_cli_line():
    from studio.app import Notice
    from studio.ui.leftover import notices_text

    notice = Notice("The history database was damaged (bad). A new one was started and 3 images were found "
                    "again from their files.", "notice.db_damaged", count=3, path="")
    assert str(notice).startswith("The history database")  # what the CLI prints
    assert "重新找回 3 张图像" in notices_text([notice], "zh") and "damaged" not in notices_text([notice], "zh")
    assert "3 images were found again" in notices_text([notice], "en")
    assert notices_text(["已是中文的提示"], "en").endswith("已是中文的提示")


def test_form_builds_requests_from_presets_and_custom_sizes():
    r = form.build_request("猫", "", "1344x768", 1, 1, 9, 0, 2, "", "random")
    assert (r.width, r.height, r.seed, r.count) == (1344, 768, None, 2)
    r = form.build_request("cat", "blurry", "custom", 256, 320, 4, 1.5, 1, " 42 ", "increment")
    assert (r.width, r.height, r.seed, r.seed_mode, r.guidance) == (256, 320, "42", "increment", 1.5)


@pytest.mark.parametrize("request_", [
    GenerationRequest("一只猫 a cat", "模糊", 1152, 896, 12, 3.5, 123, "fixed", 4),
    GenerationRequest("dog", "", 256, 256, 3, 0.0, None, "random", 2),
    GenerationRequest("山水", "", 768, 1344, 9, 0.0, 7, "increment", 6),
])
def test_restore_fills_every_field_back(request_):
    values = form.fields_from_request(request_)
    again = form.build_request(*values.as_list())
    from studio.core.request import validate

    assert validate(again) == validate(request_)


def test_dice_gives_a_valid_seed():
    seed = int(form.dice())
    assert 0 <= seed <= 2**32 - 1


def _events(rid: str) -> list[dict]:
    return [
        ev.make_event(ev.JOB_STARTED, job_id="a", request_id=rid, worker="cpu:0", index=0),
        ev.make_event(ev.STEP, job_id="a", request_id=rid, worker="cpu:0", index=0, step=3, steps=9),
        ev.make_event(ev.JOB_STARTED, job_id="b", request_id=rid, worker="cuda:1", index=1),
        ev.make_event(ev.STEP, job_id="other", request_id="someone-else", step=1, steps=9),
        ev.make_event(ev.JOB_DONE, job_id="b", request_id=rid, worker="cuda:1", index=1, path="/g/b.png",
                      seed=11, elapsed_s=1.25),
    ]


def test_progress_view_shows_each_image_with_its_worker_and_step():
    view = RequestView("r1", 2)
    changed = [view.apply(e) for e in _events("r1")]
    assert changed == [True, True, True, False, True]
    html = render_progress(view, "en")
    assert "cpu:0" in html and "step 3/9" in html and "cuda:1" in html and "1 of 2 done" in html
    assert 'data-state="running"' in html
    assert captions(view, "zh") == [("/g/b.png", "种子 11 · cuda:1 · 1.2 秒")]
    assert not view.settled()
    view.apply(ev.make_event(ev.JOB_DONE, job_id="a", request_id="r1", worker="cpu:0", index=0, path="/g/a.png",
                             seed=10, elapsed_s=2.0))
    view.apply(ev.make_event(ev.REQUEST_DONE, request_id="r1", jobs=2, done=2))
    assert view.settled() and [im["seed"] for im in view.images] == [10, 11]  # ordered by index
    assert 'data-state="finished"' in render_progress(view, "en")


def test_progress_view_after_cancel():
    view = RequestView("r2", 6)
    for e in _events("r2"):
        view.apply(e)
    view.cancel_requested = True
    view.apply(ev.make_event(ev.JOB_CANCELLED, job_id="a", request_id="r2", index=0))
    for j in "cdef":
        view.apply(ev.make_event(ev.JOB_CANCELLED, job_id=j, request_id="r2", index=ord(j) - 97))
    view.apply(ev.make_event(ev.REQUEST_DONE, request_id="r2"))
    text = render_progress(view, "zh")
    assert "已取消：1/6 张完成" in text and view.settled()


def test_history_table_rows():
    rows = [{"request_id": "r", "created": "2024-05-01T10:11:12", "status": "done",
             "request": {"prompt": "一只猫", "width": 256, "height": 256, "steps": 4, "guidance": 0.0,
                         "count": 2, "seed": 5, "seed_mode": "increment"},
             "images": [{"image_id": "i1", "path": "/g/a b.png", "seed": 5}, {"image_id": "i2", "path": "/g/c.png"}]}]
    table = records.history_table(rows, "zh")
    assert table[0][0].startswith('<img class="zx-thumb" src="/gradio_api/file=/g/a%20b.png"')
    assert table[0][1] == "2024-05-01 10:11:12" and table[0][2] == "一只猫" and table[0][4] == "完成"
    assert "256×256" in table[0][3] and "递增 5" in table[0][3] and table[0][5] == "2/2"
    assert records.history_headers("en")[1:3] == ["Time", "Prompt"]


def test_gallery_page_items_accepts_dict_or_list():
    assert page_items({"items": [{"path": "a"}], "total": 7}) == ([{"path": "a"}], 7)
    assert page_items([{"path": "a"}, {"path": "b"}]) == ([{"path": "a"}, {"path": "b"}], 2)


def test_dropped_png_ours_and_a1111(tmp_path):
    ours = tmp_path / "ours.png"
    req = GenerationRequest("红色的星星 a red star", "blurry", 512, 768, 7, 2.5, 99, "random", 3)
    write_png(Image.new("RGB", (8, 8)), ours, build_record(req.expand("demo")[0], "cpu:0", 0.5))
    text, data = describe_png(str(ours), "zh")
    assert data["prompt"] == "红色的星星 a red star" and data["seed"] == 99 and data["width"] == 512
    assert "红色的星星" in text

    forge = tmp_path / "forge.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "masterpiece, a castle\nNegative prompt: lowres\nSteps: 20, Sampler: DPM++ 2M, "
                  "Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 832x1216, Model: sdxl")
    Image.new("RGB", (8, 8)).save(forge, pnginfo=info)
    text, data = describe_png(str(forge), "en")
    assert (data["prompt"], data["negative_prompt"], data["steps"], data["seed"]) == (
        "masterpiece, a castle", "lowres", 20, 1234)
    assert (data["width"], data["height"], data["guidance"]) == (832, 1216, 7.0)
    values = form.fields_from_request(GenerationRequest.from_dict(data))
    assert values.size == "custom" and values.seed == "1234" and values.negative == "lowres"

    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert describe_png(str(plain), "zh") == (i18n.t("gal.drop.none", "zh"), None)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    text, data = describe_png(str(junk), "en")
    assert data is None and text.startswith("Cannot read this file")


def test_monitor_frames_and_lines():
    snap = {"available": True, "message": "", "gpus": [
        {"index": 0, "name": "RTX 4090", "memory_total_mb": 24564, "samples": [
            {"t": 100.0, "util": 50, "mem_used_mb": 1000, "temp_c": 60, "power_w": 300},
            {"t": 101.0, "util": 90, "mem_used_mb": 2000, "temp_c": 61, "power_w": 350.4}]}]}
    frame = series_frame(snap, "util", now=101.0)
    assert list(frame["t"]) == [-1.0, 0.0] and list(frame["value"]) == [50, 90] and set(frame["device"]) == {"GPU 0"}
    assert "61 °C" in gpu_lines(snap, "en") and "350 W" in gpu_lines(snap, "en")
    none = {"available": False, "message": "No NVIDIA GPU found", "gpus": [],
            "cpu": {"samples": [{"t": 5.0, "util": 12.5, "mem_used_mb": 900}]}}
    assert list(series_frame(none, "util", now=6.0)["device"]) == ["CPU"]
    assert "No NVIDIA GPU found" in gpu_lines(none, "en") and "未找到 NVIDIA GPU" in gpu_lines(none, "zh")


def test_pool_rows_and_balance():
    status = [{"name": "cpu:0", "device": "cpu", "state": "busy", "current_job": "abcdef0123456789",
               "images_done": 3, "s_per_image": 0.4567, "gpu_busy": 0.934},
              {"name": "cuda:1", "device": "cuda", "state": "warming", "warm_pct": 37.5, "images_done": 0}]
    assert pool_rows(status, "zh")[0][2] == "忙碌"
    assert pool_rows(status) == [["cpu:0", "cpu", "busy", "abcdef012345", 3, "0.46", "93%"],
                                 ["cuda:1", "cuda", "warming 38%", "", 0, "", ""]]
    assert balance_text({"balance_efficiency": 0.875}, "en").endswith("88%")
    assert balance_text(None, "zh") == i18n.t("mon.balance.none", "zh")



def test_pool_rows_say_why_a_worker_is_down():
    """A worker that keeps dying or cannot start (a cluster node without the model) shows the reason."""
    why = "No model Tongyi-MAI/Z-Image-Turbo on node-b: download it there (zaoxiang models download)."
    rows = pool_rows([{"name": "ray:node-b/cuda:0", "device": "", "state": "failed", "last_error": why},
                      {"name": "cpu:0", "device": "cpu", "state": "idle", "last_error": "died (signal 9)"}])
    assert rows[0][2] == f"failed: {why}" and rows[1][2] == "idle"

def test_settings_checks(home):
    base = {"model": "", "memory_profile": "auto", "workers": "auto", "output_dir": "", "language": "zh",
            "host": "127.0.0.1", "port": 7861.0, "auth_user": "", "auth_password": ""}
    changes, problems = check_settings(base)
    assert problems == {} and changes["port"] == 7861 and changes["language"] == "zh"
    assert check_settings({**base, "port": 70000})[1]["port"].key == "set.bad_port"
    assert check_settings({**base, "port": 2.5})[1]["port"].key == "set.bad_port"
    assert check_settings({**base, "memory_profile": "huge"})[1]["memory_profile"].key == "set.bad_profile"
    assert check_settings({**base, "host": "0.0.0.0"})[1]["auth_password"].key == "set.auth_required"
    changes, problems = check_settings({**base, "host": "0.0.0.0", "auth_user": "me", "auth_password": "pw"})
    assert problems == {} and changes["auth_password"].startswith("scrypt$")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


def test_settings_fields_are_named_by_their_labels():
    """The "needs a restart" line names fields as the form does, in the window's language; every
    setting has a label in both (a new setting without one would show its code name)."""
    from dataclasses import fields

    from studio.core.settings import Settings
    from studio.ui.i18n import STRINGS
    from studio.ui.settings import field_names

    assert field_names(["memory_profile", "workers"], "zh") == "显存方案、GPU"
    assert field_names(["memory_profile", "workers"], "en") == "Memory profile, GPUs"
    assert all(f"set.field.{f.name}" in STRINGS for f in fields(Settings))


def test_an_image_sent_to_the_panel_lands_where_it_was_sent(tmp_path):
    """img2img: the editor's image at the default strength; inpaint: the same at full strength (the
    mask is painted next); control: the control image only. The panel opens each time."""
    import gradio as gr
    import numpy as np
    from PIL import Image

    from studio.core.request import DEFAULT_STRENGTH
    from studio.ui.image_panel import send_values

    path = tmp_path / "made.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(path)
    box, editor, strength, control = send_values(str(path), "img2img", "zh")
    assert box["open"] is True and strength == DEFAULT_STRENGTH and control == gr.update()
    assert editor["layers"] == [] and np.asarray(editor["background"])[0, 0].tolist() == [10, 200, 30]
    _box, editor, strength, _control = send_values(str(path), "inpaint", "en")
    assert strength == 1.0 and editor["background"].size == (64, 48)
    _box, editor, strength, control = send_values(str(path), "control", "zh")
    assert editor == gr.update() and strength == gr.update() and control.size == (64, 48)
    with pytest.raises(gr.Error, match="请先选择一张图像"):
        send_values(None, "img2img", "zh")


def test_serving_beyond_loopback_needs_a_password():
    from studio.core.passwords import verify_password
    from studio.core.settings import Settings

    assert auth_for("127.0.0.1", Settings(), None) is None
    with pytest.raises(ServeError, match="username and password"):
        auth_for("0.0.0.0", Settings(), None)
    user, stored = auth_for("0.0.0.0", Settings(auth_user="a", auth_password="b"), None)
    assert user == "a" and stored != "b" and verify_password("b", stored)


def test_find_port_skips_a_busy_one():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert find_port("127.0.0.1", port) > port


def test_served_folders_are_only_ours(home):
    from studio.app import Studio

    studio = Studio()
    folders = served_folders(studio)
    assert str(studio.paths.gallery_dir.resolve()) in folders
    assert all(not str(studio.paths.config_dir.resolve()).startswith(f) for f in folders)
    assert len(folders) <= 3


def test_gallery_captions_say_seed_in_the_window_language():
    assert records.caption({"seed": 7, "favorite": True}, "zh") == "★ 种子 7"
    assert records.caption({"seed": 7}, "en") == "Seed 7"


def test_preview_shows_while_an_image_runs_and_goes_when_it_is_done():
    from studio.core import events as ev
    from studio.ui import progress

    view = progress.RequestView("r", 1)
    base = {"request_id": "r", "job_id": "a", "index": 0, "worker": "cpu:0"}
    jpeg = progress.PREVIEW_PREFIX + "/9j/AAAA"
    view.apply({"type": ev.STEP, **base, "step": 2, "steps": 9})
    assert 'class="zx-preview"' not in progress.render_progress(view, "zh")
    assert view.apply({"type": ev.PREVIEW, **base, "step": 2, "steps": 9, "image": jpeg})
    assert not view.apply({"type": ev.PREVIEW, **base, "step": 1, "steps": 9, "image": jpeg + "old"})
    assert not view.apply({"type": ev.PREVIEW, **base, "step": 3, "steps": 9, "image": "javascript:x"})
    html_zh = progress.render_progress(view, "zh")
    assert f'src="{jpeg}"' in html_zh and "第 2/9 步" in html_zh and "预览" in html_zh
    assert "#1 preview · step 2/9" in progress.render_progress(view, "en")
    view.apply({"type": ev.JOB_DONE, **base, "path": "/x.png", "seed": 1, "elapsed_s": 1.0})
    assert 'class="zx-preview"' not in progress.render_progress(view, "zh")
    assert not view.apply({"type": ev.PREVIEW, **base, "step": 8, "steps": 9, "image": jpeg})  # late


def test_shown_eta_prefers_the_pools_estimate_and_only_counts_down():
    from studio.core import events as ev
    from studio.ui import progress

    view = progress.RequestView("r", 2)
    view.studio_eta_s = 20.0
    assert view.shown_eta_s() == 20.0
    view.studio_eta_s = 23.0  # a slower stretch: held
    assert view.shown_eta_s() == 20.0
    view.studio_eta_s = 12.0
    assert view.shown_eta_s() == 12.0
    view.apply({"type": ev.JOB_REQUEUED, "request_id": "r", "job_id": "a", "index": 0})
    view.studio_eta_s = 30.0  # its worker died: the image starts again elsewhere
    assert view.shown_eta_s() == 30.0
    view.studio_eta_s = 31.0
    assert view.shown_eta_s() == 30.0
