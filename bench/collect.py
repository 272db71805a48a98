"""Benchmark: the collect job on a local site of many hosts, against what politeness allows, and its
extraction stage on Ray against a single-process trafilatura loop on the same pages.

The site serves real articles (BBC News 2004-2005 from ``../shared/data/bbc_news``, one per page, wrapped
in navigation and footer boilerplate) on ``--hosts`` loopback addresses with ``--latency`` per response;
each host has a sitemap of its share of the pages. Measured in one run:

- collect: the whole job (sitemaps, robots.txt, polite fetching, extraction, dedup, PostgreSQL) in pages
  per second, and the ratio to the ideal the politeness settings allow: per host one request at a time and
  ``--delay`` seconds between request starts, hosts in parallel, so the ideal time is the busiest host's
  ``requests x max(delay, latency)``;
- extraction: the fetched bodies (from the job's raw Parquet records) through the job's extraction stage
  on Ray Data with all CPUs, against one process running the same stage (``process_record``: trafilatura
  with metadata, language identification, MinHash) over the same bodies; plain ``trafilatura.extract``
  (text only, no metadata) is timed too, for context.
  ``--repeats`` runs each, medians reported.

    python bench/collect.py                       # 2,000 pages, 20 hosts, 50 ms, 1 s politeness
    python bench/collect.py --pages 400 --delay 0.2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

from common import bench_database, emit, median, peak_rss_mb


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the site waits per response")
    parser.add_argument(
        "--delay", type=float, default=1.0, help="politeness: seconds between starts per host"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each extraction measurement")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    import pyarrow as pa
    import ray
    import ray.data
    import trafilatura

    from jobs.collect.fetch import FetchPolicy
    from jobs.collect.pipeline import CollectJobConfig, process_batch, run_collect
    from jobs.collect.process import process_record
    from storage.database import make_engine, make_session_factory, session_scope
    from storage.raw_files import RawFileStore
    from storage.sources import SourceRepository
    from tests.support.web_site import LocalSite

    per_host = -(-args.pages // args.hosts)
    result: dict[str, Any] = {"benchmark": "collect", "cpus": args.num_cpus}
    with (
        bench_database() as url,
        LocalSite(latency_s=args.latency) as site,
        tempfile.TemporaryDirectory() as storage,
    ):
        hosts = site.start_hosts(args.hosts)
        engine = make_engine(url, pool_size=1)
        with session_scope(make_session_factory(engine)) as session:
            repo = SourceRepository(session)
            for i, base in enumerate(hosts):
                count = min(per_host, args.pages - i * per_host)
                if count > 0:
                    repo.add(
                        name=f"host-{i}",
                        kind="sitemap",
                        uri=f"{base}/articles_sitemap.xml?count={count}&start={i * per_host}",
                    )
            sources = {s.id: s for s in repo.all()}
        engine.dispose()
        ray.init(
            num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING"
        )
        try:
            policy = FetchPolicy(per_host_delay_s=args.delay, allow_networks=("127.0.0.0/8",))
            summary = run_collect(
                CollectJobConfig(database_url=url, storage_uri=storage, policy=policy, progress=False)
            )
            requests_per_host = per_host + 2  # robots.txt and the sitemap
            ideal_s = requests_per_host * max(args.delay, args.latency)
            pages = summary.fetched - len(sources)
            result["collect"] = {
                "pages": pages,
                "hosts": len(hosts),
                "latency_s": args.latency,
                "per_host_delay_s": args.delay,
                "seconds": round(summary.seconds, 2),
                "pages_per_s": round(pages / summary.seconds, 2),
                "ideal_seconds": round(ideal_s, 2),
                "ideal_pages_per_s": round(pages / ideal_s, 2),
                "ratio_to_ideal": round(ideal_s / summary.seconds, 3),
                "summary": summary.as_dict(),
            }

            raw = RawFileStore(storage)
            table = pa.concat_tables([raw.read(p) for p in raw.paths()])
            table = table.filter(pa.compute.equal(table.column("kind"), "page"))
            table = table.append_column("depth", pa.array([1] * table.num_rows))
            records = table.to_pylist()
            bodies = [r["body"] for r in records]
            process_record(records[0], sources=sources)  # load the language model once, as a worker does
            plain_trafilatura, plain_ours, on_ray = [], [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                for body in bodies:
                    trafilatura.extract(body)
                plain_trafilatura.append(len(bodies) / (time.perf_counter() - t0))
                t0 = time.perf_counter()
                for record in records:
                    process_record(record, sources=sources)
                plain_ours.append(len(bodies) / (time.perf_counter() - t0))
                t0 = time.perf_counter()
                ds = ray.data.from_arrow(table).repartition(args.num_cpus * 4)
                n = ds.map_batches(
                    process_batch,
                    batch_size=8,
                    batch_format="pyarrow",
                    fn_kwargs={"sources": sources},
                    num_cpus=1,
                ).count()
                on_ray.append(n / (time.perf_counter() - t0))
            result["extraction"] = {
                "pages": len(bodies),
                "baseline": "the job's extraction stage (process_record: trafilatura with metadata, "
                "language, MinHash) in a single-process loop over the same bodies",
                "plain_same_work_pages_per_s": round(median(plain_ours), 2),
                "ray_pages_per_s": round(median(on_ray), 2),
                "ratio_ray_vs_plain_same_work": round(median(on_ray) / median(plain_ours), 3),
                "context_plain_trafilatura_extract_pages_per_s": round(median(plain_trafilatura), 2),
                "context_ratio_ray_vs_plain_trafilatura_extract": round(
                    median(on_ray) / median(plain_trafilatura), 3
                ),
                "repeats": args.repeats,
            }
        finally:
            ray.shutdown()
    result["driver_peak_rss_mb"] = round(peak_rss_mb(), 1)
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
