"""Benchmark: extraction quality through the whole collect pipeline against ``trafilatura.extract``.

The 306 pages of ``../shared/data/trafilatura_eval`` are served by a local web site (several loopback
hosts), collected by the real job (sitemap -> polite fetch -> charset decoding -> extraction -> PostgreSQL),
and each stored text is scored the way trafilatura's evaluation scores (its SOURCE.md): per page, ``with``
snippets found are true positives, missing ones false negatives, ``without`` snippets found false
positives; summed over pages. In the same run the same pages' files go straight to ``trafilatura.extract``
(default settings) as the baseline. Prints one JSON object.

    python bench/extraction.py [--hosts 6]
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=6, help="loopback hosts the pages are spread over")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    import ray
    import trafilatura
    from sqlalchemy import text

    from jobs.collect.fetch import FetchPolicy
    from jobs.collect.pipeline import CollectJobConfig, run_collect
    from storage.database import make_engine, make_session_factory, session_scope
    from storage.sources import SourceRepository
    from tests.support.web_site import LocalSite

    truth_by_url: dict[str, dict[str, Any]] = json.loads((EVAL / "evaldata.json").read_text(encoding="utf-8"))
    files = sorted(p.name for p in (EVAL / "pages").iterdir())
    per_host = -(-len(files) // args.hosts)

    # Baseline: trafilatura.extract on the files, default settings.
    t0 = time.perf_counter()
    direct = {
        name: trafilatura.extract((EVAL / "pages" / name).read_bytes()) or ""
        for name in {v["file"] for v in truth_by_url.values()}
    }
    direct_s = time.perf_counter() - t0
    truth = {v["file"]: v for v in truth_by_url.values()}

    with bench_database() as url, LocalSite() as site:
        hosts = site.start_hosts(args.hosts)
        engine = make_engine(url, pool_size=1)
        with session_scope(make_session_factory(engine)) as session:
            for i, base in enumerate(hosts):
                SourceRepository(session).add(
                    name=f"eval-{i}",
                    kind="sitemap",
                    uri=f"{base}/eval_sitemap.xml?count={per_host}&start={i * per_host}",
                )
        ray.init(
            num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING"
        )
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
    # Canonical URLs percent-encode the file names (spaces, umlauts): decode them back.
    pipeline = {unquote(u.rsplit("/", 1)[-1]): t or "" for u, t in rows}
    through_pipeline = score(pipeline, truth)
    baseline = score(direct, truth)
    emit(
        {
            "benchmark": "extraction",
            "pages": len(truth),
            "pages_collected": sum(1 for t in pipeline.values() if t),
            "baseline": "trafilatura.extract(file bytes), default settings, same pages, same run",
            "pipeline": through_pipeline,
            "direct": baseline,
            "f1_difference": round(through_pipeline["f1"] - baseline["f1"], 4),
            "within_0.01": abs(through_pipeline["f1"] - baseline["f1"]) <= 0.01,
            "collect_summary": summary.as_dict(),
            "direct_seconds": round(direct_s, 2),
            "cpus": args.num_cpus,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
