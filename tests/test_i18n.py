"""The one string table and the one system-language rule that the window and the desktop share."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from studio.core import i18n
from studio.desktop import messages, tray
from studio.ui import i18n as ui_i18n

LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


@pytest.mark.parametrize("env,expected", [
    ({"LANGUAGE": "zh_CN:en_US", "LANG": "en_US.UTF-8"}, "zh"),  # LANGUAGE first, by its first entry
    ({"LANGUAGE": "en_US:zh_CN", "LC_ALL": "zh_CN.UTF-8"}, "en"),
    ({"LANGUAGE": ":", "LC_ALL": "zh_TW.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),  # an empty list is unset
    ({"LC_ALL": "en_US.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, "en"),
    ({"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),
    ({"LANG": "zh_SG.UTF-8"}, "zh"),
    ({"LANG": "C.UTF-8"}, "en"),
])
def test_window_and_desktop_follow_one_language_rule(monkeypatch, env, expected):
    for var in LOCALE_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert i18n.system_language() == expected
    assert ui_i18n.resolve_language("auto") == expected
    assert messages.resolve_lang(None) == expected


def _tray(studio, lang=None):
    return tray.StudioTray(studio, open_window=lambda: None, on_quit=lambda: None, log_path=Path("log"), lang=lang)


def test_the_tray_speaks_the_studios_language_and_follows_a_switch(home, monkeypatch):
    from studio.app import Studio

    for var in (*LOCALE_VARS, "ZAOXIANG_LANGUAGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LANGUAGE", "zh_CN:en")
    studio = Studio()
    try:
        follows, given = _tray(studio), _tray(studio, "en")
        assert studio.settings.language == "auto" and follows.lang == "zh" and given.lang == "en"
        studio.update_settings(language="en")  # what Settings' save does
        assert follows.lang == "en" and given.lang == "en"
        studio.update_settings(language="zh")
        assert follows.lang == "zh" and given.lang == "en"  # --lang wins over the setting
    finally:
        studio.close()


def test_one_table_for_window_desktop_and_settings():
    assert i18n.check_complete() == []
    assert messages.text("stop_none", "zh") == i18n.t("desk.stop_none", "zh") == "没有正在运行的造相。"
    assert i18n.t("set.bad_port", "en").startswith("Port must be")
    assert ui_i18n.STRINGS is i18n.STRINGS


def test_every_input_image_problem_reads_in_both_languages():
    """core/image_inputs.py looks its lines up in the one table: each Problem has a zh and an en line."""
    from studio.core.image_inputs import InputImageError, Note, Problem

    for problem in Problem:
        texts = i18n.STRINGS[f"input.{problem.value}"]
        assert texts.get("zh") and texts.get("en"), problem
    err = InputImageError(Problem.TOO_SMALL, "dot.png", width=4, height=4, min_side=16)
    assert str(err) == err.message("en") == "dot.png is 4×4: at least 16 pixels a side are needed."
    assert err.message("zh") == "dot.png 为 4×4：每边至少需要 16 像素。"
    note = Note("mask_resized", {"got": "64×64", "want": "256×256"})
    assert note.message("zh").startswith("蒙版尺寸 64×64") and "resized to fit" in note.message("en")


def said_keys(path: Path) -> set[str]:
    """Every strings key a module raises as a SaidError (`SomeError("input.x", ...)`) or returns for one."""
    import ast

    keys = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ImagesInError":
            assert node.args and isinstance(node.args[0], (ast.Constant, ast.Subscript)), ast.unparse(node)
            if isinstance(node.args[0], ast.Constant):
                keys.add(node.args[0].value)
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and node.value.elts \
                and isinstance(node.value.elts[0], ast.Constant) and str(node.value.elts[0].value).startswith("input."):
            keys.add(node.value.elts[0].value)
    return keys


def test_every_images_in_error_reads_in_both_languages_with_the_same_arguments():
    """The engine's ImagesInError keys (and controlnets.misfit's) are in the one table, zh and en, and
    both languages name the same arguments; the error pickles back to itself (it crosses processes)."""
    import pickle
    import string

    root = Path(__file__).resolve().parents[1] / "studio"
    keys = set().union(*(said_keys(path) for path in (root / "engine").glob("*.py")))
    keys |= said_keys(root / "models" / "controlnets.py")
    assert {"input.control_needs_mask", "input.upscaler_spandrel", "input.controlnet_width",
            "input.controlnet_nomask"} <= keys
    for key in keys:
        texts = i18n.STRINGS[key]
        assert texts.get("zh") and texts.get("en"), key
        names = [{f for _, f, _, _ in string.Formatter().parse(texts[lang]) if f} for lang in ("zh", "en")]
        assert names[0] == names[1], (key, names)
    err = i18n.SaidError("input.upscaler_spandrel", name="x.pth")
    assert str(err).startswith("The upscaler x.pth needs the spandrel package")
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.key, back.fmt, str(back)) == (i18n.SaidError, err.key, err.fmt, str(err))


def test_the_console_says_why_there_is_no_tray_in_the_studios_language():
    for reason in tray.TrayOff:
        zh, en = messages.text(reason.key, "zh"), messages.text(reason.key, "en")
        assert zh and en and reason.value in en  # the English line keeps the log's words
        assert not any("a" <= c.lower() <= "z" for c in zh.replace("PyGObject/GTK", "").replace("PYSTRAY_BACKEND", "")
                       .replace("--headless", "").replace("--no-tray", "")), zh


def test_errors_in_the_chinese_window_carry_no_english(tmp_path):
    """A surprise's own words (an exception's English) stay out of the Chinese window: the log has them."""
    from studio.ui.context import _fail
    from studio.ui.gallery import describe_png

    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    text, data = describe_png(str(junk), "zh")
    assert data is None and not re.search(r"[A-Za-z]", text.replace("PNG", "")), text
    error = _fail(RuntimeError("disk on fire"), "zh")
    assert not re.search(r"[A-Za-z]", error.message), error.message
    assert "disk on fire" in _fail(RuntimeError("disk on fire"), "en").message


@pytest.mark.parametrize("kind", ["oom", "non_finite", "error", "worker_crash", "no_worker", "storage", "new_kind"])
def test_a_failed_image_says_why_in_the_window_language(kind):
    """The pool's English sentence in the English window; the same reason in Chinese, no English, in the other."""
    from studio.core import events as ev
    from studio.ui.progress import RequestView, render_progress

    view = RequestView("r1", 1)
    view.apply({"type": ev.JOB_FAILED, "job_id": "j1", "request_id": "r1", "index": 0, "kind": kind,
                 "message": "Out of GPU memory at 2048x2048 on cuda:0. Try a smaller size."})
    assert "Out of GPU memory at 2048x2048" in render_progress(view, "en")
    shown = re.sub(r"<[^>]+>", " ", render_progress(view, "zh"))
    assert "失败" in shown and not re.search(r"[A-Za-z]{3,}", shown.replace("GPU", "")), shown


def test_a_worker_not_started_yet_reads_in_chinese():
    from studio.ui.monitor import pool_rows

    row = {"name": "cpu:0", "device": "cpu", "state": "not started", "current_job": None, "images_done": 0,
           "s_per_image": None}
    assert pool_rows([row], "zh")[0][2] == "未启动" and pool_rows([row], "en")[0][2] == "not started"


def test_example_prompts_fit_the_model_in_use():
    """The demo model is offered shapes it draws (tests/test_demo_model.py reads them back); Z-Image scenes."""
    from studio.ui.generate import load_examples

    demo, real = load_examples(demo=True), load_examples()
    assert demo and real and not set(demo) & set(real)
    from studio.models.shapes import COLORS, SHAPES

    assert all(any(w in p for n, (_rgb, zh) in COLORS.items() for w in (n, zh)) for p in demo)
    assert all(any(w in p for n, zh in SHAPES.items() for w in (n, zh[0])) for p in demo)
    assert "a red star on a white background" in demo and "白色背景上的红色星形" in demo
