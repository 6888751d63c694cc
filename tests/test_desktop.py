"""One instance, the app window and clean exits, with the real `zaoxiang` (real UI, real CPU workers).

A second launch must find the first and exit 0; after SIGKILL of the first the next launch starts
normally; SIGTERM leaves no process behind. The window test runs Chromium under Xvfb.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from studio.desktop.single_instance import INFO_NAME, InstanceLock, lock_is_free, read_instance
from tests.conftest import cli_env

START_TIMEOUT = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def xvfb() -> Iterator[str]:
    """A private X display (Xvfb picks a free number and tells us through -displayfd)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (scripts/setup.sh test installs it)")
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as fh:
        number = fh.readline().strip()
    try:
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


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


def finish(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, str]:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode("utf-8", "replace")


def app_windows(url: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        # Chromium rewrites its process title into one space-joined string soon after it starts, so
        # look at the words of the whole command line, not at argv entries.
        words = " ".join(p.info.get("cmdline") or []).split()
        if f"--app={url}" in words:
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
        assert url == f"http://127.0.0.1:{port}/"
        info = read_instance(home / "run")
        assert info is not None and info.pid == first.pid and info.url == url

        # Second launch, window allowed: exits 0, names the first's URL, opens an app-mode window.
        env2 = dict(env)
        if chromium:
            env2["ZAOXIANG_BROWSER"] = chromium
        t0 = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "studio", "--workers", "cpu:1"], env=env2,
                                capture_output=True, text=True, timeout=120)
        took = time.monotonic() - t0
        assert second.returncode == 0, second.stderr
        assert f"already running: {url}" in second.stdout
        assert took < 30, f"a second launch took {took:.1f} s"
        if chromium:
            deadline = time.monotonic() + 20
            while not app_windows(url) and time.monotonic() < deadline:
                time.sleep(0.2)
            windows = app_windows(url)
            assert windows, "no app-mode window was opened"
            cmd = windows[0].cmdline()
            assert f"--user-data-dir={home / 'data' / 'browser-profile'}" in cmd
            for w in windows:
                for p in [w, *w.children(recursive=True)]:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
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
    log_text = (home / "logs" / "zaoxiang.log").read_text(encoding="utf-8")
    assert "cleared a stale instance record" in log_text


def test_no_display_runs_without_tray_and_says_so_once(home: Path) -> None:
    env = cli_env(home)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    proc, _url, lines = start(home, "--no-browser", "--workers", "cpu:1", "--port", str(free_port()), env=env)
    code, out = finish(proc)
    everything = lines + out.splitlines()
    assert code == 0
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
            code, out = proc.wait(90), proc.communicate(timeout=30)[0].decode("utf-8", "replace")
            browser.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    _gone, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"left behind: {alive}"
    assert lock_is_free(home / "run") and not (home / "run" / INFO_NAME).exists()
