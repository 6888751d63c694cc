"""The worker's PNG writer: images saved on their own thread while the GPU makes the next one."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from studio.pool import protocol as p
from studio.pool.worker_knobs import hold_write_if_told


class ImageWriter:
    """Writes finished images on its own thread (PNG encoding, metadata, atomic write, fsync) and then
    sends `done`, so the GPU starts the next job meanwhile and never waits for the disk.

    `done` still follows the file's fsync and rename. At most one image waits behind the one being
    written: a slow disk holds the GPU back rather than filling memory.
    """

    def __init__(self, send: Any) -> None:
        self._send = send
        self._queue: queue.Queue[tuple[Any, dict[str, Any]] | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._loop, name="png-writer", daemon=True)
        self._thread.start()

    def put(self, made: Any, info: dict[str, Any]) -> None:
        self._queue.put((made, info))

    def close(self) -> None:
        """Write what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        from studio.engine.run_job import save_image

        while True:
            item = self._queue.get()
            if item is None:
                return
            made, info = item
            t0 = time.perf_counter()
            encoded = [t0]

            def before_commit(tmp: Any, encoded: list[float] = encoded) -> None:
                encoded[0] = time.perf_counter()  # PNG encoded into its temp file; fsync and rename follow
                hold_write_if_told(tmp)

            try:
                result = save_image(made, before_commit=before_commit)
            except BaseException as exc:  # a full disk, a file where the folder should be
                err = p.describe_error(exc)
                self._send(err.failed(made.job.job_id, info["busy_s"]))
                continue
            end = time.perf_counter()
            self._send(p.Done.pick({**result, **info, "write_s": round(end - t0, 4),
                                    "png_s": round(encoded[0] - t0, 4), "sync_s": round(end - encoded[0], 4),
                                    "finished": time.time()}))
