"""Collect -> embed -> index -> search on a simulated three-node Ray cluster, then lose a shard's node
while a second batch is ingested, and check that every embedded document is still indexed once.

Used by ``tests/integration/test_cluster_sim.py`` in a subprocess (one process holds one Ray cluster; the
test session may hold one already)::

    python -m tests.support.cluster_probe DATABASE_URL WORK_DIR [gpu|cpu]

The cluster (``ray.cluster_utils.Cluster``: every node is a raylet on this machine, one GCS):

- a head node with no CPU, as ``ray-cluster.yaml``'s head (``num-cpus: "0"``): the GCS, the driver's
  bookkeeping, Serve's controller and its one HTTP proxy (``proxy_location="HeadOnly"``: the simulated
  nodes share one IP, so a proxy per node would fight for the port);
- a CPU worker (2 CPUs) labelled ``pulse.io/pool=cpu``, as the cpu worker group;
- a GPU worker (1 CPU, ``num_gpus=1``) labelled ``pulse.io/pool=gpu``. The GPU is a declared resource
  with no device behind it: the embed job plans one encoder per GPU (``PULSE_EMBED__GPUS_PER_ACTOR``
  unset resolves to 1 on a cluster with GPUs), Ray places it on this node, and the encoder, finding no
  CUDA, runs on CPU (``devices == ["cpu"]``). ``PULSE_EMBED__GPUS_PER_ACTOR=0`` would instead plan CPU
  encoders, one per free CPU, placed on any node with CPUs (the GPU node included, as a plain CPU node).
  The encoder reserves half a CPU (``PULSE_EMBED__CPUS_PER_ACTOR=0.5``): a shard actor (0.05 CPU) may
  share the GPU node, and a 1-CPU encoder would then no longer fit its one CPU.

Every node sees one filesystem: the storage folder under WORK_DIR stands in for the S3 bucket a real
cluster's pods share (``PULSE_STORAGE__URI``); the database is the test's PostgreSQL.

Everything runs through the entry points a user runs, against the cluster's address
(``PULSE_RAY__ADDRESS``): ``pulse sources add`` (the local test site, ``tests/support/web_site.py``),
``pulse collect``, ``pulse embed`` in this process; the search application (which starts the two index
shard actors, SPREAD over the nodes) through ``deploy_search``, as `pulse up` does; searches over HTTP.

Then, while ``python -m jobs.collect --embed`` (a second driver) collects and embeds a second batch, the
node hosting one shard is removed without grace, as a crashed machine, and a replacement node of the same
kind is added: by default the GPU worker, which also runs the job's encoder; with ``cpu`` the CPU worker,
which runs its reading and tokenizing actors. The shard comes back (a detached actor, ``max_restarts=-1``)
from its snapshot plus catch-up from the manifest; Ray re-places the job's lost actors and work on the
nodes left or the new one. The last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

POOL_LABEL = "pulse.io/pool"
#: Object store per simulated node: small (three raylets share this machine's memory); Ray's floor is 75 MiB.
OBJECT_STORE_BYTES = 128 * 1024 * 1024
NODE_TIMEOUT_S = 60.0
#: Pages of the local site per batch (its /articles pages are BBC News articles).
FIRST_BATCH = 60
SECOND_BATCH = 100
SHARDS = 2
#: Documents per embedded block (and vector file): small, so the second batch is several files and the
#: node goes while the job is between them.
EMBED_BATCH = 16
RECOVERY_TIMEOUT_S = 180.0
INGEST_TIMEOUT_S = 300.0
#: Titles of the second batch searched for over HTTP after the recovery.
SEARCHED_TITLES = 12


@dataclass
class Probe:
    database_url: str
    work: Path
    cluster: Any = None
    site: Any = None
    engine: Any = None
    base: str = ""  # the local site
    api: str = ""  # the search application
    namespace: str = ""
    workers: dict[str, Any] = field(default_factory=dict)  # pool -> its worker node (ray._private.node.Node)

    # ----------------------------------------------------------------------------------- set-up
    def start(self) -> dict[str, Any]:
        from ray.cluster_utils import Cluster

        from cluster.top.serve_config import free_port
        from tests.support.web_site import LocalSite

        self.engine = create_engine(self.database_url)
        self.site = LocalSite()
        self.base = self.site.start()
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "object_store_memory": OBJECT_STORE_BYTES,
                "include_dashboard": False,
                # A crashed node is declared dead after ~3 s instead of Ray's default ~30 s.
                "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3},
            },
        )
        self.workers["cpu"] = self._add("cpu")
        self.workers["gpu"] = self._add("gpu")
        self.cluster.wait_for_nodes(timeout=NODE_TIMEOUT_S)
        self.namespace = f"pulse-sim-{os.getpid()}"
        port = free_port()
        os.environ.update(
            {
                "PULSE_DATABASE__URL": self.database_url,
                "PULSE_RAY__ADDRESS": self.cluster.address,
                "PULSE_RAY__NAMESPACE": self.namespace,
                "PULSE_STORAGE__URI": str(self.work / "storage"),
                "PULSE_VAR_DIR": str(self.work / "var"),
                "PULSE_LOG_LEVEL": "WARNING",
                "PULSE_COLLECT__ALLOW_NETWORKS": '["127.0.0.0/8"]',
                "PULSE_COLLECT__PER_HOST_DELAY_S": "0.02",
                "PULSE_EMBED__CPU_LABEL_SELECTOR": json.dumps({POOL_LABEL: "cpu"}),
                "PULSE_EMBED__CPUS_PER_ACTOR": "0.5",
                "PULSE_EMBED__BATCH_SIZE": str(EMBED_BATCH),
                "PULSE_INDEX__SHARDS": str(SHARDS),
                "PULSE_INDEX__POLL_INTERVAL_S": "1",
                "PULSE_INDEX__SNAPSHOT_INTERVAL_S": "2",
                "PULSE_SERVE__HOST": "127.0.0.1",
                "PULSE_SERVE__PORT": str(port),
                "PULSE_SERVE__INGRESS": "proxy",
                "PULSE_SEARCH__DEADLINE_MS": "3000",
                "PULSE_TRENDS__ENABLED": "false",
            }
        )
        self.api = f"http://127.0.0.1:{port}"
        return {"cpu": self.workers["cpu"].node_id, "gpu": self.workers["gpu"].node_id}

    def _add(self, pool: str) -> Any:
        if pool == "cpu":
            return self.cluster.add_node(
                num_cpus=2, labels={POOL_LABEL: "cpu"}, object_store_memory=OBJECT_STORE_BYTES
            )
        return self.cluster.add_node(
            num_cpus=1, num_gpus=1, labels={POOL_LABEL: "gpu"}, object_store_memory=OBJECT_STORE_BYTES
        )

    def stop(self) -> None:
        import ray

        try:
            if ray.is_initialized():
                from ray import serve

                try:
                    serve.shutdown()  # type: ignore[no-untyped-call]
                finally:
                    ray.shutdown()
        finally:
            if self.cluster is not None:
                self.cluster.shutdown()
            if self.site is not None:
                self.site.stop()
            if self.engine is not None:
                self.engine.dispose()

    # ------------------------------------------------------------------------------- commands
    @staticmethod
    def pulse(*argv: str) -> None:
        """`pulse ARGV...` in this process (the first command joins the cluster at PULSE_RAY__ADDRESS)."""
        from cluster.top import cli

        code = cli.main(list(argv))
        if code != 0:
            raise RuntimeError(f"`pulse {' '.join(argv)}` exited {code}")

    def sitemap(self, start: int, count: int) -> str:
        return f"{self.base}/articles_sitemap.xml?start={start}&count={count}"

    def deploy(self) -> None:
        """Serve's proxy on the head only, then the search application as `pulse up` deploys it (its
        replicas create the index shard actors)."""
        from ray import serve

        from cluster.ground.settings import get_settings
        from cluster.top.serve_config import deploy_search

        settings = get_settings()
        serve.start(
            proxy_location="HeadOnly",
            http_options={"host": settings.serve.host, "port": settings.serve.port},
        )
        deploy_search(settings, self.database_url)
        deadline = time.monotonic() + 180
        last = ""
        while time.monotonic() < deadline:
            try:
                resp = httpx.get(f"{self.api}/readyz", timeout=10)
                if resp.status_code == 200:
                    return
                last = resp.text[:300]
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.5)
        raise TimeoutError(f"the search API did not become ready: {last}")

    # -------------------------------------------------------------------------------- queries
    def sql(self, query: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(query), params).all())

    def model_id(self) -> int:
        return int(self.sql("SELECT id FROM embedding_models WHERE status = 'active'")[0][0])

    def embedded_ids(self, model_id: int) -> set[int]:
        rows = self.sql("SELECT document_id FROM document_embeddings WHERE model_id = :m", m=model_id)
        return {int(r[0]) for r in rows}

    def files(self, model_id: int) -> tuple[int, int]:
        """(vector files, last manifest sequence) of the model."""
        count, last = self.sql(
            "SELECT count(*), coalesce(max(id), 0) FROM vector_files WHERE model_id = :m", m=model_id
        )[0]
        return int(count), int(last)

    def embed_runs(self) -> list[dict[str, Any]]:
        """Each embed run's status and its own record of where it encoded (node id -> blocks)."""
        rows = self.sql("SELECT status, summary FROM embed_runs ORDER BY id")
        return [
            {
                "status": status,
                "embedded": summary.get("embedded"),
                "devices": summary.get("devices"),
                "encode_nodes": summary.get("placement", {}).get("encode", {}),
                "tokenize_nodes": summary.get("placement", {}).get("tokenize", {}),
            }
            for status, summary in rows
        ]

    def shards(self, model_id: int) -> list[Any]:
        import ray

        from cluster.ground.constants import index_actor_name

        return [
            ray.get_actor(index_actor_name(model_id, s, level="document", shards=SHARDS), self.namespace)
            for s in range(SHARDS)
        ]

    def shard_stats(self, model_id: int, timeout_s: float = 10.0) -> list[Any]:
        import ray

        return list(ray.get([a.stats.remote() for a in self.shards(model_id)], timeout=timeout_s))

    def indexed(self, model_id: int, ids: set[int]) -> list[list[int]]:
        """The ids each shard holds, asked for every embedded id (``vectors_of`` returns those it has)."""
        import numpy as np
        import ray

        wanted = np.array(sorted(ids), dtype=np.int64)
        parts = ray.get([a.vectors_of.remote(wanted, None) for a in self.shards(model_id)], timeout=30)
        return [sorted(int(i) for i in part[0]) for part in parts]

    def search(self, query: str, k: int = 10) -> list[int]:
        resp = httpx.get(f"{self.api}/v1/search", params={"q": query, "k": k, "mode": "vector"}, timeout=30)
        resp.raise_for_status()
        body = resp.json()
        if body.get("partial"):
            raise AssertionError(f"partial answer for {query!r}: {body.get('shards')}")
        return [int(r["id"]) for r in body["results"]]

    def titles(self, ids: set[int], n: int) -> list[tuple[int, str]]:
        rows = self.sql(
            "SELECT id, title FROM documents WHERE id = ANY(:ids) AND length(title) > 20 ORDER BY id",
            ids=sorted(ids),
        )
        titles: dict[str, int] = {}
        for doc_id, title in rows:
            titles.setdefault(str(title), int(doc_id))  # one document per title
        picked = sorted((doc_id, title) for title, doc_id in titles.items())
        step = max(1, len(picked) // n)
        return picked[::step][:n]


def _alive_actor(name: str) -> dict[str, Any] | None:
    """The GCS's record of the named actor (this cluster holds one namespace of Pulse's) if it is ALIVE:
    its node id, pid and restarts; else None."""
    from ray._private import state

    for actor in state.actors().values():  # type: ignore[no-untyped-call]
        if actor.get("Name") == name and actor.get("State") == "ALIVE":
            return {
                "node": str(actor["Address"]["NodeID"]),
                "pid": int(actor.get("Pid") or 0),
                "restarts": int(actor.get("NumRestarts") or 0),
            }
    return None


def _search_hits(probe: Probe, pairs: list[tuple[int, str]]) -> dict[str, Any]:
    found = [doc_id in probe.search(title) for doc_id, title in pairs]
    return {"asked": len(pairs), "found": sum(found)}


def run(database_url: str, work: Path, lose: str = "gpu") -> dict[str, Any]:
    import ray

    from cluster.ground.constants import index_actor_name

    probe = Probe(database_url, work)
    ingest: subprocess.Popen[bytes] | None = None
    out: dict[str, Any] = {}
    started = time.monotonic()
    try:
        out["nodes"] = probe.start()
        # ---- A: collect -> embed -> index -> search through the user's entry points
        probe.pulse("sources", "add", "site-a", "sitemap", probe.sitemap(0, FIRST_BATCH))
        probe.pulse("collect", "--no-progress")
        probe.pulse("embed", "--no-progress")
        model_id = probe.model_id()
        first_ids = probe.embedded_ids(model_id)
        probe.deploy()
        stats = probe.shard_stats(model_id)
        out["first"] = {
            "documents": int(probe.sql("SELECT count(*) FROM documents")[0][0]),
            "vectors": len(first_ids),
            "files": probe.files(model_id)[0],
            "shard_nodes": [s.node_id for s in stats],
            "shard_sizes": [s.index.size for s in stats],
            "search": _search_hits(probe, probe.titles(first_ids, 6)),
            "seconds": round(time.monotonic() - started, 1),
        }
        # Both shards have written a snapshot before the node goes (a restart loads it, then catches up).
        ray.get([a.snapshot.remote() for a in probe.shards(model_id)], timeout=30)

        # ---- B: a second batch collected and embedded by another driver; a shard's node is lost meanwhile
        probe.pulse("sources", "add", "site-b", "sitemap", probe.sitemap(FIRST_BATCH, SECOND_BATCH))
        files_before, _ = probe.files(model_id)
        log = (work / "ingest.log").open("w")
        ingest = subprocess.Popen(
            [sys.executable, "-m", "jobs.collect", "--source", "site-b", "--embed", "--no-progress"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        ingest_started = time.monotonic()
        # The node goes once the job has committed its first file of the batch: encoding is under way.
        deadline = ingest_started + INGEST_TIMEOUT_S
        while probe.files(model_id)[0] <= files_before and ingest.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the second batch's embedding committed no file in time")
            time.sleep(0.2)
        # The shard on the worker of the pool ``lose`` names, else the one on the other worker.
        placed = {s.node_id: s for s in probe.shard_stats(model_id)}
        other = "cpu" if lose == "gpu" else "gpu"
        pool = lose if probe.workers[lose].node_id in placed else other
        victim = placed[probe.workers[pool].node_id]
        victim_name = index_actor_name(model_id, victim.shard, level="document", shards=SHARDS)
        removal: dict[str, Any] = {
            "pool": pool,
            "shard": victim.shard,
            "node": victim.node_id,
            "pid_before": victim.pid,
            "ingest_running": ingest.poll() is None,
            "files_committed_before": probe.files(model_id)[0] - files_before,
            "after_s": round(time.monotonic() - ingest_started, 1),
        }
        removed_at = time.monotonic()
        probe.cluster.remove_node(probe.workers[pool], allow_graceful=False)
        # A replacement joins, as an autoscaler would add one for the actors left pending.
        probe.workers[pool] = probe._add(pool)
        removal["replacement"] = probe.workers[pool].node_id

        # Alive again: a new process on a live node, answering stats.
        alive = None
        while alive is None:
            if time.monotonic() - removed_at > RECOVERY_TIMEOUT_S:
                raise TimeoutError(f"shard {victim_name} not alive again after {RECOVERY_TIMEOUT_S} s")
            found = _alive_actor(victim_name)
            if found and found["node"] != victim.node_id and found["pid"] != victim.pid:
                try:
                    if ray.get(probe.shards(model_id)[victim.shard].stats.remote(), timeout=5).ready:
                        alive = found
                except (ray.exceptions.RayError, TimeoutError):
                    pass
            if alive is None:
                time.sleep(0.2)
        removal["alive_s"] = round(time.monotonic() - removed_at, 1)
        removal["new_node"] = alive["node"]
        removal["restarts"] = alive["restarts"]

        ingest_rc = ingest.wait(timeout=max(1.0, INGEST_TIMEOUT_S - (time.monotonic() - ingest_started)))
        log.close()
        removal["ingest_rc"] = ingest_rc
        removal["ingest_s"] = round(time.monotonic() - ingest_started, 1)
        if ingest_rc != 0:
            lines = (work / "ingest.log").read_text(errors="replace").splitlines()
            removal["ingest_tail"] = [line for line in lines if "[state-dump]" not in line][-40:]
        # Caught up: every shard at the manifest's last file, holding every embedded document.
        _, last_file = probe.files(model_id)
        ids = probe.embedded_ids(model_id)
        while True:
            stats = probe.shard_stats(model_id)
            if all(s.ready and s.index.watermark >= last_file for s in stats) and sum(
                s.index.size for s in stats
            ) >= len(ids):
                break
            if time.monotonic() - removed_at > RECOVERY_TIMEOUT_S:
                raise TimeoutError(
                    f"shards not caught up to file {last_file}: "
                    f"{[(s.index.watermark, s.index.size, s.last_error) for s in stats]}"
                )
            time.sleep(0.2)
        removal["caught_up_s"] = round(time.monotonic() - removed_at, 1)
        victim_after = stats[victim.shard]
        removal["restored_from"] = victim_after.restored_from
        removal["pid_after"] = victim_after.pid
        out["removal"] = removal

        held = probe.indexed(model_id, ids)
        union = [i for part in held for i in part]
        second_ids = ids - first_ids
        out["final"] = {
            "documents": int(probe.sql("SELECT count(*) FROM documents")[0][0]),
            "vectors": len(ids),
            "second_batch": len(second_ids),
            "files": probe.files(model_id)[0],
            "indexed": len(union),
            "indexed_distinct": len(set(union)),
            "lost": len(ids - set(union)),
            "extra": len(set(union) - ids),
            "duplicated": len(union) - len(set(union)),
            "shard_sizes": [s.index.size for s in stats],
            "shard_nodes": [s.node_id for s in stats],
            "search": _search_hits(probe, probe.titles(second_ids, SEARCHED_TITLES)),
            "search_first": _search_hits(probe, probe.titles(first_ids, 4)),
        }
        out["embed_runs"] = probe.embed_runs()
        out["seconds"] = round(time.monotonic() - started, 1)
    finally:
        if ingest is not None and ingest.poll() is None:
            ingest.kill()  # the probe failed while the second driver ran
            ingest.wait()
        probe.stop()
    return out


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[2:] not in ([], ["gpu"], ["cpu"]):
        print("usage: python -m tests.support.cluster_probe DATABASE_URL WORK_DIR [gpu|cpu]", file=sys.stderr)
        return 2
    # This process starts its own cluster: never join one named by the environment.
    os.environ.pop("RAY_ADDRESS", None)
    for key in [k for k in os.environ if k.startswith("PULSE_")]:
        del os.environ[key]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    work = Path(argv[1])
    work.mkdir(parents=True, exist_ok=True)
    result = run(argv[0], work, *argv[2:])
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
