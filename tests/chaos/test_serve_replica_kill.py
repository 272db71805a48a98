"""A Serve replica killed under steady HTTP load (issue 20, part 1 (d)).

The search application (two ``SearchIngress`` replicas over a small embedded corpus) and the CMS
application (two ``CmsIngress`` replicas, published items) run on the session's Ray behind Serve's proxy.
Three client threads loop over ``/v1/search`` and anonymous GETs of published CMS items; after a few
seconds one replica of each application is killed (``ray.kill`` of its named actor, no restart by Ray:
Serve's controller must notice and replace it). The test proves:

- no request fails while a replica is lost and replaced: no 5xx, no dropped connection (the other replica
  serves; requests sent to the dead one are retried by Serve, not returned as errors);
- each application is back to two running replicas by itself (``recovery_s``: kill -> both applications
  have two RUNNING replicas and the killed ones are gone);
- the index behind the search application lost nothing (``/readyz`` vectors before and after);
- a writer creating CMS items the whole time, each with its own ``Idempotency-Key`` and retrying it after a
  dropped connection, a 409 or a 5xx, ends with every item stored exactly once: a write whose replica died
  after committing, replayed by HAProxy or retried by the client, is answered from its kept answer
  (``serve_apps/cms/idempotency.py``) instead of being applied again.

Figure ``chaos`` (scenario ``serve_replica``): requests, failed_requests, recovery_s, lost, duplicated,
requests_during_recovery, and the writer's writes, write_retries, writes_replayed, writes_lost and
writes_duplicated. Measured 143 s with setup and teardown (65 + 16 + 62 s) on 2 cores shared at load
average ~20 (embedding ~330 documents, two applications starting and stopping).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray
from ray import serve

from jobs.embed.pipeline import EmbedJobConfig, run_embed
from jobs.ingest.loader import ingest_file
from tests.conftest import CMS_TABLES, TABLES, truncate
from tests.integration.helpers import sample_subset
from tests.support.cms_service import login, publish_items
from tests.support.http_load import HttpLoad, by_route, failed

pytestmark = [pytest.mark.chaos]

PORT = 8012  # the session's Serve proxy (the e2e modules use the same one)
NAMESPACE = "pulse-chaos-serve"
SEARCH_APP, SEARCH_PREFIX = "search-chaos", "/chaos-search"
CMS_APP, CMS_PREFIX = "cms-chaos", "/chaos-cms"
BASE = f"http://127.0.0.1:{PORT}"
PASSWORD = "correct horse battery"
SECRET = "chaos-secret-" + "y" * 40
#: ``(application, deployment)`` whose replicas are killed.
TARGETS = ((SEARCH_APP, "SearchIngress"), (CMS_APP, "CmsIngress"))


def replica_names(app: str, deployment: str) -> set[str]:
    """The named actors of a deployment's replicas (Serve names them ``SERVE_REPLICA::<app>#<dep>#<id>``)."""
    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return {
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == "serve" and a["name"].startswith(prefix)
    }


def running(app: str, deployment: str) -> int:
    """The deployment's RUNNING replicas, 0 while any other replica is starting or stopping."""
    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return 0
    states = status.deployments[deployment].replica_states
    return 0 if set(states) - {"RUNNING"} else int(states.get("RUNNING", 0))


@pytest.fixture(scope="module")
def apps(
    ray_session: None, database_url: str, engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[int]]:  # type: ignore[no-untyped-def]
    """Both applications with two ingress replicas each; the ids of two published CMS items."""
    from cluster.ground.constants import SEARCH_APP_IMPORT_PATH
    from cluster.top.serve_config import load_builder

    truncate(engine, TABLES)
    truncate(engine, CMS_TABLES)
    tmp = tmp_path_factory.mktemp("serve-chaos")
    corpus = sample_subset(tmp / "corpus.jsonl", n_other=300)
    ingest_file(corpus, database_url=database_url, source_name="huffpost_2018")
    storage = str(tmp / "storage")
    run_embed(
        EmbedJobConfig(database_url=database_url, storage_uri=storage, model_name="default", progress=False)
    )
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    search = load_builder(SEARCH_APP_IMPORT_PATH)(
        {
            "database_url": database_url,
            "storage_uri": storage,
            "namespace": NAMESPACE,
            "ingress_replicas": 2,
            "graceful_shutdown_timeout_s": 1,
            "index": {"poll_interval_s": 1, "shards": 1, "num_cpus": 0.1, "keyword_num_cpus": 0.1},
            "search": {"deadline_ms": 5000},
        }
    )
    cms = load_builder("serve_apps.cms.app:app_builder")(
        {
            "database_url": database_url,
            "jwt_secret": SECRET,
            "namespace": NAMESPACE,
            "replicas": 2,
            "graceful_shutdown_timeout_s": 1,
            "scheduler": False,
            "embed_on_publish": False,
            "admin_email": "admin@pulse.test",
            "admin_password": PASSWORD,
            "rate_per_key": "100000/minute",
            "rate_per_ip": "100000/minute",
            "storage_uri": storage,
        }
    )
    serve.run(search, name=SEARCH_APP, route_prefix=SEARCH_PREFIX)
    serve.run(cms, name=CMS_APP, route_prefix=CMS_PREFIX)
    try:
        deadline = time.monotonic() + 120
        while httpx.get(f"{BASE}{SEARCH_PREFIX}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the search application is not ready after 120 s"
            time.sleep(0.5)
        ids = publish_items(
            f"{BASE}{CMS_PREFIX}",
            ["Students march against gun violence", "A market reopens after the storm"],
            password=PASSWORD,
        )
        yield ids
    finally:
        for app in (SEARCH_APP, CMS_APP):
            serve.delete(app)
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["namespace"] == NAMESPACE:  # the index shards and the keyword actor of this module
                with contextlib.suppress(ValueError):
                    ray.kill(ray.get_actor(actor["name"], namespace=NAMESPACE), no_restart=True)


class RetryingWriter(threading.Thread):
    """Creates CMS items one after another, each with a fresh ``Idempotency-Key``, retrying the same key
    until it is answered 201 (as a careful client does); remembers every title it was told is stored."""

    RETRY_STATUSES = frozenset({409, 500, 502, 503, 504})

    def __init__(self, base: str, token: str) -> None:
        super().__init__(daemon=True)
        self.base, self.token = base, token
        self.prefix = f"Chaos write {uuid.uuid4().hex[:8]}"
        self.stored: list[str] = []
        self.unanswered: list[str] = []
        self.retries = self.replayed = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=15) as client:
            n = 0
            while not self.stopping.is_set():
                n += 1
                self.write(client, f"{self.prefix} {n}")
                time.sleep(0.05)

    def write(self, client: httpx.Client, title: str) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": str(uuid.uuid4())}
        for _ in range(60):
            try:
                resp = client.post(f"{self.base}/items", json={"title_en": title}, headers=headers)
            except httpx.TransportError:
                resp = None
            if resp is not None and resp.status_code == 201:
                self.stored.append(title)
                self.replayed += resp.headers.get("idempotent-replayed") == "true"
                return
            if resp is not None and resp.status_code not in self.RETRY_STATUSES:
                break
            self.retries += 1
            time.sleep(0.25)
        self.unanswered.append(title)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=120)

    def outcome(self) -> dict[str, Any]:
        """The writer's figures, with what the CMS holds of its titles (read over HTTP as the admin)."""
        held: list[str] = []
        cursor = None
        while True:
            params = {"q": self.prefix, "limit": 100, **({"cursor": cursor} if cursor else {})}
            page = httpx.get(
                f"{self.base}/items", params=params, headers={"Authorization": f"Bearer {self.token}"}
            ).json()
            held += [i["en"]["title"] for i in page["items"] if i["en"]["title"].startswith(self.prefix)]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return {
            "writes": len(self.stored),
            "writes_unanswered": len(self.unanswered),
            "write_retries": self.retries,
            "writes_replayed": self.replayed,
            "writes_lost": len(set(self.stored) - set(held)),
            "writes_duplicated": len(held) - len(set(held)),
        }


def _kill_and_recover(ids: list[int], *, kills: int, steady_s: float) -> dict[str, Any]:
    requests = [
        (
            "search",
            f"{BASE}{SEARCH_PREFIX}/v1/search",
            {"q": "students march against gun violence", "k": "5"},
        ),
        ("cms_item", f"{BASE}{CMS_PREFIX}/items/{ids[0]}", {}),
        ("search", f"{BASE}{SEARCH_PREFIX}/v1/search", {"q": "a market after the storm", "k": "5"}),
        ("cms_list", f"{BASE}{CMS_PREFIX}/items", {"status": "published"}),
        ("cms_item", f"{BASE}{CMS_PREFIX}/items/{ids[1]}", {}),
    ]
    vectors_before = httpx.get(f"{BASE}{SEARCH_PREFIX}/readyz", timeout=10).json()["vectors"]
    load = HttpLoad(requests, threads=3).start()
    writer = RetryingWriter(
        f"{BASE}{CMS_PREFIX}", login(f"{BASE}{CMS_PREFIX}", "admin", PASSWORD)["access_token"]
    )
    writer.start()
    recoveries = []
    windows = []
    try:
        time.sleep(steady_s)
        for _ in range(kills):
            before = {target: replica_names(*target) for target in TARGETS}
            victims = {target: sorted(names)[0] for target, names in before.items()}
            killed_at = time.monotonic()
            for victim in victims.values():
                ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
            deadline = killed_at + 90
            # Recovered: the killed replica is gone, a new one exists, and Serve counts two RUNNING again.
            while not all(
                victims[target] not in (now := replica_names(*target))
                and now - before[target]
                and running(*target) == 2
                for target in TARGETS
            ):
                assert time.monotonic() < deadline, f"not back to 2 replicas 90 s after killing {victims}"
                time.sleep(0.1)
            recovered_at = time.monotonic()
            recoveries.append(recovered_at - killed_at)
            windows.append((killed_at, recovered_at))
            time.sleep(steady_s)
    finally:
        outcomes = load.stop()
        writer.stop()
    ready = httpx.get(f"{BASE}{SEARCH_PREFIX}/readyz", timeout=10).json()
    bad = failed(outcomes)
    during = [o for o in outcomes if any(lo <= o.at <= hi for lo, hi in windows)]
    return {
        "requests": len(outcomes),
        "statuses": by_route(outcomes),
        "failed_requests": len(bad),
        "failed_detail": sorted({(o.route, o.status, o.code) for o in bad}),
        "requests_during_recovery": len(during),
        "recovery_s": round(max(recoveries), 2),
        "kills": kills,
        "replicas_killed_per_kill": len(TARGETS),
        "lost": vectors_before - ready["vectors"],
        "duplicated": max(0, ready["vectors"] - vectors_before),
        "routes": sorted({o.route for o in outcomes}),
        **writer.outcome(),
    }


def test_a_killed_replica_under_load_fails_no_request(apps: list[int], figure: Any) -> None:
    result = _kill_and_recover(apps, kills=1, steady_s=3)
    figure("chaos", scenario="serve_replica", **{k: v for k, v in result.items() if k != "failed_detail"})
    assert result["failed_requests"] == 0, result["failed_detail"]
    assert result["requests_during_recovery"] > 0 and result["routes"] == ["cms_item", "cms_list", "search"]
    assert result["writes"] > 0 and result["writes_unanswered"] == 0
    assert result["writes_lost"] == 0 and result["writes_duplicated"] == 0
    assert result["lost"] == 0 and result["duplicated"] == 0
    assert result["recovery_s"] < 60


@pytest.mark.long
def test_replicas_killed_five_times_under_load_fail_no_request(apps: list[int], figure: Any) -> None:
    result = _kill_and_recover(apps, kills=5, steady_s=5)
    figure("chaos", scenario="serve_replica_x5", **{k: v for k, v in result.items() if k != "failed_detail"})
    assert result["failed_requests"] == 0, result["failed_detail"]
    assert result["lost"] == 0 and result["duplicated"] == 0
    assert result["writes"] > 0 and result["writes_unanswered"] == 0
    assert result["writes_lost"] == 0 and result["writes_duplicated"] == 0
