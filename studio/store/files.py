"""The file side of the store: reading a PNG's size and parameters cheaply, the trash, zip exports.

Kept apart from the SQL so that the database code never does slow file work while holding its lock
longer than it must, and so each of these can be tested on real files alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from studio.core.atomic import atomic_path
from studio.core.metadata import A1111_KEY, JSON_KEY
from studio.core.pngfile import read_chunks


def read_png_meta(path: str | os.PathLike[str]) -> tuple[int, int, dict[str, str]]:
    """Width, height and text chunks of a PNG, decoding pixels only when the text sits after them.

    Our writer puts its chunks before the image data, so the header read is enough and a gallery
    of thousands of new files indexes quickly; other tools may write them at the end.
    """
    with Image.open(path) as im:
        width, height = im.size
        chunks = {k: v for k, v in im.info.items() if isinstance(v, str)}
    if JSON_KEY not in chunks and A1111_KEY not in chunks:
        chunks = read_chunks(path)
    return width, height, chunks


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    stem, suffix, n = target.stem, target.suffix, 1
    while target.exists():
        target = folder / f"{stem} ({n}){suffix}"
        n += 1
    return target


def move_to_trash(path: str | os.PathLike[str], trash_dir: Path) -> Path:
    """Move a file into the trash folder (a dated subfolder), never overwriting; returns where it went."""
    folder = trash_dir / time.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, Path(path).name)
    shutil.move(os.fspath(path), target)  # a rename on the same disk, else copy then delete
    return target


def empty_trash(trash_dir: Path) -> dict[str, int]:
    """Delete everything in the trash folder; returns how many files and bytes were freed."""
    files = freed = 0
    if not trash_dir.is_dir():
        return {"files": 0, "bytes": 0}
    for entry in list(trash_dir.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            for sub in entry.rglob("*"):
                if sub.is_file():
                    files += 1
                    freed += sub.stat().st_size
            shutil.rmtree(entry)
        else:
            files += 1
            freed += entry.lstat().st_size
            entry.unlink()
    return {"files": files, "bytes": freed}


CSV_FIELDS = ("image_id", "file", "prompt", "negative_prompt", "seed", "width", "height", "steps",
              "guidance", "model", "created", "request_id", "job_id", "favorite")


def write_export_zip(infos: Iterable[dict[str, Any]], zip_path: str | os.PathLike[str]) -> Path:
    """A zip of the images plus parameters.csv (UTF-8 with BOM, so spreadsheets show Chinese) and
    parameters.json; written to a temp file and renamed, so a failed export leaves nothing behind."""
    target = Path(zip_path)
    rows, used = [], set()
    with atomic_path(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for info in infos:
                name = Path(info["path"]).name
                stem, n = Path(name).stem, 1
                while name in used:
                    name = f"{stem} ({n}).png"
                    n += 1
                used.add(name)
                if Path(info["path"]).is_file():
                    zf.write(info["path"], f"images/{name}")
                    info = {**info, "file": f"images/{name}"}
                else:
                    info = {**info, "file": ""}
                rows.append(info)
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            for info in rows:
                req = info.get("request") or {}
                w.writerow({"image_id": info.get("id"), "file": info["file"], **req,
                            "model": info.get("model") or "", "created": info.get("created_iso", ""),
                            "request_id": info.get("request_id") or "", "job_id": info.get("job_id") or "",
                            "favorite": int(bool(info.get("favorite")))})
            zf.writestr("parameters.csv", "\ufeff" + buf.getvalue())
            zf.writestr("parameters.json", json.dumps(rows, ensure_ascii=False, indent=2, default=str))
    return target
