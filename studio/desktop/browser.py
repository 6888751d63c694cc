"""The studio's window: the URL in app mode (`--app=URL`) in Chrome, Chromium or Edge, else the default browser.

App mode gives a window without tabs or an address bar, so the studio feels like a desktop program.
It runs with its own profile folder under the data dir: that keeps the studio's window apart from
the person's everyday browser (its own size and position, no extensions), and it means closing the
studio can close exactly the windows it opened. Set ZAOXIANG_BROWSER to a browser executable to
choose one, or to "default" to always use the system's default browser.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import webbrowser
from pathlib import Path

log = logging.getLogger(__name__)

BROWSER_ENV = "ZAOXIANG_BROWSER"
PROFILE_DIR_NAME = "browser-profile"

_LINUX_NAMES = ("google-chrome", "google-chrome-stable", "chromium", "chromium-browser",
                "microsoft-edge", "microsoft-edge-stable")
_MAC_APPS = ("Google Chrome.app/Contents/MacOS/Google Chrome", "Chromium.app/Contents/MacOS/Chromium",
             "Microsoft Edge.app/Contents/MacOS/Microsoft Edge")
_WIN_RELATIVE = (r"Google\Chrome\Application\chrome.exe", r"Microsoft\Edge\Application\msedge.exe",
                 r"Chromium\Application\chrome.exe")


def _candidates() -> list[Path]:
    if sys.platform == "darwin":
        roots = [Path("/Applications"), Path.home() / "Applications"]
        return [root / app for app in _MAC_APPS for root in roots]
    if sys.platform.startswith("win"):
        roots = [os.environ.get(v) for v in ("PROGRAMFILES", "PROGRAMFILES(X86)", "LOCALAPPDATA")]
        return [Path(root) / rel for rel in _WIN_RELATIVE for root in roots if root]
    return [Path(found) for name in _LINUX_NAMES if (found := shutil.which(name))]


def find_app_browser() -> Path | None:
    """A Chromium-family browser that supports app mode, or None (ZAOXIANG_BROWSER=default forces None)."""
    chosen = os.environ.get(BROWSER_ENV, "").strip()
    if chosen.lower() == "default":
        return None
    if chosen:
        path = Path(chosen) if Path(chosen).exists() else (Path(w) if (w := shutil.which(chosen)) else None)
        if path is not None:
            return path
        log.warning("%s=%s was not found; looking for Chrome, Chromium or Edge", BROWSER_ENV, chosen)
    return next((p for p in _candidates() if p.is_file()), None)


def app_command(browser: Path, url: str, profile_dir: Path) -> list[str]:
    """The command line for an app-mode window with its own profile."""
    cmd = [str(browser), f"--app={url}", f"--user-data-dir={profile_dir}", "--no-first-run",
           "--no-default-browser-check", "--disable-sync", "--window-size=1440,960"]
    if sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--no-sandbox")  # Chromium refuses to start as root otherwise
    return cmd


def open_window(url: str, profile_dir: Path) -> subprocess.Popen | None:
    """Open the studio's window; the Popen of an app-mode browser (so Quit can close it), else None."""
    browser = find_app_browser()
    if browser is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.Popen(app_command(browser, url, profile_dir), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            log.info("opened %s in app mode with %s (pid %d)", url, browser, proc.pid)
            return proc
        except OSError as exc:
            log.warning("could not start %s (%s); using the default browser", browser, exc)
    if not webbrowser.open(url, new=1):
        log.warning("no browser could open %s", url)
    return None


def close_window(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """Close an app-mode window this process opened (and its helpers); a no-op for the default browser."""
    if proc is None or proc.poll() is not None:
        return
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        family = []
    for p in family:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(family, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
