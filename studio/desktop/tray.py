"""The tray icon: idle / working / error at a glance, and a menu for the few things done without the window.

It is driven by Studio events (job started, done, failed, worker died) and only calls the Studio
facade. Quit does not stop anything itself: it asks the launcher, which owns the shutdown order.
pystray is imported lazily because its X11 backend connects to the display at import time.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.core import events as ev
from studio.core.assets import asset
from studio.core.i18n import LANGS
from studio.core.opener import open_path
from studio.desktop.messages import ERROR, IDLE, WORKING, resolve_lang, text  # noqa: F401 (tests read them here)
from studio.desktop.tray_backends import (  # noqa: F401 (the launcher and tests read them here)
    XORG_REPLY_WAIT_S,
    Backend,
    TrayOff,
    _x11_tray_host,
    choose_backend,
    icon_class,
    tray_unavailable_reason,
)

log = logging.getLogger(__name__)

ICON_FILES = {IDLE: "tray-idle.png", WORKING: "tray-working.png", ERROR: "tray-error.png"}


def next_state(state: str, event: ev.Event, running: set[str]) -> str:
    """The icon state after `event`; `running` (job ids) is updated in place.

    An error stays shown until a later image succeeds, so a failure is not missed while away.
    """
    kind, job = event.get("type"), event.get("job_id")
    if kind in (ev.JOB_STARTED, ev.STEP) and job:
        running.add(job)
    elif kind in (ev.JOB_DONE, ev.JOB_FAILED, ev.JOB_CANCELLED, ev.JOB_REQUEUED) and job:
        running.discard(job)
    if kind in (ev.JOB_FAILED, ev.WORKER_DIED):
        return ERROR
    if kind == ev.JOB_DONE:
        return WORKING if running else IDLE
    if state == ERROR:
        return ERROR
    return WORKING if running else IDLE


def status_line(pool: list[dict[str, Any]], queued: int, paused: bool, lang: str) -> str:
    """"2 GPU(s) · 3 image(s) queued", from pool_status() and queue_length()."""
    if not pool:
        head = text("starting", lang)
    else:
        names = [str(w.get("name") or w.get("worker") or w.get("device") or "") for w in pool]
        gpus = sum(1 for n in names if n.startswith("cuda"))
        head = text("gpus", lang, n=gpus) if gpus else text("cpus", lang, n=len(pool))
    parts = [head, text("queued", lang, n=queued)]
    if paused:
        parts.append(text("paused", lang))
    return " · ".join(parts)


class StudioTray:
    """One tray icon bound to one Studio; `run` blocks until `stop_event` is set."""

    def __init__(self, studio: Any, *, open_window: Callable[[], None], on_quit: Callable[[], None],
                 log_path: Path, lang: str | None = "auto",
                 open_file: Callable[[Path], object] = open_path) -> None:
        self.studio = studio
        self._lang = lang  # zh or en: given at start (--lang); else the studio's setting, followed live
        self._open_window = open_window
        self._on_quit = on_quit
        self.open_file = open_file  # public: tests and embedders may route it
        self.log_path = log_path
        self.state = IDLE
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._icon_lock = threading.Lock()  # serialises changes to the pystray icon
        self._dirty = threading.Event()  # the icon should show the current state: the updater's cue
        self._loop: threading.Thread | None = None  # the icon's loop thread (not on macOS)
        self._unsubscribe: Callable[[], None] | None = None
        self.icon: Any = None
        self.ready = threading.Event()
        self._images = {state: self._load(name) for state, name in ICON_FILES.items()}
        self._latin1_titles = False
        self.has_menu = True  # False only on pystray's Xorg backend: left-click opens the studio

    @property
    def lang(self) -> str:
        """The language the tray speaks now: a switch in Settings relabels it within half a second."""
        return resolve_lang(self._lang if self._lang in LANGS else self.studio.settings.language)

    @staticmethod
    def _load(name: str):
        from PIL import Image

        return Image.open(asset(name)).convert("RGBA")

    # --- menu actions: each one Studio call or one opener call ---
    def open_studio(self) -> None:
        self._open_window()

    def toggle_pause(self) -> None:
        if self.studio.paused:
            self.studio.resume()
        else:
            self.studio.pause()
        self._refresh()

    def open_output(self) -> None:
        self._open(Path(self.studio.output_dir))

    def open_log(self) -> None:
        self._open(self.log_path)

    def _open(self, path: Path) -> None:
        """Open `path`; where nothing could, say where it is (console, log, and a notification if any)."""
        if self.open_file(path):
            return
        message = text("open_failed", self.lang, path=path)
        print(message, flush=True)
        log.warning(message)
        icon = self.icon
        if icon is not None and getattr(icon, "HAS_NOTIFICATION", False):
            try:
                icon.notify(message)
            except Exception as exc:
                log.info("tray notification failed: %s", exc)

    def quit(self) -> None:
        self._on_quit()

    def status(self) -> str:
        try:
            return status_line(self.studio.pool_status(), self.studio.queue_length(), self.studio.paused,
                               self.lang)
        except Exception as exc:  # the menu must open even when the pool is in trouble
            log.warning("tray status failed: %s", exc)
            return text(ERROR, self.lang)

    def title(self) -> str:
        if self._latin1_titles:  # pystray's X11 backend writes the title as a Latin-1 STRING property
            return f"Z-Image Studio - {text(self.state, 'en')}"
        return f"造相 Z-Image Studio — {text(self.state, self.lang)}"

    def build_menu(self):
        import pystray

        item = pystray.MenuItem
        return pystray.Menu(
            item(lambda _i: text("open", self.lang), lambda: self.open_studio(), default=True),
            item(lambda _i: self.status(), None, enabled=False),
            item(lambda _i: text("resume" if self.studio.paused else "pause", self.lang),
                 lambda: self.toggle_pause()),
            item(lambda _i: text("output", self.lang), lambda: self.open_output()),
            item(lambda _i: text("log", self.lang), lambda: self.open_log()),
            pystray.Menu.SEPARATOR,
            item(lambda _i: text("quit", self.lang), lambda: self.quit()),
        )

    # --- events ---
    def handle_event(self, event: ev.Event) -> None:
        with self._lock:
            before = self.state
            self.state = next_state(self.state, event, self._running)
            changed = self.state != before
        if changed or event.get("type") in (ev.JOB_DONE, ev.REQUEST_DONE, ev.QUEUE_PAUSED, ev.QUEUE_RESUMED):
            self._refresh()

    def _refresh(self) -> None:
        """Have the updater thread show the current state; never blocks the caller.

        The caller is often the Studio's event-delivery thread, and pystray's X11 backend can block
        for good (a lost reply from the X server, seen under load), which stopped every event to every
        subscriber, the web UI's included. Only the icon may freeze, never the studio.
        """
        self._dirty.set()

    def _update_loop(self, stop_event: threading.Event) -> None:
        shown = self.lang
        while not stop_event.is_set():
            if self._dirty.wait(0.5) or self.lang != shown:  # a language switch relabels menu and title
                self._dirty.clear()
                shown = self.lang
                self._apply()

    def _apply(self) -> None:
        icon = self.icon
        if icon is None or not self.ready.is_set():
            return
        # One update at a time: pystray's X11 backend hands each change to its loop thread through one
        # shared reply queue, so two threads updating at once could take each other's replies.
        with self._icon_lock:
            loop = self._loop
            if loop is not None and not loop.is_alive():
                return  # the icon's loop is gone: a change would wait forever for its reply
            try:
                icon.icon = self._images[self.state]
                icon.title = self.title()
                icon.update_menu()
            except Exception as exc:  # a tray host that went away must not break the studio
                log.warning("tray update failed: %s", exc)

    # --- life ---
    def run(self, stop_event: threading.Event, backend: Backend | None = None) -> None:
        """Show the icon and serve its events until `stop_event` is set (call from the main thread)."""
        backend = backend or choose_backend()[0] or Backend.XORG
        icon_type = icon_class(backend)
        self.has_menu = bool(getattr(icon_type, "HAS_MENU", True))
        self._latin1_titles = backend is Backend.XORG
        self._unsubscribe = self.studio.subscribe(self.handle_event)
        threading.Thread(target=self._update_loop, args=(stop_event,), name="tray-updates", daemon=True).start()

        def setup(icon) -> None:
            with self._icon_lock:
                icon.visible = True
            self.ready.set()
            self._refresh()
            # The stop waits on a daemon thread: pystray's setup thread is one the process waits for.
            threading.Thread(target=stop_when_asked, args=(icon,), name="tray-stop", daemon=True).start()

        def stop_when_asked(icon) -> None:
            stop_event.wait()
            try:
                icon.stop()
            except Exception as exc:  # a loop that does not answer is left to the join below
                log.warning("tray stop: %s", exc)

        def make_and_run() -> None:
            # Made on the thread that runs its loop: GTK wants one thread for all its calls.
            self.icon = icon_type("zaoxiang", self._images[self.state], self.title(), menu=self.build_menu())
            self.icon.run(setup)

        try:
            if sys.platform == "darwin":
                make_and_run()  # AppKit wants its loop on the main thread
            else:
                # Elsewhere the icon's loop runs on its own thread, so that Quit never depends on the
                # backend noticing its own stop: pystray's X11 loop waits for a DestroyNotify that, seen
                # under load, can fail to arrive, which left the studio hanging after Quit.
                loop = self._loop = threading.Thread(target=make_and_run, name="tray-icon", daemon=True)
                loop.start()
                while loop.is_alive() and not stop_event.wait(0.5):
                    pass
                if not stop_event.is_set():  # the icon's loop ended by itself: run on without it
                    log.warning("the tray icon stopped; the studio runs on without it")
                    stop_event.wait()
                loop.join(5)
                if loop.is_alive():
                    log.warning("the tray icon's loop did not stop; it ends with the process")
        finally:
            self.ready.clear()
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
