"""The `ray` part of `--workers`: join the cluster and say which worker actors it gets.

`ray` alone and no cluster is an error (one line: the person asked for the cluster and nothing else);
`ray` beside local workers (`cpu:1,ray`, `cuda:0,ray`) falls back to the local ones with a one-line
notice, so a studio whose other machine is off still starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio.cluster.connect import ClusterUnavailable, connect
from studio.cluster.placement import ActorPlace, places
from studio.core.notice import Notice
from studio.pool.spec import WorkerSpec


@dataclass(frozen=True)
class ClusterWorkers:
    """The actors to start, and what to tell the person when there are none."""

    places: tuple[ActorPlace, ...]
    address: str = ""
    notice: Notice | None = None


def cluster_workers(*, with_local_workers: bool, address: str | None = None) -> ClusterWorkers:
    """The worker actors the cluster offers; ClusterUnavailable when there are none and no local
    worker to fall back on."""
    try:
        info = connect(address)
        found = places(info, with_local_workers=with_local_workers)
        if not found:
            raise ClusterUnavailable(f"The Ray cluster at {info.address} has no GPU or CPU left for a worker "
                                     "(its other machines have not joined yet?).", info.address)
    except ClusterUnavailable as exc:
        if not with_local_workers:
            raise
        return ClusterWorkers((), notice=Notice(f"{exc} Using this machine's workers only.",
                                                "notice.cluster_fallback", address=exc.params["address"]))
    return ClusterWorkers(tuple(found), info.address)


@dataclass(frozen=True)
class PoolWorkers:
    """What the pool runs: every worker's spec (local ones first), the context that starts the actors
    among them (None: no actor), and the line to tell the person."""

    specs: list[WorkerSpec]
    context: Any
    notice: Notice | None


def with_cluster(local: list[WorkerSpec], address: str | None = None) -> PoolWorkers:
    """`local` plus one worker per actor place; ClusterUnavailable when `local` is empty and no
    cluster answers."""
    from studio.cluster.process import RayContext

    found = cluster_workers(with_local_workers=bool(local), address=address)
    if not found.places:
        return PoolWorkers(list(local), None, found.notice)
    actors = [WorkerSpec(len(local) + k, p.name, p.device, "", p.threads) for k, p in enumerate(found.places)]
    names = ", ".join(p.name for p in found.places)
    return PoolWorkers([*local, *actors], RayContext(list(found.places)),
                       Notice(f"Ray cluster at {found.address}: {len(actors)} worker(s) there ({names}).",
                              "notice.cluster_joined", address=found.address, count=len(actors), names=names))
