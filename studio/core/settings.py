"""The studio's settings: a TOML file in the config dir, with ZAOXIANG_* environment overrides.

Unknown keys in the file are kept out of the dataclass but never make loading fail, so an older
studio can read a newer studio's file.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from studio.core.paths import Paths, get_paths

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MEMORY_PROFILES = ("auto", "full", "24gb", "16gb", "12gb")
LANGUAGES = ("auto", "zh", "en")


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
    auth_password: str = ""
    fast_path: bool = True

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _coerce(name: str, value: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind in ("int", int):
        return int(value)
    if kind in ("bool", bool):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value


def load_settings(paths: Paths | None = None) -> Settings:
    """Read the settings file (missing or broken file: defaults), then apply ZAOXIANG_<NAME> overrides."""
    paths = paths or get_paths()
    data: dict[str, Any] = {}
    try:
        with open(paths.settings_file, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        data = {}
    known = {f.name for f in fields(Settings)}
    values = {k: v for k, v in data.items() if k in known}
    for name in known:
        env = os.environ.get(f"ZAOXIANG_{name.upper()}")
        if env is not None:
            values[name] = _coerce(name, env)
    try:
        return Settings(**values)
    except TypeError:
        return Settings()


def save_settings(settings: Settings, paths: Paths | None = None) -> Path:
    """Write the settings atomically (temp file then rename) so a crash never leaves half a file."""
    paths = (paths or get_paths()).ensure()
    target = paths.settings_file
    tmp = target.with_suffix(".toml.tmp")
    with open(tmp, "wb") as fh:
        tomli_w.dump(asdict(settings), fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target
