"""The studio's window: the URL in app mode (`--app=URL`) in Chrome, Chromium or Edge, else the default browser.

App mode gives a window without tabs or an address bar, so the studio feels like a desktop program.
It runs with its own profile folder under the data dir: that keeps the studio's window apart from
the person's everyday browser (its own size and position, no extensions), and it means closing the
studio can close exactly the windows it opened, a second launch's included. The window is sized from
the screen (85 % of it, at most 1600x1000) unless Chromium remembers a size from last time. Set
ZAOXIANG_BROWSER to a browser executable to choose one, or to "default" to always use the system's
default browser.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from studio.core.opener import open_target, spawn
from studio.desktop.logs import redact

log = logging.getLogger(__name__)

BROWSER_ENV = "ZAOXIANG_BROWSER"
PROFILE_DIR_NAME = "browser-profile"
SCREEN_SHARE = 0.85
MAX_SIZE = (1600, 1000)
MIN_SIZE = (640, 480)
UNKNOWN_SCREEN = (1280, 800)

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


def screen_size() -> tuple[int, int] | None:
    """The primary monitor's size in pixels, or None where it cannot be read."""
    try:
        if sys.platform.startswith("win"):
            import ctypes

            user32 = ctypes.windll.user32  # type: ignore[attr-defined]
            return int(user32.GetSystemMetrics(0)), int(user32.GetSystemMetrics(1))
        if sys.platform == "darwin":
            from AppKit import NSScreen  # pyobjc, which pystray brings on macOS

            frame = NSScreen.mainScreen().visibleFrame()
            return int(frame.size.width), int(frame.size.height)
        if not os.environ.get("DISPLAY"):
            return None
        return _x11_screen_size()
    except Exception as exc:
        log.info("screen size unknown: %s", exc)
        return None


def _x11_screen_size() -> tuple[int, int]:
    import Xlib.display

    display = Xlib.display.Display()
    try:
        root = display.screen().root
        try:  # RandR monitors: the primary one, not the whole span of several screens
            from Xlib.ext import randr

            monitors = randr.get_monitors(root).monitors
            chosen = next((m for m in monitors if m.primary), monitors[0] if monitors else None)
            if chosen is not None:
                return int(chosen.width_in_pixels), int(chosen.height_in_pixels)
        except Exception:
            pass
        geometry = root.get_geometry()
        return int(geometry.width), int(geometry.height)
    finally:
        display.close()


def default_window_size(screen: tuple[int, int] | None) -> tuple[int, int]:
    """85 % of the screen, at most 1600x1000."""
    width, height = screen or UNKNOWN_SCREEN
    return min(int(width * SCREEN_SHARE), MAX_SIZE[0]), min(int(height * SCREEN_SHARE), MAX_SIZE[1])


def remembered_size(profile_dir: Path, url: str) -> tuple[int, int] | None:
    """The size Chromium saved for this app window last time (its Preferences), or None."""
    try:
        prefs = json.loads((profile_dir / "Default" / "Preferences").read_text(encoding="utf-8"))
        placements = prefs["browser"]["app_window_placement"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    host = urlsplit(url).hostname or ""
    found: list[tuple[str, dict]] = []

    def walk(node: object, key: str) -> None:  # Chromium nests the app's name at its dots
        if isinstance(node, dict):
            if {"left", "right", "top", "bottom"} <= node.keys():
                found.append((key, node))
            else:
                for name, child in node.items():
                    walk(child, f"{key}.{name}" if key else str(name))

    walk(placements, "")
    for key, place in found:
        if key.startswith(host):
            try:
                return int(place["right"]) - int(place["left"]), int(place["bottom"]) - int(place["top"])
            except (KeyError, TypeError, ValueError):
                return None
    return None


def window_size(profile_dir: Path, url: str, screen: tuple[int, int] | None = None) -> tuple[int, int]:
    """Last time's size if there is one, else 85 % of the screen; never larger than the screen."""
    screen = screen or screen_size()
    width, height = remembered_size(profile_dir, url) or default_window_size(screen)
    if screen is not None:
        width, height = min(width, screen[0]), min(height, screen[1])
    return max(width, MIN_SIZE[0]), max(height, MIN_SIZE[1])


def app_command(browser: Path, url: str, profile_dir: Path, size: tuple[int, int] | None = None) -> list[str]:
    """The command line for an app-mode window with its own profile."""
    width, height = size or window_size(profile_dir, url)
    cmd = [str(browser), f"--app={url}", f"--user-data-dir={profile_dir}", "--no-first-run",
           "--no-default-browser-check", "--disable-sync", f"--window-size={width},{height}"]
    if sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--no-sandbox")  # Chromium refuses to start as root otherwise
    return cmd


@dataclass(frozen=True)
class Window:
    """What opening the studio's window gave: the app-mode browser (so Quit can close it), and whether
    anything opened at all (if not, the caller shows the address to copy)."""

    proc: subprocess.Popen | None
    opened: bool


def open_window(url: str, profile_dir: Path) -> Window:
    """Open the studio's window in app mode, else in the default browser.

    A closed window leaves no zombie: the browser is reaped on a thread when it ends.
    """
    browser = find_app_browser()
    if browser is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        try:
            proc = spawn(app_command(browser, url, profile_dir))
            log.info("opened %s in app mode with %s (pid %d)", redact(url), browser, proc.pid)
            return Window(proc, True)
        except OSError as exc:
            log.warning("could not start %s (%s); using the default browser", browser, exc)
    opened = _open_default(url)
    if not opened:
        log.warning("no browser could open %s", redact(url))
    return Window(None, opened)


def _open_default(url: str) -> bool:
    """The default browser, through the system opener (reaped) and Python's webbrowser as a fallback."""
    if os.environ.get(BROWSER_ENV, "").strip().lower() != "default" and open_target(url):
        return True
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        return bool(webbrowser.open(url, new=1))
    except Exception as exc:
        log.warning("webbrowser could not open %s: %s", redact(url), exc)
        return False


def app_windows(base: str, profile_dir: Path) -> list[psutil.Process]:
    """The app-mode browser processes showing the studio at `base` (its address, without a ticket) with
    the studio's profile: windows the studio opened, this launch's or a second launch's (whose parent has
    long exited), each with the one-time link it was given."""
    page, profile = f"--app={base}", f"--user-data-dir={profile_dir}"
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            # Chromium rewrites its title into one space-joined string: look at the words
            words = set(" ".join(proc.info.get("cmdline") or []).split())
        except (psutil.Error, TypeError):
            continue
        if profile in words and any(w == page or w.startswith(f"{page}?") for w in words):
            found.append(proc)
    return found


def close_app_windows(base: str, profile_dir: Path, timeout: float = 5.0) -> int:
    """Close every window `app_windows` finds (with its helper processes); how many there were."""
    windows = app_windows(base, profile_dir)
    family: list[psutil.Process] = []
    for window in windows:
        try:
            family += [window, *window.children(recursive=True)]
        except psutil.Error:
            pass
    _end(family, timeout)
    return len(windows)


def _end(family: list[psutil.Process], timeout: float) -> None:
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


def close_window(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """Close an app-mode window this process opened (and its helpers); a no-op for the default browser."""
    if proc is None or proc.poll() is not None:
        return
    try:
        parent = psutil.Process(proc.pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        family = []
    _end(family, timeout)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
