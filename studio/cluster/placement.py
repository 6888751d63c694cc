"""Where the worker actors go: one per GPU the cluster offers, one CPU worker on a node without GPUs.

Pure: it reads a ClusterInfo and returns places, so the rules are tested without a cluster. The
studio's own node is left out when local workers run beside the actors (`cuda:0,ray`): its devices
are theirs already. Each place is pinned to its node softly: a restart goes back there while the node
lives, anywhere else that has room once it is gone (the worker keeps its first node's name).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from studio.cluster.connect import ClusterInfo


@dataclass(frozen=True)
class ActorPlace:
    """One worker actor: its name in the pool and the PNGs, its node, and what it reserves there."""

    name: str  # "ray:192.168.1.11/cuda:0"
    node_id: str
    host: str
    device: str  # "cuda" or "cpu"
    num_gpus: int
    num_cpus: float
    threads: int  # torch / OpenMP threads inside the worker

    def options(self) -> dict[str, Any]:
        """Ray's actor options for this place (resources and the soft pin to its node)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return {"num_gpus": self.num_gpus, "num_cpus": self.num_cpus,
                "scheduling_strategy": NodeAffinitySchedulingStrategy(self.node_id, soft=True)}


def places(cluster: ClusterInfo, *, with_local_workers: bool = False) -> list[ActorPlace]:
    """Every worker actor the cluster has room for, nodes in the cluster's order."""
    out: list[ActorPlace] = []
    hosts = Counter(n.host for n in cluster.nodes)
    for node in cluster.nodes:
        label = node.host if hosts[node.host] == 1 else f"{node.host}~{node.node_id[:6]}"
        if node.is_driver and with_local_workers:
            continue
        if node.gpus:
            threads = max(1, min(8, int(node.cpus) // node.gpus))
            out += [ActorPlace(f"ray:{label}/cuda:{k}", node.node_id, node.host, "cuda", 1, 1, threads)
                    for k in range(node.gpus)]
        elif node.cpus >= 1:
            out.append(ActorPlace(f"ray:{label}/cpu", node.node_id, node.host, "cpu", 0, node.cpus,
                                  max(1, int(node.cpus))))
    return out
