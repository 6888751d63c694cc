"""Where the icons are: the repo's `assets/` in a checkout, `<prefix>/share/zaoxiang/assets` once installed.

pyproject's data-files put the assets under the environment's prefix for a normal (non-editable)
install, since they live beside the package rather than inside it. ZAOXIANG_ASSETS overrides both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ASSETS_ENV = "ZAOXIANG_ASSETS"


def assets_dir() -> Path:
    """The first folder that has the studio's icon; the checkout's folder when none does."""
    checkout = Path(__file__).resolve().parents[2] / "assets"
    candidates = [Path(p) for p in (os.environ.get(ASSETS_ENV),) if p]
    candidates += [checkout, Path(sys.prefix) / "share" / "zaoxiang" / "assets"]
    for folder in candidates:
        if (folder / "icon.png").is_file():
            return folder
    return checkout


def asset(name: str) -> Path:
    return assets_dir() / name
