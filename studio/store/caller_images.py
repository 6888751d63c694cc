"""Which images an API caller may read back: those its own calls made, as `requests.api_key` records.

One rule for every door an API caller has to image bytes: `/v1/images/files/<job id>.png`, the window
server's `/file=` for a key (gradio_client's downloads) and MCP's `get_image`. A caller is a key's id,
or `KEYLESS_CALLER` for calls made without a key (keyless loopback mode); images made in the window,
by the CLI, by another caller, or found on disk are nobody's to read through the API. Kept in the
database, not in memory, so a key still reaches its images after a restart.
"""

from __future__ import annotations

import os


class CallerImages:
    """Mixed into `Store` (it reads through the store's `_rows`)."""

    def caller_job_image(self, caller: str, job_id: str) -> str | None:
        """The finished image of job `job_id` when `caller`'s own call made it, else None."""
        rows = self._rows(  # type: ignore[attr-defined]
            "SELECT j.output_path FROM jobs j JOIN requests r ON r.id = j.request_id"
            " WHERE j.id = ? AND j.state = 'done' AND r.api_key = ?", (job_id, caller))
        return rows[0][0] if rows else None

    def caller_image_id(self, caller: str, image_id: int) -> bool:
        """Whether image `image_id` of the history was made by `caller`'s own call."""
        return bool(self._rows(  # type: ignore[attr-defined]
            "SELECT 1 FROM images i JOIN requests r ON r.id = i.request_id"
            " WHERE i.id = ? AND r.api_key = ?", (int(image_id), caller)))

    def caller_image_path(self, caller: str, path: str) -> bool:
        """Whether the image file at `path` (as given, or with its links resolved) is `caller`'s."""
        if not path or "\0" in path or "://" in path:
            return False
        spellings = sorted({os.path.abspath(path), os.path.realpath(path)})
        marks = ",".join("?" * len(spellings))
        return bool(self._rows(  # type: ignore[attr-defined]
            f"SELECT 1 FROM images i JOIN requests r ON r.id = i.request_id"
            f" WHERE i.path IN ({marks}) AND r.api_key = ?", (*spellings, caller)))
