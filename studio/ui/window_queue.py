"""One browser window's own queue: what it asked for, in order, and which one it is showing.

A click on Generate while a request runs must not be lost: it is submitted at once (the pool queues
it) and joins this window's list; the one handler that streams progress moves on to it when the
current one settles. Kept free of Gradio, so the bookkeeping is unit-tested without a browser.
"""

from __future__ import annotations

import html
import threading
import uuid
from dataclasses import dataclass, field

from studio.ui.i18n import t
from studio.ui.progress import RequestView


@dataclass
class Entry:
    """One request of this window: its id, its view, and a short label (the prompt's start)."""

    request_id: str
    view: RequestView
    label: str


@dataclass
class WindowQueue:
    """The requests one window has submitted and not yet seen settle; `streaming` while a handler shows them."""

    entries: list[Entry] = field(default_factory=list)
    streaming: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, prompt: str, count: int) -> tuple[Entry, bool]:
        """A new entry (before its submit, so no event can precede it); True when no handler streams now,
        so the caller must stream (it becomes the streaming one)."""
        text = " ".join(prompt.split())
        entry = Entry(uuid.uuid4().hex, RequestView("", count), text if len(text) <= 40 else text[:39] + "…")
        entry.view.request_id = entry.request_id
        with self.lock:
            self.entries.append(entry)
            start = not self.streaming
            self.streaming = True
        return entry, start

    def drop(self, entry: Entry) -> None:
        with self.lock:
            if entry in self.entries:
                self.entries.remove(entry)

    def current(self) -> Entry | None:
        """The entry to show now, or None (and streaming stops) when none is left. A request cancelled
        while it waited and already over is dropped, not shown."""
        with self.lock:
            while self.entries and self.entries[0].view.cancel_requested and self.entries[0].view.finished:
                self.entries.pop(0)
            if self.entries:
                return self.entries[0]
            self.streaming = False
            return None

    def finish(self, entry: Entry) -> None:
        self.drop(entry)

    def abandon(self) -> None:
        """The streaming handler ended early: forget what it would have shown (the requests still run
        and land in History), so the next click starts afresh instead of waiting on views no one feeds."""
        with self.lock:
            self.entries.clear()
            self.streaming = False

    def find(self, request_id: str) -> Entry | None:
        with self.lock:
            return next((e for e in self.entries if e.request_id == request_id), None)

    def views(self) -> list[RequestView]:
        with self.lock:
            return [e.view for e in self.entries]

    def waiting(self) -> list[Entry]:
        """The entries after the current one."""
        with self.lock:
            return list(self.entries[1:])

    def listing(self) -> list[dict[str, str]]:
        """Plain data for the page's queue list: id, label, state (running for the first)."""
        with self.lock:
            return [{"request_id": e.request_id, "label": e.label,
                     "state": "cancelled" if e.view.cancel_requested else ("running" if i == 0 else "queued")}
                    for i, e in enumerate(self.entries)]


def render_listing(rows: list[dict[str, str]], lang: str) -> str:
    """The queue list in `lang`: a heading and one row per request, each with its own cancel button.

    Plain HTML in one fixed component (the page's click listener reads `data-rid`), not components
    made per row: a click is never lost on a button that a re-render has just replaced."""
    if len(rows) < 2:
        return ""
    out = [f'<div class="zx-queue-head">{html.escape(t("gen.queue.head", lang, n=len(rows)))}</div>']
    for row in rows:
        disabled = " disabled" if row["state"] == "cancelled" else ""
        state = t("state." + row["state"], lang)
        out.append(
            f'<div class="zx-queue-row"><span class="zx-queue-state">{html.escape(state)}'
            f'</span> <span class="zx-queue-label">{html.escape(row["label"])}</span>'
            f'<button class="zx-queue-cancel" data-rid="{html.escape(row["request_id"])}"{disabled}>'
            f'{html.escape(t("gen.cancel", lang))}</button></div>')
    return "".join(out)


# One listener on the list's own element, so rows replaced by a new listing need no new listener.
QUEUE_CLICK_JS = """element.addEventListener('click', (e) => {
  const b = e.target.closest('button.zx-queue-cancel');
  if (b && !b.disabled) { b.disabled = true; trigger('click', {request_id: b.dataset.rid}); }
});"""


_windows: dict[str, WindowQueue] = {}
_windows_lock = threading.Lock()


def window(session: str) -> WindowQueue:
    """The queue of the browser window (Gradio session) `session`."""
    with _windows_lock:
        return _windows.setdefault(session or "", WindowQueue())


def find_view(request_id: str) -> RequestView | None:
    """The view of `request_id` in whichever window holds it (for Cancel)."""
    with _windows_lock:
        queues = list(_windows.values())
    for queue_ in queues:
        entry = queue_.find(request_id)
        if entry is not None:
            return entry.view
    return None
