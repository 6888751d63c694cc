"""Every label of the studio window in 中文 and English.

The language follows the system locale unless Settings names one. Labels are looked up by key so
that tests (and a language switch) never depend on the words themselves; `check_complete` keeps
both languages in step.
"""

from __future__ import annotations

from studio.core.language import LANGS, resolve_language, system_language
from studio.core.settings_check import TEXTS as SETTINGS_TEXTS

__all__ = ["LANGS", "STRINGS", "resolve_language", "system_language", "t", "field_error", "check_complete"]

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
    "err.unexpected": {"zh": "出错了：{message}", "en": "Something went wrong: {message}"},
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
    "gal.drop.bad": {"zh": "无法读取这个文件：{message}", "en": "Cannot read this file: {message}"},
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
}

STRINGS.update(SETTINGS_TEXTS)


def check_complete() -> list[str]:
    """Keys missing a language (validation keys only need Chinese: English comes from core)."""
    bad = []
    for key, texts in STRINGS.items():
        for lang in LANGS:
            if lang == "en" and key.startswith("err.") and key != "err.unexpected":
                continue
            if not texts.get(lang):
                bad.append(f"{key}:{lang}")
    return bad


def t(key: str, lang: str, **fmt: object) -> str:
    """The label for `key` in `lang` (English if that language lacks it), formatted with `fmt`."""
    texts = STRINGS[key]
    text = texts.get(lang) or texts["en"]
    return text.format(**fmt) if fmt else text


def field_error(field: str, message: str, lang: str, kind: str = "range", got: object = None) -> str:
    """A validation message for one field in `lang`: core's English sentence (the CLI's line) as it
    is, or the same sentence in Chinese, with the value that was given (`kind`/`got`, see
    core.request.ValidationError)."""
    if lang != "zh" or f"err.{field}" not in STRINGS:
        return message
    label = STRINGS.get(f"err.label.{field}", {}).get("zh", field)
    if kind in ("whole", "number", "finite", "text"):
        return t(f"err.{kind}", "zh", label=label, got=got)
    text = STRINGS[f"err.{field}"]["zh"]
    if got is not None and field not in ("prompt", "negative_prompt"):
        text = text.rstrip("。") + t("err.got", "zh", got=got) + "。"
    return text
