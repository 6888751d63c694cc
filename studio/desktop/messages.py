"""What the desktop parts say to a person (tray menu, console lines, `zaoxiang stop`), in 中文 and English.

Kept apart from the window's table (studio/ui/i18n.py) because the desktop layer must not import the
UI; the language is the one the studio was started with, else the system locale's.
"""

from __future__ import annotations

import locale
import os

IDLE, WORKING, ERROR = "idle", "working", "error"

TEXT: dict[str, dict[str, str]] = {
    "open": {"zh": "打开造相", "en": "Open Studio"},
    "pause": {"zh": "暂停队列", "en": "Pause queue"},
    "resume": {"zh": "继续队列", "en": "Resume queue"},
    "output": {"zh": "打开输出文件夹", "en": "Open output folder"},
    "log": {"zh": "打开日志", "en": "Open log"},
    "quit": {"zh": "退出", "en": "Quit"},
    "gpus": {"zh": "{n} 块 GPU", "en": "{n} GPU(s)"},
    "cpus": {"zh": "{n} 个 CPU 工作进程", "en": "{n} CPU worker(s)"},
    "queued": {"zh": "排队 {n} 张", "en": "{n} image(s) queued"},
    "paused": {"zh": "已暂停", "en": "paused"},
    "starting": {"zh": "正在启动…", "en": "starting…"},
    IDLE: {"zh": "空闲", "en": "idle"},
    WORKING: {"zh": "正在生成", "en": "working"},
    ERROR: {"zh": "出错了（详见日志）", "en": "error (see the log)"},
    "open_failed": {"zh": "无法打开，请手动打开这个路径：{path}", "en": "Could not open it; the path is {path}"},
    "how_to_quit": {"zh": "退出：托盘图标菜单里的「退出」、窗口右上角的「退出」、`zaoxiang stop` 或 Ctrl+C。",
                    "en": "Quit from the tray icon's menu, the window's Quit button, `zaoxiang stop` or Ctrl+C."},
    "no_menu": {"zh": "托盘图标没有菜单（本机缺少 PyGObject/GTK）：单击图标打开造相；"
                      "退出：窗口右上角的「退出」、`zaoxiang stop` 或 Ctrl+C。",
                "en": "The tray icon has no menu here (PyGObject/GTK is missing): left-click it to open the "
                      "studio; quit with the window's Quit button, `zaoxiang stop` or Ctrl+C."},
    "open_url": {"zh": "没有浏览器能打开造相，请在浏览器里打开这个地址：{url}",
                 "en": "No browser could open the studio; open this address in your browser: {url}"},
    "stop_none": {"zh": "没有正在运行的造相。", "en": "No studio is running."},
    "stop_asking": {"zh": "正在让造相（进程 {pid}）退出…", "en": "Asking the studio (pid {pid}) to quit…"},
    "stop_done": {"zh": "造相已退出。", "en": "The studio has quit."},
    "stop_slow": {"zh": "造相（进程 {pid}）在 {seconds} 秒内没有退出；详见日志。",
                  "en": "The studio (pid {pid}) did not quit within {seconds} s; see its log."},
    "tray_off": {"zh": "托盘图标：{reason}；造相照常运行。退出：窗口右上角的「退出」、`zaoxiang stop` 或 Ctrl+C。",
                 "en": "Tray icon {reason}; the studio runs without it. Quit with the window's Quit button, "
                       "`zaoxiang stop` or Ctrl+C."},
    "no_tray": {"zh": "退出：窗口右上角的「退出」、`zaoxiang stop` 或 Ctrl+C。",
                "en": "Quit with the window's Quit button, `zaoxiang stop` or Ctrl+C."},
}


def system_lang() -> str:
    """zh when the system locale is Chinese, else en."""
    for value in (os.environ.get("LC_ALL"), os.environ.get("LC_MESSAGES"), os.environ.get("LANG"),
                  (locale.getlocale()[0] if hasattr(locale, "getlocale") else None)):
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def text(key: str, lang: str, **fmt: object) -> str:
    return TEXT[key]["zh" if lang == "zh" else "en"].format(**fmt)


def resolve_lang(lang: str | None) -> str:
    """zh or en: `lang` when it names one, else the system's."""
    return lang if lang in ("zh", "en") else system_lang()

