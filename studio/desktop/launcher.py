"""`zaoxiang` with no sub-command: one instance, the Studio, the server, the window and the tray.

The order matters. The instance lock comes first, so a double double-click never starts two
pools; the URL is published only once the server answers; and shutdown runs in reverse: stop new
work, finish (or stop at the next step) the running images, stop the server, close the Studio (its workers), close
the window, release the lock. Queued images stay queued for the next start.

The server comes from the UI: `serve(studio, host, port, lang=..., secret=...) -> (link, stop)`,
imported from `studio.ui.server` only once the lock is ours, so a second launch never pays for
importing Gradio. Every window opened (the first, the tray's Open, a second launch's) gets a one-time
link of its own, made from the run's secret (studio/core/launch_link.py), which only this process and
the 0600 instance file hold.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from studio.core import events as ev
from studio.core.launch_link import TICKET_LIFE_S, link_base, new_secret, open_link
from studio.core.paths import get_paths
from studio.core.ports import find_port
from studio.core.settings import load_settings
from studio.desktop import browser
from studio.desktop.logs import redact, setup_logging
from studio.desktop.messages import resolve_lang, text
from studio.desktop.single_instance import InstanceLock, wait_for_running

log = logging.getLogger(__name__)

Serve = Callable[..., tuple[str, Callable[[], None]]]
FINISH_TIMEOUT_S = 600.0
QUIT_POLL_S = 0.5
TRAY_READY_S = 30.0


@dataclass(frozen=True)
class DesktopOptions:
    host: str | None = None
    port: int | None = None
    lang: str | None = None
    workers: str | None = None
    model: str | None = None
    no_browser: bool = False
    no_tray: bool = False
    headless: bool = False

    @property
    def window(self) -> bool:
        return not (self.no_browser or self.headless)

    @property
    def tray(self) -> bool:
        return not (self.no_tray or self.headless)


class RunningJobs:
    """Which images are running right now, from Studio events: what Quit cancels or waits for."""

    def __init__(self) -> None:
        self._jobs: dict[str, str] = {}
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)

    def handle(self, event: ev.Event) -> None:
        kind, job = event.get("type"), event.get("job_id")
        if not job:
            return
        with self._lock:
            if kind in (ev.JOB_STARTED, ev.STEP):
                self._jobs[job] = str(event.get("request_id") or "")
            elif kind in (ev.JOB_DONE, ev.JOB_FAILED, ev.JOB_CANCELLED, ev.JOB_REQUEUED):
                self._jobs.pop(job, None)
                self.changed.notify_all()

    def requests(self) -> set[str]:
        with self._lock:
            return {r for r in self._jobs.values() if r}

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def wait_empty(self, timeout: float) -> bool:
        with self._lock:
            return self.changed.wait_for(lambda: not self._jobs, timeout=timeout)


class _QuitRequest:
    """The one Quit of a desktop studio; also its `Studio.quit_hook`, so the window's Quit button
    reaches the launcher through the Studio (ui/ does not import desktop/)."""

    def __init__(self, jobs: RunningJobs | None = None) -> None:
        self.event = threading.Event()
        self.finish_running = False
        self.jobs = jobs

    def request(self, finish_running: bool = False) -> None:
        self.finish_running = self.finish_running or finish_running
        self.event.set()

    def running_images(self) -> int:
        return len(self.jobs) if self.jobs is not None else 0


_active: _QuitRequest | None = None


def request_quit(finish_running: bool = False) -> bool:
    """Ask the running desktop studio in this process to quit (the UI's Quit calls this).

    finish_running=True lets the images now on a GPU finish first; otherwise they stop at their next
    step. Unfinished images stay queued either way, for the next start. False when no launcher runs in this process.
    """
    if _active is None:
        return False
    _active.request(finish_running)
    return True


def _say(message: str) -> None:
    """To the person in full; to the log file without a link's ticket (it opens the studio once)."""
    print(message, flush=True)
    log.info(redact(message))


def _settings_for(options: DesktopOptions, paths):
    settings = load_settings(paths)
    changes: dict[str, Any] = {}
    if options.host:
        changes["host"] = options.host
    if options.port is not None:
        changes["port"] = options.port
    if options.lang:
        changes["language"] = options.lang
    return settings.with_changes(**changes) if changes else settings


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def local_studio_url(url: str) -> bool:
    """Whether `url` (read from the instance file, which any local program could have written) is
    a studio on this machine: http(s) to 127.0.0.1, localhost or [::1] with a port, nothing else."""
    from urllib.parse import urlsplit

    if not isinstance(url, str) or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7f for ch in url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and parts.hostname in LOCAL_HOSTS and port is not None
            and 0 < port < 65536 and not parts.username and not parts.password)


def _handover(options: DesktopOptions, runtime_dir, profile_dir) -> int | None:
    """A studio already runs: point at it and return 0; None if it vanished while we waited."""
    info = wait_for_running(runtime_dir)
    if info is None:
        return None
    lang = resolve_lang(options.lang)
    if not info.url:
        _say(text("handover_starting", lang, pid=info.pid))
        return 0
    if not local_studio_url(info.url):
        _say(text("handover_not_local", lang, pid=info.pid, url=repr(info.url)))
        return 0
    base = link_base(info.url)

    def link() -> str:  # a record without a secret (an older studio) holds a link that stays good
        return open_link(base, info.secret) if info.secret else info.url

    _say(text("handover_running", lang, url=base))
    if not options.window:
        _say(text("open_link", lang, url=link(), s=f"{TICKET_LIFE_S:.0f}"))
    elif not browser.open_window(link(), profile_dir).opened:
        _say(text("open_url", lang, url=link(), s=f"{TICKET_LIFE_S:.0f}"))
    return 0


def _install_signals(quit_request: _QuitRequest) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, lambda *_a: quit_request.request(False))

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _watch_quit_file(lock: InstanceLock, quit_request: _QuitRequest) -> None:
    """`zaoxiang stop`'s request on systems without SIGTERM (Windows): a file in the runtime dir."""
    while not quit_request.event.wait(QUIT_POLL_S):
        if lock.quit_requested():
            log.info("quit requested by `zaoxiang stop`")
            quit_request.request(False)


def _wait(quit_request: _QuitRequest) -> None:
    while not quit_request.event.wait(0.5):  # a short timeout keeps Ctrl+C responsive on Windows
        pass


def _shutdown(studio: Any, jobs: RunningJobs, finish_running: bool, stop_server: Callable[[], None] | None,
              windows: list[subprocess.Popen]) -> None:
    """Stop taking work, finish what runs (or stop it at its next step: `Studio.close` does that),
    then stop the server, the workers and the window. Nothing is cancelled: every unfinished image
    stays queued in the store for the next start, which offers to resume it."""
    steps: list[tuple[str, Callable[[], object]]] = [("pause the queue", studio.pause)]
    if finish_running:
        steps.append(("let running images finish", lambda: jobs.wait_empty(FINISH_TIMEOUT_S)))
    if stop_server is not None:
        steps.append(("stop the server", stop_server))
    steps.append(("stop the workers", studio.close))
    steps += [("close the window", lambda w=w: browser.close_window(w)) for w in windows if w is not None]
    for what, step in steps:
        try:
            step()
        except Exception:  # keep going: every later step still has to run
            log.exception("shutdown: could not %s", what)


def run_desktop(options: DesktopOptions, serve: Serve | None = None,
                on_tray: Callable[[Any], None] | None = None) -> int:
    """The studio as a desktop program; returns the exit status.

    `serve` defaults to the UI's. `on_tray` is called with the tray once its icon is up (tests use it
    to drive the menu as a person would).
    """
    global _active
    paths = get_paths().ensure()
    log_path = setup_logging(paths)
    profile_dir = paths.data_dir / browser.PROFILE_DIR_NAME
    lock = InstanceLock(paths.runtime_dir)
    for _attempt in range(3):
        if lock.acquire():
            break
        handed = _handover(options, paths.runtime_dir, profile_dir)
        if handed is not None:
            return handed
    else:
        print(text("lock_busy", resolve_lang(options.lang), folder=paths.runtime_dir), file=sys.stderr)
        return 1
    if serve is None:  # after the lock: a second launch must not pay for importing Gradio
        from studio.ui.server import serve
    if lock.cleared_stale is not None:
        _say(text("stale", resolve_lang(options.lang), pid=lock.cleared_stale.pid))

    jobs = RunningJobs()
    quit_request = _QuitRequest(jobs)
    _active = quit_request
    restore_signals = _install_signals(quit_request)
    threading.Thread(target=_watch_quit_file, args=(lock, quit_request), name="quit-file", daemon=True).start()
    studio = None
    url = None
    stop_server = None
    windows: list[subprocess.Popen] = []
    unsubscribe = None
    try:
        from studio.app import Studio

        settings = _settings_for(options, paths)
        studio = Studio(settings=settings, paths=paths, model=options.model, workers=options.workers)
        unsubscribe = studio.subscribe(jobs.handle)
        studio.quit_hook = quit_request
        studio.start()
        port = find_port(settings.host, int(settings.port))
        secret = new_secret()
        first_link, stop_server = serve(studio, settings.host, port, lang=options.lang, secret=secret)
        url = link_base(first_link)
        lock.publish(url, secret)
        lang = resolve_lang(options.lang or settings.language)
        _say(text("serving", lang, url=first_link, log=log_path))

        def open_studio_window() -> None:  # each window its own one-time link: its command line shows it
            window = browser.open_window(open_link(url, secret), profile_dir)
            if window.proc is not None:
                windows.append(window.proc)
            if not window.opened:
                _say(text("open_url", lang, url=open_link(url, secret), s=f"{TICKET_LIFE_S:.0f}"))

        if options.window:
            open_studio_window()
        _run_until_quit(options, studio, quit_request, open_studio_window, log_path, on_tray)
        return 0
    except Exception as exc:  # model missing, bad --workers, port taken...: one readable line
        log.exception("the studio failed")
        print(f"zaoxiang: {exc}", file=sys.stderr)
        return 1
    finally:
        started = time.monotonic()
        if studio is not None:
            _shutdown(studio, jobs, quit_request.finish_running, stop_server, windows)
            if unsubscribe is not None:
                try:
                    unsubscribe()
                except Exception:
                    log.exception("unsubscribe failed")
        if url:  # a second launch's window too: its opener has long exited
            try:
                browser.close_app_windows(url, profile_dir)
            except Exception:
                log.exception("shutdown: could not close the studio's windows")
        restore_signals()
        _active = None
        lock.release()
        log.info("stopped in %.1f s", time.monotonic() - started)


def _run_until_quit(options: DesktopOptions, studio: Any, quit_request: _QuitRequest,
                    open_window: Callable[[], None], log_path, on_tray: Callable[[Any], None] | None) -> None:
    from studio.desktop import tray as tray_mod

    lang = resolve_lang(options.lang or studio.settings.language)
    off = tray_mod.TrayOff
    reason = off.HEADLESS if options.headless else (off.NO_TRAY if options.no_tray else None)
    backend = None
    if reason is None:
        backend, reason = tray_mod.choose_backend()
    if reason is not None:
        log.info("no tray icon: %s", reason.value)
        _say(text("tray_off", lang, reason=text(reason.key, lang)))
        _wait(quit_request)
        return

    tray = tray_mod.StudioTray(studio, open_window=open_window,
                               on_quit=lambda: quit_request.request(False), log_path=log_path, lang=options.lang)

    def when_ready() -> None:
        if not tray.ready.wait(TRAY_READY_S):
            log.warning("the tray icon did not come up within %.0f s", TRAY_READY_S)
            _say(text("no_tray", lang))
            return
        _say(text("how_to_quit" if tray.has_menu else "no_menu", lang))
        if on_tray is not None:
            on_tray(tray)

    threading.Thread(target=when_ready, name="tray-ready", daemon=True).start()
    try:
        tray.run(quit_request.event, backend)
    except Exception:  # a tray host that breaks must not take the studio down with it
        log.exception("the tray icon failed")
        _say(text("tray_failed", lang))
        _wait(quit_request)
