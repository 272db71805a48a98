"""Soak: a bounded mixed load on 127.0.0.1 for ``--duration`` seconds while collection and embedding run,
with per-route latency per minute and the memory of every Ray process of the platform.

    python bench/soak.py                                   # 600 s at 10 req/s (the issue's soak)
    python bench/soak.py --duration 60 --out soak.json --png soak.png      # CI (tests/e2e/test_soak.py)

**Platform, through the front door** (``front_door.Platform``): a private installation with a fresh
database, its own Ray node, var and storage folders and free ports; `pulse up --no-sample`, then
`pulse ingest` of the bundled sample corpus (``jobs/ingest/sample_data/huffpost_2018.jsonl``; ``--documents``
takes its first N records, the whole file by default) and `pulse embed`, waiting until ``/readyz`` shows
every document in both indexes. Then, over the CMS API: the first admin logs in, creates the five
categories and six tags of ``bench/cms.py``, ``--cms-users`` editors (``POST /v1/cms/users``) and an
API key for the recommendation routes (``POST /v1/cms/keys``); each editor creates ``--items-per-user``
bilingual items (``bench/cms.item_payloads``: BBC News / SIB-200) and publishes every other one
(``POST /items/{id}/transition``); ``SEED_READERS`` simulated readers get ``SEED_EVENTS`` click events
(``POST /v1/events``) so that recommendations are personal from the first request.

**Background work, during the whole load** (``Background``, a thread running `pulse` commands one after
the other until the load ends, then finishing the command it is in): round ``k`` adds a source
``soak-k`` (`pulse sources add soak-k sitemap <site>/articles_sitemap.xml?start=..&count=..`), runs
`pulse collect --source soak-k` (``--pages-per-round`` new pages of a real local web site,
``tests/support/web_site.LocalSite``: BBC News articles in site boilerplate, served from this process on
127.0.0.1, allowed by ``PULSE_COLLECT__ALLOW_NETWORKS``) and then `pulse embed`. Runs of one model are
exclusive, and the CMS scheduler embeds the items the load edits in back-to-back runs: the background runs
`pulse embed --wait 600`, which queues for the model's lock (a plain `pulse embed` is refused at once).

**Load: open loop at ``--rate`` requests/s** (not closed-loop clients): request ``i`` is due at
``t0 + i / rate`` whatever happened to the earlier ones; its route is drawn from ``MIX`` (fixed weights,
seeded); at most ``--max-in-flight`` requests are outstanding (a due request waits for a slot; its
latency counts from its due time, so a server that falls behind is charged for the queue it causes).
One ``httpx.AsyncClient`` (keep-alive), ``REQUEST_TIMEOUT_S`` per request (a timeout is an error). The
first ``--warmup`` seconds are run but not counted (first-request allocations: lazy imports, caches); the
memory "start" is taken when they end. Before the load, the set-up waits until the CMS scheduler has
embedded a first published item (it loads its model then, once: about 800 MB). The mix (share of
requests, route, caller):

==============  =====  =====================================================================  ============
name            share  request                                                                caller
==============  =====  =====================================================================  ============
search          20 %   ``GET /v1/search?q=<a sample headline>&k=10`` (hybrid, the default)    anonymous
document        15 %   ``GET /v1/documents/{id}`` (a random ingested document)                anonymous
cms_read        12 %   ``GET /v1/cms/items/{id}`` (a random seeded item)                      an editor
cms_list         5 %   ``GET /v1/cms/items?status=published&limit=20``                        an editor
cms_write        8 %   ``PATCH /v1/cms/items/{id}`` (``summary_en``; no If-Match)             an editor
trends           8 %   ``GET /v1/trends?limit=10``                                            anonymous
recommend       17 %   ``GET /v1/recommend?user_id=<a reader>&k=10``                          API key
events          15 %   ``POST /v1/events`` (1-5 click events of a reader, fresh event ids)    API key
==============  =====  =====================================================================  ============

Editors take turns (round robin), so each stays under the CMS rate limit per user (600/minute by
default) up to ``--rate`` 100 with 3 editors. The mix provokes no 4xx on purpose: every answer that is
not 2xx/3xx, and every request that gets no answer, is an error.

**Recorded**: per route and per minute (by due time, after the warm-up): requests, errors, p50 and p99
(ms); per route and overall for the whole run; the overall error rate; up to 20 error samples. Memory:
every ``--sample-s`` seconds the RSS (psutil) of every process of this platform's Ray node: the processes
whose ``RAY_TMPDIR`` is this platform's private one (raylet, GCS, dashboard and its agents, log monitor,
Serve's controller, proxy, HAProxy and replicas, the index, keyword, clusterer, profile and scheduler
actors, pooled workers), less this benchmark's own `pulse` commands (job drivers). A process is named by
its Ray title (``ray::ServeReplica:search:SearchDeployment``, ``ray::VectorIndexActor``) or its program
(``raylet``, ``gcs_server``, ``dashboard``...), with the actor's Ray name where the state API gives it.
Drift = (end - start) / start, start at the end of the warm-up, end when the load stops; verdict "flat"
when |drift| <= 10 %. Listed apart and left out of the verdict: processes that started during the run
(job workers), that ended during it, and pooled workers that were idle (``ray::IDLE``) at the start and
ran job tasks later, or were still starting (``default_worker.py``) and became an actor or a job worker
(a new role in an old process: ``workers_that_changed_role``).

**Output**: one JSON object on stdout (and ``--out``; ``summary`` holds the headline figures), a PNG
(``--png``: p50 and p99 per minute per route, the node's RSS over time, each process's RSS relative to
its start), progress every minute and a one-line summary on stderr; exit status 1 when a request failed
or a background command did. Machine: the shared 2-core box; ``machine`` in the JSON has the load
average before and after and other busy processes.
Takes ``--duration`` + ``--warmup`` + about 2 minutes of set-up (`pulse up`, ingest, embed) on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from cms import CATEGORIES, PASSWORD, TAGS, item_payloads, summaries
from common import ROOT, emit
from front_door import CommandFailed, Platform, log
from search_speed import other_load
from trend_quality import summary_line

from cluster.top.platform import SAMPLE_CORPUS  # the bundled sample, as `pulse up` ingests it

#: The mix: route name -> share of requests (sums to 1).
MIX: dict[str, float] = {
    "search": 0.20,
    "document": 0.15,
    "cms_read": 0.12,
    "cms_list": 0.05,
    "cms_write": 0.08,
    "trends": 0.08,
    "recommend": 0.17,
    "events": 0.15,
}
ADMIN_EMAIL = "admin@pulse.soak"
ADMIN_PASSWORD = "soak-admin-password-" + "x" * 16
#: Seconds a request may take before it counts as an error.
REQUEST_TIMEOUT_S = 30.0
#: Simulated readers (user ids ``reader-<n>``) and the click events seeded for them before the load.
SEED_READERS = 50
SEED_EVENTS = 500
#: A process whose RSS moved by more than this share between start and end is not flat.
FLAT_PCT = 10.0
SOURCE = "huffpost_sample"
#: Seconds the background `pulse embed` waits for another embedding run of the model (`--wait`).
EMBED_WAIT_S = 600


# ---------------------------------------------------------------------------------------- statistics
def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def stats(samples: list[tuple[float, bool]]) -> dict[str, Any]:
    """requests, errors, p50/p99 (ms) of (latency_ms, ok) samples."""
    lat = [ms for ms, _ in samples]
    return {
        "requests": len(samples),
        "errors": sum(1 for _, ok in samples if not ok),
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
    }


@dataclass
class Record:
    """Every counted request: (route, minute, latency ms, ok), and the error samples."""

    rows: list[tuple[str, int, float, bool]] = field(default_factory=list)
    warmup: list[tuple[str, float, bool]] = field(default_factory=list)
    error_samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, route: str, due_s: float, warmup_s: float, ms: float, ok: bool, what: str) -> None:
        if not ok and len(self.error_samples) < 20:
            self.error_samples.append({"route": route, "at_s": round(due_s, 1), "what": what[:300]})
        if due_s < warmup_s:
            self.warmup.append((route, ms, ok))
        else:
            self.rows.append((route, int((due_s - warmup_s) // 60), ms, ok))

    def minute(self, m: int) -> dict[str, Any]:
        return stats([(ms, ok) for _, mm, ms, ok in self.rows if mm == m])

    def summary(self, duration_s: float) -> dict[str, Any]:
        routes: dict[str, Any] = {}
        for route in MIX:
            mine = [(m, ms, ok) for r, m, ms, ok in self.rows if r == route]
            minutes = sorted({m for m, _, _ in mine})
            routes[route] = {
                **stats([(ms, ok) for _, ms, ok in mine]),
                "minutes": [
                    {"minute": m, **stats([(ms, ok) for mm, ms, ok in mine if mm == m])} for m in minutes
                ],
            }
        overall = stats([(ms, ok) for _, _, ms, ok in self.rows])
        overall["error_rate"] = overall["errors"] / overall["requests"] if overall["requests"] else None
        overall["achieved_req_s"] = round(overall["requests"] / duration_s, 2) if duration_s else None
        warm = stats([(ms, ok) for _, ms, ok in self.warmup])
        return {"routes": routes, "overall": overall, "warmup": warm, "error_samples": self.error_samples}


# ------------------------------------------------------------------------------------------- memory
def _title(proc: Any, cmdline: list[str]) -> str:
    """A Ray process's name: its Ray title, its program (``raylet``, ``gcs_server``), or the script or
    module a Python program runs (only the program's own arguments: the raylet's name the worker's)."""
    first = cmdline[0] if cmdline else ""
    if first.startswith("ray::"):
        return first.split()[0]
    program = Path(first.split()[0]).name if first else str(proc.info["name"] or "")
    if not program.startswith("python"):
        return program
    known = {
        "dashboard/agent.py": "dashboard_agent",
        "runtime_env/agent/main.py": "runtime_env_agent",
        "dashboard/dashboard.py": "dashboard",
        "log_monitor.py": "log_monitor",
        "autoscaler/_private/monitor.py": "monitor",
        "default_worker.py": "ray::worker",
    }
    for i, arg in enumerate(cmdline[1:], 1):  # the script or module it runs
        if arg.endswith(".py"):
            return next((name for path, name in known.items() if arg.endswith(path)), Path(arg).stem)
        if arg == "-m" and i + 1 < len(cmdline):
            return cmdline[i + 1]
    return program


def _role(title: str) -> str:
    """The title less a running method (``ray::VectorIndexActor.search`` -> ``ray::VectorIndexActor``)."""
    if title.startswith("ray::") and "." in title and ":" not in title.split(".")[-1]:
        return title.rsplit(".", 1)[0]
    return title


class MemorySampler:
    """RSS of every process of the platform's Ray node, every ``every_s`` seconds, in a thread."""

    def __init__(self, ray_tmp: Path, every_s: float, dashboard_url: str) -> None:
        self.ray_tmp = str(ray_tmp)
        self.every_s = every_s
        self.dashboard_url = dashboard_url
        self.samples: list[tuple[float, dict[int, tuple[str, float]]]] = []
        self.actor_names: dict[int, str] = {}
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-memory", daemon=True)

    def processes(self) -> dict[int, tuple[str, float]]:
        import psutil

        mine = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
        found: dict[int, tuple[str, float]] = {}
        for proc in psutil.process_iter(["pid", "name", "cmdline"]):
            if proc.pid in mine:
                continue
            try:
                if proc.environ().get("RAY_TMPDIR") != self.ray_tmp:
                    continue
                found[proc.pid] = (_title(proc, proc.info["cmdline"] or []), proc.memory_info().rss / 2**20)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def sample(self) -> dict[int, tuple[str, float]]:
        now = self.processes()
        self.samples.append((time.monotonic() - self.t0, now))
        return now

    def name_actors(self) -> None:
        """Actor names by pid from the dashboard's state API (``/api/v0/actors``, with the node's token as
        Ray's tools find it); best effort: titles name every process anyway."""
        from cluster.top.jobs_cli import local_auth_token

        token = local_auth_token(dict(os.environ))
        try:
            resp = httpx.get(
                f"{self.dashboard_url}/api/v0/actors",
                params={"limit": 10000},
                headers={"Authorization": f"Bearer {token}"} if token else {},
                timeout=30,
            )
            resp.raise_for_status()
            for actor in resp.json()["data"]["result"]["result"]:
                if actor.get("state") == "ALIVE" and actor.get("pid") and actor.get("name"):
                    self.actor_names[int(actor["pid"])] = str(actor["name"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log(f"actor names from the state API unavailable ({type(exc).__name__}: {exc}); titles only")

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def report(self, start_index: int, end_index: int) -> dict[str, Any]:
        t_start, start = self.samples[start_index]
        t_end, end = self.samples[end_index]
        seen_before = set(start)
        flat, other, new, gone, changed = [], [], [], [], []
        for pid, (title, mb) in sorted(start.items(), key=lambda kv: -kv[1][1]):
            name = self.actor_names.get(pid)
            entry: dict[str, Any] = {"pid": pid, "process": _role(title), "start_mb": round(mb, 1)}
            if name:
                entry["actor"] = name
            if pid not in end:
                gone.append(entry)
                continue
            end_title, end_mb = end[pid]
            drift = (end_mb - mb) / mb * 100 if mb else 0.0
            entry.update(end_mb=round(end_mb, 1), drift_pct=round(drift, 1))
            if _role(end_title) != _role(title):  # a pooled or starting worker that took up a role
                entry["process_at_end"] = _role(end_title)
                changed.append(entry)
                continue
            entry["verdict"] = "flat" if abs(drift) <= FLAT_PCT else ("grew" if drift > 0 else "shrank")
            (flat if entry["verdict"] == "flat" else other).append(entry)
        for pid, (title, mb) in sorted(end.items(), key=lambda kv: -kv[1][1]):
            if pid not in seen_before:
                first = next(t for t, s in self.samples if pid in s)
                new.append(
                    {
                        "pid": pid,
                        "process": _role(title),
                        "end_mb": round(mb, 1),
                        "first_seen_s": round(first - t_start, 1),
                    }
                )
        judged = flat + other
        max_drift = max((abs(e["drift_pct"]) for e in judged), default=0.0)
        timeline = [
            {
                "t_s": round(t - t_start, 1),
                "total_mb": round(sum(mb for _, mb in s.values()), 1),
                "processes": len(s),
                "by_pid": {str(pid): round(mb, 1) for pid, (_, mb) in s.items()},
            }
            for t, s in self.samples
        ]
        return {
            "sample_s": self.every_s,
            "start_s": round(t_start, 1),
            "end_s": round(t_end, 1),
            "flat_within_pct": FLAT_PCT,
            "verdict": (
                f"memory flat within {FLAT_PCT:.0f}%: {len(flat)} of {len(judged)} processes"
                + ("" if not other else f"; not flat: {', '.join(e['process'] for e in other)}")
            ),
            "all_flat": not other,
            "max_drift_pct": round(max_drift, 1),
            "processes": judged,
            "started_during_run": new,
            "exited_during_run": gone,
            "workers_that_changed_role": changed,
            "total_mb_start": round(sum(mb for _, mb in start.values()), 1),
            "total_mb_end": round(sum(mb for _, mb in end.values()), 1),
            "timeline": timeline,
        }


# ------------------------------------------------------------------------------------------ background
class Background:
    """Collection and embedding, one `pulse` command after another, until ``stop``."""

    def __init__(self, platform: Platform, site_url: str, pages: int) -> None:
        self.platform = platform
        self.site_url = site_url
        self.pages = pages
        self.rounds: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-background", daemon=True)

    def _command(self, *args: str) -> str | None:
        """Run ``pulse ARGS``; None when it failed (recorded)."""
        t0 = time.perf_counter()
        try:
            out = self.platform.pulse(*args, timeout_s=900)
        except CommandFailed as exc:
            self.failures.append(str(exc)[-2000:])
            return None
        self.rounds[-1]["commands_s"][args[0]] = round(time.perf_counter() - t0, 1)
        return out

    def _run(self) -> None:
        for k in itertools.count(1):
            if self._stop.is_set():
                return
            name = f"soak-{k}"
            uri = f"{self.site_url}/articles_sitemap.xml?start={(k - 1) * self.pages}&count={self.pages}"
            self.rounds.append({"round": k, "source": name, "uri": uri, "commands_s": {}})
            steps = (
                ("sources", "add", name, "sitemap", uri),
                ("collect", "--source", name, "--no-progress"),
                ("embed", "--no-progress", "--wait", str(EMBED_WAIT_S)),
            )
            for step in steps:
                if self._stop.is_set():  # the load is over: the command in progress was the last
                    return
                out = self._command(*step)
                if out is None:
                    return
                if step[0] in ("collect", "embed"):
                    self.rounds[-1][step[0]] = summary_line(out, step[0])
            self.rounds[-1]["complete"] = True

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 900) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def report(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "collect_runs": sum(1 for r in self.rounds if "collect" in r),
            "embed_runs": sum(1 for r in self.rounds if "embed" in r),
            "failures": self.failures,
        }


# -------------------------------------------------------------------------------------------- set-up
@dataclass
class World:
    """What the load draws from."""

    queries: list[str]
    document_ids: list[int]
    item_ids: list[int]
    editors: list[str]  # emails
    tokens: list[str]
    api_key: str
    summaries: list[str]


def data_held(api_url: str) -> dict[str, Any]:
    """What the indexes hold now (``/readyz``): documents with a vector, keyword documents, shard rows
    (document and chunk vectors, the unmerged delta included); the memory verdict's context."""
    try:
        ready = httpx.get(f"{api_url}/readyz", timeout=10).json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"error": type(exc).__name__}
    shards = ready.get("shards") or []
    return {
        "documents_indexed": ready.get("vectors"),
        "keyword_documents": ready.get("keyword_documents"),
        "shard_rows": sum(int(s.get("vectors") or 0) for s in shards),
        "shard_delta": sum(int(s.get("delta") or 0) for s in shards),
    }


def data_growth(start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    """Start, end and growth (%) of each count ``data_held`` reports."""
    growth = {
        k: round((end[k] - v) / v * 100, 1)
        for k, v in start.items()
        if isinstance(v, int) and v and isinstance(end.get(k), int)
    }
    return {"start": start, "end": end, "growth_pct": growth}


def _check(resp: httpx.Response, what: str) -> dict[str, Any]:
    if resp.status_code >= 300:
        raise RuntimeError(f"{what}: {resp.status_code} {resp.text[:500]}")
    return dict(resp.json()) if resp.content else {}


def login(http: httpx.Client, email: str, password: str) -> str:
    resp = http.post("/v1/cms/auth/login", json={"email": email, "password": password})
    for _ in range(30):  # a replica that has just started may answer 503 for a moment
        if resp.status_code != 503:
            break
        time.sleep(1)
        resp = http.post("/v1/cms/auth/login", json={"email": email, "password": password})
    return str(_check(resp, f"login {email}")["access_token"])


def sample_file(folder: Path, documents: int | None) -> Path:
    """The bundled sample, or its first ``documents`` records (a file of the same name)."""
    if documents is None:
        return Path(SAMPLE_CORPUS)
    path = folder / Path(SAMPLE_CORPUS).name
    with Path(SAMPLE_CORPUS).open(encoding="utf-8") as src:
        path.write_text("".join(itertools.islice(src, documents)), encoding="utf-8")
    return path


def set_up(p: Platform, args: argparse.Namespace, info: dict[str, Any]) -> World:
    from sqlalchemy import text

    from storage.database import make_engine

    corpus = sample_file(p.folder, args.documents)
    p.up("--no-sample")
    info["ingest"] = summary_line(p.pulse("ingest", str(corpus), "--source", SOURCE), "ingest")
    info["embed"] = summary_line(p.pulse("embed", "--no-progress"), "embed")
    engine = make_engine(p.database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            ids = [int(i) for (i,) in conn.execute(text("SELECT id FROM documents ORDER BY id"))]
    finally:
        engine.dispose()
    info["documents"] = len(ids)
    info["readyz"] = p.wait_ready(documents=len(ids), timeout_s=600)
    with Path(corpus).open(encoding="utf-8") as fh:
        queries = [json.loads(line)["title"] for line in fh if line.strip()]

    http = httpx.Client(base_url=p.api_url, timeout=120)
    admin = {"Authorization": f"Bearer {login(http, ADMIN_EMAIL, ADMIN_PASSWORD)}"}
    for kind, slugs in (("categories", CATEGORIES), ("tags", TAGS)):
        for slug in slugs:
            _check(
                http.post(f"/v1/cms/{kind}", json={"slug": slug, "name_en": slug.title()}, headers=admin),
                kind,
            )
    editors = [f"editor{i}@pulse.soak" for i in range(1, args.cms_users + 1)]
    for email in editors:
        body = {"email": email, "display_name": email.split("@")[0], "password": PASSWORD, "role": "editor"}
        _check(http.post("/v1/cms/users", json=body, headers=admin), "create user")
    key = _check(http.post("/v1/cms/keys", json={"name": "soak", "role": "editor"}, headers=admin), "key")[
        "key"
    ]
    tokens = [login(http, email, PASSWORD) for email in editors]
    item_ids: list[int] = []
    published = 0
    payloads = item_payloads(args.cms_users * args.items_per_user)
    for n, body in enumerate(payloads):
        h = {"Authorization": f"Bearer {tokens[n % len(tokens)]}"}
        item = _check(http.post("/v1/cms/items", json=body, headers=h), "create item")
        item_ids.append(int(item["id"]))
        if n % 2 == 0:
            _check(
                http.post(f"/v1/cms/items/{item['id']}/transition", json={"to": "published"}, headers=h),
                "publish",
            )
            published += 1
    info["cms"] = {"editors": len(editors), "items": len(item_ids), "published": published}
    # The CMS scheduler embeds published items with a model it loads on its first publish: wait until the
    # first of them is in the index, so that the one-time load is not counted as the soak's memory drift.
    info["cms_first_embed_s"] = wait_vectors_over(p.api_url, len(ids), timeout_s=600)
    rng = random.Random(11)
    events = [
        {
            "event_id": f"soak-seed-{n}",
            "user_id": f"reader-{rng.randrange(SEED_READERS)}",
            "document_id": rng.choice(ids),
            "type": "click",
            "timestamp": datetime.now(UTC).isoformat(),
        }
        for n in range(SEED_EVENTS)
    ]
    info["events_seeded"] = _check(
        http.post("/v1/events", json={"events": events}, headers={"X-API-Key": key}), "events"
    )
    http.close()
    return World(queries, ids, item_ids, editors, tokens, key, summaries())


def wait_vectors_over(api_url: str, count: int, *, timeout_s: float) -> float:
    """Seconds until ``/readyz`` shows more than ``count`` vectors (TimeoutError after ``timeout_s``)."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout_s:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            last = httpx.get(f"{api_url}/readyz", timeout=10).json().get("vectors")
            if isinstance(last, int) and last > count:
                return round(time.monotonic() - started, 1)
        time.sleep(1)
    raise TimeoutError(f"{api_url}/readyz still shows {last} vectors (wanted more than {count})")


# ---------------------------------------------------------------------------------------------- load
def request_of(route: str, world: World, rng: random.Random, turn: int) -> tuple[str, str, dict[str, Any]]:
    """(method, path, httpx keyword arguments) of one request of ``route``."""
    editor = {"Authorization": f"Bearer {world.tokens[turn % len(world.tokens)]}"}
    key = {"X-API-Key": world.api_key}
    if route == "search":
        return "GET", "/v1/search", {"params": {"q": rng.choice(world.queries), "k": 10}}
    if route == "document":
        return "GET", f"/v1/documents/{rng.choice(world.document_ids)}", {}
    if route == "cms_read":
        return "GET", f"/v1/cms/items/{rng.choice(world.item_ids)}", {"headers": editor}
    if route == "cms_list":
        return "GET", "/v1/cms/items", {"params": {"status": "published", "limit": 20}, "headers": editor}
    if route == "cms_write":
        body = {"summary_en": rng.choice(world.summaries)}
        return "PATCH", f"/v1/cms/items/{rng.choice(world.item_ids)}", {"json": body, "headers": editor}
    if route == "trends":
        return "GET", "/v1/trends", {"params": {"limit": 10}}
    if route == "recommend":
        return (
            "GET",
            "/v1/recommend",
            {"params": {"user_id": f"reader-{rng.randrange(SEED_READERS)}", "k": 10}, "headers": key},
        )
    if route == "events":
        reader = f"reader-{rng.randrange(SEED_READERS)}"
        now = datetime.now(UTC).isoformat()
        events = [
            {
                "event_id": uuid.uuid4().hex,
                "user_id": reader,
                "document_id": rng.choice(world.document_ids),
                "type": "click",
                "timestamp": now,
            }
            for _ in range(rng.randint(1, 5))
        ]
        return "POST", "/v1/events", {"json": {"events": events}, "headers": key}
    raise ValueError(route)


async def run_load(
    p: Platform,
    world: World,
    args: argparse.Namespace,
    record: Record,
    on_warm: Any,
    on_minute: Any,
) -> float:
    """The open loop (module docstring); returns the counted seconds."""
    rng = random.Random(args.seed)
    routes, weights = list(MIX), list(MIX.values())
    total_s = args.warmup + args.duration
    n_total = int(total_s * args.rate)
    slots = asyncio.Semaphore(args.max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=args.max_in_flight, max_keepalive_connections=args.max_in_flight)
    async with httpx.AsyncClient(base_url=p.api_url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:

        async def one(route: str, due: float, method: str, path: str, kw: dict[str, Any]) -> None:
            try:
                resp = await client.request(method, path, **kw)
                ok, what = resp.status_code < 400, f"{resp.status_code} {resp.text[:200]}"
            except httpx.HTTPError as exc:
                ok, what = False, f"{type(exc).__name__}: {exc}"
            finally:
                slots.release()
            record.add(
                route, due - t0, args.warmup, (time.monotonic() - due) * 1000, ok, f"{method} {path}: {what}"
            )

        t0 = time.monotonic()
        warm_done = False
        next_minute = 1
        relogin_at = t0 + args.relogin_s
        for i in range(n_total):
            due = t0 + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not warm_done and due - t0 >= args.warmup:
                warm_done = True
                await asyncio.to_thread(on_warm)
            if warm_done and due - t0 >= args.warmup + next_minute * 60:
                await asyncio.to_thread(on_minute, next_minute - 1)
                next_minute += 1
            if time.monotonic() >= relogin_at:  # access tokens live 15 minutes by default
                world.tokens = [await _alogin(client, e) for e in world.editors]
                relogin_at = time.monotonic() + args.relogin_s
            route = rng.choices(routes, weights)[0]
            method, path, kw = request_of(route, world, rng, i)
            await slots.acquire()
            task = asyncio.create_task(one(route, due, method, path, kw))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    return float(args.duration)


async def _alogin(client: httpx.AsyncClient, email: str) -> str:
    resp = await client.post("/v1/cms/auth/login", json={"email": email, "password": PASSWORD})
    return str(_check(resp, f"login {email}")["access_token"])


# --------------------------------------------------------------------------------------------- chart
def draw(result: dict[str, Any], path: Path) -> None:
    """Four panels: p50 and p99 per minute per route; the node's RSS over time (all its processes, and
    those judged); each judged process's RSS relative to its start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax50, ax99, axmem, axrel) = plt.subplots(4, 1, figsize=(11, 16))
    for route, r in result["routes"].items():
        xs = [m["minute"] + 1 for m in r["minutes"]]
        ax50.plot(xs, [m["p50_ms"] for m in r["minutes"]], marker="o", label=route)
        ax99.plot(xs, [m["p99_ms"] for m in r["minutes"]], marker="o", label=route)
    for ax, q in ((ax50, "p50"), (ax99, "p99")):
        ax.set_title(f"{q} latency per minute per route (open loop, {result['config']['rate']} req/s)")
        ax.set_xlabel("minute")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, max([len(r["minutes"]) for r in result["routes"].values()] + [1]) + 0.5)
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, ncol=4)
    mem = result["memory"]
    tl = mem["timeline"]
    ts = [s["t_s"] for s in tl]
    judged = mem["processes"]
    axmem.plot(ts, [s["total_mb"] for s in tl], color="black", linewidth=2, label="every process of the node")
    axmem.plot(
        ts,
        [sum(s["by_pid"].get(str(e["pid"]), 0.0) for e in judged) for s in tl],
        color="tab:blue",
        linewidth=2,
        label=f"the {len(judged)} processes judged (alive from start to end)",
    )
    axmem.set_title("RSS of the Ray node over time (s from the end of the warm-up; job workers come and go)")
    axmem.set_ylabel("MiB")
    axmem.legend(fontsize=8)
    worst = sorted(judged, key=lambda e: -abs(e["drift_pct"]))[:8]
    for e in judged:
        base = e["start_mb"]
        ys = [
            (s["by_pid"][str(e["pid"])] / base - 1) * 100 if str(e["pid"]) in s["by_pid"] else None
            for s in tl
        ]
        if e in worst:
            axrel.plot(ts, ys, linewidth=1.5, label=f"{e.get('actor') or e['process']} ({e['pid']})")
        else:
            axrel.plot(ts, ys, color="grey", linewidth=0.5, alpha=0.5)
    axrel.axhspan(-FLAT_PCT, FLAT_PCT, color="tab:green", alpha=0.08)
    axrel.set_title(
        f"RSS of each judged process relative to its start (%); {mem['verdict'].split(';')[0]}", fontsize=9
    )
    axrel.set_ylabel("% of start")
    axrel.legend(fontsize=7, ncol=2)
    for ax in (axmem, axrel):
        ax.axvline(0, color="grey", linestyle="--")
        ax.axvline(mem["end_s"] - mem["start_s"], color="grey", linestyle="--")
        ax.set_xlabel("s")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main
def server_errors(ray_tmp: Path, limit: int = 10) -> list[dict[str, Any]]:
    """The last ERROR records of the Serve replicas' logs (JSON lines): where a 5xx's traceback is (the
    platform's folders are removed when it stops)."""
    out: list[dict[str, Any]] = []
    for path in sorted(ray_tmp.glob("ray/session_latest/logs/serve/replica_*.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if '"levelname": "ERROR"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"message": line}
            out.append(
                {
                    "log": path.name,
                    "at": rec.get("asctime"),
                    "message": str(rec.get("message"))[:1500],
                    "exc_text": str(rec.get("exc_text") or "")[-3000:],
                }
            )
    return out[-limit:]


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "busy_others": other_load(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600, help="counted seconds of load (CI: 60)")
    parser.add_argument("--warmup", type=float, default=20, help="seconds of load before counting")
    parser.add_argument("--rate", type=float, default=10, help="requests/s offered (open loop)")
    parser.add_argument("--max-in-flight", type=int, default=64, help="outstanding requests at most")
    parser.add_argument("--documents", type=int, default=None, help="ingest the first N sample records only")
    parser.add_argument("--cms-users", type=int, default=3, help="editors created over the CMS API")
    parser.add_argument("--items-per-user", type=int, default=10, help="CMS items each editor creates")
    parser.add_argument("--pages-per-round", type=int, default=40, help="new pages per background collect")
    parser.add_argument("--sample-s", type=float, default=5, help="seconds between memory samples")
    parser.add_argument("--relogin-s", type=float, default=300, help="seconds between the editors' logins")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--num-cpus", type=int, default=None, help="the platform's Ray CPUs (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the database and folders")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--png", type=Path, default=None, help="draw the chart here")
    args = parser.parse_args(argv)

    from tests.support.web_site import LocalSite

    started = time.time()
    result: dict[str, Any] = {
        "benchmark": "soak",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/soak.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"before": machine()},
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rate": args.rate,
            "load": "open loop: request i due at t0 + i/rate, latency from its due time",
            "max_in_flight": args.max_in_flight,
            "mix": MIX,
            "request_timeout_s": REQUEST_TIMEOUT_S,
            "cms_users": args.cms_users,
            "pages_per_round": args.pages_per_round,
            "documents": args.documents or "all",
        },
    }
    env = {
        "PULSE_CMS__ADMIN_EMAIL": ADMIN_EMAIL,
        "PULSE_CMS__ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PULSE_COLLECT__ALLOW_NETWORKS": '["127.0.0.0/8"]',
        "PULSE_COLLECT__PER_HOST_DELAY_S": "0",
    }
    setup: dict[str, Any] = {}
    with LocalSite() as site, Platform(keep=args.keep, num_cpus=args.num_cpus, env=env) as p:
        t0 = time.perf_counter()
        world = set_up(p, args, setup)
        setup["seconds"] = round(time.perf_counter() - t0, 1)
        setup["commands_s"] = dict(p.timings)
        result["setup"] = setup
        log(f"set-up done in {setup['seconds']} s: {setup['documents']} documents, {setup['cms']}")

        sampler = MemorySampler(
            p.ray_tmp, args.sample_s, f"http://127.0.0.1:{p.env['PULSE_RAY__DASHBOARD_PORT']}"
        )
        sampler.name_actors()
        sampler.sample()
        sampler.start()
        background = Background(p, site.base_url, args.pages_per_round)
        record = Record()
        marks: dict[str, int] = {}
        load_t0 = time.monotonic()

        held: dict[str, dict[str, Any]] = {}

        def on_warm() -> None:
            sampler.sample()
            marks["start"] = len(sampler.samples) - 1
            # Off the load's event loop: a blocking read here would delay requests that are due.
            threading.Thread(target=lambda: held.update(start=data_held(p.api_url)), daemon=True).start()
            log(f"warm-up done ({args.warmup:.0f} s): counting {args.duration:.0f} s at {args.rate} req/s")

        def on_minute(m: int) -> None:
            s = record.minute(m)
            mem = sampler.samples[-1][1]
            log(
                f"minute {m + 1} (answered so far): {s['requests']} requests, {s['errors']} errors, "
                f"p50 {s['p50_ms']} ms, "
                f"p99 {s['p99_ms']} ms; Ray RSS {sum(mb for _, mb in mem.values()):.0f} MiB in {len(mem)} "
                f"processes; background rounds {len(background.rounds)}"
            )

        background.start()
        asyncio.run(run_load(p, world, args, record, on_warm, on_minute))
        load_s = time.monotonic() - load_t0
        sampler.sample()
        marks["end"] = len(sampler.samples) - 1
        held["end"] = data_held(p.api_url)
        sampler.stop()
        if args.duration >= 60 and args.duration % 60 == 0:
            on_minute(int(args.duration // 60) - 1)
        log("load done; waiting for the background command in progress")
        sampler.name_actors()
        background.stop()
        result.update(record.summary(args.duration))
        result["load_s"] = round(load_s, 1)
        result["background"] = background.report()
        result["memory"] = sampler.report(marks.get("start", 0), marks["end"])
        result["memory"]["data"] = data_growth(held.get("start", {}), held["end"])
        result["server_errors"] = server_errors(p.ray_tmp)
        result["commands_s"] = dict(p.timings)
    result["machine"]["after"] = machine()
    result["total_s"] = round(time.time() - started, 1)
    o, mem, bg = result["overall"], result["memory"], result["background"]
    result["summary"] = {  # the headline figures (bench/reliability.py and the CI test's `soak` figure)
        "duration_s": args.duration,
        "requests": o["requests"],
        "errors": o["errors"],
        "error_rate": o["error_rate"],
        "p50_ms": o["p50_ms"],
        "p99_ms": o["p99_ms"],
        "max_memory_drift_pct": mem["max_drift_pct"],
        "processes": len(mem["processes"]),
        "memory_flat": mem["all_flat"],
        "not_flat": [
            {k: e[k] for k in ("process", "actor", "start_mb", "end_mb", "drift_pct") if k in e}
            for e in mem["processes"]
            if e["verdict"] != "flat"
        ],
        "data_growth_pct": mem["data"]["growth_pct"],
    }
    if args.png:
        draw(result, args.png)
        result["png"] = str(args.png)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    emit(result)
    log(
        f"soak: {args.duration:.0f} s at {args.rate} req/s, {o['requests']} requests, {o['errors']} errors "
        f"({(o['error_rate'] or 0) * 100:.2f}%), p50 {o['p50_ms']} ms, p99 {o['p99_ms']} ms; "
        f"{mem['verdict']} (max drift {mem['max_drift_pct']}%; the indexes' data grew "
        f"{mem['data']['growth_pct']}); {bg['collect_runs']} collect and "
        f"{bg['embed_runs']} embed runs in the background"
    )
    return 0 if o["errors"] == 0 and not result["background"]["failures"] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
