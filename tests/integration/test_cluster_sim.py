"""Collect -> embed -> index -> search on a simulated three-node cluster, and a shard's node lost mid-ingest.

The cluster (``ray.cluster_utils.Cluster``: a head with no CPU, a CPU worker, a worker declaring one GPU)
runs in a subprocess (``tests.support.cluster_probe``, which says what each node stands for and what the
simulation leaves out): this session may already hold its own Ray, and one process holds one cluster. The
probe drives the user's entry points (`pulse sources add`, `pulse collect`, `pulse embed`, the search
application as `pulse up` deploys it, ``python -m jobs.collect --embed``) against the cluster's address.

While the second batch is being embedded, the node hosting an index shard (and the job's encoder) is
removed without grace and a replacement joins; the test then wants every document with a vector in
PostgreSQL held by exactly one shard, and searches for titles finding their documents over HTTP.

About 3 minutes on 2 cores (``first.seconds`` + the rest are in the probe's JSON); no ``ray_session``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.support.probe_run import run_probe

pytestmark = pytest.mark.slow

PROBE_TIMEOUT_S = 600


def test_a_lost_shard_node_mid_ingest_loses_no_document(
    clean_db: str, engine: Engine, tmp_path: Path
) -> None:
    result = run_probe(
        "tests.support.cluster_probe",
        clean_db,
        str(tmp_path / "sim"),
        timeout_s=PROBE_TIMEOUT_S,
        clear_pulse_env=True,
    )
    print(result)  # the figures, for the log of a CI run
    nodes = result["nodes"]
    first, removal, final = result["first"], result["removal"], result["final"]

    # A: the first batch went through collect -> embed -> index -> search; the shards on two nodes.
    assert first["documents"] == first["vectors"] >= 50, result
    assert len(set(first["shard_nodes"])) == 2 and set(first["shard_nodes"]) <= set(nodes.values())
    assert sum(first["shard_sizes"]) == first["vectors"]
    assert first["search"]["found"] == first["search"]["asked"] >= 5

    # B: the node went while the second batch was being embedded (a file committed, the job running) ...
    assert removal["ingest_running"] and removal["files_committed_before"] >= 1, removal
    assert removal["node"] == nodes[removal["pool"]]
    # ... the shard came back in a new process on a live node, from its snapshot, and caught up ...
    assert removal["new_node"] != removal["node"] and removal["pid_after"] != removal["pid_before"]
    assert removal["restarts"] >= 1 and removal["restored_from"], removal
    # ... and the ingest finished by itself: Ray re-placed its lost work on the nodes left or the new one.
    assert removal["ingest_rc"] == 0, removal.get("ingest_tail")
    runs = result["embed_runs"]
    assert [r["status"] for r in runs] == ["done", "done"], runs
    assert all(r["devices"] == ["cpu"] for r in runs)  # the declared GPU has no device behind it
    assert runs[1]["embedded"] == final["second_batch"]
    if removal["pool"] == "gpu":  # the encoder ran on the lost node, then on its replacement
        assert removal["node"] in runs[0]["encode_nodes"]
        assert removal["replacement"] in runs[1]["encode_nodes"], runs[1]

    # Every document with a vector is held by exactly one shard: none lost, none twice, none unknown.
    assert final["second_batch"] >= 80
    assert final["documents"] == final["vectors"] == first["vectors"] + final["second_batch"]
    assert final["lost"] == final["duplicated"] == final["extra"] == 0, final
    assert final["indexed"] == final["indexed_distinct"] == final["vectors"] == sum(final["shard_sizes"])
    # Searching for a title finds its document, for the batch ingested across the loss and the one before.
    assert final["search"]["found"] == final["search"]["asked"] >= 10, final["search"]
    assert final["search_first"]["found"] == final["search_first"]["asked"] >= 3

    # The probe's figures agree with PostgreSQL as this process sees it.
    with engine.connect() as conn:
        embedded = conn.execute(text("SELECT count(DISTINCT document_id) FROM document_embeddings")).scalar()
        documents = conn.execute(text("SELECT count(*) FROM documents")).scalar()
    assert embedded == documents == final["vectors"]
