"""The studio's settings: a TOML file in the config dir, with ZAOXIANG_* environment overrides.

Unknown keys in the file are kept out of the dataclass but never make loading fail, so an older
studio can read a newer studio's file. A file that does not parse or has a value of the wrong type
is moved aside (`settings.toml.damaged-<time>`) and the defaults are used; a value that parses but
is not valid falls back to its default. Either way one message names the file. The file is written
0600 and holds the password only as a salted hash (an old plain one is hashed on first load).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import tomli_w

from studio.core.atomic import atomic_path
from studio.core.i18n import resolve_language, t
from studio.core.passwords import hash_password, is_password_hash
from studio.core.paths import Paths, get_paths
from studio.core.settings_check import (
    LANGUAGES,
    MEMORY_PROFILES,
    SPLIT_MODES,
    SettingsError,
    SettingsProblem,
    field_kinds,
    settings_problems,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["LANGUAGES", "MEMORY_PROFILES", "SPLIT_MODES", "Settings", "SettingsError", "load_settings", "save_settings",
           "check_settings_values"]

log = logging.getLogger("zaoxiang.settings")
FILE_MODE = 0o600


@dataclass(frozen=True)
class Settings:
    model: str = ""  # a path, "demo", or "" for automatic discovery
    workers: str = "auto"  # auto | cuda:0,cuda:1 | cpu:N
    memory_profile: str = "auto"
    output_dir: str = ""  # "" means the gallery folder in the data dir
    language: str = "auto"
    host: str = "127.0.0.1"
    port: int = 7860
    auth_user: str = ""
    auth_password: str = ""  # a `passwords.hash_password` hash, never the password itself
    fast_path: bool = True
    split_image: str = "auto"  # one image on several GPUs: auto | never | always (studio/pool/group.py)

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)


KINDS = field_kinds(Settings)


def check_settings_values(values: dict[str, Any], paths: Paths | None = None, *, saving: bool = True,
                          gpu_count: int | None = None) -> list[SettingsProblem]:
    """The problems with these values (empty: they may be saved), one per bad field."""
    paths = paths or get_paths()
    return settings_problems(values, saving=saving, protected=(paths.config_dir,), gpu_count=gpu_count,
                             kinds=KINDS)


def _coerce(name: str, value: str) -> Any:
    kind = KINDS[name]
    if kind == "int":
        return int(value)
    if kind == "bool":
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.replace(path, target)
    return target


def _read_file(path: Path, lang_hint: str | None, say: Any) -> dict[str, Any]:
    """The file's known keys, or {} (after moving a damaged file aside and saying so)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return {}
    reason: tuple[str, dict[str, str]] | None = None
    data: dict[str, Any] = {}
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        reason = ("settings.reason.encoding", {})
    except tomllib.TOMLDecodeError as exc:
        reason = ("settings.reason.syntax", {"detail": str(exc)})
    values = {k: v for k, v in data.items() if k in KINDS}
    if reason is None:
        wrong = [p for p in check_settings_values(values, saving=False) if p.key == "set.bad.type"]
        if wrong:
            reason = ("settings.reason.type", {"field": wrong[0].field, "kind": dict(wrong[0].params)["kind"]})
    if reason is None:
        return values
    moved = _move_aside(path)
    lang = resolve_language(lang_hint)
    params = dict(reason[1])
    if "kind" in params:
        params["kind"] = t(f"set.kind.{params['kind']}", lang)
    say(t("settings.damaged", lang, path=path, moved=moved.name, reason=t(reason[0], lang, **params)))
    return {}


def load_settings(paths: Paths | None = None, notices: list[str] | None = None) -> Settings:
    """Read the settings file, then apply ZAOXIANG_<NAME> overrides; never raises for a bad file.

    What went wrong (a damaged file moved aside, a value replaced by its default) is logged and,
    when `notices` is given, appended to it as one line in the person's language.
    """
    paths = paths or get_paths()
    path = paths.settings_file

    def say(message: str) -> None:
        log.warning("%s", message)
        if notices is not None:
            notices.append(message)

    values = _read_file(path, os.environ.get("ZAOXIANG_LANGUAGE"), say)
    plain = values.get("auth_password")
    if isinstance(plain, str) and plain and not is_password_hash(plain):
        values["auth_password"] = hash_password(plain)  # an old file's plain password: hash it now
        try:
            _write(path, {**asdict(Settings()), **values})
            log.info("replaced the plain password in %s by a salted hash", path)
        except OSError as exc:
            log.warning("cannot rewrite %s without its plain password: %s", path, exc)
    elif values and path.exists():
        _tighten(path)
    lang = resolve_language(values.get("language") or os.environ.get("ZAOXIANG_LANGUAGE"))
    for problem in check_settings_values(values, paths, saving=False):
        say(t("settings.bad_value", lang, path=path, field=problem.field, problem=problem.message(lang)))
        values.pop(problem.field, None)
    for name in KINDS:
        env = os.environ.get(f"ZAOXIANG_{name.upper()}")
        if env is None:
            continue
        try:
            values[name] = _coerce(name, env)
        except ValueError:
            log.warning("ignoring ZAOXIANG_%s=%r: not %s", name.upper(), env, KINDS[name])
            continue
        if name == "auth_password" and env and not is_password_hash(env):
            values[name] = hash_password(env)
    return Settings(**values)


def _tighten(path: Path) -> None:
    """Make an existing settings file private (older studios wrote it 0644)."""
    if os.name == "posix":
        try:
            if path.stat().st_mode & 0o077:
                os.chmod(path, FILE_MODE)
        except OSError:
            pass


def _write(target: Path, data: dict[str, Any]) -> None:
    with atomic_path(target) as tmp:  # a temp file is made 0600 (FILE_MODE)
        with open(tmp, "wb") as fh:
            tomli_w.dump(data, fh)


def save_settings(settings: Settings, paths: Paths | None = None) -> Path:
    """Check every field, then write the file atomically (temp file, rename) and privately (0600).

    Raises SettingsError, writing nothing, when a field is not valid. A plain password is hashed
    before it is written.
    """
    paths = (paths or get_paths()).ensure()
    data = asdict(settings)
    problems = check_settings_values(data, paths, saving=True)
    if problems:
        raise SettingsError(problems)
    if data["auth_password"] and not is_password_hash(data["auth_password"]):
        data["auth_password"] = hash_password(data["auth_password"])
    _write(paths.settings_file, data)
    return paths.settings_file
