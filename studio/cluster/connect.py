"""Joining a Ray cluster: where its head is, whether it answers, and which nodes it has.

`RAY_ADDRESS` (or an explicit address) names the head's `host:port`; without one, a cluster started
on this machine with `ray start --head` is found the way Ray finds it. A `host:port` head is probed
with a plain TCP connect first, because `ray.init` on an address nobody answers retries for minutes.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from studio.core.workers_spec import WorkerSpecError

NAMESPACE = "zaoxiang"
PROBE_TIMEOUT_S = 3.0
INSTALL_HINT = "pip install 'zaoxiang-studio[cluster]'"


class ClusterUnavailable(WorkerSpecError):
    """No Ray cluster to use, so `--workers ray` cannot run: one sentence a person can act on (and
    its i18n key, `set.bad.no_cluster` with the address, or `set.bad.no_ray`)."""

    def __init__(self, message: str, address: str = "", key: str = "set.bad.no_cluster") -> None:
        super().__init__(message, key, address=address or "auto")


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    host: str
    cpus: float
    gpus: int
    is_driver: bool  # the node this studio runs on (its GPUs may already have local workers)


@dataclass(frozen=True)
class ClusterInfo:
    address: str
    nodes: tuple[NodeInfo, ...]


def cluster_address(explicit: str | None = None) -> str:
    """The head to join: `explicit`, else RAY_ADDRESS, else "auto" (a cluster on this machine)."""
    return (explicit or os.environ.get("RAY_ADDRESS") or "auto").strip()


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise ClusterUnavailable unless something accepts TCP connections at `address` ("host:port")."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ClusterUnavailable(f"RAY_ADDRESS {address!r} is not host:port (for example 192.168.1.10:6379).",
                                 address)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterUnavailable(f"No Ray cluster answers at {address} ({exc.strerror or exc}); "
                                 "start one with `ray start --head` (see README).", address) from None


def connect(address: str | None = None) -> ClusterInfo:
    """Join the cluster (once per process) and describe it; ClusterUnavailable when there is none."""
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable(f"Ray is not installed, so `--workers ray` cannot run: {INSTALL_HINT}.",
                                 key="set.bad.no_ray") from None
    target = cluster_address(address)
    if not ray.is_initialized():
        if target != "auto" and "://" not in target:
            probe(target)
        try:
            ray.init(address=target, namespace=NAMESPACE, log_to_driver=False, logging_level="WARNING",
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = "on this machine" if target == "auto" else f"at {target}"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterUnavailable(f"No Ray cluster is running {where} ({first[:160]}); start one with "
                                     "`ray start --head` or set RAY_ADDRESS (see README).", target) from None
    return describe(ray)


def describe(ray: Any) -> ClusterInfo:
    """The cluster's live nodes as this studio sees them."""
    driver = ray.get_runtime_context().get_node_id()
    nodes = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        res = node.get("Resources", {})
        nodes.append(NodeInfo(node["NodeID"], node.get("NodeManagerAddress", "?"), float(res.get("CPU", 0)),
                              int(res.get("GPU", 0)), node["NodeID"] == driver))
    address = ray.get_runtime_context().gcs_address
    return ClusterInfo(address, tuple(nodes))


def disconnect() -> None:
    """Leave the cluster (the actors this studio started end with it)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
