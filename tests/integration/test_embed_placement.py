"""Placement on a simulated multi-node cluster: encoders on the GPU node, tokenizers on the CPU node,
index shards of one model spread over different nodes.

The cluster (``ray.cluster_utils.Cluster``) runs in a subprocess (``tests.support.placement_probe``):
this process already holds the session's local Ray, and one process holds one cluster. The GPU node
declares ``num_gpus=1`` with no device behind it, so the encoder must still run, on CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from jobs.ingest.loader import ingest_file
from tests.integration.helpers import sample_subset
from tests.support.probe_run import run_probe

pytestmark = pytest.mark.slow

PROBE_TIMEOUT_S = 300


def test_encoders_run_on_the_gpu_node_and_tokenizers_on_the_cpu_node(
    clean_db: str,
    engine: Engine,
    tmp_path: Path,
) -> None:
    corpus = sample_subset(tmp_path / "subset.jsonl", n_other=40)
    ingest_file(corpus, database_url=clean_db, source_name="huffpost_2018")
    with engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM documents")).scalar_one()
    assert total >= 40

    result = run_probe(
        "tests.support.placement_probe", clean_db, str(tmp_path / "storage"), timeout_s=PROBE_TIMEOUT_S
    )

    gpu_node, cpu_node = result["nodes"]["gpu"], result["nodes"]["cpu"]
    assert gpu_node != cpu_node
    encode, tokenize = result["placement"]["encode"], result["placement"]["tokenize"]
    # Every encoded block ran on the node that declares the GPU, every tokenized one on the CPU node.
    assert set(encode) == {gpu_node}, result
    assert set(tokenize) == {cpu_node}, result
    assert encode[gpu_node] == result["files"] >= 2
    assert tokenize[cpu_node] >= 1
    # The same from the GCS actor table: the reading actors too, which the job does not record.
    actors = result["actors"]
    assert actors["EncodeBatch"] == [gpu_node], result
    assert actors["TokenizeBatch"] == [cpu_node], result
    assert actors["ReadPending"] == [cpu_node], result
    # The declared GPU is not a real device: the encoder fell back to CPU and still did the work.
    assert result["devices"] == ["cpu"]
    assert result["pending"] == total
    assert result["embedded"] + result["skipped_empty"] == total
    assert result["embedded"] == total
    assert result["chunks"] >= total
    # The two index shards of the model went to different nodes and hold every document between them.
    shards = result["shards"]
    assert len({s["node"] for s in shards}) == 2, shards
    assert sum(s["size"] for s in shards) == total and all(s["size"] > 0 for s in shards)

    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*), count(DISTINCT document_id) FROM document_embeddings")
        ).one()
        files = conn.execute(text("SELECT count(*) FROM vector_files")).scalar_one()
    assert tuple(rows) == (total, total)
    assert files == result["files"]
