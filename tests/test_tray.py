"""The tray under Xvfb with a real tray host (trayer): it docks, its menu drives the real Studio, its icon
follows the work, and Quit leaves no process behind.

The studio runs in this process through `run_desktop` (so the test can hold the pystray icon and call
its menu items as a click would); the pool's workers and the Chromium window are real processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from studio.core import events as ev
from studio.core.request import GenerationRequest
from studio.desktop import tray as tray_mod
from studio.desktop.launcher import DesktopOptions, request_quit, run_desktop
from studio.desktop.single_instance import INFO_NAME, lock_is_free
from tests.test_desktop import app_windows, free_port, xvfb  # noqa: F401 (fixture)


def test_state_follows_events() -> None:
    running: set[str] = set()
    state = tray_mod.IDLE
    state = tray_mod.next_state(state, {"type": ev.JOB_STARTED, "job_id": "a"}, running)
    assert state == tray_mod.WORKING
    state = tray_mod.next_state(state, {"type": ev.JOB_FAILED, "job_id": "a"}, running)
    assert state == tray_mod.ERROR
    state = tray_mod.next_state(state, {"type": ev.JOB_STARTED, "job_id": "b"}, running)
    assert state == tray_mod.ERROR  # an error stays visible until something succeeds
    state = tray_mod.next_state(state, {"type": ev.JOB_DONE, "job_id": "b"}, running)
    assert state == tray_mod.IDLE and not running


def test_status_line_in_both_languages() -> None:
    pool = [{"name": "cuda:0"}, {"name": "cuda:1"}]
    assert tray_mod.status_line(pool, 3, False, "en") == "2 GPU(s) · 3 image(s) queued"
    assert tray_mod.status_line(pool, 3, True, "zh") == "2 块 GPU · 排队 3 张 · 已暂停"
    assert tray_mod.status_line([{"name": "cpu:0"}], 0, False, "en").startswith("1 CPU worker(s)")


def test_tray_assets_exist() -> None:
    from PIL import Image

    from studio.core.assets import asset

    for name in tray_mod.ICON_FILES.values():
        img = Image.open(asset(name))
        assert img.size == (64, 64) and img.mode == "RGBA"
    for name in ("icon.ico", "icon.icns", "icon-256.png"):
        assert asset(name).is_file()


@pytest.fixture
def tray_host(xvfb: str, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    if shutil.which("trayer") is None:
        pytest.skip("trayer (a system tray host) is not installed: apt-get install trayer")
    monkeypatch.setenv("DISPLAY", xvfb)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("PYSTRAY_BACKEND", "xorg")
    proc = subprocess.Popen(["trayer", "--edge", "top", "--widthtype", "request"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while tray_mod.tray_unavailable_reason() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tray_mod.tray_unavailable_reason() is None, "trayer did not become the tray host"
    yield xvfb
    proc.terminate()
    proc.wait(10)


@pytest.mark.slow
def test_tray_menu_drives_studio_and_quit_leaves_nothing(home: Path, tray_host: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        monkeypatch.setenv("ZAOXIANG_BROWSER", chromium)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    seen: dict[str, object] = {}
    failures: list[BaseException] = []

    def drive(tray: tray_mod.StudioTray) -> None:
        try:
            _drive(tray, seen, url, chromium is not None)
        except BaseException as exc:  # reported by the main thread after run_desktop returns
            failures.append(exc)
            tray.quit()

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    watchdog = threading.Timer(400, lambda: (failures.append(AssertionError("the tray never came up")),
                                             request_quit()))
    watchdog.start()
    try:
        code = run_desktop(DesktopOptions(port=port, workers="cpu:1", no_browser=True, lang="en"), on_tray=drive)
    finally:
        watchdog.cancel()
    if failures:
        raise failures[0]
    assert code == 0
    assert seen.get("quit_called"), "the test never reached Quit"
    # multiprocessing's resource tracker is Python's, one per parent process, and exits with it
    # (test_desktop checks that nothing at all outlives a real `zaoxiang`).
    left = [p for p in psutil.Process().children(recursive=True)
            if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline())]
    _gone, alive = psutil.wait_procs(left, timeout=30)
    assert not alive, f"processes left after Quit: {[p.cmdline() for p in alive]}"
    workers = seen["worker_pids"]
    assert workers and not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                               for pid in workers)
    assert not app_windows(url), "the studio window survived Quit"
    assert lock_is_free(home / "run") and not (home / "run" / INFO_NAME).exists()


def _drive(tray: tray_mod.StudioTray, seen: dict, url: str, with_window: bool) -> None:
    icon, studio = tray.icon, tray.studio
    assert icon.visible and icon._systray_manager is not None, "the icon did not dock in the tray host"
    items = {str(item): item for item in icon.menu.items if str(item)}
    call = {name: (lambda it=it: it(icon)) for name, it in items.items()}
    assert "Open Studio" in items and "Quit" in items and "Open log" in items

    # Status line: workers and queue, from the real pool.
    deadline = time.monotonic() + 120
    while not any(w.get("pid") for w in studio.pool_status()) and time.monotonic() < deadline:
        time.sleep(0.2)
    status = next(str(i) for i in icon.menu.items if "queued" in str(i))
    assert status.startswith("1 CPU worker(s)") and "0 image(s) queued" in status
    seen["worker_pids"] = [w["pid"] for w in studio.pool_status() if w.get("pid")]

    # Pause / Resume: the label and the Studio both change.
    call["Pause queue"]()
    assert studio.paused
    labels = [str(i) for i in icon.menu.items]
    assert "Resume queue" in labels and "paused" in next(x for x in labels if "queued" in x)
    call["Pause queue"]()  # the same item, now labelled Resume
    assert not studio.paused

    # Open output folder / Open log: the right paths go to the system opener.
    opened: list[Path] = []
    tray.open_file = opened.append
    call["Open output folder"]()
    call["Open log"]()
    assert opened == [Path(studio.output_dir), tray.log_path]
    assert tray.log_path.is_file() and tray.log_path.parent == studio.paths.log_dir

    # Open Studio: an app-mode window on our URL.
    if with_window:
        call["Open Studio"]()
        deadline = time.monotonic() + 20
        while not app_windows(url) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert app_windows(url), "Open Studio opened no app-mode window"

    # The icon follows real work: working while an image runs, idle after.
    states: list[str] = []
    done = threading.Event()

    kinds: list[str] = []

    def watch(event: ev.Event) -> None:
        states.append(tray.state)
        kinds.append(event["type"])
        if event["type"] == ev.REQUEST_DONE:
            done.set()

    unsubscribe = studio.subscribe(watch)
    studio.submit(GenerationRequest(prompt="一只红色的星星 a red star", width=256, height=256, steps=2, count=1),
                  origin="ui")
    # Events keep reaching subscribers whatever the icon's backend does (it once blocked them all).
    assert done.wait(180), f"the image never finished; events {kinds[-12:]}, workers {studio.pool_status()}"
    unsubscribe()
    assert tray_mod.WORKING in states and tray.state == tray_mod.IDLE
    deadline = time.monotonic() + 15  # the icon follows on the tray's own updater thread
    while icon.icon is not tray._images[tray_mod.IDLE] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert icon.icon is tray._images[tray_mod.IDLE]
    assert "working" in tray.title() or "idle" in tray.title()

    seen["quit_called"] = True
    call["Quit"]()


def test_tray_refuses_without_host(xvfb: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("DISPLAY", xvfb)
    monkeypatch.setenv("PYSTRAY_BACKEND", "xorg")
    reason = tray_mod.tray_unavailable_reason()
    assert reason is not None and "tray host" in reason
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert tray_mod.tray_unavailable_reason() == "no display"


def test_log_file_rotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from studio.desktop import logs

    monkeypatch.setenv("ZAOXIANG_HOME", str(tmp_path / "h"))
    monkeypatch.setattr(logs, "MAX_BYTES", 2000)
    path = logs.setup_logging()
    try:
        assert logs.setup_logging() == path  # idempotent: one handler
        handlers = [h for h in logging.getLogger().handlers if getattr(h, "baseFilename", "") == str(path)]
        assert len(handlers) == 1
        for i in range(200):
            logging.getLogger("studio.test").warning("line %d 中文", i)
    finally:
        logs.close_logging()
    assert path.is_file() and os.path.getsize(path) <= 2000
    assert (path.parent / "zaoxiang.log.1").is_file()
