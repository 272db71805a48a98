"""Benchmark: the Ray Data embedding job against plain ``SentenceTransformer.encode`` in one process.

Same texts, same run, interleaved rounds. The texts are real and short-to-medium (20-60 words): HuffPost
2018 headlines + leads, SciFact titles and first sentences, BBC titles and first paragraphs, from
``../shared/data``. Prints one JSON object.

    python bench/embed.py                 # 20,000 texts, 3 rounds
    python bench/embed.py --n 4000 --rounds 1

Measured per round:
- plain: model load + ``encode`` of every text in this process (torch with all CPUs); rate with and
  without the load;
- ray: ``run_embed`` end to end after ``ray.init`` (reading PostgreSQL, actor start, model load per actor,
  encoding, Parquet files, manifest commits); ``--full`` on later rounds so every text is re-embedded.
The headline ratio is ray end-to-end rate / plain encode-only rate (the harder comparison); the ratio
against plain with its model load is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from common import SHARED, bench_database, emit, peak_rss_mb

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def first_sentence(text: str, max_words: int = 60) -> str:
    sentence = text.split(". ")[0]
    return " ".join(sentence.split()[:max_words])


def load_texts(n: int) -> list[tuple[str, str]]:
    """``(title, text)`` pairs from the shared data sets, cycled with a round marker past their total."""
    pairs: list[tuple[str, str]] = []
    for line in (SHARED / "huffpost_2018" / "News_Category_Dataset_v2_head4782.json").open(encoding="utf-8"):
        r = json.loads(line)
        pairs.append((r["headline"], r["short_description"]))
    for line in (SHARED / "scifact" / "corpus.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        pairs.append((r["title"], first_sentence(r["text"])))
    for line in (SHARED / "bbc_news" / "bbc_news.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        paragraphs = [p for p in r["text"].split("\n") if p.strip()]
        pairs.append((r["title"], first_sentence(paragraphs[0] if paragraphs else "")))
    out: list[tuple[str, str]] = []
    i = 0
    while len(out) < n:
        title, text = pairs[i % len(pairs)]
        lap = i // len(pairs)
        out.append((f"{title} ({lap})" if lap else title, text))
        i += 1
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="number of texts")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved plain/ray rounds")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    from jobs.embed.text import embedding_text

    pairs = load_texts(args.n)
    texts = [embedding_text(t, x) for t, x in pairs]
    with bench_database() as url:
        return run(args, pairs, texts, url)


def run(args: argparse.Namespace, pairs: list[tuple[str, str]], texts: list[str], url: str) -> int:
    import ray

    from jobs.embed.encode import describe_model, encode, load_model
    from jobs.embed.pipeline import EmbedJobConfig, run_embed
    from storage.database import make_engine, make_session_factory, session_scope
    from storage.documents import DocumentRecord, DocumentRepository

    engine = make_engine(url, pool_size=1)
    with session_scope(make_session_factory(engine)) as session:
        repo = DocumentRepository(session)
        for start in range(0, len(pairs), 2000):
            repo.upsert_documents(
                documents=[
                    DocumentRecord(canonical_url=f"urn:bench:{i}", title=t, text=x)
                    for i, (t, x) in enumerate(pairs[start : start + 2000], start)
                ],
                source_id=None,
            )
    engine.dispose()
    storage = tempfile.mkdtemp(prefix="pulse-bench-vectors-")

    info = describe_model("default")
    tokenizer = load_model(info, threads=args.num_cpus).tokenizer
    tokens = sum(
        len(ids) for ids in tokenizer(texts, truncation=True, max_length=info.max_seq_length)["input_ids"]
    )

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    rounds: list[dict[str, float]] = []
    try:
        for r in range(args.rounds):
            t0 = time.perf_counter()
            model = load_model(info, threads=args.num_cpus)
            t1 = time.perf_counter()
            encode(model, texts, batch_size=args.batch_size, normalize=True)
            t2 = time.perf_counter()
            del model
            summary = run_embed(
                EmbedJobConfig(
                    database_url=url,
                    storage_uri=storage,
                    model_name="default",
                    batch_size=args.batch_size,
                    full=r > 0,
                    progress=False,
                )
            )
            assert summary.embedded == len(texts), summary
            rounds.append(
                {
                    "plain_load_s": t1 - t0,
                    "plain_encode_s": t2 - t1,
                    "plain_rate_encode_only": len(texts) / (t2 - t1),
                    "plain_rate_with_load": len(texts) / (t2 - t0),
                    "ray_s": summary.seconds,
                    "ray_rate": len(texts) / summary.seconds,
                    "ray_actors": summary.actors,
                    "ray_files": summary.files,
                    "ray_actor_load_s_sum": summary.actor_load_s,
                    "ray_actor_encode_s_sum": summary.actor_encode_s,
                }
            )
            print(json.dumps({"round": r, **rounds[-1]}), file=sys.stderr)
    finally:
        ray.shutdown()

    def med(key: str) -> float:
        return statistics.median(x[key] for x in rounds)

    result = {
        "benchmark": "embed",
        "n_texts": len(texts),
        "tokens": tokens,
        "mean_tokens_per_text": tokens / len(texts),
        "rounds": args.rounds,
        "cpus": args.num_cpus,
        "baseline": f"SentenceTransformer.encode in one process, all CPUs, batch {args.batch_size}",
        "plain_rate_encode_only": med("plain_rate_encode_only"),
        "plain_rate_with_load": med("plain_rate_with_load"),
        "ray_rate": med("ray_rate"),
        "ray_tokens_per_s": tokens / med("ray_s"),
        "plain_tokens_per_s": tokens / med("plain_encode_s"),
        "ratio_vs_encode_only": med("ray_rate") / med("plain_rate_encode_only"),
        "ratio_vs_encode_with_load": med("ray_rate") / med("plain_rate_with_load"),
        "ratios_per_round": [x["ray_rate"] / x["plain_rate_encode_only"] for x in rounds],
        "driver_peak_rss_mb": peak_rss_mb(),
        "per_round": rounds,
    }
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
