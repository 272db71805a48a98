"""Benchmark: extraction quality through the whole collect pipeline against ``trafilatura.extract``.

The 306 pages of ``../shared/data/trafilatura_eval`` are served by a local web site (several loopback
hosts), collected by the real job (sitemap -> polite fetch -> charset decoding -> extraction -> PostgreSQL),
and each stored text is scored the way trafilatura's evaluation scores (its SOURCE.md): per page, ``with``
snippets found are true positives, missing ones false negatives, ``without`` snippets found false
positives; summed over pages. In the same run the same pages' files go straight to ``trafilatura.extract``
(default settings) as the baseline. Prints one JSON object.

    python bench/extraction.py [--hosts 6] [--limit-pages N] [--core-only | --front-door-only]

The same run also collects the pages through the front door, as a user does: a fresh database and a
private platform (`pulse up --no-sample`), `pulse sources add eval-<i> sitemap <url>` for each local
host and `pulse collect`, with the collector allowed onto loopback (``PULSE_COLLECT__ALLOW_NETWORKS``)
and no delay between requests (``PULSE_COLLECT__PER_HOST_DELAY_S=0``, as the pipeline run); the stored
texts are read back through ``GET /v1/documents/{id}`` and scored the same way. ``--no-platform`` runs
`pulse migrate` and `pulse collect` (its own Ray) without `pulse up` and reads the texts from PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from typing import Any
from urllib.parse import unquote

from common import SHARED, bench_database, emit

EVAL = SHARED / "trafilatura_eval"
_WS = re.compile(r"\s+")


def normalise(text: str | None) -> str:
    return _WS.sub(" ", text or "").strip()


def score(texts: dict[str, str], truth: dict[str, dict[str, Any]]) -> dict[str, float]:
    tp = fn = fp = tn = 0
    for url, expected in truth.items():
        got = normalise(texts.get(url))
        for snippet in expected["with"]:
            if normalise(snippet) in got:
                tp += 1
            else:
                fn += 1
        for snippet in expected["without"]:
            if normalise(snippet) in got:
                fp += 1
            else:
                tn += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
    }


Sources = list[tuple[str, str]]  # (source name, sitemap URL) per local host


def page_texts(rows: Any) -> dict[str, str]:
    """``(crawled page URL, stored text)`` rows keyed by file name. Canonical URLs percent-encode the file
    names (spaces, umlauts): decode them back."""
    return {unquote(u.rsplit("/", 1)[-1]): t or "" for u, t in rows}


#: Each crawled page and the document it became (a duplicate points at the document it repeats).
PAGES_SQL = "SELECT c.url, c.document_id FROM crawl_urls c WHERE c.kind = 'page'"


def through_pipeline(sources: Sources, num_cpus: int) -> tuple[dict[str, str], dict[str, Any]]:
    """The collect job's functions in this process (its own Ray), texts read from PostgreSQL."""
    import ray
    from sqlalchemy import text

    from jobs.collect.fetch import FetchPolicy
    from jobs.collect.pipeline import CollectJobConfig, run_collect
    from storage.database import make_engine, make_session_factory, session_scope
    from storage.sources import SourceRepository

    with bench_database() as url:
        engine = make_engine(url, pool_size=1)
        with session_scope(make_session_factory(engine)) as session:
            for name, uri in sources:
                SourceRepository(session).add(name=name, kind="sitemap", uri=uri)
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        try:
            policy = FetchPolicy(per_host_delay_s=0.0, allow_networks=("127.0.0.0/8",))
            with tempfile.TemporaryDirectory(prefix="pulse-bench-raw-") as storage:
                summary = run_collect(
                    CollectJobConfig(database_url=url, storage_uri=storage, policy=policy, progress=False)
                )
        finally:
            ray.shutdown()
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT c.url, d.text FROM crawl_urls c LEFT JOIN documents d ON d.id = c.document_id "
                    "WHERE c.kind = 'page'"
                )
            ).all()
        engine.dispose()
    return page_texts(rows), summary.as_dict()


async def http_documents(api_url: str, ids: list[int], *, clients: int = 8) -> dict[int, str]:
    """``GET /v1/documents/{id}`` for each id, ``clients`` at a time: id -> text."""
    import httpx

    texts: dict[int, str] = {}
    todo = list(ids)

    async def worker(client: httpx.AsyncClient) -> None:
        while todo:
            doc_id = todo.pop()
            resp = await client.get(f"/v1/documents/{doc_id}")
            resp.raise_for_status()
            texts[doc_id] = resp.json()["text"]

    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return texts


def through_front_door(
    sources: Sources, *, platform_up: bool, num_cpus: int | None, keep: bool
) -> tuple[dict[str, str], dict[str, Any]]:
    """`pulse sources add` + `pulse collect` on a private platform; texts over HTTP (or SQL without it)."""
    from front_door import Platform
    from sqlalchemy import text

    from storage.database import make_engine

    env = {"PULSE_COLLECT__ALLOW_NETWORKS": '["127.0.0.0/8"]', "PULSE_COLLECT__PER_HOST_DELAY_S": "0"}
    info: dict[str, Any] = {}
    with Platform(keep=keep, num_cpus=num_cpus, env=env) as platform:
        info["database"] = platform.name
        if platform_up:
            platform.up("--no-sample")
        else:
            platform.pulse("migrate")
        for name, uri in sources:
            platform.pulse("sources", "add", name, "sitemap", uri)
        info["collect"] = platform.pulse("collect").strip().splitlines()[-1:]
        # Which page became which document is the collector's bookkeeping (no public route lists it).
        engine = make_engine(platform.database_url, pool_size=1)
        try:
            with engine.connect() as conn:
                if platform_up:
                    pages = conn.execute(text(PAGES_SQL)).all()
                else:
                    rows = conn.execute(
                        text(
                            "SELECT c.url, d.text FROM crawl_urls c "
                            "LEFT JOIN documents d ON d.id = c.document_id WHERE c.kind = 'page'"
                        )
                    ).all()
        finally:
            engine.dispose()
        if platform_up:
            ids = sorted({d for _, d in pages if d is not None})
            t0 = time.perf_counter()
            by_id = asyncio.run(http_documents(platform.api_url, ids))
            info["http_documents"] = {"requests": len(ids), "seconds": round(time.perf_counter() - t0, 2)}
            rows = [(u, by_id.get(d, "") if d is not None else "") for u, d in pages]
        info["commands_s"] = dict(platform.timings)
    info["path"] = (
        "pulse up --no-sample; pulse sources add eval-<i> sitemap <url>; pulse collect; "
        "GET /v1/documents/{id}"
        if platform_up
        else "pulse migrate; pulse sources add eval-<i> sitemap <url>; pulse collect (own Ray); SQL read"
    )
    return page_texts(rows), info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=6, help="loopback hosts the pages are spread over")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--limit-pages", type=int, default=None, help="the first N pages only (by file name)")
    part = parser.add_mutually_exclusive_group()
    part.add_argument("--core-only", action="store_true", help="only the collect job's functions")
    part.add_argument(
        "--front-door-only", action="store_true", help="only `pulse sources add` + `pulse collect`"
    )
    parser.add_argument(
        "--no-platform", action="store_true", help="front door without `pulse up`: texts read from PostgreSQL"
    )
    parser.add_argument(
        "--front-door-cpus",
        type=int,
        default=None,
        help="CPUs the front door's Ray node declares (PULSE_RAY__NUM_CPUS; default: the machine's)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the front door's database and folders")
    args = parser.parse_args(argv)

    import trafilatura

    from tests.support.web_site import LocalSite

    truth_by_url: dict[str, dict[str, Any]] = json.loads((EVAL / "evaldata.json").read_text(encoding="utf-8"))
    files = sorted(p.name for p in (EVAL / "pages").glob("*.htm*"))  # the site's order
    n_pages = len(files) if args.limit_pages is None else min(len(files), args.limit_pages)
    chosen = set(files[:n_pages])
    truth = {v["file"]: v for v in truth_by_url.values() if v["file"] in chosen}
    per_host = -(-n_pages // args.hosts)

    # Baseline: trafilatura.extract on the files, default settings.
    t0 = time.perf_counter()
    direct = {name: trafilatura.extract((EVAL / "pages" / name).read_bytes()) or "" for name in truth}
    direct_s = time.perf_counter() - t0
    baseline = score(direct, truth)
    result: dict[str, Any] = {
        "benchmark": "extraction",
        "pages": len(truth),
        "subset": None if args.limit_pages is None else {"pages": n_pages},
        "baseline": "trafilatura.extract(file bytes), default settings, same pages, same run",
        "direct": baseline,
    }
    status = 0
    with LocalSite() as site:
        sources: Sources = []
        for i, base in enumerate(site.start_hosts(args.hosts)):
            count = min(per_host, n_pages - i * per_host)
            if count > 0:
                sources.append((f"eval-{i}", f"{base}/eval_sitemap.xml?count={count}&start={i * per_host}"))
        if not args.front_door_only:
            texts, summary = through_pipeline(sources, args.num_cpus)
            scored = score(texts, truth)
            result.update(
                {
                    "pages_collected": sum(1 for t in texts.values() if t),
                    "pipeline": scored,
                    "f1_difference": round(scored["f1"] - baseline["f1"], 4),
                    "within_0.01": abs(scored["f1"] - baseline["f1"]) <= 0.01,
                    "collect_summary": summary,
                }
            )
        if not args.core_only:
            try:
                texts, info = through_front_door(
                    sources, platform_up=not args.no_platform, num_cpus=args.front_door_cpus, keep=args.keep
                )
            except Exception as exc:  # the other figures are still worth printing
                print(f"front door failed: {exc}", file=sys.stderr, flush=True)
                result["front_door"] = {"error": f"{type(exc).__name__}: {exc}"}
                status = 1
            else:
                scored = score(texts, truth)
                door: dict[str, Any] = {
                    **info,
                    "pages_collected": sum(1 for t in texts.values() if t),
                    "scores": scored,
                    "f1_minus_direct": round(scored["f1"] - baseline["f1"], 4),
                }
                if "pipeline" in result:
                    door["f1_minus_pipeline"] = round(scored["f1"] - result["pipeline"]["f1"], 4)
                result["front_door"] = door
    result["direct_seconds"] = round(direct_s, 2)
    result["cpus"] = args.num_cpus
    emit(result)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
