"""Readable, unique image file names: date, a short prompt slug (Chinese kept), seed."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from pathlib import Path

_UNSAFE = re.compile(r"[^\w\u3400-\u9fff\uf900-\ufaff-]+", re.UNICODE)


def slugify(prompt: str, max_chars: int = 32) -> str:
    """A file-name-safe slug of the prompt: words joined by '-', CJK characters kept."""
    text = unicodedata.normalize("NFKC", prompt).strip().lower()
    slug = _UNSAFE.sub("-", text).strip("-_")
    slug = re.sub(r"-{2,}", "-", slug)[:max_chars].rstrip("-_")
    return slug or "image"


def image_path(gallery: Path, created: datetime, prompt: str, seed: int, job_id: str) -> Path:
    """gallery/YYYY-MM-DD/YYYYmmdd-HHMMSS_<slug>_<seed>_<job>.png (job id keeps it unique)."""
    day = gallery / created.strftime("%Y-%m-%d")
    return day / f"{created.strftime('%Y%m%d-%H%M%S')}_{slugify(prompt)}_{seed}_{job_id[:8]}.png"
