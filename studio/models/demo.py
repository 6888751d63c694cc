"""The built-in demo model: a tiny Z-Image pipeline the studio makes for itself.

It lets the studio run (and be tested) end to end with no downloaded weights. It is written to
the data dir once, deterministically, and then loaded by exactly the loader real weights use.
"""

from __future__ import annotations

import os
from pathlib import Path

from studio.core.paths import Paths, get_paths

DEMO_NAME = "demo"
DEMO_VERSION = "tiny-v1"
DEMO_SEED = 20251127


def demo_model_dir(paths: Paths | None = None) -> Path:
    return (paths or get_paths()).models_dir / f"zaoxiang-demo-{DEMO_VERSION}"


def ensure_demo_model(paths: Paths | None = None) -> Path:
    """The demo model's folder, building it first if it is not there yet (a second or two)."""
    target = demo_model_dir(paths)
    if (target / "model_index.json").is_file():
        return target
    from studio.models.architecture import TINY
    from studio.models.build import save_pipeline_folder

    lock = target.with_suffix(".lock")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two processes may start at once (several workers): the loser waits for the winner's folder.
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        import time

        for _ in range(600):
            if (target / "model_index.json").is_file():
                return target
            time.sleep(0.1)
        lock.unlink(missing_ok=True)
        return ensure_demo_model(paths)
    try:
        os.close(fd)
        save_pipeline_folder(TINY, target, seed=DEMO_SEED, note={"demo": True, "version": DEMO_VERSION})
    finally:
        lock.unlink(missing_ok=True)
    return target
