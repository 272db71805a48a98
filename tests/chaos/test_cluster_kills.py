"""Kills inside a simulated three-node Ray cluster during collect -> embed -> index (issue 20, chaos a-c, g
and the trend clusterer's catch-up): nothing lost, nothing twice, and how long each part took to return.

The cluster (``ray.cluster_utils.Cluster``: a head with no CPU, a CPU worker, a worker declaring one GPU)
runs in a subprocess (``tests.support.cluster_probe``, which says what each node stands for and what the
simulation leaves out): this session may already hold its own Ray, and one process holds one cluster. The
probe drives the user's entry points (`pulse sources add`, `pulse collect`, `pulse embed`, the search
application as `pulse up` deploys it, ``python -m jobs.collect --embed``) against the cluster's address.

For each scenario a new batch is ingested by a second driver, and once it has committed a file the part is
killed: an index shard actor (``shard``), the worker node hosting a shard (``node``), the job's encoder
actor (``encoder``), the keyword index actor (``keyword``), the trend clusterers (``clusterer``). A
background loop of ``/v1/search`` over HTTP counts failed and degraded (``partial``) answers meanwhile.
After the batch every document with a vector in PostgreSQL must be held exactly once by the vector shards,
the keyword index (and the clusterers' windows): lost = duplicated = 0. Each scenario prints a ``chaos``
figure.

Durations on 2 cores shared with other test runs (pytest ``call`` times, 2026-12-07): the CI test (encoder,
shard and keyword killed during one batch) 140 s; the ``long`` clusterer test 119 s; the other ``long`` ones
were not timed in this form (the node loss took ~3 minutes as ``tests/integration/test_cluster_sim.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.support.probe_run import run_probe

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

PROBE_TIMEOUT_S = 900


def _probe(clean_db: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    result = run_probe(
        "tests.support.cluster_probe",
        clean_db,
        str(tmp_path / "sim"),
        *args,
        timeout_s=PROBE_TIMEOUT_S,
        clear_pulse_env=True,
    )
    print(result)  # the figures, for the log of a CI run
    return result


def _check_kill(kill: dict[str, Any], figure: Any) -> None:
    """The common promise of every kill: recorded as a figure, then nothing lost or twice."""
    figure(
        "chaos",
        scenario=kill["scenario"],
        documents=kill["documents"],
        vectors=kill["vectors"],
        indexed=kill["indexed"],
        keyword_indexed=kill["keyword_indexed"],
        trend_assignments=kill.get("trend_assignments"),
        lost=kill["lost"],
        duplicated=kill["duplicated"],
        recovery_s=kill["recovery_s"],
        recovery_by_part={part: r["recovery_s"] for part, r in kill.get("parts", {}).items()} or None,
        caught_up_s=kill["caught_up_s"],
        requests=kill["requests"],
        failed_requests=kill["failed_requests"],
        degraded_requests=kill["degraded_requests"],
    )
    # The kill landed while the batch's job ran (a file committed, the job still going) ...
    assert kill["ingest_running"] and kill["files_committed_before"] >= 1, kill
    # ... and the job finished by itself: Ray restarted or re-placed what was lost.
    assert kill["ingest_rc"] == 0, kill.get("ingest_tail")
    assert kill["batch"] >= 40 and kill["files"] >= 2, kill
    # PostgreSQL's documents with a vector, each held once by the vector shards and the keyword index.
    assert kill["documents"] == kill["vectors"], kill
    assert kill["lost"] == kill["duplicated"] == kill["extra"] == 0, kill
    assert kill["indexed"] == kill["indexed_distinct"] == kill["vectors"] == sum(kill["shard_sizes"])
    assert kill["keyword_indexed"] == kill["vectors"], kill
    # Searching for a title of the batch finds its document; the load got answers throughout.
    assert kill["search"]["found"] == kill["search"]["asked"] >= 3, kill["search"]
    assert kill["requests"] >= 10, kill


def _check_totals(result: dict[str, Any], engine: Engine) -> None:
    """The probe's figures agree with PostgreSQL as this process sees it; the first batch still found."""
    final = result["final"]
    assert final["lost"] == final["duplicated"] == 0, final
    assert final["search_first"]["found"] == final["search_first"]["asked"] >= 3
    with engine.connect() as conn:
        embedded = conn.execute(text("SELECT count(DISTINCT document_id) FROM document_embeddings")).scalar()
        documents = conn.execute(text("SELECT count(*) FROM documents")).scalar()
    assert embedded == documents == final["vectors"]
    assert [r["status"] for r in result["embed_runs"]] == ["done"] * (1 + len(result["kills"]))


def test_encoder_shard_and_keyword_kills_lose_nothing(
    clean_db: str, engine: Engine, tmp_path: Path, figure: Any
) -> None:
    """CI's subset: three cheap kills at once during one batch (the encoder, an index shard, the keyword
    index), each part's recovery timed on its own; the ``long`` tests kill each part alone."""
    result = _probe(clean_db, tmp_path, "encoder+shard+keyword")
    (kill,) = result["kills"]
    _check_kill(kill, figure)
    parts = kill["parts"]
    # The shard came back from its snapshot; the keyword index reread PostgreSQL; the encoder died mid-job
    # (the job committed more files after it, from a restarted actor).
    assert parts["shard"]["restored_from"], parts
    assert parts["keyword"]["killed"]["size"] >= result["first"]["vectors"], parts
    assert kill["files_after_kill"] >= 1, kill
    _check_totals(result, engine)


@pytest.mark.long
@pytest.mark.parametrize("scenario", ["shard", "encoder", "keyword"])
def test_one_kill_mid_ingest_loses_nothing(
    scenario: str, clean_db: str, engine: Engine, tmp_path: Path, figure: Any
) -> None:
    """Each cheap kill on its own cluster (its recovery and failed requests not mixed with another's)."""
    result = _probe(clean_db, tmp_path, scenario)
    _check_kill(result["kills"][0], figure)
    _check_totals(result, engine)


@pytest.mark.long
def test_killed_trend_clusterers_catch_up_without_loss(
    clean_db: str, engine: Engine, tmp_path: Path, figure: Any
) -> None:
    """The clusterers (started as `pulse up` starts them) killed while following the manifest: they come
    back from their snapshots and hold every embedded document once in their windows."""
    result = _probe(clean_db, tmp_path, "clusterer")
    kill = result["kills"][0]
    _check_kill(kill, figure)
    assert kill["trend_lost"] == kill["trend_duplicated"] == 0, kill
    assert kill["trend_window"] == kill["vectors"], kill
    with engine.connect() as conn:
        placed = conn.execute(text("SELECT count(*), count(DISTINCT document_id) FROM document_topics")).one()
    assert placed[0] == placed[1] == kill["trend_assignments"]
    _check_totals(result, engine)


@pytest.mark.long
def test_a_lost_shard_node_mid_ingest_loses_no_document(
    clean_db: str, engine: Engine, tmp_path: Path, figure: Any
) -> None:
    """The node hosting a shard (and the job's encoder, on the GPU worker) removed without grace while a
    batch is embedded, a replacement node joining."""
    result = _probe(clean_db, tmp_path, "node", "gpu")
    nodes, first, removal = result["nodes"], result["first"], result["kills"][0]
    _check_kill(removal, figure)

    # A: the first batch went through collect -> embed -> index -> search; the shards on two nodes.
    assert first["documents"] == first["vectors"] >= 50, result
    assert len(set(first["shard_nodes"])) == 2 and set(first["shard_nodes"]) <= set(nodes.values())
    assert sum(first["shard_sizes"]) == first["vectors"]
    assert first["search"]["found"] == first["search"]["asked"] >= 5

    # B: the node went while the batch was being embedded; the shard came back in a new process on a live
    # node, from its snapshot, and caught up.
    assert removal["node"] == nodes[removal["pool"]]
    assert removal["new_node"] != removal["node"] and removal["pid_after"] != removal["pid_before"]
    assert removal["restarts"] >= 1 and removal["restored_from"], removal
    runs = result["embed_runs"]
    assert all(r["devices"] == ["cpu"] for r in runs)  # the declared GPU has no device behind it
    assert runs[1]["embedded"] == removal["batch"] >= 80
    if removal["pool"] == "gpu":  # the encoder ran on the lost node, then on its replacement
        assert removal["node"] in runs[0]["encode_nodes"]
        assert removal["replacement"] in runs[1]["encode_nodes"], runs[1]
    assert removal["search"]["found"] == removal["search"]["asked"] >= 10, removal["search"]
    _check_totals(result, engine)
