"""Which pystray backend shows the tray icon here, and pystray's icon classes with the repairs they need.

The tray itself (studio/desktop/tray.py) only asks `choose_backend` and `icon_class`: on Linux the
choice depends on the session bus, PyGObject and the X tray host, and the icons of two backends need
repairs pystray lacks (a GTK icon without a session bus, an Xorg icon that hears no clicks and waits
for its loop's replies without end).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import types
from collections.abc import Callable
from enum import Enum
from typing import Any

log = logging.getLogger(__name__)

XORG_REPLY_WAIT_S = 2.0  # how long a change waits for the X loop's reply before it asks again
XORG_REPLY_TRIES = 4


class Backend(str, Enum):
    """pystray's backends, in the order tried on Linux: AppIndicator for desktops that speak
    StatusNotifierItem (KDE, GNOME with its AppIndicator extension), GTK's StatusIcon for XEmbed tray
    hosts, and pystray's own Xorg code (no menu) only where PyGObject is missing."""

    APPINDICATOR = "appindicator"
    GTK = "gtk"
    XORG = "xorg"
    WIN32 = "win32"
    DARWIN = "darwin"


SNI_WATCHER = "org.kde.StatusNotifierWatcher"


class TrayOff(str, Enum):
    """Why no tray icon shows: the value is the log's English, `key` the person's line (`desk.*`)."""

    HEADLESS = "turned off (--headless)"
    NO_TRAY = "turned off (--no-tray)"
    NO_DISPLAY = "no display"
    UNKNOWN_BACKEND = "unknown PYSTRAY_BACKEND"
    NO_GTK = "no tray backend (PyGObject with GTK 3 is not installed)"
    NO_HOST = "no system tray host on this desktop"

    @property
    def key(self) -> str:
        return f"tray_off.{self.name.lower()}"


def choose_backend() -> tuple[Backend | None, TrayOff | None]:
    """(the pystray backend to use, None) or (None, why no tray icon can be shown here).

    Linux needs a display and a tray host: a StatusNotifierItem watcher on the session bus, or an
    XEmbed system tray owner on the X display. GNOME has neither without the AppIndicator extension,
    so the studio must run fine without a tray. PYSTRAY_BACKEND, when set, is taken as given.
    """
    if sys.platform == "darwin":
        return Backend.DARWIN, None
    if sys.platform.startswith("win"):
        return Backend.WIN32, None
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return None, TrayOff.NO_DISPLAY
    forced = os.environ.get("PYSTRAY_BACKEND", "").strip()
    if forced:
        try:
            backend = Backend(forced)
        except ValueError:
            log.warning("PYSTRAY_BACKEND=%s is not one of %s", forced, [b.value for b in Backend])
            return None, TrayOff.UNKNOWN_BACKEND
        if backend in (Backend.GTK, Backend.APPINDICATOR) and not _gtk_usable():
            return None, TrayOff.NO_GTK
    elif _gtk_usable():
        if _sni_watcher() and _appindicator_usable():
            backend = Backend.APPINDICATOR
        else:
            backend = Backend.GTK
    else:
        backend = Backend.XORG
    if backend in (Backend.GTK, Backend.XORG) and not _x11_tray_host():
        return None, TrayOff.NO_HOST
    return backend, None


def tray_unavailable_reason() -> TrayOff | None:
    """Why no tray icon can be shown here, or None when one can."""
    return choose_backend()[1]


def _gtk_usable() -> bool:
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        return bool(Gtk.init_check()[0])
    except Exception:  # no PyGObject, no GTK typelib, or no display GTK can open
        return False


def _appindicator_usable() -> bool:
    import gi

    for name in ("AyatanaAppIndicator3", "AppIndicator3"):
        try:
            gi.require_version(name, "0.1")
            return True
        except ValueError:
            continue
    return False


def _sni_watcher() -> bool:
    """Whether a StatusNotifierItem host listens on the session bus (never starts a bus itself)."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return False
    try:
        from gi.repository import Gio, GLib

        bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
        reply = bus.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                              "NameHasOwner", GLib.Variant("(s)", (SNI_WATCHER,)), GLib.VariantType("(b)"),
                              Gio.DBusCallFlags.NONE, 2000, None)
        return bool(reply.unpack()[0])
    except Exception:
        return False


def _x11_tray_host() -> bool:
    try:
        import Xlib.display
        import Xlib.X

        display = Xlib.display.Display()
        try:
            atom = display.intern_atom(f"_NET_SYSTEM_TRAY_S{display.get_default_screen()}")
            return display.get_selection_owner(atom) != Xlib.X.NONE
        finally:
            display.close()
    except Exception:
        return False


class _NoNotifier:
    """Stands in for pystray's D-Bus notifier where there is no session bus (the menu needs none)."""

    def notify(self, *_args: object) -> None:
        pass

    def hide(self) -> None:
        pass


def _bounded_change(original: Callable[[], None], atom: int) -> Callable[[Any], None]:
    """pystray's Xorg dispatch of `original` to the icon's loop thread, with a bounded wait for its reply."""
    def change(icon: Any) -> None:
        if threading.current_thread() is getattr(icon, "_thread", None):
            original()
            return
        while True:  # replies of changes given up on earlier are stale: drop them first
            try:
                icon._queue.get_nowait()
            except queue.Empty:
                break
        for _ in range(XORG_REPLY_TRIES):
            icon._send_message(icon._window, atom)
            icon._display.flush()
            try:
                result = icon._queue.get(timeout=XORG_REPLY_WAIT_S)
            except queue.Empty:
                continue
            if result is not True:
                raise result[1].with_traceback(result[2])
            return
        raise TimeoutError(f"the tray's X loop did not answer {original.__name__}")

    return change


def icon_class(backend: Backend) -> type:
    """pystray's Icon for `backend`, with two repairs: the GTK backends start without a session bus
    (pystray's notifier needs one and took the whole icon down), and the Xorg icon hears clicks
    (pystray never asked X for button presses, so left-click did nothing)."""
    if sys.platform.startswith("linux") and not os.environ.get("PYSTRAY_BACKEND"):
        os.environ["PYSTRAY_BACKEND"] = backend.value  # pystray picks its backend once, at import
    import pystray

    base = pystray.Icon
    if base.__module__.rsplit(".", 1)[-1] != f"_{backend.value}":
        log.warning("pystray was already loaded with %s; using it", base.__module__)
    if backend in (Backend.GTK, Backend.APPINDICATOR):
        class GtkIcon(base):  # type: ignore[misc, valid-type]
            def _initialize(self) -> None:
                try:
                    super()._initialize()
                except Exception as exc:
                    log.info("tray: no desktop notifications (%s)", exc)
                    self._notifier = _NoNotifier()
                    self._mark_ready()

        return GtkIcon
    if backend is Backend.XORG:
        class XorgIcon(base):  # type: ignore[misc, valid-type]
            def _run(self) -> None:
                # Dock from the loop's own thread before setup runs: pystray otherwise asks its loop
                # from the setup thread, and that request lost its reply under load, leaving setup (a
                # thread the process waits for at exit) blocked for good.
                self._thread = threading.current_thread()
                self.visible = True
                super()._run()

            def _rewrite_implementation(self, *originals):
                # pystray hands each change (icon, title, show, hide, stop) to its loop thread as an X
                # message and waits for the reply without end; under load a message was lost and the
                # tray's updater thread hung for good. Ask again after a while, and give up in the end.
                super()._rewrite_implementation(*originals)
                for original in originals:
                    atom = self._display.intern_atom(f"_PYSTRAY_{original.__name__.upper()}")
                    setattr(self, original.__name__, types.MethodType(_bounded_change(original, atom), self))

            def _create_window(self):
                import Xlib.X

                window = super()._create_window()
                window.change_attributes(event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask
                                         | Xlib.X.ButtonPressMask)
                return window

        return XorgIcon
    return base
