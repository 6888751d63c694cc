"""A studio home for tests: the `home` fixture's body, shared with the module-scoped homes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def make_home(root: Path, demo_model_master: Path, monkeypatch: Any) -> Path:
    """A fresh ZAOXIANG_HOME at `root` with the demo model copied in and empty model caches beside it.

    The `home` fixture's body, shared with the module-scoped homes (workers or apps started once).
    """
    monkeypatch.setenv("ZAOXIANG_HOME", str(root))
    for var in ("HF_HOME", "HF_HUB_CACHE", "MODELSCOPE_CACHE"):
        monkeypatch.setenv(var, str(root.parent / "empty-cache" / var.lower()))
    from studio.core.paths import get_paths
    from studio.models.demo import demo_model_dir

    paths = get_paths().ensure()
    shutil.copytree(demo_model_master, demo_model_dir(paths))
    return root
