"""The tray under Xvfb with a real tray host (trayer): a real `zaoxiang` docks its icon, xdotool
right-clicks it, the menu window appears, and choosing Quit leaves no process behind; choosing Open
Studio opens the page (a stand-in browser fetches it), and `zaoxiang stop` closes every window the
studio opened. One test runs the studio in this process to watch its icon follow real work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from studio.core import events as ev
from studio.core.request import GenerationRequest
from studio.desktop import tray as tray_mod
from studio.desktop.launcher import DesktopOptions, request_quit, run_desktop
from studio.desktop.single_instance import INFO_NAME, lock_is_free, read_instance
from tests.conftest import cli_env
from tests.test_desktop import descendants, free_port, read_until, start, xvfb  # noqa: F401 (fixture)


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
    """Xvfb with trayer, an XEmbed system tray host, owning the tray; the display's name."""
    if shutil.which("trayer") is None or shutil.which("xdotool") is None:
        pytest.skip("trayer and xdotool are not installed (scripts/setup.sh test installs them)")
    monkeypatch.setenv("DISPLAY", xvfb)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("PYSTRAY_BACKEND", raising=False)
    deadline = time.monotonic() + 30
    while True:  # trayer that exits at once (it could not open the display yet) is started again
        proc = subprocess.Popen(["trayer", "--edge", "top", "--widthtype", "request"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        while not tray_mod._x11_tray_host() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if proc.poll() is None or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if not tray_mod._x11_tray_host():
        proc.kill()
        raise AssertionError(f"trayer did not become the tray host: {proc.communicate()[1]!r}")
    yield xvfb
    proc.terminate()
    proc.wait(10)


def need_gtk() -> None:
    """Skip unless PyGObject and GTK 3's typelib are installed. Never imports Gtk here: that would tie
    this process to one test's display, and GDK exits the process when that display goes away."""
    try:
        import gi

        gi.require_version("Gtk", "3.0")
    except (ImportError, ValueError):
        pytest.skip("PyGObject with GTK 3 is not installed (scripts/setup.sh installs it)")


FAKE_BROWSER = """#!{python}
# A stand-in for the app-mode browser: it opens --app=URL as a window would (keeping the cookie it is
# given), writes what the server answered (pid, status, branded, the studio's page itself, the link),
# and stays open like a window while ZAOXIANG_TEST_WINDOW_STAYS is set.
import http.cookiejar, os, sys, time, urllib.request
url = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--app="))
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
with opener.open(url, timeout=60) as r:
    page = r.read().decode("utf-8", "replace")
    line = f"{{os.getpid()}} {{r.status}} {{'造相' in page}} {{'gradio_config' in page}} {{url}}\\n"
with open({record!r}, "a", encoding="utf-8") as fh:
    fh.write(line)
if os.environ.get("ZAOXIANG_TEST_WINDOW_STAYS"):
    time.sleep(600)
"""


def url_status(url: str) -> int:
    """The status a cookie-less client gets for `url` (redirects not followed)."""
    import httpx

    return httpx.get(url, timeout=30).status_code


def fake_browser(tmp_path: Path) -> tuple[Path, Path]:
    """(the stand-in browser's path, the file where it records each page it fetched)."""
    record = tmp_path / "fetched.txt"
    script = tmp_path / "fake-browser"
    script.write_text(FAKE_BROWSER.format(python=sys.executable, record=str(record)), encoding="utf-8")
    script.chmod(0o755)
    return script, record


class Screen:
    """The X display as a person sees it: where the tray icon is, which menus are open, and clicks."""

    def __init__(self, display_name: str) -> None:
        import Xlib.display

        self.name = display_name
        self.display = Xlib.display.Display(display_name)
        self.root = self.display.screen().root

    def close(self) -> None:
        self.display.close()

    def _box(self, window) -> tuple[int, int, int, int]:
        geometry = window.get_geometry()
        at = window.translate_coords(self.root, 0, 0)
        return -at.x, -at.y, geometry.width, geometry.height

    def tray_icon(self) -> tuple[int, int, int, int] | None:
        """The box of the icon docked in trayer's panel (the one client there), or None."""
        for top in self.root.query_tree().children:
            try:
                if top.get_wm_class() != ("panel", "trayer"):
                    continue
                for socket in top.query_tree().children:
                    for plug in socket.query_tree().children:
                        box = self._box(plug)
                        if box[2] >= 16 and box[3] >= 16:
                            return box
            except Exception:  # a window went away while we looked
                continue
        return None

    def wait_icon(self, timeout: float = 120) -> tuple[int, int, int, int]:
        deadline = time.monotonic() + timeout
        while (box := self.tray_icon()) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert box is not None, "no icon docked in the tray host"
        return box

    def popups(self) -> dict[int, tuple[int, int, int, int]]:
        """Mapped override-redirect top-level windows of a menu's size, by id: open menus."""
        import Xlib.X

        found = {}
        for top in self.root.query_tree().children:
            try:
                attrs = top.get_attributes()
                if attrs.map_state != Xlib.X.IsViewable or not attrs.override_redirect:
                    continue
                box = self._box(top)
                if box[2] >= 60 and box[3] >= 60:
                    found[top.id] = box
            except Exception:
                continue
        return found

    def click(self, x: int, y: int, button: int = 1) -> None:
        subprocess.run(["xdotool", "mousemove", "--sync", str(x), str(y), "click", str(button)],
                       env={**os.environ, "DISPLAY": self.name}, check=True, timeout=30)

    def open_menu(self, timeout: float = 20) -> tuple[int, int, int, int]:
        """Right-click the tray icon and wait for its menu window; the menu's box."""
        x, y, w, h = self.wait_icon()
        deadline = time.monotonic() + 10
        while self.popups() and time.monotonic() < deadline:  # a menu just chosen from may still be closing,
            time.sleep(0.1)  # and GTK shows the next one in the same window: it would not count as new
        before = set(self.popups())
        self.click(x + w // 2, y + h // 2, button=3)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = {k: v for k, v in self.popups().items() if k not in before}
            if new:
                return next(iter(new.values()))
            time.sleep(0.1)
        raise AssertionError("right-clicking the tray icon opened no menu")

    def choose(self, menu: tuple[int, int, int, int], which: str) -> None:
        """Click the first or the last item of an open menu (Open Studio and Quit are those)."""
        x, y, w, h = menu
        self.click(x + w // 2, y + ITEM_INSET if which == "first" else y + h - ITEM_INSET)


ITEM_INSET = 12  # pixels from a menu's edge to the middle of its first/last item (GTK's menus)


def studio_env(home: Path, display: str, browser: Path | None = None) -> dict[str, str]:
    env = cli_env(home)
    env["DISPLAY"] = display
    env.pop("WAYLAND_DISPLAY", None)
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)  # no SNI host here: the XEmbed (GTK StatusIcon) path
    env["ZAOXIANG_NO_OPEN"] = "1"
    if browser is not None:
        env["ZAOXIANG_BROWSER"] = str(browser)
    return env



def wait_gone(proc: subprocess.Popen, family: list[psutil.Process], timeout: float = 90) -> str:
    """Wait for the studio to exit 0 and for every process it had to end; its remaining output."""
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out.decode("utf-8", "replace")
    _gone, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"processes left after Quit: {[p.pid for p in alive]}"
    return out.decode("utf-8", "replace")


@pytest.mark.slow
def test_tray_menu_opens_on_right_click_and_quit_leaves_nothing(home: Path, tray_host: str) -> None:
    need_gtk()
    screen = Screen(tray_host)
    proc, url, lines = start(home, "--no-browser", "--workers", "cpu:1", "--port", str(free_port()),
                             env=studio_env(home, tray_host))
    try:
        screen.wait_icon()
        assert read_until(proc, lines, "Quit from the tray icon's menu"), lines
        family = descendants(proc.pid)
        assert family, "the pool should have a worker process"
        menu = screen.open_menu()
        screen.choose(menu, "last")  # Quit
        wait_gone(proc, family)
    finally:
        if proc.poll() is None:
            proc.kill()
        screen.close()
    assert not screen_has_menu(tray_host)
    assert lock_is_free(home / "run") and not (home / "run" / INFO_NAME).exists()


def screen_has_menu(display: str) -> bool:
    other = Screen(display)
    try:
        return bool(other.popups())
    finally:
        other.close()


@pytest.mark.slow
def test_tray_open_studio_opens_the_page_and_stop_closes_every_window(home: Path, tray_host: str,
                                                                      tmp_path: Path) -> None:
    need_gtk()
    browser, fetched = fake_browser(tmp_path)
    screen = Screen(tray_host)
    env = studio_env(home, tray_host, browser)
    proc, url, _lines = start(home, "--no-browser", "--workers", "cpu:1", "--port", str(free_port()), env=env)
    try:
        family = descendants(proc.pid)
        menu = screen.open_menu()
        screen.choose(menu, "first")  # Open Studio
        deadline = time.monotonic() + 60
        while not fetched.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fetched.exists(), "Open Studio did not open the page"
        pid, status, branded, in_studio, link = fetched.read_text(encoding="utf-8").split()
        assert (status, branded, in_studio) == ("200", "True", "True")
        # The window's link opened the studio once: the same link again (as a local user who read it in
        # the window's command line) opens nothing; the run's secret was in no link.
        base, secret = read_instance(home / "run").url, read_instance(home / "run").secret
        assert link.startswith(f"{base}?zx_token=") and link != url and secret and secret not in link
        assert url_status(link) == 403
        # Open Studio again: a new window with a new link of its own, which opens the studio too.
        screen.choose(screen.open_menu(), "first")
        deadline = time.monotonic() + 60
        while len(fetched.read_text(encoding="utf-8").splitlines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        _pid, status, _branded, in_studio, link2 = fetched.read_text(encoding="utf-8").splitlines()[1].split()
        assert (status, in_studio) == ("200", "True") and link2 not in (link, url)
        # The window it opened has closed: it must not stay behind as a zombie of the studio.
        deadline = time.monotonic() + 10
        while psutil.pid_exists(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not psutil.pid_exists(int(pid)), "a closed window stayed a zombie"

        # A second launch opens a window (that stays open) and exits; `zaoxiang stop` closes it too.
        second = subprocess.run([sys.executable, "-m", "studio"], env={**env, "ZAOXIANG_TEST_WINDOW_STAYS": "1"},
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 0 and f"already running: {base}\n" in second.stdout, second
        assert "zx_token" not in second.stdout  # its window got the link; the console shows the address
        deadline = time.monotonic() + 60
        while len(fetched.read_text(encoding="utf-8").splitlines()) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        pid3, status, _branded, in_studio, link3 = fetched.read_text(encoding="utf-8").splitlines()[2].split()
        assert (status, in_studio) == ("200", "True") and link3 not in (link, link2, url)
        window = psutil.Process(int(pid3))
        stop = subprocess.run([sys.executable, "-m", "studio", "stop"], env=env, capture_output=True, text=True,
                              timeout=180)
        assert stop.returncode == 0 and "has quit" in stop.stdout, stop
        assert proc.wait(30) == 0
        _gone, alive = psutil.wait_procs([*family, window], timeout=30)
        assert not alive, f"left after `zaoxiang stop`: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
        screen.close()
    assert lock_is_free(home / "run")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CI") == "true",
                    reason="known flake: pystray's Xorg icon (the no-PyGObject fallback) failed to dock in 1 of 3 "
                           "runs on the dev machine; kept for local runs until the docking is fixed")
def test_xorg_fallback_left_click_opens_the_studio(home: Path, tray_host: str, tmp_path: Path) -> None:
    """Without PyGObject pystray's Xorg icon has no menu: a left-click must open the studio, and the
    console must say how to quit."""
    browser, fetched = fake_browser(tmp_path)
    screen = Screen(tray_host)
    env = {**studio_env(home, tray_host, browser), "PYSTRAY_BACKEND": "xorg"}
    proc, _url, lines = start(home, "--no-browser", "--workers", "cpu:1", "--port", str(free_port()), env=env)
    try:
        assert read_until(proc, lines, "left-click it to open"), lines
        assert "zaoxiang stop" in lines[-1]
        x, y, w, h = screen.wait_icon()
        screen.click(x + w // 2, y + h // 2, button=1)
        deadline = time.monotonic() + 60
        while not fetched.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fetched.exists(), "left-clicking the Xorg icon did not open the studio"
        assert fetched.read_text(encoding="utf-8").split()[1] == "200"
        family = descendants(proc.pid)
        stop = subprocess.run([sys.executable, "-m", "studio", "stop"], env=env, capture_output=True, text=True,
                              timeout=180)
        assert stop.returncode == 0, stop
        wait_gone(proc, family)
    finally:
        if proc.poll() is None:
            proc.kill()
        screen.close()


LOST_MESSAGE = r"""
import threading, time, Xlib.X
from PIL import Image
from studio.desktop import tray
Icon = tray.icon_class(tray.Backend.XORG)
icon = Icon("zx-test", Image.new("RGBA", (16, 16), "red"), "before")
ready = threading.Event()
threading.Thread(target=icon.run, args=(lambda i: (setattr(i, "visible", True), ready.set()),), daemon=True).start()
assert ready.wait(30), "the icon never came up"
handle = icon._message_handlers[Xlib.X.ClientMessage]
title_change = icon._display.intern_atom("_PYSTRAY__UPDATE_TITLE")
dropped = []
def lose_first(event):  # the loss seen under load: the loop never sees the change's message
    if not dropped and event.client_type == title_change:
        dropped.append(event)
        return
    handle(event)
icon._message_handlers[Xlib.X.ClientMessage] = lose_first
t0 = time.monotonic()
icon.title = "after"  # pystray waits for the loop's reply; it never came for a lost message
took = time.monotonic() - t0
print("dropped", len(dropped), "took", round(took, 2), "name", icon._window.get_wm_name(), flush=True)
icon._message_handlers[Xlib.X.ClientMessage] = handle
icon.stop()
"""


def test_a_lost_change_message_is_asked_again(home: Path, tray_host: str) -> None:
    """pystray's Xorg icon hands each change to its loop as an X message and waited for the reply without
    end: one lost message hung the tray's updater thread. A real icon in trayer, its loop made to miss the
    first message: the change is asked again and lands."""
    env = {**cli_env(home), "DISPLAY": tray_host, "PYSTRAY_BACKEND": "xorg"}
    r = subprocess.run([sys.executable, "-c", LOST_MESSAGE], env=env, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    words = r.stdout.split()
    assert words[:2] == ["dropped", "1"] and words[-2:] == ["name", "after"], r.stdout
    assert tray_mod.XORG_REPLY_WAIT_S <= float(words[3]) < tray_mod.XORG_REPLY_WAIT_S * 2 + 3, r.stdout


@pytest.mark.slow
def test_icon_follows_work(home: Path, tray_host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process, so the test can see the icon's state; quits through the launcher, not the menu.

    pystray's Xorg backend here: GTK would tie this process to this test's display for good."""
    monkeypatch.setenv("PYSTRAY_BACKEND", "xorg")
    seen: dict[str, object] = {}
    failures: list[BaseException] = []

    def drive(tray: tray_mod.StudioTray) -> None:
        try:
            _watch_work(tray, seen)
        except BaseException as exc:  # reported by the main thread after run_desktop returns
            failures.append(exc)
        finally:
            request_quit()

    watchdog = threading.Timer(400, lambda: (failures.append(AssertionError("the tray never came up")),
                                             request_quit()))
    watchdog.start()
    try:
        code = run_desktop(DesktopOptions(port=free_port(), workers="cpu:1", no_browser=True, lang="en"),
                           on_tray=drive)
    finally:
        watchdog.cancel()
    if failures:
        raise failures[0]
    assert code == 0 and seen.get("done")
    assert lock_is_free(home / "run") and not (home / "run" / INFO_NAME).exists()


def _watch_work(tray: tray_mod.StudioTray, seen: dict) -> None:
    icon, studio = tray.icon, tray.studio
    assert icon.visible and icon._systray_manager is not None, "the icon did not dock in the tray host"
    deadline = time.monotonic() + 120
    while not any(w.get("pid") for w in studio.pool_status()) and time.monotonic() < deadline:
        time.sleep(0.2)
    status = next(str(i) for i in icon.menu.items if "queued" in str(i))
    assert status.startswith("1 CPU worker(s)") and "0 image(s) queued" in status

    states: list[str] = []
    kinds: list[str] = []
    done = threading.Event()

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
    assert "idle" in tray.title()
    seen["done"] = True


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
