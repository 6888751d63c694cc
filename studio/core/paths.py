"""Where the studio keeps things: platformdirs locations, all under $ZAOXIANG_HOME when it is set.

Tests and scripts set ZAOXIANG_HOME so that they never touch a person's real data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "zaoxiang"
HOME_ENV = "ZAOXIANG_HOME"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    log_dir: Path
    runtime_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.toml"

    @property
    def database(self) -> Path:
        return self.data_dir / "studio.sqlite3"

    @property
    def gallery_dir(self) -> Path:
        return self.data_dir / "gallery"

    @property
    def trash_dir(self) -> Path:
        return self.data_dir / "trash"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def loras_dir(self) -> Path:
        return self.data_dir / "loras"

    @property
    def inputs_dir(self) -> Path:
        """Init images, masks and control images, stored under their content hash."""
        return self.data_dir / "inputs"

    @property
    def controlnets_dir(self) -> Path:
        return self.models_dir / "controlnet"

    def ensure(self) -> Paths:
        for p in (self.config_dir, self.data_dir, self.cache_dir, self.log_dir, self.runtime_dir):
            p.mkdir(parents=True, exist_ok=True)
        return self


def get_paths() -> Paths:
    """The studio's folders, read from the environment each call (so tests can change it)."""
    home = os.environ.get(HOME_ENV)
    if home:
        root = Path(home).expanduser().resolve()
        return Paths(root / "config", root / "data", root / "cache", root / "logs", root / "run")
    runtime = platformdirs.user_runtime_dir(APP_NAME, appauthor=False)
    return Paths(
        Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
        Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
        Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
        Path(runtime),
    )
