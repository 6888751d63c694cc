"""The GPU Monitor tab: per-GPU utilization and memory over the last minutes, the pool, the balance.

A gr.Timer redraws it every second, but only while the tab is open (the other tabs switch it off),
so an idle window costs nothing.
"""

from __future__ import annotations

import time
from typing import Any

import gradio as gr
import pandas as pd

from studio.ui.context import Context, guard
from studio.ui.i18n import STRINGS, t


def series_frame(snapshot: dict[str, Any], metric: str, now: float | None = None) -> pd.DataFrame:
    """Long-form samples for one chart: x = seconds relative to now, y = value, series = device.

    With no NVIDIA GPU the CPU's samples stand in, so the chart still shows the machine working.
    """
    now = now or time.time()
    rows = []
    if snapshot.get("available") and snapshot.get("gpus"):
        for gpu in snapshot["gpus"]:
            name = f"GPU {gpu.get('index')}"
            for s in gpu.get("samples", []):
                if s.get(metric) is not None:
                    rows.append((round(s["t"] - now, 1), float(s[metric]), name))
    else:
        for s in (snapshot.get("cpu") or {}).get("samples", []):
            if s.get(metric) is not None:
                rows.append((round(s["t"] - now, 1), float(s[metric]), "CPU"))
    return pd.DataFrame({"t": pd.Series([r[0] for r in rows], dtype="float64"),
                         "value": pd.Series([r[1] for r in rows], dtype="float64"),
                         "device": pd.Series([r[2] for r in rows], dtype="object")})


def gpu_lines(snapshot: dict[str, Any], lang: str) -> str:
    """Markdown: the no-GPU message, or one line per GPU with its latest temperature, power, memory."""
    if not snapshot.get("available") or not snapshot.get("gpus"):
        # NVML's own words (an exception's name, English) only in the English window
        return "ℹ " + t("mon.no_gpu", lang, message=snapshot.get("message") or "NVML")
    lines = []
    for gpu in snapshot["gpus"]:
        last = (gpu.get("samples") or [{}])[-1]

        def fmt(key, digits=0, last=last):
            value = last.get(key)
            return "–" if value is None else f"{value:.{digits}f}"

        lines.append("- " + t("mon.gpu_line", lang, index=gpu.get("index"), name=gpu.get("name", ""),
                                temp=fmt("temp_c"), power=fmt("power_w"), used=fmt("mem_used_mb"),
                                total=f"{gpu.get('memory_total_mb', 0):.0f}"))
    return "\n".join(lines)


def pool_rows(status: list[dict[str, Any]], lang: str = "en") -> list[list[Any]]:
    """One table row per worker (`WorkerPool.status`): name, device, state (with the compile progress
    while warming), current job, images done, seconds per image, and the share of the last request's
    wall time its GPU was busy."""
    rows = []
    for w in status or []:
        raw = str(w.get("state") or "")
        key = f"mon.state.{raw.replace(' ', '_')}"
        state = t(key, lang) if key in STRINGS else raw
        if raw == "warming" and w.get("warm_pct") is not None:
            state = f"{state} {float(w['warm_pct']):.0f}%"
        spi, busy = w.get("s_per_image"), w.get("gpu_busy")
        rows.append([
            str(w.get("name") or ""), str(w.get("device") or ""), state, str(w.get("current_job") or "")[:12],
            int(w.get("images_done") or 0),
            "" if spi is None else f"{float(spi):.2f}",
            "" if busy is None else f"{100 * float(busy):.0f}%",
        ])
    return rows


def pool_headers(lang: str) -> list[str]:
    return [t(f"mon.col.{k}", lang) for k in ("worker", "device", "state", "job", "images", "spi", "gpu_busy")]


def balance_text(stats: dict[str, Any] | None, lang: str) -> str:
    value = (stats or {}).get("balance_efficiency")
    if value is None:
        return t("mon.balance.none", lang)
    return t("mon.balance", lang, value=f"{100 * float(value):.0f}%")


def build(ctx: Context) -> tuple[Any, Any]:
    """Returns the timer (so other tabs can switch it off) and the Monitor tab's refresh handler."""
    g = guard(ctx)
    lang = ctx.lang
    timer = gr.Timer(1.0, active=False)
    with gr.Column(elem_id="monitor"):
        gpus_md = gr.Markdown(elem_id="monitor-gpus")
        with gr.Row():
            # None, not an empty frame: Gradio 6.31 never draws the lines of a plot that started empty
            util = gr.LinePlot(None, x="t", y="value", color="device", color_title=t("mon.col.device", lang),
                               title=t("mon.util", lang), x_title=t("mon.time", lang), y_title="%",
                               y_lim=[0, 100], height=260, elem_id="monitor-util")
            mem = gr.LinePlot(None, x="t", y="value", color="device", color_title=t("mon.col.device", lang),
                              title=t("mon.mem", lang), x_title=t("mon.time", lang), y_title="MB",
                              height=260, elem_id="monitor-mem")
        for plot, key in ((util, "mon.util"), (mem, "mon.mem")):
            ctx.localize(plot, lambda lang_, key=key: {"title": t(key, lang_), "x_title": t("mon.time", lang_),
                                                       "color_title": t("mon.col.device", lang_)})
        pool = gr.Dataframe(headers=pool_headers(lang), value=None, interactive=False, elem_id="monitor-pool",
                            label=t("mon.pool", lang))
        ctx.label(pool, "mon.pool")
        ctx.localize(pool, lambda lang_: {"headers": pool_headers(lang_)})
        with gr.Row(equal_height=True):
            balance = gr.Markdown(elem_id="monitor-balance")
            queue_md = gr.Markdown(elem_id="monitor-queue")
            pause = ctx.label(gr.Button(t("mon.pause", lang), size="sm", elem_id="monitor-pause"), "mon.pause",
                              "value")
            resume = ctx.label(gr.Button(t("mon.resume", lang), size="sm", elem_id="monitor-resume"),
                               "mon.resume", "value")

    @g
    def refresh():
        snap = ctx.studio.monitor_snapshot()
        has_gpu = bool(snap.get("available") and snap.get("gpus"))
        now = time.time()
        stats = None
        if ctx.last_request_id:
            try:
                stats = ctx.studio.request_stats(ctx.last_request_id)
            except KeyError:  # the pool was restarted since
                stats = None
        paused = t("mon.paused" if ctx.studio.paused else "mon.running", ctx.lang)
        return (gpu_lines(snap, ctx.lang),
                gr.update(value=series_frame(snap, "util", now),
                          title=t("mon.util" if has_gpu else "mon.cpu_util", ctx.lang)),
                gr.update(value=series_frame(snap, "mem_used_mb", now),
                          title=t("mon.mem" if has_gpu else "mon.cpu_mem", ctx.lang)),
                gr.update(value=pool_rows(ctx.studio.pool_status(), ctx.lang) or None, headers=pool_headers(ctx.lang)),
                balance_text(stats, ctx.lang),
                f"{t('mon.queue', ctx.lang, n=ctx.studio.queue_length())} · {paused}")

    outputs = [gpus_md, util, mem, pool, balance, queue_md]
    timer.tick(refresh, outputs=outputs, show_progress="hidden", concurrency_limit=None)
    pause.click(g(lambda: (ctx.studio.pause(), refresh())[1]), outputs=outputs, show_progress="hidden")
    resume.click(g(lambda: (ctx.studio.resume(), refresh())[1]), outputs=outputs, show_progress="hidden")
    return timer, refresh, outputs
