"""One instance, the app window and clean exits, with the real `zaoxiang` (real UI, real CPU workers).

A second launch must find the first and exit 0; after SIGKILL of the first the next launch starts
normally; SIGTERM leaves no process behind. The window test runs Chromium under Xvfb.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from studio.desktop.single_instance import (
    INFO_NAME,
    QUIT_NAME,
    InstanceLock,
    lock_is_free,
    read_instance,
    request_quit_file,
)
from tests.conftest import cli_env

START_TIMEOUT = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def x_display(size: str = "1280x800") -> Iterator[str]:
    """A private X display of `size` (Xvfb picks a free number and tells us through -displayfd)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (scripts/setup.sh test installs it)")
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", f"{size}x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as fh:
        number = fh.readline().strip()
    try:
        _wait_connectable(f":{number}")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_connectable(name: str, timeout: float = 20) -> None:
    """Until a client can connect: a display number just freed by the last test's Xvfb was, under load,
    named before it could be opened."""
    import Xlib.display
    import Xlib.error

    deadline = time.monotonic() + timeout
    while True:
        try:
            Xlib.display.Display(name).close()
            return
        except (Xlib.error.DisplayError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def xvfb() -> Iterator[str]:
    with x_display() as name:
        yield name


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def start(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str, list[str]]:
    """Start `zaoxiang ARGS` and wait for its URL line; returns the process, the URL and the lines so far.

    The pipe is unbuffered bytes: a buffered reader reads ahead past the URL line, and `communicate`
    (which reads the raw pipe) would then never see the lines it had taken."""
    proc = subprocess.Popen([sys.executable, "-m", "studio", *args], env=env or cli_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
    lines: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode("utf-8", "replace")
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "造相 Z-Image Studio: http" in line:
            url = line.split("Studio: ", 1)[1].split()[0]
            return proc, url, lines
    proc.kill()
    raise AssertionError("the studio did not print its URL:\n" + "\n".join(lines))


def read_until(proc: subprocess.Popen, lines: list[str], needle: str, timeout: float = 90) -> bool:
    """Read the studio's output into `lines` until a line holds `needle` (True) or `timeout` passes."""
    import select

    if any(needle in line for line in lines):
        return True
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([proc.stdout], [], [], left)[0]:
            break
        line = proc.stdout.readline().decode("utf-8", "replace")
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if needle in line:
            return True
    return False


def finish(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, str]:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode("utf-8", "replace")


def app_windows(base: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        # Chromium rewrites its process title into one space-joined string soon after it starts, so
        # look at the words of the whole command line, not at argv entries.
        words = " ".join(p.info.get("cmdline") or []).split()
        if any(w.startswith(f"--app={base}?zx_token=") for w in words):  # each window has a link of its own
            found.append(p)
    return found


def test_lock_is_exclusive_and_stale_record_is_cleared(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = InstanceLock(run)
    assert first.acquire() and not lock_is_free(run)
    assert not InstanceLock(run).acquire()  # a second holder in any process is refused
    first.publish("http://127.0.0.1:1/")
    assert read_instance(run).url == "http://127.0.0.1:1/"
    first.release()
    assert lock_is_free(run) and not (run / INFO_NAME).exists()

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / INFO_NAME).write_text(json.dumps({"pid": dead.pid, "url": "http://127.0.0.1:2/", "started": 0}))
    again = InstanceLock(run)
    assert again.acquire()
    assert again.cleared_stale is not None and again.cleared_stale.pid == dead.pid
    assert read_instance(run).pid == os.getpid() and read_instance(run).url is None
    again.release()


@pytest.mark.slow
def test_second_launch_finds_first_and_sigkill_leaves_no_stale_lock(home: Path, xvfb: str) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    env = cli_env(home)
    env["DISPLAY"] = xvfb
    env.pop("WAYLAND_DISPLAY", None)
    port = free_port()
    # First: a display but no tray host, so it must say once that it runs without a tray.
    first, url, lines = start(home, "--no-browser", "--workers", "cpu:1", "--port", str(port), env=env)
    workers = descendants(first.pid)
    try:
        base = f"http://127.0.0.1:{port}/"
        assert url.startswith(f"{base}?zx_token=")
        info = read_instance(home / "run")  # the address and the secret that makes links; never a link
        assert info is not None and info.pid == first.pid and info.url == base
        assert info.secret and info.secret not in url

        # Second launch, window allowed: exits 0, names the first's URL, opens an app-mode window.
        env2 = dict(env)
        if chromium:
            env2["ZAOXIANG_BROWSER"] = chromium
        t0 = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "studio", "--workers", "cpu:1"], env=env2,
                                capture_output=True, text=True, timeout=120)
        took = time.monotonic() - t0
        assert second.returncode == 0, second.stderr
        assert f"already running: {base}\n" in second.stdout
        assert took < 30, f"a second launch took {took:.1f} s"
        if chromium:
            deadline = time.monotonic() + 20
            while not app_windows(base) and time.monotonic() < deadline:
                time.sleep(0.2)
            windows = app_windows(base)
            assert windows, "no app-mode window was opened"
            cmd = windows[0].cmdline()
            assert f"--user-data-dir={home / 'data' / 'browser-profile'}" in cmd
            # its own one-time link, made from the secret in the 0600 file; the secret is in no command line
            assert f"--app={url}" not in " ".join(cmd) and info.secret not in " ".join(cmd)
            for w in windows:
                for p in [w, *w.children(recursive=True)]:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
        # the tray's decision comes after the URL line (GTK and the X tray selection are looked at first)
        assert read_until(first, lines, "Tray icon", timeout=60), lines
    finally:
        first.kill()  # SIGKILL: no chance to clean up
        rest, _ = first.communicate(timeout=30)
        lines += rest.decode("utf-8", "replace").splitlines()
    psutil.wait_procs(workers, timeout=30)  # the pool's death pipes take the workers down
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    tray_lines = [line for line in lines if "Tray icon" in line]
    assert len(tray_lines) == 1 and "no system tray host" in tray_lines[0]
    assert (home / "run" / INFO_NAME).exists(), "SIGKILL should leave the record behind"

    # Third launch: starts normally over the stale record, then quits cleanly on SIGTERM.
    third, url3, lines3 = start(home, "--headless", "--workers", "cpu:1", "--port", str(free_port()))
    assert any("did not shut down cleanly" in line for line in lines3)
    assert read_instance(home / "run").pid == third.pid
    family = descendants(third.pid)
    assert family, "the pool should have a worker process"
    code, _out = finish(third)
    assert code == 0
    gone, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"left behind: {alive}"
    assert lock_is_free(home / "run") and not (home / "run" / INFO_NAME).exists()
    log_file = home / "logs" / "zaoxiang.log"
    log_text = log_file.read_text(encoding="utf-8")
    assert "cleared a stale instance record" in log_text
    # Three launches logged their addresses (the second its window's too), never with the token.
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    for launched in (url, url3):
        token = launched.split("zx_token=", 1)[1]
        assert token not in log_text and f"{launched.split('?', 1)[0]}?zx_token=…" in log_text
    if chromium:
        assert f"opened {url.split('?', 1)[0]}?zx_token=… in app mode" in log_text


def test_no_display_runs_without_tray_and_says_so_once(home: Path) -> None:
    env = cli_env(home)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    proc, _url, lines = start(home, "--no-browser", "--workers", "cpu:1", "--port", str(free_port()), env=env)
    # Ended the way `zaoxiang stop` ends it on Windows (no SIGTERM there): a quit-request file.
    request_quit_file(home / "run", proc.pid)
    out, _ = proc.communicate(timeout=90)
    everything = lines + out.decode("utf-8", "replace").splitlines()
    assert proc.returncode == 0, everything
    assert not (home / "run" / QUIT_NAME).exists()
    said = [line for line in everything if "Tray icon" in line]
    assert len(said) == 1 and "no display" in said[0], everything


@pytest.mark.slow
@pytest.mark.e2e
def test_quit_in_the_window_asks_then_stops_everything(home: Path) -> None:
    """The header's Quit, clicked in a real browser: Cancel keeps the studio; Quit now stops it whole."""
    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    proc, url, _lines = start(home, "--headless", "--lang", "en", "--workers", "cpu:1", "--port", str(free_port()))
    family = descendants(proc.pid)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(url)
            page.click("#zx-quit")
            page.wait_for_selector("#zx-quit-confirm", state="visible")
            assert "Queued images stay queued" in page.inner_text("#zx-quit-question")
            page.click("#zx-quit-cancel")
            page.wait_for_selector("#zx-quit-confirm", state="hidden")
            time.sleep(1)
            assert proc.poll() is None, "Cancel must not quit"
            page.click("#zx-quit")
            page.click("#zx-quit-now")
            page.wait_for_selector("#zx-quit-status", state="visible")  # said before the server stops
            assert "quitting" in page.inner_text("#zx-quit-status")
            code, out = proc.wait(90), proc.communicate(timeout=30)[0].decode("utf-8", "replace")
            browser.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    _gone, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"left behind: {alive}"
    assert lock_is_free(home / "run") and not (home / "run" / INFO_NAME).exists()


def window_geometry(display: str, pid: int) -> tuple[int, int]:
    """The size of the visible X window that process `pid` shows (xdotool, as a person would measure)."""
    env = {**os.environ, "DISPLAY": display}
    found = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--pid", str(pid)], env=env,
                           capture_output=True, text=True, timeout=60).stdout.split()
    assert found, f"process {pid} shows no window"
    shell = subprocess.run(["xdotool", "getwindowgeometry", "--shell", found[-1]], env=env, capture_output=True,
                           text=True, timeout=30).stdout
    values = dict(line.split("=", 1) for line in shell.split())
    return int(values["WIDTH"]), int(values["HEIGHT"])


@pytest.mark.slow
def test_window_fits_the_screen_remembers_its_size_and_leaves_no_zombie(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1366x768 screen: the window opens at 85 % of it; resized and closed, it reopens at that size;
    closed by its user, it is reaped (no zombie)."""
    from studio.desktop import browser

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or shutil.which("xdotool") is None:
        pytest.skip("chromium and xdotool are needed (scripts/setup.sh test installs them)")
    monkeypatch.setenv(browser.BROWSER_ENV, chromium)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<title>造相</title>", encoding="utf-8")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              cwd=tmp_path / "site", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, profile = f"http://127.0.0.1:{port}/", tmp_path / "profile"
    try:
        with x_display("1366x768") as display:
            monkeypatch.setenv("DISPLAY", display)
            assert browser.screen_size() == (1366, 768)
            window = browser.open_window(url, profile)
            assert window.opened and window.proc is not None
            assert window_geometry(display, window.proc.pid) == (1161, 652)  # 85 % of 1366x768

            found = subprocess.run(["xdotool", "search", "--onlyvisible", "--pid", str(window.proc.pid)],
                                   env={**os.environ, "DISPLAY": display}, capture_output=True, text=True,
                                   timeout=30).stdout.split()
            subprocess.run(["xdotool", "windowsize", "--sync", found[-1], "1000", "600"],
                           env={**os.environ, "DISPLAY": display}, check=True, timeout=30)
            time.sleep(1)  # Chromium records the new bounds a moment after the resize
            browser.close_window(window.proc)
            assert browser.remembered_size(profile, url) == (1000, 600)

            again = browser.open_window(url, profile)
            assert again.proc is not None
            assert window_geometry(display, again.proc.pid) == (1000, 600)
            again.proc.terminate()  # as if its user closed it: the studio never calls wait() itself
            deadline = time.monotonic() + 30
            while psutil.pid_exists(again.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not psutil.pid_exists(again.proc.pid), "a closed window stayed a zombie"
            browser.close_app_windows(url, profile)
    finally:
        server.terminate()
        server.wait(10)


def test_window_size_from_screen_and_last_time(tmp_path: Path) -> None:
    from studio.desktop import browser

    assert browser.default_window_size((1366, 768)) == (1161, 652)
    assert browser.default_window_size((1920, 1080)) == (1600, 918)
    assert browser.default_window_size((3840, 2160)) == (1600, 1000)
    url = "http://127.0.0.1:7860/"
    assert browser.window_size(tmp_path, url, (1366, 768)) == (1161, 652)  # nothing remembered yet
    prefs = tmp_path / "Default" / "Preferences"
    prefs.parent.mkdir()
    # Chromium's own record, nested at the dots of the app's name
    place = {"left": 10, "top": 20, "right": 3010, "bottom": 2020}
    prefs.write_text(json.dumps({"browser": {"app_window_placement": {"127": {"0": {"0": {"1_/": place}}}}}}))
    assert browser.remembered_size(tmp_path, url) == (3000, 2000)
    assert browser.window_size(tmp_path, url, (1366, 768)) == (1366, 768)  # never larger than the screen
    assert browser.remembered_size(tmp_path, "http://localhost:7860/") is None
