"""Collect -> embed -> index -> search on a simulated three-node Ray cluster, then kill parts of it while
more batches are ingested, and count what every kill lost or duplicated (issue 20, chaos items a-c, g and
the trend clusterer's catch-up).

Used by ``tests/chaos/test_cluster_kills.py`` in a subprocess (one process holds one Ray cluster; the test
session may hold one already)::

    python -m tests.support.cluster_probe DATABASE_URL WORK_DIR [SCENARIO[,SCENARIO...]] [gpu|cpu]

SCENARIO (default ``node``), run one after another, each during its own batch's ingest (``a+b+c`` kills
the parts one after another at once during one batch, each part's recovery timed on its own):

- ``shard``: ``ray.kill`` an index shard actor (detached, ``max_restarts=-1``: Ray restarts it; it loads
  its snapshot and catches up from the manifest);
- ``node``: remove the worker node hosting a shard without grace (as a crashed machine) and add a
  replacement of the same kind; ``gpu`` (default) or ``cpu`` names the pool whose node goes;
- ``encoder``: SIGKILL the process of the running embed job's encoder actor (Ray Data's ``_MapWorker``
  of ``EncodeBatch``, found in the GCS actor table: ``ray.util.state.list_actors`` needs the dashboard,
  which the simulated head leaves out); Ray restarts it and retries its blocks;
- ``keyword``: ``ray.kill`` the keyword index actor (it rereads the collection from PostgreSQL);
- ``clusterer``: ``ray.kill`` every trend clusterer actor (started as ``pulse up`` starts them:
  ``cluster.top.trends.start_trends``) while they follow the manifest.

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

For each scenario a second driver (``python -m jobs.collect --source <batch> --embed``, as a user runs
it) collects and embeds a new batch; once it has committed a vector file the part is killed, while a
background loop sends ``/v1/search`` (hybrid: both indexes) over HTTP and counts answers that failed
(non-2xx or no answer) and answers that said ``partial: true`` (degraded). Recovery is the time from the
kill to the killed part answering again (a new process, ready) with at least what it held at the kill
(its manifest watermark), or, for the encoder, to the job's next committed file. After the batch the
probe waits for every index to reach the manifest's last file and compares what they hold with
PostgreSQL's ground truth (documents with a vector): lost, duplicated and unknown ids. The last line of
stdout is one JSON object with the figures.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
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
#: Pages of a kill's batch (the node loss keeps its larger one): several files, so the kill lands mid-job.
KILL_BATCH = {"node": SECOND_BATCH, "encoder": 96}
DEFAULT_KILL_BATCH = 64
SCENARIOS = ("shard", "node", "encoder", "keyword", "clusterer")
#: Seconds between two searches of the background load (gentle: two cores run the whole cluster).
SEARCH_PAUSE_S = 0.1
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
    def start(self, *, trends: bool = False) -> dict[str, Any]:
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
                "PULSE_TRENDS__ENABLED": "true" if trends else "false",
                # The clusterers keep every document (the site's articles span years) and re-cluster
                # often enough that a small batch gets stories.
                "PULSE_TRENDS__WINDOW_DAYS": "100000",
                "PULSE_TRENDS__RECLUSTER_EVERY": "40",
                "PULSE_TRENDS__POLL_INTERVAL_S": "1",
                "PULSE_TRENDS__SNAPSHOT_INTERVAL_S": "2",
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

    # ------------------------------------------------------------------------- the other parts
    def keyword(self, model_id: int) -> Any:
        import ray

        from cluster.ground.constants import keyword_actor_name

        return ray.get_actor(keyword_actor_name(model_id), self.namespace)

    def clusterer_names(self) -> list[str]:
        import ray

        from actors.trend_supervisor import TREND_SUPERVISOR_NAME
        from cluster.ground.constants import TREND_ACTOR_PREFIX

        return sorted(
            e["name"]
            for e in ray.util.list_named_actors(all_namespaces=True)
            if e["namespace"] == self.namespace
            and e["name"].startswith(f"{TREND_ACTOR_PREFIX}-")
            and e["name"] != TREND_SUPERVISOR_NAME
        )

    def clusterer_stats(self, timeout_s: float = 10.0) -> dict[str, Any]:
        import ray

        names = self.clusterer_names()
        handles = [ray.get_actor(n, self.namespace) for n in names]
        return dict(zip(names, ray.get([h.stats.remote() for h in handles], timeout=timeout_s), strict=True))

    def clusterer_ids(self) -> list[int]:
        """Every document id in the clusterers' windows (one entry per window row)."""
        import ray

        ids: list[int] = []
        for name in self.clusterer_names():
            window = ray.get(ray.get_actor(name, self.namespace).window.remote(None, None), timeout=30)
            ids.extend(int(i) for i in window[0])
        return ids


def _actors(alive_only: bool = True) -> list[dict[str, Any]]:
    """The GCS actor table (name, class, repr name, resources, node, pid, restarts), read without the
    dashboard's state API."""
    from ray._private import state
    from ray.core.generated import gcs_pb2

    accessor = state.state._connect_and_get_accessor()
    rows = []
    for raw in accessor.get_actor_table(None, "ALIVE" if alive_only else None):
        a = gcs_pb2.ActorTableData.FromString(raw)
        rows.append(
            {
                "name": a.name,
                "class": a.class_name,
                "repr": a.repr_name,
                "resources": dict(a.required_resources),
                "node": a.address.node_id.hex(),
                "pid": int(a.pid),
                "restarts": int(a.num_restarts),
            }
        )
    return rows


def _alive_actor(name: str) -> dict[str, Any] | None:
    """The GCS's record of the named actor (this cluster holds one namespace of Pulse's) if it is ALIVE:
    its node id, pid and restarts; else None."""
    for actor in _actors():
        if actor["name"] == name:
            return actor
    return None


def _encoders() -> list[dict[str, Any]]:
    """The running embed job's encoder actors (Ray Data map workers of ``EncodeBatch``)."""
    alive = _actors()
    named = [a for a in alive if "EncodeBatch" in a["repr"] or "EncodeBatch" in a["class"]]
    # Else by what only the encoder asks for: the GPU (the probe's encoders plan one per GPU).
    return named or [a for a in alive if a["resources"].get("GPU", 0) > 0 and not a["name"]]


def _search_hits(probe: Probe, pairs: list[tuple[int, str]]) -> dict[str, Any]:
    found = [doc_id in probe.search(title) for doc_id, title in pairs]
    return {"asked": len(pairs), "found": sum(found)}


class SearchLoad:
    """A background loop of ``/v1/search`` (hybrid) over HTTP: answers, failures (non-2xx or no answer)
    and degraded answers (2xx saying ``partial: true``)."""

    def __init__(self, api: str, queries: list[str]) -> None:
        self.api = api
        self.queries = queries or ["news"]
        self.requests = self.failed = self.degraded = 0
        self.samples: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="search-load", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=15) as client:
            i = 0
            while not self._stop.is_set():
                query = self.queries[i % len(self.queries)]
                i += 1
                self.requests += 1
                try:
                    resp = client.get(f"{self.api}/v1/search", params={"q": query, "k": 5})
                    if resp.status_code // 100 != 2:
                        self.failed += 1
                        self._sample(f"{resp.status_code} {resp.text[:160]}")
                    elif resp.json().get("partial"):
                        self.degraded += 1
                except (httpx.HTTPError, ValueError) as exc:
                    self.failed += 1
                    self._sample(f"{type(exc).__name__}: {exc}")
                self._stop.wait(SEARCH_PAUSE_S)

    def _sample(self, line: str) -> None:
        if len(self.samples) < 5:
            self.samples.append(line)

    def __enter__(self) -> SearchLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def figures(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failed_requests": self.failed,
            "degraded_requests": self.degraded,
            "failure_samples": self.samples,
        }


def _wait(what: str, check: Any, since: float, timeout_s: float = RECOVERY_TIMEOUT_S) -> float:
    """Poll ``check()`` (errors count as not yet) until true; seconds since ``since``."""
    import ray

    last = ""
    while True:
        try:
            if check():
                return round(time.monotonic() - since, 2)
        except (ray.exceptions.RayError, TimeoutError, ValueError) as exc:
            last = f"{type(exc).__name__}: {str(exc)[:200]}"
        if time.monotonic() - since > timeout_s:
            raise TimeoutError(f"{what} not done after {timeout_s} s ({last})")
        time.sleep(0.2)


def _restarted(name: str, old_pid: int, ready: Any) -> Any:
    """A check: the named actor is alive in a new process and ``ready()`` says it holds enough."""

    def check() -> bool:
        found = _alive_actor(name)
        return bool(found and found["pid"] != old_pid and ready())

    return check


# --------------------------------------------------------------------------------- the kills
def _kill_shard(probe: Probe, model_id: int, rec: dict[str, Any]) -> Any:
    import ray

    from cluster.ground.constants import index_actor_name

    victim = probe.shard_stats(model_id)[0]
    name = index_actor_name(model_id, victim.shard, level="document", shards=SHARDS)
    held = victim.index.watermark
    rec["killed"] = {"actor": name, "pid": victim.pid, "node": victim.node_id, "watermark": held}
    ray.kill(probe.shards(model_id)[victim.shard], no_restart=False)

    def ready() -> bool:
        s = ray.get(probe.shards(model_id)[victim.shard].stats.remote(), timeout=5)
        rec["restored_from"] = s.restored_from
        return bool(s.ready and s.index.watermark >= held)

    return _restarted(name, victim.pid, ready)


def _kill_keyword(probe: Probe, model_id: int, rec: dict[str, Any]) -> Any:
    import ray

    from cluster.ground.constants import keyword_actor_name

    name = keyword_actor_name(model_id)
    before = ray.get(probe.keyword(model_id).stats.remote(), timeout=10)
    rec["killed"] = {"actor": name, "pid": before.pid, "watermark": before.watermark, "size": before.size}
    ray.kill(probe.keyword(model_id), no_restart=False)

    def ready() -> bool:
        s = ray.get(probe.keyword(model_id).stats.remote(), timeout=5)
        return bool(s.ready and s.watermark >= before.watermark and s.size >= before.size)

    return _restarted(name, before.pid, ready)


def _kill_encoder(probe: Probe, model_id: int, rec: dict[str, Any]) -> Any:
    encoders = _encoders()
    if not encoders:
        raise RuntimeError(f"no encoder actor alive to kill; actors: {[a['repr'] for a in _actors()]}")
    victim = encoders[0]
    files_at_kill = probe.files(model_id)[0]
    rec["killed"] = {
        "actor": victim["repr"] or victim["class"],
        "pid": victim["pid"],
        "node": victim["node"],
        "files_at_kill": files_at_kill,
    }
    os.kill(victim["pid"], signal.SIGKILL)  # every simulated node is a raylet on this machine
    ingest = rec["_ingest"]

    def check() -> bool:
        # Encoding goes on: a file committed after the kill (or the job ended, checked afterwards).
        return probe.files(model_id)[0] > files_at_kill or ingest.poll() is not None

    return check


def _kill_clusterers(probe: Probe, model_id: int, rec: dict[str, Any]) -> Any:
    import ray

    stats = probe.clusterer_stats()
    if not stats:
        raise RuntimeError("no trend clusterer to kill")
    rec["killed"] = {
        n: {"pid": s.pid, "watermark": s.watermark, "window": s.window} for n, s in stats.items()
    }
    for name in stats:
        ray.kill(ray.get_actor(name, probe.namespace), no_restart=False)

    def check() -> bool:
        now = probe.clusterer_stats(timeout_s=5)
        return all(
            name in now
            and now[name].pid != old.pid
            and now[name].ready
            and now[name].watermark >= old.watermark
            and now[name].window >= old.window
            for name, old in stats.items()
        )

    return check


def _remove_node(probe: Probe, model_id: int, rec: dict[str, Any], lose: str) -> Any:
    from cluster.ground.constants import index_actor_name

    # The shard on the worker of the pool ``lose`` names, else the one on the other worker.
    placed = {s.node_id: s for s in probe.shard_stats(model_id)}
    other = "cpu" if lose == "gpu" else "gpu"
    pool = lose if probe.workers[lose].node_id in placed else other
    victim = placed[probe.workers[pool].node_id]
    name = index_actor_name(model_id, victim.shard, level="document", shards=SHARDS)
    rec.update({"pool": pool, "shard": victim.shard, "node": victim.node_id, "pid_before": victim.pid})
    rec["killed"] = {"node": victim.node_id, "actor": name, "pid": victim.pid}
    probe.cluster.remove_node(probe.workers[pool], allow_graceful=False)
    # A replacement joins, as an autoscaler would add one for the actors left pending.
    probe.workers[pool] = probe._add(pool)
    rec["replacement"] = probe.workers[pool].node_id

    def check() -> bool:
        import ray

        found = _alive_actor(name)
        if not (found and found["node"] != victim.node_id and found["pid"] != victim.pid):
            return False
        if not ray.get(probe.shards(model_id)[victim.shard].stats.remote(), timeout=5).ready:
            return False
        rec.update({"new_node": found["node"], "restarts": found["restarts"]})
        return True

    return check


def _kill(probe: Probe, model_id: int, part: str, rec: dict[str, Any], lose: str) -> Any:
    """Kill one part; the check that says it recovered."""
    if part == "shard":
        return _kill_shard(probe, model_id, rec)
    if part == "keyword":
        return _kill_keyword(probe, model_id, rec)
    if part == "encoder":
        return _kill_encoder(probe, model_id, rec)
    if part == "clusterer":
        return _kill_clusterers(probe, model_id, rec)
    return _remove_node(probe, model_id, rec, lose)


# ------------------------------------------------------------------------------ one scenario
def _caught_up(probe: Probe, model_id: int, trends: bool) -> Any:
    import ray

    def check() -> bool:
        _, last_file = probe.files(model_id)
        n = len(probe.embedded_ids(model_id))
        stats = probe.shard_stats(model_id)
        if not (all(s.ready and s.index.watermark >= last_file for s in stats)):
            return False
        if sum(s.index.size for s in stats) < n:
            return False
        kw = ray.get(probe.keyword(model_id).stats.remote(), timeout=5)
        if not (kw.ready and kw.watermark >= last_file and kw.size >= n):
            return False
        if trends:
            tr = probe.clusterer_stats(timeout_s=5)
            if not tr or not all(s.ready and s.watermark >= last_file for s in tr.values()):
                return False
        return True

    return check


def _count(probe: Probe, model_id: int, trends: bool) -> dict[str, Any]:
    """What every index holds against PostgreSQL's documents with a vector."""
    import ray

    ids = probe.embedded_ids(model_id)
    held = probe.indexed(model_id, ids)
    union = [i for part in held for i in part]
    keyword = [int(i) for i in ray.get(probe.keyword(model_id).document_ids.remote(), timeout=30)]
    out: dict[str, Any] = {
        "documents": int(probe.sql("SELECT count(*) FROM documents")[0][0]),
        "vectors": len(ids),
        "indexed": len(union),
        "indexed_distinct": len(set(union)),
        "shard_sizes": [len(part) for part in held],
        "vector_lost": len(ids - set(union)),
        "vector_duplicated": len(union) - len(set(union)),
        "keyword_indexed": len(keyword),
        "keyword_lost": len(ids - set(keyword)),
        "keyword_duplicated": len(keyword) - len(set(keyword)),
        "extra": len((set(union) | set(keyword)) - ids),
    }
    lost = out["vector_lost"] + out["keyword_lost"]
    duplicated = out["vector_duplicated"] + out["keyword_duplicated"]
    if trends:
        window = probe.clusterer_ids()
        out["trend_window"] = len(window)
        out["trend_lost"] = len(ids - set(window))
        out["trend_duplicated"] = len(window) - len(set(window))
        out["trend_assignments"] = int(probe.sql("SELECT count(*) FROM document_topics")[0][0])
        out["story_assignments"] = int(probe.sql("SELECT count(*) FROM story_documents")[0][0])
        lost += out["trend_lost"]
        duplicated += out["trend_duplicated"]
    out["lost"] = lost
    out["duplicated"] = duplicated
    return out


def _scenario(
    probe: Probe, model_id: int, scenario: str, start: int, lose: str, trends: bool
) -> dict[str, Any]:
    """Ingest a new batch through a second driver, kill the scenario's part (``a+b``: each part, one
    after another, at once) once a file of it is committed, under a background search load; then count."""
    parts = scenario.split("+")
    count = max(KILL_BATCH.get(part, DEFAULT_KILL_BATCH) for part in parts)
    name = f"batch-{scenario.replace('+', '-')}"
    before_ids = probe.embedded_ids(model_id)
    probe.pulse("sources", "add", name, "sitemap", probe.sitemap(start, count))
    files_before, _ = probe.files(model_id)
    rec: dict[str, Any] = {"scenario": scenario, "pages": count}
    log_path = probe.work / f"ingest-{scenario}.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        ingest = subprocess.Popen(
            [sys.executable, "-m", "jobs.collect", "--source", name, "--embed", "--no-progress"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        rec["_ingest"] = ingest
        queries = [title for _, title in probe.titles(before_ids, 8)]
        try:
            with SearchLoad(probe.api, queries) as load:
                # The part goes once the job has committed its first file of the batch: encoding is under way.
                _wait(
                    f"a first file of {name}",
                    lambda: probe.files(model_id)[0] > files_before or ingest.poll() is not None,
                    started,
                    INGEST_TIMEOUT_S,
                )
                rec["ingest_running"] = ingest.poll() is None
                rec["files_committed_before"] = probe.files(model_id)[0] - files_before
                rec["after_s"] = round(time.monotonic() - started, 1)
                killed_at = time.monotonic()
                # One part: its figures in ``rec``; several: each part's in ``rec["parts"][part]``.
                recs = {part: rec if len(parts) == 1 else {"_ingest": ingest} for part in parts}
                checks = {part: _kill(probe, model_id, part, recs[part], lose) for part in parts}
                for part, recovered in checks.items():
                    recs[part]["recovery_s"] = _wait(f"recovery from the {part} kill", recovered, killed_at)
                if len(parts) > 1:
                    rec["parts"] = {
                        part: {k: v for k, v in r.items() if k != "_ingest"} for part, r in recs.items()
                    }
                    rec["recovery_s"] = max(r["recovery_s"] for r in recs.values())
                left = max(1.0, INGEST_TIMEOUT_S - (time.monotonic() - started))
                rec["ingest_rc"] = ingest.wait(timeout=left)
                rec["ingest_s"] = round(time.monotonic() - started, 1)
                rec["caught_up_s"] = _wait(
                    "every index at the manifest's last file", _caught_up(probe, model_id, trends), killed_at
                )
            rec.update(load.figures())
        finally:
            if ingest.poll() is None:
                ingest.kill()  # the probe failed while the second driver ran
                ingest.wait()
    del rec["_ingest"]
    if rec["ingest_rc"] != 0:
        lines = log_path.read_text(errors="replace").splitlines()
        rec["ingest_tail"] = [line for line in lines if "[state-dump]" not in line][-40:]
    rec.update(_count(probe, model_id, trends))
    batch = probe.embedded_ids(model_id) - before_ids
    rec["batch"] = len(batch)
    rec["files"] = probe.files(model_id)[0] - files_before
    if "encoder" in parts:  # files the job committed after its encoder was killed
        killed = rec["parts"]["encoder"]["killed"] if len(parts) > 1 else rec["killed"]
        rec["files_after_kill"] = probe.files(model_id)[0] - killed["files_at_kill"]
        rec["encoders_after"] = len(_encoders())
    rec["search"] = _search_hits(probe, probe.titles(batch, 12 if scenario == "node" else 4))
    if scenario == "node":
        stats = probe.shard_stats(model_id)
        after = stats[rec["shard"]]
        rec.update(
            {
                "restored_from": after.restored_from,
                "pid_after": after.pid,
                "shard_nodes": [s.node_id for s in stats],
            }
        )
    rec["seconds"] = round(time.monotonic() - started, 1)
    return rec


def run(database_url: str, work: Path, scenarios: list[str], lose: str = "gpu") -> dict[str, Any]:
    import ray

    trends = any("clusterer" in scenario.split("+") for scenario in scenarios)
    probe = Probe(database_url, work)
    out: dict[str, Any] = {"scenarios": scenarios}
    started = time.monotonic()
    try:
        out["nodes"] = probe.start(trends=trends)
        # ---- A: collect -> embed -> index -> search through the user's entry points
        probe.pulse("sources", "add", "site-a", "sitemap", probe.sitemap(0, FIRST_BATCH))
        probe.pulse("collect", "--no-progress")
        probe.pulse("embed", "--no-progress")
        model_id = probe.model_id()
        first_ids = probe.embedded_ids(model_id)
        probe.deploy()
        if trends:
            from cluster.ground.settings import get_settings
            from cluster.top.trends import start_trends

            out["clusterers"] = start_trends(get_settings(), database_url)  # as `pulse up` does
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
        _wait("the first batch in every index", _caught_up(probe, model_id, trends), time.monotonic())
        # Every shard has written a snapshot before a kill (a restart loads it, then catches up).
        ray.get([a.snapshot.remote() for a in probe.shards(model_id)], timeout=30)

        # ---- B: one new batch per scenario, ingested by another driver; the part is killed meanwhile
        out["kills"] = []
        start = FIRST_BATCH
        for scenario in scenarios:
            out["kills"].append(_scenario(probe, model_id, scenario, start, lose, trends))
            start += max(KILL_BATCH.get(part, DEFAULT_KILL_BATCH) for part in scenario.split("+"))
        out["embed_runs"] = probe.embed_runs()
        out["final"] = _count(probe, model_id, trends)
        out["final"]["search_first"] = _search_hits(probe, probe.titles(first_ids, 4))
        out["seconds"] = round(time.monotonic() - started, 1)
    finally:
        probe.stop()
    return out


def main(argv: list[str]) -> int:
    scenarios = argv[2].split(",") if len(argv) > 2 else ["node"]
    lose = argv[3:] or ["gpu"]
    if (
        len(argv) not in (2, 3, 4)
        or not {p for s in scenarios for p in s.split("+")} <= set(SCENARIOS)
        or lose not in (["gpu"], ["cpu"])
    ):
        print(
            "usage: python -m tests.support.cluster_probe DATABASE_URL WORK_DIR "
            f"[SCENARIO[,SCENARIO...]] [gpu|cpu]; scenarios: {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
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
    result = run(argv[0], work, scenarios, lose[0])
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
