"""Everything the studio says to a person, in 中文 and English, and which of the two to speak.

One table for the window (`ui/`), the desktop parts (tray, console lines, `zaoxiang stop`, keys
`desk.*`) and the settings checks (`set.*`, `settings.*`), so a string is translated once and
`check_complete` keeps both languages in step. In core because the desktop must not import the UI
and messages made below both (the settings file's notices) follow the same language rule.
"""

from __future__ import annotations

import locale
import os

LANGS = ("zh", "en")
# gettext's order: LANGUAGE (a priority list such as "zh_CN:en") overrides the locale variables.
LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def _is_chinese(code: str) -> bool:
    return code.strip().lower().startswith(("zh", "chinese"))


def system_language() -> str:
    """`zh` when the system asks for Chinese, else `en`: the first set variable of `LOCALE_VARS`
    decides (LANGUAGE by its first entry), then the process locale (Windows, macOS apps)."""
    for var in LOCALE_VARS:
        value = os.environ.get(var, "")
        if var == "LANGUAGE":
            value = next((part for part in value.split(":") if part.strip()), "")
        if value.strip():
            return "zh" if _is_chinese(value) else "en"
    try:
        code = locale.getlocale()[0] or ""
    except ValueError:
        code = ""
    return "zh" if _is_chinese(code) else "en"


def resolve_language(setting: str | None) -> str:
    """The language to speak: the setting when it names one, else the system's."""
    return setting if setting in LANGS else system_language()


def t(key: str, lang: str, **fmt: object) -> str:
    """The text for `key` in `lang` (English where that language lacks it), formatted with `fmt`."""
    texts = STRINGS[key]
    text = texts.get(lang) or texts["en"]
    return text.format(**fmt) if fmt else text


def check_complete() -> list[str]:
    """Keys missing a language (validation keys `err.*` only need Chinese: English comes from core)."""
    bad = []
    for key, texts in STRINGS.items():
        for lang in LANGS:
            if lang == "en" and key.startswith("err.") and key != "err.unexpected":
                continue
            if not texts.get(lang):
                bad.append(f"{key}:{lang}")
    return bad


STRINGS: dict[str, dict[str, str]] = {
    # window
    "title": {"zh": "造相 Z-Image Studio", "en": "造相 Z-Image Studio"},
    "tab.generate": {"zh": "生成", "en": "Generate"},
    "tab.history": {"zh": "历史", "en": "History"},
    "tab.gallery": {"zh": "图库", "en": "Gallery"},
    "tab.monitor": {"zh": "GPU 监控", "en": "GPU Monitor"},
    "tab.settings": {"zh": "设置", "en": "Settings"},
    "demo.banner": {
        "zh": "⚠ 正在使用**演示模型**：一个很小的模型，只会在彩色背景上画简单的彩色形状"
              "（例如「白色背景上的红色星形」），用于试用整个工作室。"
              "安装真正的 Z-Image-Turbo 模型（约 20 GB，只需下载一次）：`modelscope download --model "
              "Tongyi-MAI/Z-Image-Turbo` 或 `hf download Tongyi-MAI/Z-Image-Turbo`，然后重启，"
              "或在「设置」里填写模型路径。",
        "en": "⚠ Using the **demo model**: a tiny model that only draws simple colored shapes on colored "
              "backgrounds (try \"a red star on a white background\"), so you can try the whole studio. "
              "Install the real Z-Image-Turbo model (about 20 GB, downloaded once): "
              "`hf download Tongyi-MAI/Z-Image-Turbo` or `modelscope download --model "
              "Tongyi-MAI/Z-Image-Turbo`, then restart, or set the model path in Settings.",
    },
    "model.line": {"zh": "模型：{name}", "en": "Model: {name}"},
    # quit (header)
    "quit.button": {"zh": "退出", "en": "Quit"},
    "quit.confirm": {"zh": "退出造相？排队中的图像会保留到下次启动。",
                     "en": "Quit the studio? Queued images stay queued for the next start."},
    "quit.confirm_running": {"zh": "退出造相？正在生成 {n} 张图像：可以立即退出，或等它们完成再退出。"
                                   "排队中的图像会保留到下次启动。",
                             "en": "Quit the studio? {n} image(s) are being made: quit now, or let them "
                                   "finish first. Queued images stay queued for the next start."},
    "quit.now": {"zh": "立即退出", "en": "Quit now"},
    "quit.finish": {"zh": "完成后退出", "en": "Finish them, then quit"},
    "quit.cancel": {"zh": "取消", "en": "Cancel"},
    "quit.stopping": {"zh": "造相正在退出，可以关闭这个窗口了。", "en": "The studio is quitting; you can close this window."},
    "quit.not_desktop": {"zh": "这个造相不是以桌面程序启动的，请在启动它的地方停止（例如 Ctrl+C 或 `zaoxiang stop`）。",
                         "en": "This studio was not started as a desktop program; stop it where it was started "
                               "(Ctrl+C there, or `zaoxiang stop`)."},
    # generate
    "gen.prompt": {"zh": "提示词", "en": "Prompt"},
    "gen.prompt.placeholder": {"zh": "用中文或英文描述你想要的画面…",
                               "en": "Describe the image, in Chinese or English…"},
    "gen.examples": {"zh": "示例提示词", "en": "Example prompts"},
    "gen.negative": {"zh": "反向提示词", "en": "Negative prompt"},
    "gen.negative.placeholder": {"zh": "不希望出现的内容（引导系数大于 0 时生效）",
                                 "en": "What to avoid (used when guidance is above 0)"},
    "gen.size": {"zh": "尺寸", "en": "Size"},
    "gen.size.custom": {"zh": "自定义", "en": "Custom"},
    "gen.width": {"zh": "宽度", "en": "Width"},
    "gen.height": {"zh": "高度", "en": "Height"},
    "gen.steps": {"zh": "步数", "en": "Steps"},
    "gen.guidance": {"zh": "引导系数 (CFG)", "en": "Guidance (CFG)"},
    "gen.count": {"zh": "数量", "en": "Count"},
    "gen.seed": {"zh": "种子（留空为随机）", "en": "Seed (empty for random)"},
    "gen.seed_mode": {"zh": "种子模式", "en": "Seed mode"},
    "seed.random": {"zh": "随机", "en": "Random"},
    "seed.fixed": {"zh": "固定", "en": "Fixed"},
    "seed.increment": {"zh": "递增", "en": "Increment"},
    "gen.dice": {"zh": "随机种子", "en": "Random seed"},
    "gen.reuse_seed": {"zh": "↺ 上次的种子", "en": "↺ Last seed"},
    "gen.generate": {"zh": "生成（Ctrl+Enter）", "en": "Generate (Ctrl+Enter)"},
    "gen.more": {"zh": "更多选项：种子模式、引导系数", "en": "More options: seed mode, guidance"},
    "gen.eta": {"zh": "约剩 {seconds} 秒", "en": "about {seconds} s left"},
    "gen.queue.head": {"zh": "本窗口的请求（{n} 个）", "en": "This window's requests ({n})"},
    "gen.queued_msg": {"zh": "已加入队列，前面还有 {n} 个请求。", "en": "Added to the queue, behind {n} requests."},
    "gen.cancel": {"zh": "取消", "en": "Cancel"},
    "gen.results": {"zh": "结果（点击图片可恢复其参数）", "en": "Results (click an image to restore its parameters)"},
    "gen.progress": {"zh": "进度", "en": "Progress"},
    "gen.idle": {"zh": "就绪。", "en": "Ready."},
    "gen.queued": {"zh": "排队中", "en": "queued"},
    "gen.step": {"zh": "第 {step}/{steps} 步", "en": "step {step}/{steps}"},
    "gen.preview": {"zh": "{label} 预览 · 第 {step}/{steps} 步", "en": "{label} preview · step {step}/{steps}"},
    "gen.done": {"zh": "完成", "en": "done"},
    "gen.failed": {"zh": "失败", "en": "failed"},
    "gen.cancelled": {"zh": "已取消", "en": "cancelled"},
    # why an image failed, by the pool's ErrorKind; English keeps the pool's own sentence
    "fail.oom": {"zh": "显存不足：请减小尺寸、关闭其他占用 GPU 的程序，或在「设置」里选更低的显存方案。",
                 "en": "{message}"},
    "fail.non_finite": {"zh": "生成的图像含有无效数值：请换一个种子，或降低引导系数再试。", "en": "{message}"},
    "fail.worker_crash": {"zh": "这张图像反复让工作进程崩溃，已放弃（详见日志）。", "en": "{message}"},
    "fail.no_worker": {"zh": "没有能运行它的工作进程了（详见日志）。", "en": "{message}"},
    "fail.error": {"zh": "生成失败（详见日志）。", "en": "{message}"},
    "fail.storage": {"zh": "无法保存图像：磁盘已满、只读或没有写入权限。它留在队列中，恢复队列后会再运行。",
                     "en": "{message}"},
    "gen.summary": {"zh": "{done}/{count} 张完成", "en": "{done} of {count} done"},
    "gen.summary.cancelled": {"zh": "已取消：{done}/{count} 张完成", "en": "Cancelled: {done} of {count} done"},
    "gen.summary.failed": {"zh": "{failed} 张失败", "en": "{failed} failed"},
    "gen.caption": {"zh": "种子 {seed} · {worker} · {elapsed:.1f} 秒", "en": "seed {seed} · {worker} · {elapsed:.1f} s"},
    "gen.restored": {"zh": "已恢复参数。", "en": "Parameters restored."},
    "gen.no_last_seed": {"zh": "还没有生成过图像。", "en": "No image generated yet."},
    "gen.paused": {"zh": "队列已暂停，任务会在恢复后运行。", "en": "The queue is paused; jobs run when it resumes."},
    # images left queued by a studio that stopped (studio/ui/leftover.py), and one-time notices
    "left.banner": {"zh": "上次还有 {n} 张图像没有完成（{requests} 个请求），已保留在队列中。",
                    "en": "{n} images from last time ({requests} requests) were not finished; they are kept queued."},
    "left.other_model": {"zh": "另有 {n} 张图像需要模型 {model}（不是当前模型），会继续保留在队列中。",
                         "en": "{n} more images need the model {model}, not the one in use; they stay queued."},
    "left.resume": {"zh": "继续生成", "en": "Resume"},
    "left.discard": {"zh": "放弃", "en": "Discard"},
    "left.resumed": {"zh": "已重新排队 {n} 张图像。", "en": "{n} images queued again."},
    "left.discarded": {"zh": "已放弃 {n} 张图像。", "en": "Discarded {n} images."},
    "notice.prefix": {"zh": "提示：", "en": "Note: "},
    "notice.db_damaged": {"zh": "历史数据库已损坏，已新建一个，并从图像文件中重新找回 {count} 张图像。",
                          "en": "The history database was damaged. A new one was started and {count} images were "
                                "found again from their files."},
    "notice.db_damaged_kept": {"zh": "历史数据库已损坏（损坏的文件保留为 {path}），已新建一个，并从图像文件中重新找回 "
                                     "{count} 张图像。",
                               "en": "The history database was damaged (the damaged file was kept as {path}). A new one "
                                     "was started and {count} images were found again from their files."},
    "notice.db_empty": {"zh": "历史数据库是空的（0 字节），已新建一个，并从图像文件中重新找回 {count} 张图像。",
                        "en": "The history database was empty (0 bytes). A new one was started and {count} images "
                              "were found again from their files."},
    "notice.db_empty_kept": {"zh": "历史数据库是空的（0 字节，原文件保留为 {path}），已新建一个，并从图像文件中重新找回 "
                                   "{count} 张图像。",
                             "en": "The history database was empty (0 bytes; the file was kept as {path}). A new one "
                                   "was started and {count} images were found again from their files."},
    # validation (field -> Chinese explanation; the English message comes from core)
    "err.prompt": {"zh": "请填写提示词（中文或英文），最多 2000 字。", "en": ""},
    "err.negative_prompt": {"zh": "反向提示词最多 2000 字。", "en": ""},
    "err.width": {"zh": "宽度必须是 256 到 2048 之间 16 的倍数。", "en": ""},
    "err.height": {"zh": "高度必须是 256 到 2048 之间 16 的倍数。", "en": ""},
    "err.steps": {"zh": "步数必须在 1 到 100 之间。", "en": ""},
    "err.guidance": {"zh": "引导系数必须在 0 到 20 之间。", "en": ""},
    "err.seed": {"zh": "种子必须是 0 到 4294967295 之间的整数，留空为随机。", "en": ""},
    "err.seed_mode": {"zh": "种子模式只能是随机、固定或递增。", "en": ""},
    "err.count": {"zh": "数量必须在 1 到 64 之间。", "en": ""},
    "err.got": {"zh": "（现在是 {got}）", "en": ""},
    "err.whole": {"zh": "{label}必须是整数（现在是 {got}）。", "en": ""},
    "err.number": {"zh": "{label}必须是数字（现在是 {got}）。", "en": ""},
    "err.finite": {"zh": "{label}必须是有限的数字。", "en": ""},
    "err.text": {"zh": "{label}在第 {got} 个字符处有无法保存的字符（空字符或不是 UTF-8 的字节），请删除它。", "en": ""},
    "err.label.prompt": {"zh": "提示词", "en": ""},
    "err.label.negative_prompt": {"zh": "反向提示词", "en": ""},
    "err.label.width": {"zh": "宽度", "en": ""},
    "err.label.height": {"zh": "高度", "en": ""},
    "err.label.steps": {"zh": "步数", "en": ""},
    "err.label.guidance": {"zh": "引导系数", "en": ""},
    "err.label.seed": {"zh": "种子", "en": ""},
    "err.label.seed_mode": {"zh": "种子模式", "en": ""},
    "err.label.count": {"zh": "数量", "en": ""},
    "err.title": {"zh": "出错了", "en": "Error"},
    # zh leaves out {message}: a surprise's own words are English; the log has them
    "err.unexpected": {"zh": "出错了：意外的错误，详情已写入日志。", "en": "Something went wrong: {message}"},
    "info.seed": {"zh": "种子", "en": "Seed"},
    "info.model": {"zh": "模型", "en": "Model"},
    "info.worker": {"zh": "设备", "en": "Worker"},
    "info.elapsed_s": {"zh": "用时", "en": "Time"},
    "info.created_iso": {"zh": "创建时间", "en": "Created"},
    "info.path": {"zh": "文件", "en": "File"},
    "state.queued": {"zh": "排队中", "en": "queued"},
    "state.running": {"zh": "运行中", "en": "running"},
    "state.done": {"zh": "完成", "en": "done"},
    "state.failed": {"zh": "失败", "en": "failed"},
    "state.cancelled": {"zh": "已取消", "en": "cancelled"},
    "state.partial": {"zh": "部分完成", "en": "partly done"},
    # history
    "hist.search": {"zh": "搜索提示词", "en": "Search prompts"},
    "hist.favorites": {"zh": "只看收藏", "en": "Favorites only"},
    "hist.refresh": {"zh": "刷新", "en": "Refresh"},
    "hist.table": {"zh": "历史请求（最新在前，点击一行选中）", "en": "Past requests (newest first; click a row to select)"},
    "hist.col.time": {"zh": "时间", "en": "Time"},
    "hist.col.prompt": {"zh": "提示词", "en": "Prompt"},
    "hist.col.params": {"zh": "参数", "en": "Parameters"},
    "hist.col.status": {"zh": "状态", "en": "Status"},
    "hist.col.images": {"zh": "图像", "en": "Images"},
    "hist.thumbs": {"zh": "所选请求的图像", "en": "Images of the selected request"},
    "hist.restore": {"zh": "恢复到「生成」", "en": "Restore into Generate"},
    "hist.rerun": {"zh": "再次运行", "en": "Run again"},
    "hist.favorite": {"zh": "★ 收藏/取消收藏", "en": "★ Favorite / unfavorite"},
    "hist.delete": {"zh": "删除所选图像", "en": "Delete selected image"},
    "hist.none": {"zh": "先在表格中选择一个请求。", "en": "Select a request in the table first."},
    "hist.empty": {"zh": "还没有历史记录。", "en": "No history yet."},
    "hist.submitted": {"zh": "已提交，正在「生成」页运行。", "en": "Submitted; it runs on the Generate tab."},
    # gallery
    "gal.gallery": {"zh": "全部图像（最新在前）", "en": "All images (newest first)"},
    "gal.prev": {"zh": "◀ 上一页", "en": "◀ Previous"},
    "gal.next": {"zh": "下一页 ▶", "en": "Next ▶"},
    "gal.page": {"zh": "第 {page}/{pages} 页 · 共 {total} 张", "en": "Page {page} of {pages} · {total} images"},
    "gal.info": {"zh": "参数", "en": "Parameters"},
    "gal.favorite": {"zh": "★ 收藏/取消收藏", "en": "★ Favorite / unfavorite"},
    "gal.delete": {"zh": "删除", "en": "Delete"},
    "gal.restore": {"zh": "恢复到「生成」", "en": "Restore into Generate"},
    "gal.open_folder": {"zh": "打开文件夹", "en": "Open folder"},
    "gal.folder_opened": {"zh": "已打开：{path}", "en": "Opened: {path}"},
    "gal.folder_is": {"zh": "无法在这里打开文件夹，图像文件夹的路径：{path}",
                      "en": "Could not open the folder here; the image folder is {path}"},
    "gal.drop": {"zh": "拖入 PNG 读取参数（本工作室、AUTOMATIC1111 或 Forge 生成的）",
                 "en": "Drop a PNG to read its parameters (from this studio, AUTOMATIC1111 or Forge)"},
    "gal.drop.none": {"zh": "这个 PNG 没有生成参数。", "en": "This PNG carries no generation parameters."},
    "gal.drop.bad": {"zh": "无法读取这个文件：它不是 PNG 图像，或已经损坏。", "en": "Cannot read this file: {message}"},
    "gal.select_first": {"zh": "先选择一张图像。", "en": "Select an image first."},
    "gal.deleted": {"zh": "已删除。", "en": "Deleted."},
    "gal.favorited": {"zh": "已收藏。", "en": "Added to favorites."},
    "gal.unfavorited": {"zh": "已取消收藏。", "en": "Removed from favorites."},
    # monitor
    "mon.util": {"zh": "利用率 (%)", "en": "Utilization (%)"},
    "mon.mem": {"zh": "显存 (MB)", "en": "Memory (MB)"},
    "mon.cpu_util": {"zh": "CPU 利用率 (%)", "en": "CPU utilization (%)"},
    "mon.cpu_mem": {"zh": "内存 (MB)", "en": "RAM (MB)"},
    "mon.time": {"zh": "秒前", "en": "seconds ago"},
    "mon.gpus": {"zh": "GPU", "en": "GPUs"},
    "mon.pool": {"zh": "工作进程", "en": "Workers"},
    "mon.col.worker": {"zh": "工作进程", "en": "Worker"},
    "mon.col.device": {"zh": "设备", "en": "Device"},
    "mon.col.state": {"zh": "状态", "en": "State"},
    "mon.col.job": {"zh": "当前任务", "en": "Current job"},
    "mon.col.images": {"zh": "图像数", "en": "Images"},
    "mon.col.spi": {"zh": "秒/张", "en": "s / image"},
    "mon.col.gpu_busy": {"zh": "GPU 忙碌占比（上一请求）", "en": "GPU busy (last request)"},
    "mon.balance": {"zh": "上一个请求的负载均衡效率：{value}", "en": "Balance efficiency of the last request: {value}"},
    "mon.balance.none": {"zh": "还没有多图请求。", "en": "No request yet."},
    "mon.queue": {"zh": "队列中的图像：{n}", "en": "Images queued: {n}"},
    "mon.no_gpu": {"zh": "未找到 NVIDIA GPU。正在使用 CPU 工作进程，见下表。",
                   "en": "{message} The charts show the CPU; the CPU workers are in the table below."},
    "mon.gpu_line": {"zh": "GPU {index} · {name} · {temp} °C · {power} W · 显存 {used}/{total} MB",
                     "en": "GPU {index} · {name} · {temp} °C · {power} W · memory {used}/{total} MB"},
    "mon.state.idle": {"zh": "空闲", "en": "idle"},
    "mon.state.busy": {"zh": "忙碌", "en": "busy"},
    "mon.state.ready": {"zh": "就绪", "en": "ready"},
    "mon.state.starting": {"zh": "启动中", "en": "starting"},
    "mon.state.warming": {"zh": "预热中", "en": "warming"},
    "mon.state.restarting": {"zh": "重启中", "en": "restarting"},
    "mon.state.stopped": {"zh": "已停止", "en": "stopped"},
    "mon.state.not_started": {"zh": "未启动", "en": "not started"},
    "mon.state.failed": {"zh": "失败", "en": "failed"},
    "mon.pause": {"zh": "暂停队列", "en": "Pause queue"},
    "mon.resume": {"zh": "继续队列", "en": "Resume queue"},
    "mon.paused": {"zh": "队列已暂停。", "en": "Queue paused."},
    "mon.running": {"zh": "队列运行中。", "en": "Queue running."},
    # settings
    "set.model": {"zh": "检测到的模型", "en": "Detected models"},
    "set.model_path": {"zh": "模型路径（留空为自动，demo 为演示模型）",
                       "en": "Model path (empty for automatic, demo for the demo model)"},
    "set.memory": {"zh": "显存方案", "en": "Memory profile"},
    "set.workers": {"zh": "使用哪些 GPU（auto、cuda:0,cuda:1 或 cpu:N）",
                    "en": "Which GPUs to use (auto, cuda:0,cuda:1 or cpu:N)"},
    "set.output": {"zh": "输出文件夹（留空为默认图库）", "en": "Output folder (empty for the default gallery)"},
    "set.language": {"zh": "界面语言", "en": "Language"},
    "set.host": {"zh": "监听地址（127.0.0.1 只允许本机访问）", "en": "Listen address (127.0.0.1 = this computer only)"},
    "set.port": {"zh": "端口", "en": "Port"},
    "set.auth_user": {"zh": "用户名（监听非本机地址时必填）", "en": "Username (required beyond 127.0.0.1)"},
    "set.auth_password": {"zh": "密码（监听非本机地址时必填）", "en": "Password (required beyond 127.0.0.1)"},
    "set.save": {"zh": "保存设置", "en": "Save settings"},
    "set.restart": {"zh": "重启工作进程", "en": "Restart workers"},
    "set.saved": {"zh": "设置已保存。", "en": "Settings saved."},
    "set.unchanged": {"zh": "没有改动。", "en": "Nothing changed."},
    "set.needs_restart": {"zh": "以下改动需要重启工作进程才生效：{names}。点击「重启工作进程」。",
                          "en": "These changes take effect after a worker restart: {names}. Click \"Restart workers\"."},
    "set.needs_server": {"zh": "监听地址和端口在下次启动工作室时生效。",
                         "en": "The listen address and port take effect the next time the studio starts."},
    "set.restarted": {"zh": "工作进程已重启。", "en": "Workers restarted."},
    "set.auto": {"zh": "自动", "en": "Automatic"},
    "set.demo": {"zh": "演示模型", "en": "Demo model"},
    "set.memory.auto": {"zh": "自动", "en": "Automatic"},
    "set.memory.full": {"zh": "完整（不省显存）", "en": "Full (no memory saving)"},
    "set.lang.auto": {"zh": "跟随系统", "en": "Follow the system"},
    "set.password_keep": {"zh": "留空则保留已保存的密码", "en": "Leave empty to keep the saved password"},
    "set.field.model": {"zh": "模型路径", "en": "Model path"},
    "set.field.memory_profile": {"zh": "显存方案", "en": "Memory profile"},
    "set.field.workers": {"zh": "GPU", "en": "GPUs"},
    "set.field.output_dir": {"zh": "输出文件夹", "en": "Output folder"},
    "set.field.language": {"zh": "界面语言", "en": "Language"},
    "set.field.host": {"zh": "监听地址", "en": "Listen address"},
    "set.field.port": {"zh": "端口", "en": "Port"},
    "set.field.auth_user": {"zh": "用户名", "en": "Username"},
    "set.field.auth_password": {"zh": "密码", "en": "Password"},
    "set.field.fast_path": {"zh": "快速路径", "en": "Fast path"},
    "set.reload_lang": {"zh": "语言已切换。", "en": "Language switched."},
    # settings -> API (studio/ui/api_keys.py)
    "api.title": {"zh": "API（脚本与智能体）", "en": "API (scripts and agents)"},
    "api.require": {"zh": "本机调用也需要密钥", "en": "Require a key on this computer too"},
    "api.none": {"zh": "还没有 API 密钥。", "en": "No API keys yet."},
    "api.active": {"zh": "有效", "en": "active"},
    "api.revoked_state": {"zh": "已吊销", "en": "revoked"},
    "api.col.id": {"zh": "编号", "en": "ID"},
    "api.col.name": {"zh": "名称", "en": "Name"},
    "api.col.created": {"zh": "创建时间", "en": "Created"},
    "api.name": {"zh": "新密钥的名称（例如 open-webui）", "en": "Name of a new key (e.g. open-webui)"},
    "api.create": {"zh": "创建密钥", "en": "Create key"},
    "api.revoke_id": {"zh": "要吊销的密钥编号", "en": "ID of the key to revoke"},
    "api.revoke": {"zh": "吊销", "en": "Revoke"},
    "api.created": {"zh": "密钥 {id} 已创建。请现在复制，它只显示这一次：\n\n`{plain}`",
                    "en": "Key {id} created. Copy it now, it is shown only this once:\n\n`{plain}`"},
    "api.revoked": {"zh": "密钥 {id} 已吊销。", "en": "Key {id} revoked."},
    "api.unknown": {"zh": "没有有效的密钥 {id}", "en": "No active key {id}"},
    # settings checks and the settings file's notices (studio/core/settings_check.py, settings.py)
    "set.bad.type": {"zh": "应为{kind}。", "en": "must be {kind}."},
    "set.bad.text": {"zh": "含有不可见的控制字符或无效的 Unicode。", "en": "holds control characters or invalid Unicode."},
    "set.bad.workers": {"zh": "「{value}」不是有效的工作进程列表：请填 auto、cpu:N（N 为 1 到 64）或 cuda:0,cuda:1。",
                        "en": "'{value}' is not a worker list: use auto, cpu:N (N from 1 to 64) or cuda:0,cuda:1."},
    "set.bad.gpu_twice": {"zh": "「{value}」把同一块 GPU 写了两次；每块 GPU 一个工作进程。",
                          "en": "'{value}' names a GPU twice; one worker per GPU."},
    "set.bad.no_gpu": {"zh": "没有 GPU cuda:{index}（可见 {count} 块）。",
                       "en": "There is no GPU cuda:{index} ({count} visible)."},
    "set.bad.model": {"zh": "找不到模型 {value}：请填模型文件夹或文件的路径、demo，或留空。",
                      "en": "No model at {value}: give a model folder or file, demo, or leave it empty."},
    "set.bad.system_folder": {"zh": "{value} 是系统文件夹或主文件夹本身，不能用作输出文件夹；请选一个自己的文件夹。",
                              "en": "{value} is a system folder or the home folder itself; choose a folder of "
                                    "your own for the images."},
    "set.bad.not_writable": {"zh": "无法写入 {value}。", "en": "Cannot write to {value}."},
    "set.bad.relative": {"zh": "请填完整路径（例如 {example}）。", "en": "Give a full path (for example {example})."},
    "set.bad.host": {"zh": "「{value}」不是 IP 地址或主机名。", "en": "'{value}' is not an IP address or host name."},
    "set.bad_port": {"zh": "端口必须是 1 到 65535 之间的整数。", "en": "Port must be a whole number from 1 to 65535."},
    "set.bad_profile": {"zh": "未知的显存方案。", "en": "Unknown memory profile."},
    "set.bad.language": {"zh": "界面语言只能是 auto、zh 或 en。", "en": "The language must be auto, zh or en."},
    "set.auth_required": {"zh": "监听非本机地址时必须设置用户名和密码。",
                          "en": "A username and password are required to listen beyond 127.0.0.1."},
    "set.kind.text": {"zh": "文本", "en": "text"},
    "set.kind.int": {"zh": "整数", "en": "a whole number"},
    "set.kind.bool": {"zh": "true 或 false", "en": "true or false"},
    # notices about the settings file, shown once when the studio starts
    "settings.damaged": {"zh": "设置文件 {path} 无法使用（{reason}），已移到 {moved}，本次使用默认设置。",
                         "en": "The settings file {path} could not be used ({reason}); it was moved to {moved} "
                               "and the defaults are used."},
    "settings.bad_value": {"zh": "设置文件 {path} 中的 {field} 无效：{problem} 本次使用默认值。",
                           "en": "In the settings file {path}, {field} is not valid: {problem} The default is used."},
    "settings.reason.encoding": {"zh": "不是有效的 UTF-8 文本", "en": "it is not valid UTF-8 text"},
    "settings.reason.syntax": {"zh": "不是有效的 TOML：{detail}", "en": "it is not valid TOML: {detail}"},
    "settings.reason.type": {"zh": "{field} 应为{kind}", "en": "{field} must be {kind}"},
    # the desktop parts: tray menu and status, console lines, `zaoxiang stop` (studio/desktop)
    "desk.open": {"zh": "打开造相", "en": "Open Studio"},
    "desk.pause": {"zh": "暂停队列", "en": "Pause queue"},
    "desk.resume": {"zh": "继续队列", "en": "Resume queue"},
    "desk.output": {"zh": "打开输出文件夹", "en": "Open output folder"},
    "desk.log": {"zh": "打开日志", "en": "Open log"},
    "desk.quit": {"zh": "退出", "en": "Quit"},
    "desk.gpus": {"zh": "{n} 块 GPU", "en": "{n} GPU(s)"},
    "desk.cpus": {"zh": "{n} 个 CPU 工作进程", "en": "{n} CPU worker(s)"},
    "desk.queued": {"zh": "排队 {n} 张", "en": "{n} image(s) queued"},
    "desk.paused": {"zh": "已暂停", "en": "paused"},
    "desk.starting": {"zh": "正在启动…", "en": "starting…"},
    "desk.idle": {"zh": "空闲", "en": "idle"},
    "desk.working": {"zh": "正在生成", "en": "working"},
    "desk.error": {"zh": "出错了（详见日志）", "en": "error (see the log)"},
    "desk.open_failed": {"zh": "无法打开，请手动打开这个路径：{path}", "en": "Could not open it; the path is {path}"},
    "desk.how_to_quit": {"zh": "退出：托盘图标菜单里的「退出」、窗口右上角的「退出」、`zaoxiang stop` 或 Ctrl+C。",
                         "en": "Quit from the tray icon's menu, the window's Quit button, `zaoxiang stop` or Ctrl+C."},
    "desk.no_menu": {"zh": "托盘图标没有菜单（本机缺少 PyGObject/GTK）：单击图标打开造相；"
                           "退出：窗口右上角的「退出」、`zaoxiang stop` 或 Ctrl+C。",
                     "en": "The tray icon has no menu here (PyGObject/GTK is missing): left-click it to open the "
                           "studio; quit with the window's Quit button, `zaoxiang stop` or Ctrl+C."},
    "desk.open_url": {"zh": "没有浏览器能打开造相，请在浏览器里打开这个地址：{url}",
                      "en": "No browser could open the studio; open this address in your browser: {url}"},
    "desk.stop_none": {"zh": "没有正在运行的造相。", "en": "No studio is running."},
    "desk.stop_asking": {"zh": "正在让造相（进程 {pid}）退出…", "en": "Asking the studio (pid {pid}) to quit…"},
    "desk.stop_done": {"zh": "造相已退出。", "en": "The studio has quit."},
    "desk.stop_slow": {"zh": "造相（进程 {pid}）在 {seconds} 秒内没有退出；详见日志。",
                       "en": "The studio (pid {pid}) did not quit within {seconds} s; see its log."},
    "desk.tray_off": {"zh": "托盘图标：{reason}；造相照常运行。退出：窗口右上角的「退出」、`zaoxiang stop` 或 Ctrl+C。",
                      "en": "Tray icon {reason}; the studio runs without it. Quit with the window's Quit button, "
                            "`zaoxiang stop` or Ctrl+C."},
    "desk.tray_off.headless": {"zh": "已关闭（--headless）", "en": "turned off (--headless)"},
    "desk.tray_off.no_tray": {"zh": "已关闭（--no-tray）", "en": "turned off (--no-tray)"},
    "desk.tray_off.no_display": {"zh": "无法显示（没有图形桌面）", "en": "not available: no display"},
    "desk.tray_off.unknown_backend": {"zh": "无法显示（PYSTRAY_BACKEND 的值无效，详见日志）",
                                      "en": "not available: unknown PYSTRAY_BACKEND (see the log)"},
    "desk.tray_off.no_gtk": {"zh": "无法显示（本机缺少 PyGObject/GTK 3）",
                             "en": "not available: no tray backend (PyGObject with GTK 3 is not installed)"},
    "desk.tray_off.no_host": {"zh": "无法显示（这个桌面没有系统托盘）",
                              "en": "not available: no system tray host on this desktop"},
    "desk.tray_failed": {"zh": "托盘图标出错，已停止（详见日志）；造相照常运行。退出：窗口右上角的「退出」、"
                               "`zaoxiang stop` 或 Ctrl+C。",
                         "en": "Tray icon stopped after an error (see the log); the studio runs without it. Quit "
                               "with the window's Quit button, `zaoxiang stop` or Ctrl+C."},
    "desk.serving": {"zh": "造相 Z-Image Studio: {url}（日志：{log}）", "en": "造相 Z-Image Studio: {url}  (log: {log})"},
    "desk.stale": {"zh": "上一个造相（进程 {pid}）没有正常退出；重新启动。",
                   "en": "A previous studio (pid {pid}) did not shut down cleanly; starting fresh."},
    "desk.lock_busy": {"zh": "zaoxiang：无法取得 {folder} 中的实例锁；是否有另一个造相正在启动？",
                       "en": "zaoxiang: could not take the instance lock in {folder}; is another studio starting?"},
    "desk.handover_starting": {"zh": "造相 Z-Image Studio 正在启动（进程 {pid}），准备好后会打开窗口。",
                               "en": "造相 Z-Image Studio is starting (pid {pid}); its window opens when it is ready."},
    "desk.handover_not_local": {"zh": "造相 Z-Image Studio 已在运行（进程 {pid}），但它的实例文件写的地址 {url} "
                                      "不是本机的造相地址，所以不打开窗口。",
                                "en": "造相 Z-Image Studio is already running (pid {pid}); its instance file names "
                                      "{url}, which is not a local studio address, so no window is opened."},
    "desk.handover_running": {"zh": "造相 Z-Image Studio 已在运行：{url}",
                              "en": "造相 Z-Image Studio is already running: {url}"},
    "desk.no_tray": {"zh": "退出：窗口右上角的「退出」、`zaoxiang stop` 或 Ctrl+C。",
                     "en": "Quit with the window's Quit button, `zaoxiang stop` or Ctrl+C."},
}
