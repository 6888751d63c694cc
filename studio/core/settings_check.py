"""Settings checked like requests: every field, before it is saved and when the file is read.

A bad value is refused with one message per field (both languages are `set.*` keys of
`studio/core/i18n.py`), so a setting can never leave the studio unable to start: a worker list
that does not parse, a model that is not there, an output folder that is a system folder (the
window serves files from it) or that cannot be written, a host that is not an address.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError
from studio.core.i18n import LANGS, t
from studio.core.spec import MemoryProfile
from studio.core.workers_spec import WorkerSpecError, parse_workers_text

MEMORY_PROFILES = ("auto", *MemoryProfile.names())
SPLIT_MODES = ("auto", "never", "always")  # one image on several GPUs (the pool's group.SplitMode)
LANGUAGES = ("auto", *LANGS)

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_SYSTEM_TREES = ("/etc", "/proc", "/sys", "/dev", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                 "/boot", "/run", "/var/lib", "/var/run", "/System", "/Library", "/private/etc", "/private/var/db")
_SYSTEM_ROOTS = ("/", "/var", "/tmp", "/home", "/Users", "/mnt", "/media", "/opt", "/srv", "/root", "/private",
                 "/Applications", "/Volumes", "/snap")
_WINDOWS_TREES = ("windows", "program files", "program files (x86)", "programdata")


@dataclass(frozen=True)
class SettingsProblem:
    """One bad field: the message key and its values, so each language can say it."""

    field: str
    key: str
    params: tuple[tuple[str, str], ...] = ()

    def message(self, lang: str = "en") -> str:
        params = dict(self.params)
        if "kind" in params:
            params["kind"] = t(f"set.kind.{params['kind']}", lang)
        return t(self.key, lang, **params)


class SettingsError(StudioError, ValueError):
    """Settings that must not be saved; `problems` holds one entry per bad field."""

    usage = True

    def __init__(self, problems: list[SettingsProblem]) -> None:
        self.problems = problems
        super().__init__(" ".join(f"{p.field}: {p.message('en')}" for p in problems))


def _problem(name: str, key: str, **params: object) -> SettingsProblem:
    return SettingsProblem(name, key, tuple((k, str(v)) for k, v in params.items()))


def is_loopback(host: str) -> bool:
    """True for addresses only this computer can reach (127.x, ::1, localhost)."""
    host = (host or "").strip().strip("[]")
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def valid_host(host: str) -> bool:
    """An IPv4/IPv6 address or an RFC 1123 host name (`999.1.1.1` is neither)."""
    host = host.strip()
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    if not host or len(host) > 253 or re.fullmatch(r"[0-9.]+", host):
        return False
    return all(_HOST_LABEL.match(label) for label in host.rstrip(".").split("."))


def workers_problem(spec: str, gpu_count: int | None = None) -> SettingsProblem | None:
    """The grammar of `--workers` (core/workers_spec.py, the pool's own rules); with `gpu_count`,
    also whether each named GPU exists."""
    try:
        choice = parse_workers_text(spec)
        if gpu_count is not None:
            choice.indices(gpu_count)
    except WorkerSpecError as exc:
        return _problem("workers", exc.key, **exc.params)
    return None


def _windows_system(path: str) -> bool:
    norm = path.replace("/", "\\").rstrip("\\").lower()
    if re.fullmatch(r"[a-z]:", norm) or norm in ("", "\\"):
        return True
    parts = norm.split("\\")
    return len(parts) >= 2 and re.fullmatch(r"[a-z]:", parts[0]) is not None and parts[1] in _WINDOWS_TREES


def is_system_folder(folder: str | os.PathLike[str], *, home: Path | None = None,
                     protected: tuple[Path, ...] = ()) -> bool:
    """Whether `folder` (symlinks followed) is a system folder, a drive root, the home folder
    itself, or holds one of `protected` (the studio's own config folder): never an output folder."""
    raw = os.fspath(folder)
    if sys.platform.startswith("win") or re.match(r"^[A-Za-z]:[\\/]|^[A-Za-z]:$", raw):
        if _windows_system(raw):
            return True
    path = Path(raw).expanduser()
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return True
    if sys.platform.startswith("win") and _windows_system(str(resolved)):
        return True
    home = (home or Path.home()).resolve()
    candidates = {resolved, Path(os.path.abspath(path))}
    for cand in candidates:
        if cand == home or str(cand) in _SYSTEM_ROOTS or cand.parent == cand:
            return True
        if any(cand == Path(tree) or Path(tree) in cand.parents for tree in _SYSTEM_TREES):
            return True
        if any(p == cand or cand in p.resolve().parents for p in protected):
            return True
    return False


def writable_folder(folder: Path) -> bool:
    """Whether the studio can create and write files in `folder` (made later if missing)."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def _bad_text(value: str) -> bool:
    if any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF or ord(c) == 0x7F for c in value):
        return True
    return False


def field_kinds(cls: type) -> dict[str, str]:
    """Field name -> "text" | "int" | "bool", from the dataclass annotations."""
    names = {"str": "text", "int": "int", "bool": "bool"}
    return {f.name: names[f.type if isinstance(f.type, str) else f.type.__name__] for f in fields(cls)}


def type_problems(values: dict[str, Any], kinds: dict[str, str]) -> list[SettingsProblem]:
    """Fields whose value has the wrong type (`workers = 5`, `port = "x"`, `fast_path = 1`)."""
    out = []
    for name, value in values.items():
        kind = kinds.get(name)
        ok = {"text": isinstance(value, str), "bool": isinstance(value, bool),
              "int": isinstance(value, int) and not isinstance(value, bool)}.get(kind or "", True)
        if not ok:
            out.append(_problem(name, "set.bad.type", kind=kind))
    return out


def settings_problems(values: dict[str, Any], *, saving: bool, home: Path | None = None,
                      protected: tuple[Path, ...] = (), gpu_count: int | None = None,
                      kinds: dict[str, str] | None = None) -> list[SettingsProblem]:
    """Every problem with these setting values, at most one per field.

    `saving` adds the checks that depend on this computer (the model exists, the output folder can
    be written, a password guards a non-loopback host); reading the file checks only the values.
    """
    problems = type_problems(values, kinds) if kinds else []
    bad = {p.field for p in problems}

    def add(problem: SettingsProblem | None) -> None:
        if problem is not None and problem.field not in bad:
            bad.add(problem.field)
            problems.append(problem)

    for name, value in values.items():
        if isinstance(value, str) and name not in bad and _bad_text(value):
            add(_problem(name, "set.bad.text"))
    get = {k: v for k, v in values.items() if k not in bad}.get
    if isinstance(get("workers"), str):
        add(workers_problem(get("workers"), gpu_count))
    if isinstance(get("memory_profile"), str) and get("memory_profile") not in MEMORY_PROFILES:
        add(_problem("memory_profile", "set.bad_profile"))
    if isinstance(get("split_image"), str) and get("split_image") not in SPLIT_MODES:
        add(_problem("split_image", "set.bad_split"))
    if isinstance(get("language"), str) and get("language") not in LANGUAGES:
        add(_problem("language", "set.bad.language"))
    port = get("port")
    if isinstance(port, int) and not isinstance(port, bool) and not 1 <= port <= 65535:
        add(_problem("port", "set.bad_port"))
    host = get("host")
    if isinstance(host, str) and host.strip() and not valid_host(host):
        add(_problem("host", "set.bad.host", value=host))
    out = get("output_dir")
    if isinstance(out, str) and out.strip():
        folder = Path(out.strip()).expanduser()
        if not folder.is_absolute():
            add(_problem("output_dir", "set.bad.relative", example=Path.home() / "Pictures" / "zaoxiang"))
        elif is_system_folder(folder, home=home, protected=protected):
            add(_problem("output_dir", "set.bad.system_folder", value=out.strip()))
        elif saving and not writable_folder(folder):
            add(_problem("output_dir", "set.bad.not_writable", value=out.strip()))
    model = get("model")
    if saving and isinstance(model, str) and model.strip() not in ("", "demo") and not Path(
            model.strip()).expanduser().exists():
        add(_problem("model", "set.bad.model", value=model.strip()))
    if saving and isinstance(host, str) and "host" not in bad and not is_loopback(host) and not (
            get("auth_user") and get("auth_password")):
        add(_problem("auth_password", "set.auth_required"))
    return problems


# The API's limits (api.json, core/key_store.py's ApiConfig) as Settings → API sets them: field -> (lowest,
# highest, message key). Upper ends only catch slips of the finger; 0 calls a minute means no limit.
API_LIMITS: dict[str, tuple[int, int, str]] = {
    "rate_per_min": (0, 100_000, "set.bad.api_rate"),
    "queue_limit": (1, 100_000, "set.bad.api_queue"),
    "uploads_mb": (1, 65_536, "set.bad.api_uploads"),
}


def api_limit_values(values: dict[str, Any]) -> tuple[dict[str, int], list[SettingsProblem]]:
    """Form values (numbers, or text, or None from an emptied box) of the API's limits -> whole numbers to
    save, or one problem per bad field (then nothing is to be saved)."""
    out: dict[str, int] = {}
    problems: list[SettingsProblem] = []
    for name, value in values.items():
        low, high, key = API_LIMITS[name]
        try:
            number = float(value) if not isinstance(value, bool) and value is not None else None
        except (TypeError, ValueError):
            number = None
        if number is None or not number.is_integer() or not low <= number <= high:
            problems.append(_problem(name, key, low=low, high=high))
        else:
            out[name] = int(number)
    return out, problems
