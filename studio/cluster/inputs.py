"""Image inputs for workers on other machines: the bytes travel with the job, by content hash.

A job names its init image, mask and control image by SHA-256 only (core/image_inputs.InputStore),
and a cluster node shares no disk with the studio. So before a job goes to an actor, the studio
reads the inputs it names from its own store and sends those this actor has not had yet; on the
node, each file is checked against its hash and put into the node's own inputs folder, where the
worker reads it as it would on the studio's machine. An input gone from the studio's store is not
sent: the worker then says it is missing, as a local one would.
"""

from __future__ import annotations

from typing import Any

from studio.core.image_inputs import InputImageError, InputStore, sha256_of


def job_inputs(job: dict[str, Any]) -> list[str]:
    """The content hashes of the stored inputs a job (as plain data) reads."""
    spec = job.get("spec") or {}
    control = spec.get("control") if isinstance(spec.get("control"), dict) else {}
    return [h for h in (spec.get("init_image"), spec.get("mask"), control.get("image")) if h]


class InputShipper:
    """The studio's side for one actor: the bytes of a job's inputs this actor has not been sent."""

    def __init__(self, store: InputStore | None = None) -> None:
        self.store = store or InputStore()
        self.sent: set[str] = set()

    def for_job(self, job: dict[str, Any]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for digest in job_inputs(job):
            if digest in self.sent or digest in out:
                continue
            path = self.store.path(digest)
            if path is None:
                continue
            try:
                out[digest] = path.read_bytes()
            except OSError:
                continue
            self.sent.add(digest)
        return out


def land(inputs: dict[str, bytes], store: InputStore | None = None) -> list[str]:
    """The node's side: store each input under its hash; returns the hashes it refused (bytes that
    do not hash to their name, or are no image), which the worker will then report missing."""
    store = store or InputStore()
    refused = []
    for digest, data in inputs.items():  # one already here is checked too (`put` rewrites a damaged file)
        if sha256_of(data) != digest:
            refused.append(digest)
            continue
        try:
            store.put(data, f"input {digest[:12]}")
        except (InputImageError, OSError):  # not an image, or the node's disk refused it (full, read-only)
            refused.append(digest)
    return refused
