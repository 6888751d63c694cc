"""Where the assets are (icons, CSS, example prompts, the demo model): the repo's `assets/` in a checkout,
`<prefix>/share/zaoxiang/assets` once installed.

pyproject's data-files put the assets under the environment's prefix for a normal (non-editable)
install, since they live beside the package rather than inside it. ZAOXIANG_ASSETS overrides both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ASSETS_ENV = "ZAOXIANG_ASSETS"


CHECKOUT = Path(__file__).resolve().parents[2] / "assets"


def candidate_dirs() -> list[Path]:
    """Where assets may be, in order: $ZAOXIANG_ASSETS, the checkout, the install prefix."""
    candidates = [Path(p) for p in (os.environ.get(ASSETS_ENV),) if p]
    return candidates + [CHECKOUT, Path(sys.prefix) / "share" / "zaoxiang" / "assets"]


def assets_dir(marker: str = "icon.png") -> Path:
    """The first folder that has `marker`; the checkout's folder when none does."""
    for folder in candidate_dirs():
        if (folder / marker).exists():
            return folder
    return CHECKOUT


def asset(name: str) -> Path:
    return assets_dir() / name
