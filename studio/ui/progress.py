"""From Studio events to what one browser session shows while its request runs.

`Follower` subscribes before the request is submitted (so no event is missed), keeps the events of
that request in a per-session queue, and `RequestView` folds them into per-image progress. The view is
pure, so what the page shows is unit-tested without a browser.
"""

from __future__ import annotations

import html
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from studio.core import events as ev
from studio.core.eta import EtaClock, Work, request_eta_s
from studio.ui.i18n import STRINGS, t

TERMINAL = ("done", "failed", "cancelled")
PREVIEW_PREFIX = "data:image/jpeg;base64,"


@dataclass
class JobView:
    job_id: str
    index: int | None = None
    worker: str = ""
    step: int = 0
    steps: int = 0
    status: str = "queued"  # queued | running | done | failed | cancelled
    message: str = ""
    fail_kind: str = ""  # why it failed (the pool's ErrorKind value): says it in the window's language
    fail_key: str = ""  # ... or, sharper, a worker's `SaidError`: its strings key and arguments
    fail_args: dict[str, Any] = field(default_factory=dict)
    first_step: tuple[int, float] | None = None  # (step, time) of the first step event seen, for the speed
    last_step_at: float = 0.0
    preview: str = ""  # the latest preview while it runs (a JPEG data URL); dropped once it ends
    preview_step: int = 0

    def step_s(self) -> float | None:
        """Seconds per step measured on this image (None before two of its steps were seen)."""
        if self.first_step is None or self.step <= self.first_step[0]:
            return None
        return (self.last_step_at - self.first_step[1]) / (self.step - self.first_step[0])


@dataclass
class RequestView:
    """The state of one request as its events arrive."""

    request_id: str
    count: int
    jobs: dict[str, JobView] = field(default_factory=dict)
    images: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    cancel_requested: bool = False
    last_event: float = field(default_factory=time.monotonic)
    studio_eta_s: float | None = None  # the pool's estimate (queue ahead, measured speeds), when known
    eta_clock: EtaClock = field(default_factory=EtaClock)
    _setback: bool = False

    def _job(self, event: dict[str, Any]) -> JobView:
        job_id = str(event.get("job_id") or f"#{event.get('index', len(self.jobs))}")
        job = self.jobs.get(job_id)
        if job is None:
            job = self.jobs[job_id] = JobView(job_id)
        if event.get("index") is not None:
            job.index = int(event["index"])
        if event.get("worker"):
            job.worker = str(event["worker"])
        return job

    def apply(self, event: dict[str, Any]) -> bool:
        """Fold one event in; True when it concerned this request."""
        if event.get("request_id") not in (None, self.request_id):
            return False
        kind = event.get("type")
        self.last_event = time.monotonic()
        if kind == ev.REQUEST_DONE:
            if event.get("request_id") != self.request_id:
                return False
            self.finished = True
            for job in self.jobs.values():
                if job.status not in TERMINAL:
                    job.status = "cancelled" if self.cancel_requested else job.status
            return True
        if event.get("request_id") is None:
            return False
        job = self._job(event)
        if kind == ev.JOB_STARTED:
            job.status = "running"
        elif kind == ev.STEP:
            job.status = "running"
            job.step, job.steps = int(event.get("step", 0)), int(event.get("steps", 0))
            job.last_step_at = time.monotonic()
            if job.first_step is None:
                job.first_step = (job.step, job.last_step_at)
        elif kind == ev.PREVIEW:
            image = str(event.get("image", ""))
            if job.status in TERMINAL or int(event.get("step", 0)) < job.preview_step \
                    or not image.startswith(PREVIEW_PREFIX):
                return False  # late (the image is done, or a newer preview is shown), or not a JPEG
            job.status = "running"
            job.preview, job.preview_step = image, int(event.get("step", 0))
        elif kind == ev.JOB_DONE:
            job.status = "done"
            job.preview = ""
            job.step = job.steps or job.step
            self.images.append({
                "path": str(event.get("path", "")), "seed": event.get("seed"), "worker": job.worker,
                "elapsed_s": float(event.get("elapsed_s") or 0.0), "index": job.index,
                "job_id": job.job_id,
            })
            self.images.sort(key=lambda im: (im["index"] is None, im["index"] or 0))
        elif kind == ev.JOB_FAILED:
            job.status, job.preview = "failed", ""
            job.message = str(event.get("message", ""))
            job.fail_kind = str(event.get("kind") or "error")
            job.fail_key, job.fail_args = str(event.get("message_key") or ""), dict(event.get("message_args") or {})
        elif kind == ev.JOB_CANCELLED:
            job.status, job.preview = "cancelled", ""
        elif kind == ev.JOB_REQUEUED:
            job.status, job.step, job.preview, job.preview_step = "queued", 0, "", 0
            job.first_step = None
            self._setback = True
        else:
            return False
        return True

    @property
    def done_count(self) -> int:
        return len(self.images)

    @property
    def failed(self) -> list[JobView]:
        return [j for j in self.jobs.values() if j.status == "failed"]

    def seconds_per_step(self) -> float | None:
        """The measured speed of this request's workers (None before two steps of one image were seen)."""
        rates = [r for r in (j.step_s() for j in self.jobs.values()) if r is not None]
        return sum(rates) / len(rates) if rates else None

    def eta_s(self) -> float | None:
        """Seconds left from this request's own events: its images' steps at the speed measured on them
        (`core.eta`), for when the pool's estimate is not known."""
        per_step = self.seconds_per_step()
        if per_step is None or self.finished:
            return None
        steps = max((j.steps for j in self.jobs.values()), default=0)
        open_jobs = [j for j in self.jobs.values() if j.status in ("queued", "running")]
        unseen = max(0, self.count - len(self.images) - len(self.failed) - len(open_jobs))
        work = [Work(0, 0, j.steps or steps, step=j.step, worker=j.worker if j.status == "running" else None,
                     step_s=j.step_s() or per_step) for j in open_jobs]
        work += [Work(0, 0, steps) for _ in range(unseen)]
        workers = sorted({j.worker for j in open_jobs if j.status == "running" and j.worker}) or ["?"]
        return request_eta_s(workers, work, lambda _w, item: per_step * item.steps)

    def shown_eta_s(self) -> float | None:
        """What the page says: the pool's estimate (else this view's own) through the count-down clock."""
        if self.finished:
            return None
        estimate = self.studio_eta_s if self.studio_eta_s is not None else self.eta_s()
        shown = self.eta_clock.show(estimate, setback=self._setback and estimate is not None)
        if estimate is not None:
            self._setback = False
        return shown

    @property
    def previews(self) -> list[tuple[int, JobView]]:
        """(index, job) of the running images that have a preview, in image order."""
        ordered = sorted(self.jobs.values(), key=lambda j: (j.index is None, j.index or 0, j.job_id))
        return [(n, j) for n, j in enumerate(ordered) if j.preview and j.status == "running"]

    def settled(self, quiet_s: float = 10.0) -> bool:
        """True when nothing more will come: the request is done, or it was cancelled and went quiet."""
        if self.finished:
            return True
        if not self.cancel_requested:
            return False
        return time.monotonic() - self.last_event > quiet_s


def summary(view: RequestView, lang: str) -> str:
    """One line: how many images are done, failed or cancelled."""
    if view.cancel_requested and view.finished:
        text = t("gen.summary.cancelled", lang, done=view.done_count, count=view.count)
    else:
        text = t("gen.summary", lang, done=view.done_count, count=view.count)
    if view.failed:
        text += " · " + t("gen.summary.failed", lang, failed=len(view.failed))
    eta = view.shown_eta_s()
    if eta is not None and not view.cancel_requested:
        text += " · " + t("gen.eta", lang, seconds=max(1, round(eta)))
    return text


def render_progress(view: RequestView | None, lang: str) -> str:
    """HTML: one row per image with its worker (GPU) and step i/n, plus a summary line."""
    if view is None:
        return f'<div class="zx-progress"><div class="zx-summary">{html.escape(t("gen.idle", lang))}</div></div>'
    rows = []
    ordered = sorted(view.jobs.values(), key=lambda j: (j.index is None, j.index or 0, j.job_id))
    for n, job in enumerate(ordered):
        label = f"#{(job.index if job.index is not None else n) + 1}"
        if job.status == "running" and job.steps:
            state = t("gen.step", lang, step=job.step, steps=job.steps)
            pct = int(100 * job.step / max(1, job.steps))
        elif job.status == "queued":
            state, pct = t("gen.queued", lang), 0
        else:
            state = t(f"gen.{job.status}", lang) if job.status in TERMINAL else job.status
            pct = 100 if job.status == "done" else int(100 * job.step / max(1, job.steps or 1))
        if job.message:
            state += ": " + fail_line(job, lang)
        rows.append(
            f'<div class="zx-job" data-status="{job.status}">'
            f'<span class="zx-job-label">{label}</span>'
            f'<span class="zx-job-worker">{html.escape(job.worker or "…")}</span>'
            f'<span class="zx-bar"><span style="width:{pct}%"></span></span>'
            f'<span class="zx-job-state">{html.escape(state)}</span></div>'
        )
    status = "finished" if view.finished else "running"
    return (f'<div class="zx-progress" data-request="{html.escape(view.request_id)}" data-state="{status}">'
            f'<div class="zx-summary">{html.escape(summary(view, lang))}</div>{render_previews(view, lang)}'
            f'{"".join(rows)}</div>')


def fail_line(job: JobView, lang: str) -> str:
    """Why `job` failed in `lang`: the worker's own line by its key where it gave one, else by its kind."""
    if job.fail_key in STRINGS:
        try:
            return t(job.fail_key, lang, **job.fail_args)
        except (KeyError, IndexError, ValueError):  # arguments from another version of the table
            pass
    key = f"fail.{job.fail_kind}" if f"fail.{job.fail_kind}" in STRINGS else "fail.error"
    return t(key, lang, message=job.message)


def render_previews(view: RequestView, lang: str) -> str:
    """The running images' latest previews (small JPEGs inline), each captioned with its step."""
    figures = []
    for n, job in view.previews:
        label = f"#{(job.index if job.index is not None else n) + 1}"
        caption = t("gen.preview", lang, label=label, step=job.preview_step, steps=job.steps)
        figures.append(f'<figure class="zx-preview" data-step="{job.preview_step}">'
                       f'<img src="{html.escape(job.preview)}" alt="{html.escape(caption)}">'
                       f'<figcaption>{html.escape(caption)}</figcaption></figure>')
    return f'<div class="zx-previews">{"".join(figures)}</div>' if figures else ""


def captions(view: RequestView, lang: str) -> list[tuple[str, str]]:
    """Gallery items for the finished images: (path, "seed · worker · time")."""
    return [(im["path"], t("gen.caption", lang, seed=im["seed"], worker=im["worker"] or "?",
                           elapsed=im["elapsed_s"])) for im in view.images]


class Follower:
    """A per-session event queue: subscribe first, then learn which request to keep."""

    def __init__(self, subscribe) -> None:
        self.queue: queue.Queue = queue.Queue()
        self._unsubscribe = subscribe(self.queue.put)

    def drain(self, view: RequestView, timeout: float) -> bool:
        """Apply every queued event (waiting up to `timeout` for the first); True if the view changed."""
        return self.drain_all(lambda: [view], timeout)

    def drain_all(self, views: Callable[[], list[RequestView]], timeout: float) -> bool:
        """Like `drain`, for every view `views()` names once an event is in (a window's queue grows
        while it waits, and a request joins it before its first event can exist)."""
        try:
            event = self.queue.get(timeout=timeout)
        except queue.Empty:
            return False
        changed = False
        current = views()
        while True:
            for view in current:
                changed |= view.apply(event)
            try:
                event = self.queue.get_nowait()
            except queue.Empty:
                return changed

    def close(self) -> None:
        if self._unsubscribe is not None:
            try:
                self._unsubscribe()
            finally:
                self._unsubscribe = None
