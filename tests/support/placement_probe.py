"""Run the embedding job on a simulated three-node Ray cluster and print where its stages ran.

Used by ``tests/integration/test_embed_placement.py`` in a subprocess (one process holds one Ray
cluster; the test session already has its own)::

    python -m tests.support.placement_probe DATABASE_URL STORAGE_DIR

The cluster (``ray.cluster_utils.Cluster``, every node a local raylet):

- a head node with no CPU, so nothing but the driver's own bookkeeping runs there;
- a CPU node (2 CPUs) labelled ``pulse.io/pool=cpu``;
- a GPU node (1 CPU, 1 declared GPU) labelled ``pulse.io/pool=gpu``: the GPU is only a resource,
  there is no device behind it, so the encoder must fall back to CPU there.

The job runs with ``cpu_label_selector={"pulse.io/pool": "cpu"}``, one encoder and small files (several
blocks, several files). The last line of stdout is one JSON object: ``nodes`` (label -> node id),
``placement`` (the job's own record: stage -> node id -> blocks), ``actors`` (from the GCS actor table,
independent of the job: stage class -> sorted node ids of its actors, the read stage included, which the
job does not record), ``devices``, ``pending``, ``embedded``, ``skipped_empty``, ``chunks``, ``files``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

POOL_LABEL = "pulse.io/pool"
OBJECT_STORE_BYTES = 128 * 1024 * 1024
NODE_TIMEOUT_S = 60.0
ROWS_PER_FILE = 64
STAGES = ("ReadPending", "TokenizeBatch", "EncodeBatch")


def _node_ids(expected: dict[str, float]) -> dict[str, str]:
    """Label value -> node id of the live nodes; by their labels, else by their resources."""
    import ray

    deadline = time.monotonic() + NODE_TIMEOUT_S
    while True:
        found: dict[str, str] = {}
        for node in ray.nodes():  # type: ignore[no-untyped-call]
            if not node.get("Alive", True):
                continue
            labels = node.get("Labels") or {}
            resources = node.get("Resources") or {}
            pool = labels.get(POOL_LABEL)
            if pool is None:  # labels not reported: tell the nodes apart by what they declare
                if resources.get("GPU", 0) >= 1:
                    pool = "gpu"
                elif resources.get("CPU", 0) >= expected["cpu"]:
                    pool = "cpu"
            if pool in expected:
                found[pool] = str(node["NodeID"])
        if len(found) == len(expected):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"labelled nodes not all alive after {NODE_TIMEOUT_S} s: {found}")
        time.sleep(0.2)


def _actor_nodes() -> dict[str, list[str]]:
    """Stage class -> node ids of the Ray Data actors that ran it (dead ones included), from the GCS."""
    from ray._private import state

    nodes: dict[str, set[str]] = {stage: set() for stage in STAGES}
    for actor in state.actors().values():  # type: ignore[no-untyped-call]
        name = str(actor.get("ActorClassName", ""))
        for stage in STAGES:
            if f"MapBatches({stage})" in name:
                nodes[stage].add(str(actor["Address"]["NodeID"]))
    return {stage: sorted(ids) for stage, ids in nodes.items()}


def probe(database_url: str, storage_dir: str) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    from jobs.embed.pipeline import EmbedJobConfig, run_embed

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": OBJECT_STORE_BYTES,
            "include_dashboard": False,
        },
    )
    try:
        cluster.add_node(num_cpus=2, labels={POOL_LABEL: "cpu"}, object_store_memory=OBJECT_STORE_BYTES)
        cluster.add_node(
            num_cpus=1, num_gpus=1, labels={POOL_LABEL: "gpu"}, object_store_memory=OBJECT_STORE_BYTES
        )
        cluster.wait_for_nodes(timeout=NODE_TIMEOUT_S)
        ray.init(
            address=cluster.address,
            namespace=f"pulse-placement-{os.getpid()}",
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        try:
            nodes = _node_ids({"cpu": 2.0, "gpu": 1.0})
            summary = run_embed(
                EmbedJobConfig(
                    database_url=database_url,
                    storage_uri=storage_dir,
                    model_name="default",
                    cpu_label_selector={POOL_LABEL: "cpu"},
                    max_actors=1,
                    rows_per_file=ROWS_PER_FILE,
                    progress=False,
                )
            )
            actors = _actor_nodes()
            shards = _shard_nodes(database_url, storage_dir, summary.model_id)
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()  # type: ignore[no-untyped-call]
    return {
        "nodes": nodes,
        "placement": summary.placement,
        "actors": actors,
        "devices": list(summary.devices),
        "pending": summary.pending,
        "embedded": summary.embedded,
        "skipped_empty": summary.skipped_empty,
        "chunks": summary.chunks,
        "files": summary.files,
        "seconds": round(summary.seconds, 1),
        "shards": shards,
    }


def _shard_nodes(database_url: str, storage_dir: str, model_id: int) -> list[dict[str, Any]]:
    """Start two index shards (SPREAD) and report where each runs and what it holds once ready."""
    import ray

    from actors.index_actor import IndexActorConfig, ShardedIndex

    index = ShardedIndex(
        IndexActorConfig(
            database_url=database_url,
            storage_uri=storage_dir,
            model_id=model_id,
            dimension=384,
            namespace=ray.get_runtime_context().namespace,
            shards=2,
            num_cpus=0.25,
            poll_interval_s=0.5,
        )
    )
    ray.get([a.wait_ready.remote(120) for a in index.actors])
    return [
        {"node": s.node_id, "size": s.index.size, "shard": s.shard}
        for s in ray.get([a.stats.remote() for a in index.actors])
    ]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.support.placement_probe DATABASE_URL STORAGE_DIR", file=sys.stderr)
        return 2
    # This process starts its own cluster: never join one named by the environment.
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = probe(argv[0], argv[1])
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
