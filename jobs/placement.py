"""Placing a job beside what already runs: free resources per node, the job's smallest set, a fast refusal.

Ray's logical CPUs are reservations, not measurements. Long-lived services (Serve replicas, index actors)
hold theirs for as long as they live, idle or not; a job sizes its stages from what they leave
(``ray.available_resources``), not from what the node declares. A task or actor that asks for more than
any node has free waits in ``PENDING_NODE_ASSIGNMENT`` without a word, so before a job submits anything
``wait_placeable`` checks that its smallest workable set (the stages that must run at once, one of each)
fits the nodes' free resources. It polls for up to ``timeout_s`` (what a job that just ended held comes
back within moments) and then raises ``PlacementError`` naming what the job needs, what is free and the
setting to change. An ask larger than any node's total is refused at once.

``unplaced`` and the message are plain; ``node_resources`` reads the live nodes from Ray.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import ray

from jobs.errors import PlacementError

logger = logging.getLogger(__name__)

#: Resources below this are rounding noise of Ray's fixed-point resource accounting.
EPSILON = 1e-6
#: Seconds between two looks at the nodes while waiting.
POLL_S = 0.25


@dataclass(frozen=True)
class Ask:
    """``count`` tasks or actors of one stage, each reserving ``cpus`` and ``gpus`` on one node."""

    what: str
    cpus: float
    gpus: float = 0.0
    count: int = 1
    setting: str = ""  # the PULSE_ setting that sizes it ("" when nothing sizes it)
    labels: dict[str, str] = field(default_factory=dict)  # node labels it must run on

    def describe(self) -> str:
        each = f"{self.cpus:g} CPU" + (f" + {self.gpus:g} GPU" if self.gpus else "")
        return f"{self.count} {self.what}{'s' if self.count > 1 else ''} of {each}"


@dataclass(frozen=True)
class NodeResources:
    node_id: str
    free_cpus: float
    free_gpus: float
    total_cpus: float
    total_gpus: float
    labels: dict[str, str] = field(default_factory=dict)


def _matches(ask: Ask, node: NodeResources) -> bool:
    return all(node.labels.get(k) == v for k, v in ask.labels.items())


def unplaced(asks: Sequence[Ask], nodes: Sequence[NodeResources], *, free: bool = True) -> list[Ask]:
    """The asks (one per instance) that fit on no node after the larger ones are placed (first-fit
    decreasing); ``free=False`` packs into the nodes' totals instead of what is free now."""
    room = {n.node_id: [n.free_cpus, n.free_gpus] if free else [n.total_cpus, n.total_gpus] for n in nodes}
    singles = [a for a in asks for _ in range(a.count)]
    missing: list[Ask] = []
    for ask in sorted(singles, key=lambda a: (a.gpus, a.cpus), reverse=True):
        for node in nodes:
            cpus, gpus = room[node.node_id]
            if _matches(ask, node) and cpus + EPSILON >= ask.cpus and gpus + EPSILON >= ask.gpus:
                room[node.node_id] = [cpus - ask.cpus, gpus - ask.gpus]
                break
        else:
            missing.append(ask)
    return missing


def describe_free(nodes: Sequence[NodeResources]) -> str:
    free = sum(n.free_cpus for n in nodes)
    total = sum(n.total_cpus for n in nodes)
    largest = max((n.free_cpus for n in nodes), default=0.0)
    gpus = sum(n.free_gpus for n in nodes)
    gpu_part = f", {gpus:g} GPU free" if any(n.total_gpus for n in nodes) else ""
    return (
        f"{free:.2f} of {total:g} CPUs free on {len(nodes)} node{'s' if len(nodes) != 1 else ''} "
        f"(at most {largest:.2f} on one){gpu_part}"
    )


def refusal(job: str, asks: Sequence[Ask], nodes: Sequence[NodeResources], *, waited_s: float) -> str:
    """The message of ``PlacementError``: what the job needs, what is free, what to change."""
    needs = ", ".join(a.describe() for a in asks)
    total = sum(a.cpus * a.count for a in asks)
    infeasible = bool(unplaced(asks, nodes, free=False))
    settings = sorted({a.setting for a in asks if a.setting})
    if infeasible:
        why = "more than any node has, even with nothing else running"
    else:
        why = (
            f"still not free after {waited_s:.0f} s: running services and jobs reserve the rest "
            "(`ray status` lists them)"
        )
    change = " or ".join(settings) if settings else "the job's settings"
    return (
        f"{job} cannot be placed: it needs {needs} at once ({total:.2f} CPUs), {why}; "
        f"{describe_free(nodes)}. Lower {change}, declare more CPUs for the node (PULSE_RAY__NUM_CPUS), "
        "or stop what holds them; PULSE_RAY__PLACEMENT_TIMEOUT_S sets how long a job waits."
    )


def node_resources() -> list[NodeResources]:
    """The live nodes with their free and total CPUs and GPUs, as the GCS sees them now."""
    # ``available_resources_per_node`` is Ray's DeveloperAPI (``ray.available_resources`` sums the nodes,
    # and a task needs its CPUs on one node).
    from ray._private.state import available_resources_per_node

    free: dict[str, dict[str, float]] = available_resources_per_node()  # type: ignore[no-untyped-call]
    nodes: list[NodeResources] = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if not node.get("Alive", True):
            continue
        node_id = str(node["NodeID"])
        total = node.get("Resources") or {}
        avail = free.get(node_id, {})
        nodes.append(
            NodeResources(
                node_id=node_id,
                free_cpus=float(avail.get("CPU", 0.0)),
                free_gpus=float(avail.get("GPU", 0.0)),
                total_cpus=float(total.get("CPU", 0.0)),
                total_gpus=float(total.get("GPU", 0.0)),
                labels=dict(node.get("Labels") or {}),
            )
        )
    return nodes


def free_resources() -> dict[str, float]:
    """CPUs and GPUs free on the cluster now (what running services and jobs leave)."""
    nodes = node_resources()
    return {"CPU": sum(n.free_cpus for n in nodes), "GPU": sum(n.free_gpus for n in nodes)}


def wait_placeable(job: str, asks: Sequence[Ask], *, timeout_s: float) -> None:
    """Return once ``asks`` fit the free resources together; raise ``PlacementError`` when they fit no
    node's total (at once) or are still not free after ``timeout_s``."""
    started = time.monotonic()
    while True:
        nodes = node_resources()
        if not unplaced(asks, nodes):
            return
        waited = time.monotonic() - started
        if unplaced(asks, nodes, free=False) or waited >= timeout_s:
            raise PlacementError(job, refusal(job, asks, nodes, waited_s=waited))
        logger.debug("%s: waiting for %s (%s)", job, asks, describe_free(nodes))
        time.sleep(POLL_S)
