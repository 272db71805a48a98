"""Resource plans beside running services, and the placement check's packing and message (no Ray)."""

from __future__ import annotations

import itertools

from jobs.collect.fetch import FetchPolicy
from jobs.collect.pipeline import CollectJobConfig, plan_resources
from jobs.embed.pipeline import EmbedJobConfig, plan_pools
from jobs.placement import Ask, NodeResources, refusal, unplaced

NODE_IDS = itertools.count()


def node(free: float, total: float = 2.0, *, gpus: float = 0.0, **labels: str) -> NodeResources:
    return NodeResources(f"node-{next(NODE_IDS)}", free, gpus, total, gpus, dict(labels))


def collect_config(**overrides: object) -> CollectJobConfig:
    return CollectJobConfig(database_url="x", storage_uri="y", policy=FetchPolicy(), **overrides)  # type: ignore[arg-type]


def test_packing_places_each_instance_on_one_node_largest_first() -> None:
    asks = [Ask("extraction task", 0.7, count=2), Ask("store actor", 0.1)]
    assert unplaced(asks, [node(1.75)]) == []
    # 1.5 CPUs in all, but on two nodes of 0.75: the two 0.7 tasks fit, the store actor does not.
    assert [a.what for a in unplaced(asks, [node(0.75), node(0.75)])] == ["store actor"]
    assert unplaced([Ask("encoder", 1.0, 1.0)], [node(2.0)]) != []  # no GPU anywhere
    assert unplaced([Ask("encoder", 1.0, 1.0)], [node(2.0, gpus=1.0)]) == []
    # Labels: a CPU-pool ask does not land on the GPU node.
    labelled = Ask("tokenize actor", 0.25, labels={"pool": "cpu"})
    assert unplaced([labelled], [node(2.0, pool="gpu")]) != []
    assert unplaced([labelled], [node(2.0, pool="gpu"), node(0.3, pool="cpu")]) == []


def test_refusal_says_what_is_needed_what_is_free_and_what_to_change() -> None:
    asks = [Ask("extraction task", 1.0, setting="PULSE_COLLECT__EXTRACT_CPUS"), Ask("store actor", 0.1)]
    busy = refusal("the collect job", asks, [node(0.9)], waited_s=10)
    assert busy.startswith("the collect job cannot be placed: it needs 1 extraction task of 1 CPU, ")
    assert "(1.10 CPUs)" in busy and "still not free after 10 s" in busy
    assert "0.90 of 2 CPUs free on 1 node" in busy
    assert "Lower PULSE_COLLECT__EXTRACT_CPUS" in busy and "PULSE_RAY__NUM_CPUS" in busy
    huge = refusal("the collect job", [Ask("extraction task", 3.0)], [node(2.0)], waited_s=0)
    assert "more than any node has" in huge


def test_collect_extraction_takes_what_the_services_leave_on_both_cores() -> None:
    beside = plan_resources(collect_config(), free_cpus=1.75, fetch_tasks=4)
    assert beside.extract_tasks == 2 and beside.extract_cpus == 0.72
    total = beside.fetch_tasks * beside.fetch_cpus + 2 * beside.extract_cpus + beside.store_cpus
    assert total <= 1.75
    assert unplaced(beside.asks(), [node(1.75)]) == []
    bare = plan_resources(collect_config(), free_cpus=4.0, fetch_tasks=8)
    assert (bare.extract_tasks, bare.extract_cpus) == (4, 0.87)
    starved = plan_resources(collect_config(), free_cpus=0.2, fetch_tasks=4)
    assert (starved.extract_tasks, starved.extract_cpus) == (1, 0.1)
    fixed = plan_resources(collect_config(extract_cpus=1.0), free_cpus=1.75, fetch_tasks=4)
    assert (fixed.extract_tasks, fixed.extract_cpus) == (1, 1.0)


def test_embed_encoders_take_the_free_cpus_one_thread_each() -> None:
    cfg = EmbedJobConfig(database_url="x", storage_uri="y", model_name="default")
    beside = plan_pools(cfg, {"CPU": 1.75}, total={"CPU": 2.0})
    assert (beside.encoders, beside.threads, beside.encoder_cpus) == (2, 1, 0.62)
    assert unplaced(beside.asks(cfg), [node(1.75)]) == []
    squeezed = plan_pools(cfg, {"CPU": 0.9}, total={"CPU": 2.0})
    assert squeezed.encoders == 1 and squeezed.encoder_cpus == 0.4
    gpu = plan_pools(cfg, {"CPU": 10.0, "GPU": 1.0}, total={"CPU": 16.0, "GPU": 2.0})
    assert (gpu.encoders, gpu.encoder_gpus) == (1, 1.0)  # one GPU is held by something else
