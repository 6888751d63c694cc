"""The built-in demo model: a small trained Z-Image pipeline that draws flat colored shapes.

It lets a person try the studio before the 20 GB download, and lets the tests check behaviour that
depends on the prompt ("a red star on a white background" must give a red star). The weights ship
in `assets/demo-model` (diffusers format, trained by `tools/train_demo.py`); on first use
they are copied into the data dir and then loaded by exactly the loader real weights use.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from studio.core.atomic import atomic_dir
from studio.core.paths import Paths, get_paths

DEMO_NAME = "demo"
DEMO_VERSION = "shapes-v2"
DEMO_SEED = 20251127
NATIVE_SIZE = 256  # the demo model was trained at 256x256: larger sizes only take longer


def demo_model_dir(paths: Paths | None = None) -> Path:
    return (paths or get_paths()).models_dir / f"zaoxiang-demo-{DEMO_VERSION}"


def demo_assets() -> Path | None:
    """The shipped trained demo model (see `studio.core.assets`), or None when no assets folder has it."""
    from studio.core.assets import candidate_dirs

    for folder in (root / "demo-model" for root in candidate_dirs()):
        if (folder / "model_index.json").is_file():
            return folder
    return None


def is_trained(folder: Path) -> bool:
    """Whether a demo folder holds the trained model (not the random-weight fallback)."""
    try:
        return bool(json.loads((Path(folder) / "zaoxiang.json").read_text("utf-8")).get("trained", False))
    except (OSError, ValueError):
        return False


def _install(target: Path) -> None:
    """Copy the shipped model into place atomically; without assets, build the random tiny one."""
    src = demo_assets()
    if src is None:
        from studio.models.architecture import TINY
        from studio.models.build import save_pipeline_folder

        save_pipeline_folder(TINY, target, seed=DEMO_SEED,
                             note={"demo": True, "version": DEMO_VERSION, "trained": False})
        return
    with atomic_dir(target) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def ensure_demo_model(paths: Paths | None = None) -> Path:
    """The demo model's folder, putting it in place first if it is not there yet (well under a second)."""
    target = demo_model_dir(paths)
    if (target / "model_index.json").is_file():
        return target
    lock = target.with_suffix(".lock")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two processes may start at once (several workers): the loser waits for the winner's folder.
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        for _ in range(600):
            if (target / "model_index.json").is_file():
                return target
            time.sleep(0.1)
        lock.unlink(missing_ok=True)
        return ensure_demo_model(paths)
    try:
        os.close(fd)
        _install(target)
    finally:
        lock.unlink(missing_ok=True)
    return target
