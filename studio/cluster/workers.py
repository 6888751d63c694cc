"""The `ray` part of `--workers`: join the cluster and say which worker actors it gets.

`ray` alone and no cluster is an error (one line: the person asked for the cluster and nothing else);
`ray` beside local workers (`cpu:1,ray`, `cuda:0,ray`) falls back to the local ones with a one-line
notice, so a studio whose other machine is off still starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.cluster.connect import ClusterUnavailable, connect
from studio.cluster.placement import ActorPlace, places


@dataclass(frozen=True)
class ClusterWorkers:
    """The actors to start, and what to tell the person when there are none."""

    places: tuple[ActorPlace, ...]
    address: str = ""
    notice: str = ""


def cluster_workers(*, with_local_workers: bool, address: str | None = None) -> ClusterWorkers:
    """The worker actors the cluster offers; ClusterUnavailable when there are none and no local
    worker to fall back on."""
    try:
        info = connect(address)
        found = places(info, with_local_workers=with_local_workers)
        if not found:
            raise ClusterUnavailable(f"The Ray cluster at {info.address} has no GPU or CPU left for a worker "
                                     "(its other machines have not joined yet?).")
    except ClusterUnavailable as exc:
        if not with_local_workers:
            raise
        return ClusterWorkers((), notice=f"{exc} Using this machine's workers only.")
    return ClusterWorkers(tuple(found), info.address)
