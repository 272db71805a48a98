"""Benchmark: the CMS API (``serve_apps/cms``) under bounded load, against a plain uvicorn baseline.

What it measures, in one run, on one fresh PostgreSQL database (``common.bench_database``):

1. Seed. The configured first admin logs in (bootstrap), creates an editor, five categories and six
   tags; the editor bulk-creates ``--items`` (default 2,000) bilingual drafts, 100 per ``POST /bulk``:
   English title, summary and body from BBC News (``shared/data/bbc_news``), Arabic title, summary and
   body from SIB-200 (``shared/data/sib200_ar_en``, Apache-2.0), BBC category, two tags.
2. Load, from 127.0.0.1, 100 concurrent clients (aiohttp, 100 keep-alive connections, uvloop), with the
   editor's Bearer token, on three workloads: ``read`` (``GET /items/{id}``, uniform random ids),
   ``write`` (``PATCH /items/{id}`` changing ``summary_en``, no If-Match) and ``mixed`` (80 % reads,
   20 % writes). Two load shapes:

   - closed loop: each client sends its next request when the previous one answers (max throughput);
   - open loop at a fixed offered rate: client ``i`` sends at ``t0 + i/R + k*100/R`` (aggregate ``R``
     req/s, spread evenly). Latency is measured from the scheduled send time, so a server that falls
     behind is charged for the queue it causes (no coordinated omission); ``service_*`` percentiles are
     from the actual send.

   Each run: ``--warmup`` s unmeasured, then ``--duration`` s measured. Reported: achieved req/s (2xx
   answers completed in the window / window), p50/p95/p99/max latency, non-2xx and failed requests, the
   client's lag, and CPU ms per request of each process group (load generator, Serve proxy, Serve
   replica, other Ray processes, PostgreSQL backends of this database, plain server, anything else).
3. Baseline, alternated with Serve for ``--rounds`` rounds (Serve first in even rounds): ``bench/
   cms_plain.py --impl lean``, a hand-written FastAPI + SQLAlchemy Core server in one uvicorn process
   with the same auth, rate limiter, schemas and SQL writes (see its docstring). Medians over rounds and
   the Serve / plain ratios.
4. Rate sweep per server and workload: offered rates on a ladder up from a third of the closed-loop
   throughput until p95 reaches 100 ms; the highest rate with p95 < 100 ms is reported.
5. Bulk: ``--bulk-runs`` times, bulk-create 100 fresh drafts and bulk-publish them (``POST /bulk``
   ``{"action": "publish"}``), timed at the client, median.
6. Cached: every seeded item is published, then anonymous closed-loop loads, ``--rounds`` rounds:
   ``public_read`` (``GET /items/{id}``, no token, items drawn uniformly) through Serve, answered from
   the replica's cache (``serve_apps/cms/http_cache.py``) after one unmeasured read of each item warmed
   it, and through the plain server (no cache: the baseline);
   ``public_list`` (``GET /items?category=&locale=&sort=published_at&limit=20``, 10 listings) and
   ``public_mixed`` (90 % anonymous reads, 10 % the editor's writes) through Serve. Reported: req/s,
   percentiles, the hit rate (the answers' ``X-Cache``), and for ``public_mixed`` every read checked
   against the writes of its item answered more than ``STALE_BOUND_S`` before it started (stale reads
   past the bound: 0 is the target).
7. Profile: the product's own FastAPI app without Serve (``cms_plain.py --impl product``) under the same
   loads; in-process timings of the database work (the product's repository vs the lean SQL), JWT
   decoding, the rate limiter and HTML sanitising; CPU per request per process group.
8. Serve settings (each a fresh deployment, closed loop and open loop at ``--rate``): the defaults,
   ``replicas=2``, ``user_code_thread`` (routes on Serve's separate user-code thread, Serve's default;
   the CMS runs them on the replica's own loop), ``pool_size=20``,
   then, with ``--ingress proxy`` only, after this process's Ray is stopped, a child process with the
   HAProxy ingress runs the same loads on its own Ray.

Serve's ingress is ``--ingress``: ``haproxy`` (default, as ``pulse up`` runs Pulse: Serve's HAProxy ingress,
HAProxy forwarding to the replica's own HTTP server) or ``proxy`` (Serve's Python proxy, a Ray call per
request).

Another benchmark (``bench/search_speed.py``) shares this 2-core machine: before every timed block this
one waits until no such process runs (``--max-wait``), and every run records what else used the CPU.

    python bench/cms.py [--quick] [--rounds N] [--phases rounds,cached] [--out FILE]

Prints one JSON object on stdout (``--out`` also writes it to a file); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    ROOT,
    SHARED,
    CpuSnapshot,
    bench_database,
    cpu_by_group,
    cpu_snapshot,
    emit,
    ingress_env,
    median,
)

from cluster.top.serve_config import free_port

#: Token secret of both servers (a benchmark value, never a product default).
SECRET = "pulse-bench-cms-" + "s" * 40
PASSWORD = "correct horse battery staple"
ADMIN = "admin@pulse.bench"
EDITOR = "editor@pulse.bench"
#: Rate limits high enough never to refuse (the issue's load is about latency, not limiting).
RATE_LIMIT = "1000000/minute"
PREFIX = "/v1/cms"
NAMESPACE = "pulse-bench-cms"
CATEGORIES = ("business", "entertainment", "politics", "sport", "tech")
TAGS = ("uk", "europe", "usa", "markets", "analysis", "interview")
#: Offered rates tried by the sweep (req/s, aggregate).
LADDER = (
    10,
    20,
    30,
    40,
    50,
    60,
    75,
    100,
    125,
    150,
    200,
    250,
    300,
    400,
    500,
    600,
    800,
    1000,
    1200,
    1500,
    2000,
)
TARGET_P95_MS = 100.0
#: Result keys of the phases, in order (``--resume`` skips those present).
PHASES = ("seed", "rounds", "sweep", "bulk", "cached", "profile", "knobs")
WORKLOADS = {"read": 0.0, "write": 1.0, "mixed": 0.2}  # share of writes
#: Anonymous workloads of published items (the ``cached`` phase): share of (the editor's) writes.
PUBLIC_WORKLOADS = {"public_read": 0.0, "public_list": 0.0, "public_mixed": 0.1}
WRITE_SHARE = {**WORKLOADS, **PUBLIC_WORKLOADS}
#: ``public_mixed``: a read that started this long after a write of its item was answered must show it.
STALE_BOUND_S = 1.0
OTHER_BENCH = "bench/search_speed.py"
#: A run during which processes outside this benchmark used this much of a core is run again (once).
INTERFERENCE_PCT = 15.0
#: Before a timed block, wait (up to ``--busy-wait``) until other processes use less than this.
BUSY_PCT = 20.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ data
def _arabic_sentences() -> list[str]:
    out: list[str] = []
    for split in ("train", "dev"):
        path = SHARED / "sib200_ar_en" / "arb_Arab" / f"{split}.tsv"
        with path.open(encoding="utf-8") as fh:
            next(fh)
            out.extend(line.rstrip("\n").split("\t", 2)[2] for line in fh if line.strip())
    return out


def item_payloads(n: int, *, offset: int = 0, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` bilingual ``ItemCreate`` bodies: BBC article (English), SIB-200 sentences (Arabic)."""
    with (SHARED / "bbc_news" / "bbc_news.jsonl").open(encoding="utf-8") as fh:
        bbc = [json.loads(line) for line in fh]
    arabic = _arabic_sentences()
    rng = random.Random(seed + offset)
    out = []
    for i in range(offset, offset + n):
        art = bbc[i % len(bbc)]
        paras = [" ".join(p.split()) for p in art["text"].split("\n\n") if p.strip()]
        ar = [arabic[(5 * i + k) % len(arabic)] for k in range(5)]
        out.append(
            {
                "type": "article",
                "category": art["category"],
                "tags": rng.sample(TAGS, 2),
                "title_en": art["title"][:300],
                "summary_en": paras[0][:2000],
                "body_en": "".join(f"<p>{html.escape(p)}</p>" for p in paras)[:200_000],
                "title_ar": " ".join(ar[0].split()[:9])[:300],
                "summary_ar": ar[1][:2000],
                "body_ar": "".join(f'<p dir="rtl">{html.escape(s)}</p>' for s in ar[2:]),
            }
        )
    return out


def summaries() -> list[str]:
    """Realistic replacement summaries for the writes (BBC first paragraphs)."""
    with (SHARED / "bbc_news" / "bbc_news.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return [" ".join(r["text"].split("\n\n")[0].split())[:400] for r in rows[::7]]


# --------------------------------------------------------------------------------- machine and others
def pgrep(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found if int(p) != os.getpid()]


def other_bench_pids() -> list[int]:
    return pgrep(OTHER_BENCH)


@dataclass
class Quiet:
    """Waits before timed work: for the other benchmark to finish (up to ``max_wait_s``), then for other
    busy processes (a CI run...) to calm down (up to ``busy_wait_s``); remembers how long it waited."""

    max_wait_s: float
    busy_wait_s: float = 120.0
    database: str = ""  # this benchmark's database: its PostgreSQL processes are not "others"
    waits: list[dict[str, Any]] = field(default_factory=list)
    gave_up: bool = False

    def wait(self, label: str) -> None:
        started = time.perf_counter()
        announced = False
        while not self.gave_up and other_bench_pids():
            waited = time.perf_counter() - started
            if waited > self.max_wait_s:
                log(f"  {OTHER_BENCH} still running after {waited:.0f} s; measuring anyway ({label})")
                self.gave_up = True
                break
            if not announced:
                log(f"  waiting for {OTHER_BENCH} to finish before '{label}'")
                announced = True
            time.sleep(5)
        waited_bench = time.perf_counter() - started
        busy_started = time.perf_counter()
        busy = others_cpu_pct(database=self.database)
        told = False
        while busy >= BUSY_PCT and time.perf_counter() - busy_started < self.busy_wait_s:
            if not told:
                log(f"  other processes use {busy:.0f}% of a core; waiting before '{label}'")
                told = True
            time.sleep(3)
            busy = others_cpu_pct(database=self.database)
        waited_busy = time.perf_counter() - busy_started
        if waited_bench > 1 or waited_busy > 2:
            self.waits.append(
                {
                    "before": label,
                    "waited_for_other_bench_s": round(waited_bench, 1),
                    "waited_for_other_busy_processes_s": round(waited_busy, 1),
                    "others_pct_of_one_core_at_start": round(busy, 1),
                }
            )


def others_cpu_pct(sample_s: float = 1.0, *, database: str = "") -> float:
    """CPU used by processes outside this benchmark (its Ray, its servers, the PostgreSQL processes of its
    database), % of one core."""
    import psutil

    mine = our_tree()
    procs = [
        p
        for p in psutil.process_iter(["pid", "cmdline"])
        if p.pid not in mine and not (database and f" {database} " in " ".join(p.info["cmdline"] or []) + " ")
    ]
    first = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            first[p.pid] = sum(p.cpu_times()[:2])
    time.sleep(sample_s)
    used = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            used += max(0.0, sum(p.cpu_times()[:2]) - first.get(p.pid, 0.0))
    return 100 * used / sample_s


def our_tree() -> set[int]:
    import psutil

    me = psutil.Process()
    return {me.pid} | {p.pid for p in me.children(recursive=True)}


def busy_others(sample_s: float = 1.0) -> list[str]:
    """Processes outside this benchmark using >= 10 % of a core right now."""
    import psutil

    mine = our_tree()
    procs = [p for p in psutil.process_iter(["pid", "cmdline"]) if p.pid not in mine]
    first = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            first[p.pid] = sum(p.cpu_times()[:2])
    time.sleep(sample_s)
    out = []
    for p in procs:
        try:
            used = sum(p.cpu_times()[:2]) - first.get(p.pid, 0.0)
        except psutil.Error:
            continue
        if used / sample_s >= 0.10:
            cmd = " ".join(p.info["cmdline"] or [])[:90]
            out.append(f"{100 * used / sample_s:.0f}% {cmd}")
    return out


# ------------------------------------------------------------------------------------- CPU accounting
def _group(pid: int, cmd: str, *, mine: set[int], me: int, plain_pid: int | None, database: str) -> str:
    if pid == me:
        return "loadgen"
    if cmd.startswith("postgres"):
        return "postgres_this_db" if f" {database} " in cmd + " " else "postgres_other"
    if pid in mine:
        if plain_pid is not None and pid == plain_pid:
            return "plain_server"
        if "haproxy" in cmd:
            return "haproxy"
        if "ProxyActor" in cmd:
            return "serve_proxy"
        if "ServeReplica" in cmd:
            return "serve_replica"
        if "ServeController" in cmd:
            return "serve_controller"
        return "ray_other"
    return "other"


def cpu_usage(
    a: CpuSnapshot, b: CpuSnapshot, *, requests: int, plain_pid: int | None, database: str
) -> dict[str, Any]:
    """CPU per process group between two snapshots: % of one core and ms per completed request."""
    mine, me = our_tree(), os.getpid()
    return cpu_by_group(
        a,
        b,
        requests=requests,
        group=lambda pid, cmd: _group(pid, cmd, mine=mine, me=me, plain_pid=plain_pid, database=database),
    )


# ------------------------------------------------------------------------------------------- load
@dataclass
class Target:
    """A server under test: its base URL (``.../v1/cms``) and, for a plain server, its process id."""

    name: str
    base: str
    plain_pid: int | None = None


@dataclass
class LoadSpec:
    workload: str
    rate: float | None  # None: closed loop
    clients: int
    warmup_s: float
    duration_s: float


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


async def _load(
    target: Target, token: str, ids: list[int], spec: LoadSpec, *, seed: int, texts: list[str], database: str
) -> dict[str, Any]:
    import aiohttp

    write_share = WRITE_SHARE[spec.workload]
    public = spec.workload in PUBLIC_WORKLOADS
    check_stale = spec.workload == "public_mixed"
    auth = {"Authorization": f"Bearer {token}"}
    read_headers = {} if public else auth
    listings = [
        f"{target.base}/items?category={c}&limit=20&sort=published_at&locale={loc}"
        for c in CATEGORIES
        for loc in ("en", "ar")
    ]
    cache_seen: dict[str, int] = {}  # X-Cache of the answers: hit, miss, none (not cached)
    written: dict[int, list[tuple[float, int]]] = {}  # item -> (write answered at, version), in order
    stale = 0
    checked = 0
    write_headers = {**auth, "Content-Type": "application/json"}
    latencies: list[float] = []  # ms, from the scheduled send (open) or the send (closed)
    service: list[float] = []  # ms, from the actual send
    lags: list[float] = []  # ms: how late a free client sent (open loop)
    statuses: dict[str, int] = {}
    ok_in_window = 0
    not_sent = 0
    counter = 0
    clock = time.perf_counter  # uvloop's loop.time() ticks in whole milliseconds
    t_start = clock() + 0.05
    w0, w1 = t_start + spec.warmup_s, t_start + spec.warmup_s + spec.duration_s
    hard_end = w1 + 5.0
    snaps: list[CpuSnapshot] = []

    def stale_read(item: int, started: float, version: int) -> bool:
        """Whether a read that started at ``started`` missed a write answered before ``started - bound``."""
        due = [v for at, v in written.get(item, ()) if at < started - STALE_BOUND_S]
        return bool(due) and version < max(due)

    async def one(session: aiohttp.ClientSession, rng: random.Random) -> str:
        nonlocal counter, stale, checked
        counter += 1
        item = ids[rng.randrange(len(ids))]
        url = f"{target.base}/items/{item}"
        try:
            if rng.random() < write_share:
                body = json.dumps({"summary_en": f"{texts[counter % len(texts)]} [{counter}]"})
                async with session.patch(url, data=body, headers=write_headers) as resp:
                    answer = await resp.read()
                    if check_stale and resp.status == 200:
                        written.setdefault(item, []).append((clock(), int(json.loads(answer)["version"])))
                    return str(resp.status)
            if spec.workload == "public_list":
                url = listings[rng.randrange(len(listings))]
            started = clock()
            async with session.get(url, headers=read_headers) as resp:
                answer = await resp.read()
                seen = resp.headers.get("x-cache", "none")
                cache_seen[seen] = cache_seen.get(seen, 0) + 1
                if check_stale and resp.status == 200:
                    checked += 1
                    stale += stale_read(item, started, int(json.loads(answer)["version"]))
                return str(resp.status)
        except Exception as exc:  # timeouts, resets: counted as failures
            return type(exc).__name__

    def record(scheduled: float, sent: float, done: float, status: str, measured: bool) -> None:
        """Throughput counts every 2xx answer completed in the window; latency, the ``measured`` requests
        (closed loop: answered in the window; open loop: due in the window)."""
        nonlocal ok_in_window
        if status.startswith("2") and w0 <= done <= w1:
            ok_in_window += 1
        if not measured:
            return
        latencies.append(1000 * (done - scheduled))
        service.append(1000 * (done - sent))
        statuses[status] = statuses.get(status, 0) + 1

    async def closed(session: aiohttp.ClientSession, i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        while clock() < w1:
            t0 = clock()
            status = await one(session, rng)
            t1 = clock()
            record(t0, t0, t1, status, w0 <= t1 <= w1)

    async def opened(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal not_sent
        assert spec.rate is not None
        rng = random.Random(seed * 1000 + i)
        interval = spec.clients / spec.rate
        k = 0
        first = t_start + interval * i / spec.clients
        while True:
            scheduled = first + k * interval
            k += 1
            if scheduled >= w1:
                return
            now = clock()
            if now >= hard_end:
                j_lo = max(k - 1, math.ceil((w0 - first) / interval))
                j_hi = math.ceil((w1 - first) / interval) - 1
                not_sent += max(0, j_hi - j_lo + 1)
                return
            if scheduled > now:
                await asyncio.sleep(scheduled - now)
                lag = clock() - scheduled
                if scheduled >= w0:
                    lags.append(1000 * lag)
            sent = clock()
            status = await one(session, rng)
            record(scheduled, sent, clock(), status, scheduled >= w0)

    async def sampler() -> None:
        await asyncio.sleep(max(0.0, w0 - clock()))
        snaps.append(await asyncio.to_thread(cpu_snapshot))
        await asyncio.sleep(max(0.0, w1 - clock()))
        snaps.append(await asyncio.to_thread(cpu_snapshot))

    cpu_before = time.process_time()
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=spec.clients, limit_per_host=spec.clients)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        worker = closed if spec.rate is None else opened
        await asyncio.gather(sampler(), *(worker(session, i) for i in range(spec.clients)))
    cpu_after = time.process_time()
    total_wall = clock() - t_start
    completed = len(latencies)
    failed = sum(v for k, v in statuses.items() if not k.startswith("2"))
    out: dict[str, Any] = {
        "workload": spec.workload,
        "mode": "closed" if spec.rate is None else "open",
        "offered_req_s": spec.rate,
        "req_s": round(ok_in_window / spec.duration_s, 1),
        "p50_ms": _pct(latencies, 50),
        "p95_ms": _pct(latencies, 95),
        "p99_ms": _pct(latencies, 99),
        "max_ms": _pct(latencies, 100),
        "completed": completed,
        "errors": failed + not_sent,
        "statuses": statuses,
    }
    if spec.rate is not None:
        out["service_p50_ms"] = _pct(service, 50)
        out["service_p95_ms"] = _pct(service, 95)
        out["client_lag_p95_ms"] = _pct(lags, 95)
        out["not_sent_by_deadline"] = not_sent
    out["loadgen_cpu_pct_of_one_core"] = round(100 * (cpu_after - cpu_before) / total_wall, 1)
    if public:
        hits, misses = cache_seen.get("hit", 0), cache_seen.get("miss", 0)
        out["x_cache"] = cache_seen
        out["hit_rate"] = round(hits / (hits + misses), 3) if hits + misses else None
    if check_stale:
        out["stale_check"] = {
            "bound_s": STALE_BOUND_S,
            "reads_checked": checked,
            "writes_answered": sum(len(v) for v in written.values()),
            "stale_past_bound": stale,
        }
    if len(snaps) == 2:
        out["cpu"] = cpu_usage(
            snaps[0], snaps[1], requests=ok_in_window, plain_pid=target.plain_pid, database=database
        )
    return out


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


@dataclass
class Bench:
    """What every load run needs."""

    args: argparse.Namespace
    token: str
    ids: list[int]
    database: str
    quiet: Quiet
    url: str = ""
    texts: list[str] = field(default_factory=summaries)
    seed: int = 0
    interfered: list[dict[str, Any]] = field(default_factory=list)  # runs disturbed even after a repeat

    def sessions_opened(self) -> int | None:
        """PostgreSQL's count of connections ever opened to this database (``pg_stat_database``)."""
        if not self.url:
            return None
        import psycopg
        from sqlalchemy import make_url

        from storage.database import _libpq_conninfo, normalize_url

        with psycopg.connect(_libpq_conninfo(make_url(normalize_url(self.url))), autocommit=True) as conn:
            row = conn.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = %s", (self.database,)
            ).fetchone()
        return int(row[0]) if row else None

    def load(self, target: Target, workload: str, rate: float | None = None) -> dict[str, Any]:
        """One run; run again (once) after the other benchmark is gone if it used the CPU meanwhile."""
        res = self._load_once(target, workload, rate)
        if res["interference_pct_of_one_core"] >= INTERFERENCE_PCT and not self.quiet.gave_up:
            self.quiet.wait(f"repeat {target.name} {workload}")
            first = res["interference_pct_of_one_core"]
            res = self._load_once(target, workload, rate)
            res["repeated_after_interference_pct"] = first
        if res["interference_pct_of_one_core"] >= INTERFERENCE_PCT:
            self.interfered.append(
                {
                    "server": target.name,
                    "workload": workload,
                    "rate": rate,
                    "pct_of_one_core": res["interference_pct_of_one_core"],
                    "others": res.get("cpu", {}).get("others_pct"),
                }
            )
        return res

    def _load_once(self, target: Target, workload: str, rate: float | None) -> dict[str, Any]:
        self.seed += 1
        spec = LoadSpec(workload, rate, self.args.clients, self.args.warmup, self.args.duration)
        opened = self.sessions_opened()
        res: dict[str, Any] = _run_loop(
            _load(
                target, self.token, self.ids, spec, seed=self.seed, texts=self.texts, database=self.database
            )
        )
        time.sleep(0.6)  # statistics reach pg_stat_database within half a second
        after = self.sessions_opened()
        if opened is not None and after is not None:
            res["db_connections_opened"] = after - opened - 1  # the first count's own connection
        cpu = res.get("cpu", {})
        res["interference_pct_of_one_core"] = round(
            sum(cpu.get("others_pct", {}).values())
            + cpu.get("pct_of_one_core", {}).get("postgres_other", 0.0),
            1,
        )
        shape = "closed" if rate is None else f"open@{rate:g}"
        log(
            f"    {target.name:8s} {workload:5s} {shape:9s}: {res['req_s']:7.1f} req/s"
            f"  p50 {res['p50_ms']:6.1f}"
            f"  p95 {res['p95_ms']:7.1f}  p99 {res['p99_ms']:7.1f} ms  errors {res['errors']}"
            f"  loadgen {res['loadgen_cpu_pct_of_one_core']}%  others {res['interference_pct_of_one_core']}%"
        )
        return res


# -------------------------------------------------------------------------------------- servers
def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[Any] | None = None) -> float:
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s} s")


def cms_args(url: str, storage: str, overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        "database_url": url,
        "jwt_secret": SECRET,
        "access_ttl_s": 7200,  # the run is longer than the default 15 minutes
        "rate_per_key": RATE_LIMIT,
        "rate_per_ip": RATE_LIMIT,
        "max_ongoing_requests": 256,
        "replicas": 1,
        "pool_size": 10,
        "storage_uri": storage,
        "namespace": NAMESPACE,
        "scheduler": False,
        "embed_on_publish": False,
        "admin_email": ADMIN,
        "admin_password": PASSWORD,
        **overrides,
    }


class ServeCms:
    """Serve's HTTP proxy on 127.0.0.1 and the CMS app under /v1/cms (redeployable with other args)."""

    def __init__(self, url: str, storage: str) -> None:
        self.url, self.storage = url, storage
        self.port = free_port()
        self.access_log: bool | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def deploy(self, overrides: dict[str, Any], *, access_log: bool = False) -> float:
        from ray import serve

        from cluster.top.serve_config import load_builder

        started = time.perf_counter()
        logging_config = None if access_log else {"enable_access_log": False}
        if self.access_log is not None and self.access_log != access_log:
            serve.shutdown()  # type: ignore[no-untyped-call]  # the proxy's logging config is cluster-scoped
            self.access_log = None
            self.port = free_port()
        if self.access_log is None:
            serve.start(http_options={"host": "127.0.0.1", "port": self.port}, logging_config=logging_config)
            self.access_log = access_log
        app = load_builder("serve_apps.cms.app:app_builder")(cms_args(self.url, self.storage, overrides))
        serve.run(app, name="cms", route_prefix=PREFIX, logging_config=logging_config)
        wait_http(f"{self.base}/healthz", 300)
        return time.perf_counter() - started


def _die_with_parent() -> None:
    """``preexec_fn`` of child processes: SIGTERM when this process dies, even killed (Linux ``prctl``)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class PlainServer:
    def __init__(self, impl: str, url: str, log_dir: str, pool_size: int = 10) -> None:
        self.impl, self.port = impl, free_port()
        self.log = open(f"{log_dir}/plain-{impl}.log", "w")  # noqa: SIM115 (lives as long as the server)
        env = {**os.environ, "PULSE_BENCH_JWT_SECRET": SECRET}
        env.pop("RAY_SERVE_ENABLE_HA_PROXY", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "cms_plain.py"),
                "--impl",
                impl,
                "--database-url",
                url,
                "--port",
                str(self.port),
                "--pool-size",
                str(pool_size),
                "--rate",
                RATE_LIMIT,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
        self.start_s = wait_http(f"{self.base}/healthz", 120, self.proc)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def target(self, name: str) -> Target:
        return Target(name, self.base, self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ------------------------------------------------------------------------------------------ seed
def login(base: str, email: str) -> str:
    import httpx

    for _ in range(10):  # a replica that has just started may answer 503 for a moment
        resp = httpx.post(f"{base}/auth/login", json={"email": email, "password": PASSWORD}, timeout=60)
        if resp.status_code != 503:
            break
        time.sleep(1)
    if resp.status_code != 200:
        raise RuntimeError(f"login {email}: {resp.status_code} {resp.text[:300]}")
    return str(resp.json()["access_token"])


def bulk(base: str, token: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    import httpx

    started = time.perf_counter()
    resp = httpx.post(f"{base}/bulk", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=300)
    elapsed = time.perf_counter() - started
    if resp.status_code != 200:
        raise RuntimeError(f"POST /bulk {body['action']}: {resp.status_code} {resp.text[:500]}")
    return elapsed, resp.json()


def seed(base: str, n_items: int) -> dict[str, Any]:
    import httpx

    started = time.perf_counter()
    admin = login(base, ADMIN)
    h = {"Authorization": f"Bearer {admin}"}
    resp = httpx.post(
        f"{base}/users",
        json={"email": EDITOR, "display_name": "Editor", "password": PASSWORD, "role": "editor"},
        headers=h,
        timeout=60,
    )
    resp.raise_for_status()
    for kind, slugs in (("categories", CATEGORIES), ("tags", TAGS)):
        for slug in slugs:
            httpx.post(
                f"{base}/{kind}", json={"slug": slug, "name_en": slug.title()}, headers=h
            ).raise_for_status()
    editor = login(base, EDITOR)
    ids: list[int] = []
    chunk_s: list[float] = []
    payloads = item_payloads(n_items)
    for start in range(0, n_items, 100):
        elapsed, body = bulk(base, editor, {"action": "create", "create": payloads[start : start + 100]})
        chunk_s.append(elapsed)
        ids.extend(r["id"] for r in body["results"])
        if (start // 100) % 5 == 4:
            log(f"  seeded {len(ids)} items ({elapsed:.2f} s for the last 100)")
    body_bytes = [len(p["body_en"]) + len(p["body_ar"]) for p in payloads]
    return {
        "editor_token": editor,
        "ids": ids,
        "report": {
            "items": len(ids),
            "seconds": round(time.perf_counter() - started, 1),
            "bulk_create_100_s": {
                "median": round(median(chunk_s), 3),
                "first": round(chunk_s[0], 3),
                "last": round(chunk_s[-1], 3),
                "max": round(max(chunk_s), 3),
            },
            "body_bytes_median": int(median([float(b) for b in body_bytes])),
            "sources": "English: BBC News 2004-05 (title, first paragraph, paragraphs as <p>); Arabic: "
            "SIB-200 arb_Arab sentences (title = first 9 words)",
        },
    }


# ----------------------------------------------------------------------------------------- phases
def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("req_s", "p50_ms", "p95_ms", "p99_ms")
    out: dict[str, Any] = {k: round(median([r[k] for r in runs]), 1) for k in keys}
    out["errors"] = sum(r["errors"] for r in runs)
    out["runs"] = [{k: r[k] for k in (*keys, "errors", "interference_pct_of_one_core")} for r in runs]
    cpus = [r["cpu"]["ms_per_request"] for r in runs if "cpu" in r]
    if cpus:
        groups = sorted({g for c in cpus for g in c})
        out["cpu_ms_per_request"] = {g: round(median([c.get(g, 0.0) for c in cpus]), 3) for g in groups}
    out["loadgen_cpu_pct_of_one_core"] = round(median([r["loadgen_cpu_pct_of_one_core"] for r in runs]), 1)
    return out


def rounds_phase(b: Bench, targets: dict[str, Target], rate: float) -> dict[str, Any]:
    runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {
        shape: {w: {s: [] for s in targets} for w in WORKLOADS} for shape in ("closed", "open")
    }
    for r in range(b.args.rounds):
        order = list(targets) if r % 2 == 0 else list(reversed(targets))
        for server in order:
            b.quiet.wait(f"round {r} {server}")
            log(f"  round {r + 1}/{b.args.rounds}: {server}")
            for workload in WORKLOADS:
                runs["closed"][workload][server].append(b.load(targets[server], workload))
                runs["open"][workload][server].append(b.load(targets[server], workload, rate))
    out: dict[str, Any] = {"closed": {}, f"open_at_{rate:g}_req_s": {}}
    for workload in WORKLOADS:
        out["closed"][workload] = {s: summarise(runs["closed"][workload][s]) for s in targets}
        out[f"open_at_{rate:g}_req_s"][workload] = {s: summarise(runs["open"][workload][s]) for s in targets}
    return out


def ratios(rounds: dict[str, Any], rate: float, serve: str = "serve", plain: str = "plain") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for workload in WORKLOADS:
        c = rounds["closed"][workload]
        o = rounds[f"open_at_{rate:g}_req_s"][workload]
        out[workload] = {
            "closed_req_s_serve_over_plain": round(c[serve]["req_s"] / max(c[plain]["req_s"], 1e-9), 3),
            "closed_p95_serve_over_plain": round(c[serve]["p95_ms"] / max(c[plain]["p95_ms"], 1e-9), 2),
            f"open_{rate:g}_p95_serve_over_plain": round(
                o[serve]["p95_ms"] / max(o[plain]["p95_ms"], 1e-9), 2
            ),
        }
    return out


def sweep(b: Bench, target: Target, workload: str, closed_req_s: float) -> dict[str, Any]:
    """Offered rates up the ladder, from about a third of the closed-loop throughput, until p95 >= 100 ms."""
    start = max([r for r in LADDER if r <= closed_req_s / 3] or [LADDER[0]])
    steps = []
    best = None
    for rate in (r for r in LADDER if r >= start):
        res = b.load(target, workload, rate)
        steps.append({k: res[k] for k in ("offered_req_s", "req_s", "p50_ms", "p95_ms", "p99_ms", "errors")})
        passed = res["p95_ms"] < TARGET_P95_MS and res["errors"] == 0
        if passed:
            best = rate
        else:
            break
    return {
        "max_offered_req_s_with_p95_under_100ms": best,
        "first_failing_req_s": steps[-1]["offered_req_s"]
        if steps and steps[-1]["offered_req_s"] != best
        else None,
        "steps": steps,
    }


def bulk_phase(base: str, token: str, runs: int, offset: int) -> dict[str, Any]:
    create_s, publish_s = [], []
    for r in range(runs):
        payloads = item_payloads(100, offset=offset + 100 * r, seed=99)
        t_create, created = bulk(base, token, {"action": "create", "create": payloads})
        ids = [row["id"] for row in created["results"]]
        t_publish, published = bulk(base, token, {"action": "publish", "items": [{"id": i} for i in ids]})
        if published["count"] != 100 or not all(row["status"] == "published" for row in published["results"]):
            raise RuntimeError("bulk publish did not publish all 100 items")
        create_s.append(t_create)
        publish_s.append(t_publish)
        log(f"    bulk run {r + 1}/{runs}: create 100 {t_create:.3f} s, publish 100 {t_publish:.3f} s")
    return {
        "runs": runs,
        "publish_100_s": {
            "median": round(median(publish_s), 3),
            "min": round(min(publish_s), 3),
            "max": round(max(publish_s), 3),
            "all": [round(x, 3) for x in publish_s],
        },
        "create_100_s": {
            "median": round(median(create_s), 3),
            "min": round(min(create_s), 3),
            "max": round(max(create_s), 3),
            "all": [round(x, 3) for x in create_s],
        },
    }


def warm_cache(base: str, ids: list[int], clients: int = 20) -> float:
    """Read every item once anonymously (unmeasured), so a cached run measures a warm cache rather than
    its first misses: seconds taken."""
    import aiohttp

    async def run() -> None:
        queue = list(ids)
        async with aiohttp.ClientSession() as session:

            async def reader() -> None:
                while queue:
                    async with session.get(f"{base}/items/{queue.pop()}") as resp:
                        await resp.read()

            await asyncio.gather(*(reader() for _ in range(clients)))

    started = time.perf_counter()
    _run_loop(run())
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------- in-process profile
def cached_phase(b: Bench, serve: Target, plain: Target, rounds: int) -> dict[str, Any]:
    """Publish every seeded item, then anonymous loads (closed loop): ``public_read`` through Serve (its
    replica's cache) and the plain server (no cache: the baseline), ``public_list`` and ``public_mixed``
    (90 % anonymous reads, 10 % the editor's writes, each read checked against the writes answered more
    than ``STALE_BOUND_S`` before it started) through Serve."""
    publish_s = []
    for start in range(0, len(b.ids), 100):
        elapsed, _ = bulk(
            serve.base,
            b.token,
            {"action": "publish", "items": [{"id": i} for i in b.ids[start : start + 100]]},
        )
        publish_s.append(elapsed)
    log(f"  published {len(b.ids)} items ({sum(publish_s):.1f} s)")
    plan = [(serve, "public_read"), (plain, "public_read"), (serve, "public_list"), (serve, "public_mixed")]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in range(rounds):
        for target, workload in plan if r % 2 == 0 else plan[::-1]:
            b.quiet.wait(f"cached {workload} {target.name}")
            if target is serve and workload == "public_read":
                log(f"  warmed the cache with one read of each item ({warm_cache(serve.base, b.ids):.1f} s)")
            runs.setdefault(workload, {}).setdefault(target.name, []).append(b.load(target, workload))
    out: dict[str, Any] = {"published": len(b.ids), "publish_s": round(sum(publish_s), 1)}
    for workload, by_server in runs.items():
        out[workload] = {}
        for server, done in by_server.items():
            summary = summarise(done)
            rates = [d["hit_rate"] for d in done if d.get("hit_rate") is not None]
            if rates:
                summary["hit_rate"] = round(median(rates), 3)
            if workload == "public_mixed":
                summary["stale_past_bound"] = sum(d["stale_check"]["stale_past_bound"] for d in done)
                summary["reads_checked"] = sum(d["stale_check"]["reads_checked"] for d in done)
                summary["writes_answered"] = sum(d["stale_check"]["writes_answered"] for d in done)
                summary["stale_bound_s"] = STALE_BOUND_S
            out[workload][server] = summary
    cached, uncached = out["public_read"]["serve"]["req_s"], out["public_read"]["plain"]["req_s"]
    out["public_read_serve_cached_over_plain"] = round(cached / uncached, 2) if uncached else None
    return out


def micro_profile(url: str, ids: list[int], token: str, n: int) -> dict[str, Any]:
    """Per-call costs, in this process, one at a time: the database work of a read and of a write through
    the product's repository and through the lean SQL, JWT decoding, the rate limiter, HTML sanitising."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from serve_apps.cms.item_views import derived, item_out
    from serve_apps.cms.limits import RateLimits, sanitize_html
    from serve_apps.cms.security import TokenIssuer
    from storage.cms_content import ContentRepository
    from storage.database import make_async_engine

    sys.path.insert(0, str(ROOT / "bench"))
    import cms_plain

    rng = random.Random(5)
    out: dict[str, Any] = {"calls": n}

    async def db() -> None:
        from sqlalchemy import event

        engine = make_async_engine(url, pool_size=2)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        lean = cms_plain.LeanItems()
        statements: list[str] = []
        event.listen(
            engine.sync_engine,
            "before_cursor_execute",
            lambda conn, cursor, stmt, *a: statements.append(stmt.split(None, 1)[0].upper()),
        )

        async def timed(fn: Callable[[], Any]) -> float:
            for _ in range(20):
                await fn()
            t0 = time.perf_counter()
            for _ in range(n):
                await fn()
            return round(1000 * (time.perf_counter() - t0) / n, 3)

        async def counted(fn: Callable[[], Any]) -> list[str]:
            statements.clear()
            await fn()
            return list(statements)

        async def ping_only() -> None:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")

        async def product_read() -> None:  # CmsIngress._readable
            async with sessions() as session:
                await ContentRepository(session).get(rng.choice(ids))

        async def lean_read() -> None:
            async with engine.connect() as conn:
                await lean.get(conn, rng.choice(ids))

        unpinged = make_async_engine(url, pool_size=2)
        unpinged.pool._pre_ping = False  # the same pool without its per-checkout ping
        unpinged_sessions = async_sessionmaker(unpinged, expire_on_commit=False)

        async def product_read_no_pre_ping() -> None:
            async with unpinged_sessions() as session:
                await ContentRepository(session).get(rng.choice(ids))

        async def product_write() -> None:  # CmsIngress._update: _readable, then the update transaction
            item_id = rng.choice(ids)
            async with sessions() as session:
                await ContentRepository(session).get(item_id)
            async with sessions() as session, session.begin():
                await ContentRepository(session).update(
                    item_id,
                    derived({"summary_en": f"micro {rng.random()}"}),
                    actor="user:2",
                    expected_version=None,
                    ip="127.0.0.1",
                )

        async def lean_write() -> None:
            async with engine.begin() as conn:
                before = await lean.get(conn, rng.choice(ids), lock=True)
                assert before is not None
                await lean.update(
                    conn, before, {"summary_en": f"micro {rng.random()}"}, actor="user:2", ip="127.0.0.1"
                )

        out["db_ms_per_call_one_client"] = {
            "pool_checkout_pre_ping_select_1": await timed(ping_only),
            "read_product": await timed(product_read),
            "read_product_without_pool_pre_ping": await timed(product_read_no_pre_ping),
            "read_lean": await timed(lean_read),
            "write_product": await timed(product_write),
            "write_lean": await timed(lean_write),
        }
        out["statements_per_call_without_pre_ping_begin_commit"] = {
            name: await counted(fn)
            for name, fn in (
                ("read_product", product_read),
                ("read_lean", lean_read),
                ("write_product", product_write),
                ("write_lean", lean_write),
            )
        }
        async with sessions() as session:
            item = await ContentRepository(session).get(ids[0])
        assert item is not None
        from serve_apps.cms.security import Principal

        who = Principal("user", 2, "editor")
        t0 = time.perf_counter()
        for _ in range(n):
            item_out(item, who)
        out["item_out_ms"] = round(1000 * (time.perf_counter() - t0) / n, 3)
        body = item.fields.get("body_en") or ""
        t0 = time.perf_counter()
        for _ in range(n):
            sanitize_html(body)
        out["sanitize_html_body_en_ms"] = round(1000 * (time.perf_counter() - t0) / n, 3)
        out["body_en_bytes"] = len(body)
        await engine.dispose()
        await unpinged.dispose()

    _run_loop(db())
    issuer = TokenIssuer(SECRET, access_ttl_s=7200)
    t0 = time.perf_counter()
    for _ in range(n):
        issuer.decode_access(token)
    out["jwt_decode_access_ms"] = round(1000 * (time.perf_counter() - t0) / n, 4)
    for label, rate in (("1000000/minute", RATE_LIMIT), ("600/minute", "600/minute")):
        limits = RateLimits(per_key=rate, per_ip=rate)
        calls = 20_000
        t0 = time.perf_counter()
        for _ in range(calls):
            limits.check("user:2", None)
        out[f"rate_limit_check_ms_{label}_20k_calls_one_key"] = round(
            1000 * (time.perf_counter() - t0) / calls, 4
        )
    return out


def explain_slug(url: str) -> str:
    """The plan of the slug-collision query every create runs (``ContentRepository._free_slug``)."""
    import psycopg
    from sqlalchemy import make_url

    from storage.database import _libpq_conninfo, normalize_url

    with psycopg.connect(_libpq_conninfo(make_url(normalize_url(url)))) as conn:
        rows = conn.execute(
            "EXPLAIN ANALYZE SELECT slug_en FROM cms_items"
            " WHERE (slug_en = 'x' OR slug_en LIKE 'x-%') AND id != -1"
        ).fetchall()
    return " | ".join(r[0].strip() for r in rows)


# ------------------------------------------------------------------------------------------- knobs
#: Serve settings tried (name, CmsArgs overrides, access log on?).
KNOBS: list[tuple[str, dict[str, Any], bool]] = [
    ("default", {}, False),
    ("replicas=2", {"replicas": 2}, False),
    ("user_code_thread", {"user_code_thread": True}, False),
    ("pool_size=20", {"pool_size": 20}, False),
]
HAPROXY_KNOBS: list[tuple[str, dict[str, Any], bool]] = [
    ("haproxy+access_log_off", {}, False),
    ("haproxy+access_log_off+replicas=2", {"replicas": 2}, False),
]


def knob_runs(
    b: Bench, serve_cms: ServeCms, knobs: list[tuple[str, dict[str, Any], bool]], rate: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, overrides, access_log in knobs:
        deploy_s = serve_cms.deploy(overrides, access_log=access_log)
        b.quiet.wait(f"knob {name}")
        log(f"  setting {name} (deployed in {deploy_s:.1f} s)")
        target = Target(name, serve_cms.base)
        res: dict[str, Any] = {"deploy_s": round(deploy_s, 1)}
        for workload in ("read", "write"):
            for shape, rate_ in (("closed", None), (f"open@{rate:g}", rate)):
                r = b.load(target, workload, rate_)
                res[f"{workload}_{shape}"] = {
                    k: r[k]
                    for k in ("req_s", "p50_ms", "p95_ms", "p99_ms", "errors", "interference_pct_of_one_core")
                } | {"cpu_ms_per_request": r.get("cpu", {}).get("ms_per_request")}
        out[name] = res
    return out


def haproxy_child(state_file: str) -> int:
    """Runs in a child process whose environment has RAY_SERVE_ENABLE_HA_PROXY=1: own Ray, same loads."""
    import ray

    state = json.loads(Path(state_file).read_text())
    args = argparse.Namespace(**state["args"])
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        namespace=NAMESPACE,
    )
    storage = tempfile.mkdtemp(prefix="pulse-bench-cms-ha-")
    try:
        serve_cms = ServeCms(state["url"], storage)
        serve_cms.deploy({}, access_log=False)
        token = login(serve_cms.base, EDITOR)
        b = Bench(
            args,
            token,
            state["ids"],
            state["database"],
            Quiet(args.max_wait, args.busy_wait, state["database"]),
            state["url"],
        )
        result = knob_runs(b, serve_cms, HAPROXY_KNOBS, state["rate"])
        result["waits"] = b.quiet.waits
        result["interfered"] = b.interfered
    finally:
        from ray import serve

        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    Path(state["out"]).write_text(json.dumps(result))
    return 0


def run_haproxy(state: dict[str, Any], tmp: str) -> dict[str, Any]:
    state_file, out_file = f"{tmp}/haproxy-state.json", f"{tmp}/haproxy-out.json"
    Path(state_file).write_text(json.dumps({**state, "out": out_file}))
    env = {**os.environ, **ingress_env("haproxy")}
    proc = subprocess.run(
        [sys.executable, __file__, "--haproxy-child", state_file],
        env=env,
        timeout=900,
        preexec_fn=_die_with_parent,
    )
    if proc.returncode != 0 or not Path(out_file).is_file():
        return {"error": f"HAProxy child exited with {proc.returncode}"}
    return dict(json.loads(Path(out_file).read_text()))


# ------------------------------------------------------------------------------------------- targets
def breakdown(result: dict[str, Any]) -> dict[str, Any]:
    """Where a request's CPU goes (closed loop, ms per request, medians): Serve's proxy and replica, the
    same FastAPI app without Serve (the product's handler cost), the lean server, PostgreSQL."""
    out: dict[str, Any] = {}
    for workload in ("read", "write"):
        serve = result["rounds"]["closed"][workload]["serve"].get("cpu_ms_per_request", {})
        plain = result["rounds"]["closed"][workload]["plain"].get("cpu_ms_per_request", {})
        prod = (
            result.get("profile", {})
            .get("product_without_serve", {})
            .get(workload, {})
            .get("closed", {})
            .get("cpu", {})
            .get("ms_per_request", {})
        )
        handler = prod.get("plain_server", 0.0)
        replica = serve.get("serve_replica", 0.0)
        serve_total = sum(v for k, v in serve.items() if k not in ("loadgen", "other", "postgres_other"))
        out[workload] = {
            "serve": {
                "proxy": serve.get("serve_proxy"),
                "replica": replica,
                "replica_minus_handler_serve_overhead": round(replica - handler, 3) if handler else None,
                "other_ray_processes": round(
                    serve.get("ray_other", 0.0) + serve.get("serve_controller", 0.0), 3
                ),
                "postgres": serve.get("postgres_this_db"),
                "total_server_side": round(serve_total, 3),
            },
            "product_app_without_serve": {
                "server": handler or None,
                "postgres": prod.get("postgres_this_db"),
            },
            "lean_plain": {"server": plain.get("plain_server"), "postgres": plain.get("postgres_this_db")},
            "loadgen_serve_run": serve.get("loadgen"),
        }
    return out


def targets_met(result: dict[str, Any], rate: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rounds = result.get("rounds", {})
    openk = f"open_at_{rate:g}_req_s"
    for workload in ("read", "write", "mixed"):
        o = rounds.get(openk, {}).get(workload, {}).get("serve")
        s = result.get("sweep", {}).get(workload, {}).get("serve", {})
        if o:
            out[f"{workload}_p95_under_100ms_at_{rate:g}_req_s_100_clients"] = {
                "p95_ms": o["p95_ms"],
                "met": o["p95_ms"] < TARGET_P95_MS and o["errors"] == 0,
            }
        if s:
            out[f"{workload}_max_rate_with_p95_under_100ms"] = s.get("max_offered_req_s_with_p95_under_100ms")
    cached = result.get("cached")
    if cached:
        for workload in ("public_read", "public_list"):
            c = cached[workload]["serve"]
            out[f"{workload}_cached_at_least_1000_req_s_100_clients"] = {
                "req_s": c["req_s"],
                "p95_ms": c["p95_ms"],
                "hit_rate": c.get("hit_rate"),
                "met": c["req_s"] >= 1000 and c["errors"] == 0,
            }
        m = cached["public_mixed"]["serve"]
        out["public_mixed_no_stale_read_past_bound"] = {
            "stale_past_bound": m["stale_past_bound"],
            "reads_checked": m["reads_checked"],
            "hit_rate": m.get("hit_rate"),
            "met": m["stale_past_bound"] == 0 and m["errors"] == 0,
        }
    ratio = result.get("ratios", {})
    for workload in ("read", "write"):
        closed = ratio.get(workload, {}).get("closed_req_s_serve_over_plain")
        if closed is not None:
            out[f"{workload}_uncached_serve_at_least_plain"] = {"ratio": closed, "met": closed >= 1.0}
    b = result.get("bulk")
    if b:
        out["bulk_publish_100_under_1s"] = {
            "median_s": b["publish_100_s"]["median"],
            "met": b["publish_100_s"]["median"] < 1.0,
        }
        out["bulk_publish_100_under_5s_seed_target"] = b["publish_100_s"]["median"] < 5.0
    return out


# ---------------------------------------------------------------------------------------------- main
class Stopped(Exception):
    """SIGTERM from outside (a `ray stop` on this machine also ends the benchmark's Ray)."""


def _stop(signum: int, frame: Any) -> None:
    raise Stopped(f"signal {signum}")


def open_database(resume_url: str | None) -> tuple[str, Callable[[], None], bool]:
    """``(url, drop, resumable)``: the database of an interrupted run being resumed, else a fresh, migrated
    one named like ``common.bench_database``'s, on the server of PULSE_DATABASE__URL or on
    127.0.0.1:5432 (resumable: it outlives this process until ``drop``), else ``common.bench_database``'s
    embedded PostgreSQL (not resumable: it goes when this process ends)."""
    import socket
    import uuid

    from sqlalchemy import make_url

    from cluster.ground.settings import DatabaseSettings
    from cluster.top.database import local_server_url
    from storage.database import drop_database, ensure_database
    from storage.migrate import upgrade

    url = resume_url
    if url is None:
        name = f"pulse_bench_{uuid.uuid4().hex[:8]}"
        configured = os.environ.get("PULSE_DATABASE__URL")
        if configured:
            url = make_url(configured).set(database=name).render_as_string(hide_password=False)
        else:
            settings = DatabaseSettings()
            try:
                socket.create_connection((settings.local_host, settings.local_port), timeout=0.5).close()
                url = local_server_url(settings, name)
            except OSError:
                ctx = bench_database()
                embedded_url = ctx.__enter__()

                def stop_embedded() -> None:
                    ctx.__exit__(None, None, None)

                return embedded_url, stop_embedded, False
        ensure_database(url)
        upgrade(url)
    kept: str = url

    def drop() -> None:
        drop_database(kept)

    return kept, drop, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 items, 1 round, short loads")
    parser.add_argument("--rounds", type=int, default=3, help="alternating Serve/plain rounds (default 3)")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0, help="the stated open-loop rate (req/s)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per load run")
    parser.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds before each run")
    parser.add_argument("--bulk-runs", type=int, default=5)
    parser.add_argument(
        "--phases",
        default=",".join(PHASES[1:]),
        help=f"comma-separated phases to run after the seed (default all: {','.join(PHASES[1:])})",
    )
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--no-knobs", action="store_true")
    parser.add_argument("--no-haproxy", action="store_true")
    parser.add_argument(
        "--ingress",
        choices=("haproxy", "proxy"),
        default="haproxy",
        help="Serve's HTTP ingress (default haproxy, as `pulse up` runs it; proxy: Serve's Python proxy)",
    )
    parser.add_argument("--max-wait", type=float, default=1800, help=f"longest wait for {OTHER_BENCH} (s)")
    parser.add_argument(
        "--busy-wait", type=float, default=120, help="longest wait for other busy processes per block (s)"
    )
    parser.add_argument("--out", help="also write the JSON here (and partial results after each phase)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run whose partial results are in --out (its database was kept)",
    )
    parser.add_argument("--haproxy-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.haproxy_child:
        return haproxy_child(args.haproxy_child)
    if args.resume and not args.out:
        parser.error("--resume needs --out (the partial results of the run to continue)")
    phases = set(args.phases.split(","))
    if phases - set(PHASES):
        parser.error(
            f"--phases: unknown {sorted(phases - set(PHASES))}; choose among {', '.join(PHASES[1:])}"
        )
    if args.quick:
        args.items, args.rounds, args.duration, args.warmup, args.bulk_runs = 300, 1, 3.0, 1.0, 2
    # Ray and its processes print to stdout (raylet warnings, Serve shutdown notes): keep the JSON
    # alone there by sending everything else to stderr.
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    started = time.perf_counter()
    state_file = Path(f"{args.out}.state.json") if args.out else None
    state: dict[str, Any] = {}
    if args.resume:
        assert state_file is not None
        result: dict[str, Any] = json.loads(Path(args.out).read_text())
        state = json.loads(state_file.read_text())
        if "seed" not in result or "ids" not in state:
            parser.error(f"{args.out}: interrupted before the seed finished; start afresh (without --resume)")
        for key, value in result["config"].items():  # the interrupted run's settings
            setattr(args, key, value)
        result.pop("error", None)
        result["resumed"] = result.get("resumed", 0) + 1
        log(f"resuming: done so far {[k for k in PHASES if k in result]}")
    else:
        result = {
            "benchmark": "cms",
            "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
            "config": {
                k: getattr(args, k)
                for k in (
                    "items",
                    "clients",
                    "rate",
                    "duration",
                    "warmup",
                    "rounds",
                    "bulk_runs",
                    "quick",
                    "ingress",
                )
            },
            "other_busy_processes_at_start": busy_others(),
            "other_bench_running_at_start": bool(other_bench_pids()),
        }
    quiet = Quiet(args.max_wait, args.busy_wait)
    quiet.waits = result.pop("waits_for_other_bench", [])
    interfered: list[dict[str, Any]] = result.pop("runs_disturbed_by_other_processes", [])
    # A test run may `pulse down`, whose `ray stop` kills every Ray on the machine, this one's too.
    started_wait = time.perf_counter()
    while pgrep("pytest") and time.perf_counter() - started_wait < args.max_wait:
        if time.perf_counter() - started_wait < 1:
            log("  waiting for a pytest run to finish (its `pulse down` would stop this benchmark's Ray)")
        time.sleep(5)
    result["waited_for_pytest_s"] = round(
        result.get("waited_for_pytest_s", 0.0) + time.perf_counter() - started_wait, 1
    )
    os.environ.update(ingress_env(args.ingress))
    import ray

    tmp = tempfile.mkdtemp(prefix="pulse-bench-cms-")

    def checkpoint() -> None:
        """Partial results in ``--out`` after each phase; ``--resume`` continues from them."""
        if args.out:
            partial = {
                **result,
                "partial": True,
                "waits_for_other_bench": quiet.waits,
                "runs_disturbed_by_other_processes": interfered,
            }
            Path(args.out).write_text(json.dumps(partial, indent=2, default=str) + "\n")
        if state_file is not None and state:
            state_file.write_text(json.dumps(state))

    url, drop, resumable = open_database(state.get("url"))
    keep_database = False
    try:
        from sqlalchemy import make_url

        database = make_url(url).database or ""
        state.update(url=url, database=database)
        quiet.database = database
        checkpoint()  # the database's URL, so that an interrupted run can be resumed or cleaned up
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            namespace=NAMESPACE,
        )
        signal.signal(signal.SIGTERM, _stop)  # after ray.init, which installs its own
        plain = product = None
        try:
            serve_cms = ServeCms(url, tmp)
            result["serve_deploy_s"] = round(serve_cms.deploy({}), 1)
            if "seed" not in result:
                quiet.wait("seed")
                log(f"seeding {args.items} items through Serve ({serve_cms.base})")
                seeded = seed(serve_cms.base, args.items)
                result["seed"] = seeded["report"]
                state["ids"] = seeded["ids"]
                log(f"  seeded in {seeded['report']['seconds']} s")
                checkpoint()
            token = login(serve_cms.base, EDITOR)
            b = Bench(args, token, state["ids"], database, quiet, url, interfered=interfered)
            plain = PlainServer("lean", url, tmp)
            result["plain_start_s"] = round(plain.start_s, 1)
            targets = {"serve": Target("serve", serve_cms.base), "plain": plain.target("plain")}
            if "rounds" not in result and "rounds" in phases:
                log(f"rounds: Serve (default settings) vs plain, {args.rounds} rounds")
                result["rounds"] = rounds_phase(b, targets, args.rate)
                result["ratios"] = ratios(result["rounds"], args.rate)
                checkpoint()
            if not args.no_sweep and "sweep" not in result and "sweep" in phases and "rounds" in result:
                log("rate sweep (p95 < 100 ms)")
                sweeps: dict[str, Any] = {}
                for workload in WORKLOADS:
                    for server in targets:
                        quiet.wait(f"sweep {workload} {server}")
                        closed = result["rounds"]["closed"][workload][server]["req_s"]
                        sweeps.setdefault(workload, {})[server] = sweep(b, targets[server], workload, closed)
                result["sweep"] = sweeps
                checkpoint()
            if "bulk" not in result and "bulk" in phases:
                quiet.wait("bulk")
                log(f"bulk: {args.bulk_runs} x (create 100, publish 100) through Serve")
                offset = args.items + 100 * args.bulk_runs * result.get("resumed", 0)
                result["bulk"] = bulk_phase(serve_cms.base, b.token, args.bulk_runs, offset=offset)
                checkpoint()
            if "cached" not in result and "cached" in phases:
                log(f"cached: anonymous reads of published items, {args.rounds} rounds")
                result["cached"] = cached_phase(b, targets["serve"], targets["plain"], args.rounds)
                checkpoint()
            if "profile" not in result and "profile" in phases:
                quiet.wait("profile")
                log("profile: the product's app without Serve; in-process costs")
                product = PlainServer("product", url, tmp)
                ptarget = product.target("product")
                prof: dict[str, Any] = {"product_without_serve": {}}
                for workload in ("read", "write"):
                    prof["product_without_serve"][workload] = {
                        "closed": b.load(ptarget, workload),
                        f"open@{args.rate:g}": b.load(ptarget, workload, args.rate),
                    }
                product.stop()
                product = None
                prof["in_process"] = micro_profile(url, b.ids, b.token, 200 if args.quick else 500)
                prof["slug_query_plan"] = explain_slug(url)
                result["profile"] = prof
                prof["cpu_ms_per_request_closed_loop"] = breakdown(result)
                checkpoint()
            plain.stop()
            plain = None
            if (
                "knobs" in phases
                and not args.no_knobs
                and not all(k in result.get("knobs", {}) for k, _, _ in KNOBS)
            ):
                log("Serve settings")
                result.setdefault("knobs", {}).update(knob_runs(b, serve_cms, KNOBS, args.rate))
                checkpoint()
        finally:
            for running in (plain, product):
                if running is not None:
                    running.stop()
            from ray import serve

            with contextlib.suppress(Exception):
                serve.shutdown()  # type: ignore[no-untyped-call]
            ray.shutdown()
        done = all(k in result.get("knobs", {}) for k, _, _ in HAPROXY_KNOBS)
        if (
            "knobs" in phases
            and not args.no_knobs
            and not args.no_haproxy
            and args.ingress == "proxy"
            and not done
        ):
            log("Serve settings with RAY_SERVE_ENABLE_HA_PROXY=1 (child process, its own Ray)")
            child = {
                "url": url,
                "ids": b.ids,
                "database": database,
                "rate": args.rate,
                "args": vars(args) | {"haproxy_child": None},
            }
            ha = run_haproxy(child, tmp)
            quiet.waits.extend(ha.pop("waits", []))
            interfered.extend(ha.pop("interfered", []))
            result.setdefault("knobs", {}).update(ha)
    except (Exception, Stopped) as exc:  # report what was measured, and why the rest was not
        log(f"FAILED: {exc!r}")
        traceback.print_exc()
        keep_database = bool(args.out) and resumable
        hint = "; the database is kept: run again with --resume to finish" if keep_database else ""
        result["error"] = f"{exc!r}{hint}"
        checkpoint()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        shutil.rmtree(tmp, ignore_errors=True)
        if not keep_database:
            drop()
            if state_file is not None:
                state_file.unlink(missing_ok=True)
    result.pop("partial", None)
    result["targets"] = targets_met(result, args.rate)
    result["waits_for_other_bench"] = quiet.waits
    result["runs_disturbed_by_other_processes"] = interfered
    result["other_busy_processes_at_end"] = busy_others()
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    result["seconds"] = round(result.get("seconds", 0.0) + time.perf_counter() - started, 1)
    if not keep_database and args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    sys.stdout = json_out
    emit(result)
    json_out.flush()
    return 1 if "error" in result else 0


if __name__ == "__main__":
    raise SystemExit(main())
