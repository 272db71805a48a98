"""Benchmark: the Ray Data embedding job against plain ``SentenceTransformer.encode`` in one process.

Same documents, same chunks, same run, interleaved rounds. Documents come from ``../shared/data``:
every BBC News article once, in full (title + body, several hundred words: 2-4 token windows each), and
HuffPost 2018 headlines + leads for the rest (one short window each), cycled with a lap marker in the
title once they run out so every document is distinct. The two kinds are mixed in a fixed shuffled
order and stored in a throwaway PostgreSQL database. Prints one JSON object (rounds on stderr).

    python bench/embed.py                      # 20,000 documents (all 2,225 BBC), 2 rounds
    python bench/embed.py --quick              # smoke run: 600 documents (100 BBC), 1 round
    python bench/embed.py --n 4000 --long 500 --rounds 1

Measured per round, the two sides in alternating order:

- plain, in a fresh process (so its memory is its own): the job's own chunking of every document
  (``TextRecipe.text_of``, the model's tokenizer, ``chunk_document`` with the job's window size, overlap
  and chunk limit), timed; the model loaded with torch on all CPUs, timed; then
  ``SentenceTransformer.encode`` of exactly those chunk texts (``text[char_start:char_end]``), timed.
- ray: ``run_embed`` end to end on a ``ray.init`` cluster (reading PostgreSQL, actor start, tokenizing
  and chunking, model load per actor, encoding, Parquet files, manifest commits); ``full`` on every run
  after the first so everything is re-embedded. The job is pinned to CPU (``device="cpu"``) here.

The job must produce the same number of chunks as the plain chunking (checked). Headline ``ratio`` =
ray chunks/s / plain chunks/s with plain = chunking + encode (no model load, no process start);
``ratio_vs_encode_only`` (plain = encode alone) and ``ratio_vs_plain_with_load`` are reported too.
Rates are documents/s, chunks/s and tokens/s (tokens: the chunks' token ids, special tokens included,
as the job counts them). Memory: the driver's peak RSS (Ray driver: documents, ingestion, the job's
bookkeeping; no model), the largest Ray encoder process's peak RSS, and the plain process's peak RSS.

With a CUDA GPU (``torch.cuda.is_available()`` in a fresh process), also: plain sentences/s of the model
in fp16 on the GPU (batch ``--gpu-batch-size``, HuffPost short texts repeated to 50,000 or more, after
a warm-up), plain GPU encode of the benchmark's chunk texts, and one ``run_embed`` on the GPU. Without
one, ``"gpu"`` is null with the reason.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from common import SHARED, bench_database, emit, peak_rss_mb

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: At least this many sentences in the GPU sentences/s measurement.
GPU_SENTENCES = 50_000


def long_documents() -> list[tuple[str, str]]:
    """Every BBC article: ``(title, full text)``."""
    with (SHARED / "bbc_news" / "bbc_news.jsonl").open(encoding="utf-8") as fh:
        return [(r["title"], r["text"]) for r in map(json.loads, fh)]


def short_documents() -> list[tuple[str, str]]:
    """Every HuffPost item: ``(headline, short_description)``."""
    path = SHARED / "huffpost_2018" / "News_Category_Dataset_v2_head4782.json"
    with path.open(encoding="utf-8") as fh:
        return [(r["headline"], r["short_description"]) for r in map(json.loads, fh)]


def load_documents(n: int, n_long: int) -> list[tuple[str, str, bool]]:
    """``(title, text, is_long)``: ``n_long`` BBC articles, HuffPost for the rest, in a fixed shuffle.

    HuffPost items are cycled past their count with ``" (lap)"`` appended to the title, so every
    document has its own content hash.
    """
    bbc = long_documents()
    if not 0 <= n_long <= min(n, len(bbc)):
        raise SystemExit(f"--long must be between 0 and min(--n, {len(bbc)}); got {n_long}")
    short = short_documents()
    docs = [(t, x, True) for t, x in bbc[:n_long]]
    for i in range(n - n_long):
        title, text = short[i % len(short)]
        lap = i // len(short)
        docs.append((f"{title} ({lap})" if lap else title, text, False))
    random.Random(0).shuffle(docs)
    return docs


def chunk_texts(pairs: list[tuple[str, str]]) -> tuple[list[str], list[int], list[int]]:
    """The job's chunking (``TokenizeBatch``): chunk texts, then chunks and tokens per document."""
    from jobs.embed.chunking import chunk_document, token_template
    from jobs.embed.encode import describe_model, load_tokenizer, model_token_limit
    from jobs.embed.recipe import TextRecipe

    info = describe_model("default")
    recipe = TextRecipe()  # EmbedJobConfig(recipe=None) registers the default recipe
    tokenizer = load_tokenizer(info)
    template = token_template(tokenizer, recipe.document_prefix)
    size = recipe.content_tokens(
        max_seq_length=model_token_limit(info, tokenizer),
        special_tokens=len(template.tail),
        prefix_tokens=len(template.head),
    )
    texts = [recipe.text_of(title or "", text or "") for title, text in pairs]
    out: list[str] = []
    chunks_per_doc: list[int] = []
    tokens_per_doc: list[int] = []
    for start in range(0, len(texts), 1000):  # batches like the job's blocks, not one giant call
        part = texts[start : start + 1000]
        encoded = tokenizer(part, add_special_tokens=False, return_offsets_mapping=True)
        for text, ids, offsets in zip(part, encoded["input_ids"], encoded["offset_mapping"], strict=True):
            chunks = chunk_document(
                ids,
                offsets,
                template=template,
                size=size,
                overlap=recipe.overlap,
                max_chunks=recipe.max_chunks,
            )
            out.extend(text[c.char_start : c.char_end] for c in chunks)
            chunks_per_doc.append(len(chunks))
            tokens_per_doc.append(sum(len(c.input_ids) for c in chunks))
    return out, chunks_per_doc, tokens_per_doc


def plain_round(
    pairs: list[tuple[str, str]], *, batch_size: int, threads: int, device: str, details: bool
) -> dict[str, Any]:
    """One plain round, run in a fresh process: chunking, model load, ``encode`` of the chunk texts."""
    import sentence_transformers  # noqa: F401  (imports are not timed: the job's actors import before work)
    import transformers  # noqa: F401

    from jobs.embed.encode import describe_model, encode, load_model

    t0 = time.perf_counter()
    texts, chunks_per_doc, tokens_per_doc = chunk_texts(pairs)
    t1 = time.perf_counter()
    info = describe_model("default")
    model = load_model(info, device=device, threads=threads)
    t2 = time.perf_counter()
    vectors = encode(model, texts, batch_size=batch_size, normalize=True)
    t3 = time.perf_counter()
    assert vectors.shape[0] == len(texts)
    out: dict[str, Any] = {
        "chunk_s": t1 - t0,
        "load_s": t2 - t1,
        "encode_s": t3 - t2,
        "chunks": len(texts),
        "tokens": sum(tokens_per_doc),
        "peak_rss_mb": peak_rss_mb(),
    }
    if details:  # untimed: what plain encode sees when it tokenizes the chunk texts again
        limit = model.max_seq_length
        lengths = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        out["chunks_per_doc"] = chunks_per_doc
        out["tokens_per_doc"] = tokens_per_doc
        out["retokenized_tokens"] = sum(min(n, limit) for n in lengths)
        out["retokenized_truncated_chunks"] = sum(n > limit for n in lengths)
    return out


def gpu_plain(
    sentences: list[str], pairs: list[tuple[str, str]], *, batch_size: int
) -> dict[str, Any] | None:
    """Run in a fresh process: the model in fp16 on CUDA; sentences/s, then the benchmark's chunk texts."""
    import torch

    if not torch.cuda.is_available():
        return None
    from jobs.embed.encode import describe_model, encode, load_model

    model = load_model(describe_model("default"), device="cuda")  # fp16 on CUDA
    encode(model, sentences[: 4 * batch_size], batch_size=batch_size, normalize=True)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    encode(model, sentences, batch_size=batch_size, normalize=True)  # returns numpy: synchronised
    sentences_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    texts, _, tokens_per_doc = chunk_texts(pairs)
    t2 = time.perf_counter()
    encode(model, texts, batch_size=batch_size, normalize=True)
    t3 = time.perf_counter()
    return {
        "device_name": torch.cuda.get_device_name(0),
        "sentences": len(sentences),
        "batch_size": batch_size,
        "sentences_s": sentences_s,
        "chunks": len(texts),
        "tokens": sum(tokens_per_doc),
        "chunk_s": t2 - t1,
        "encode_s": t3 - t2,
    }


def in_fresh_process(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a new spawned process (no Ray, no state from this one)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="number of documents (default 20,000)")
    parser.add_argument(
        "--long", type=int, default=None, help="how many of them are full BBC articles (default: all 2,225)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved plain/ray rounds (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: --n 600 --long 100 --rounds 1")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="CPU encode batch, both sides (default 64)"
    )
    parser.add_argument(
        "--num-cpus", type=int, default=os.cpu_count() or 2, help="ray.init(num_cpus=) (default: all)"
    )
    parser.add_argument(
        "--plain-threads", type=int, default=os.cpu_count() or 2, help="torch threads of plain (default: all)"
    )
    parser.add_argument(
        "--object-store-mb", type=int, default=1024, help="Ray object store size in MiB (default 1024)"
    )
    parser.add_argument(
        "--gpu-batch-size", type=int, default=1024, help="encode batch on a GPU, both sides (default 1024)"
    )
    args = parser.parse_args()
    if args.quick:
        args.n, args.long, args.rounds = 600, 100, 1
    if args.rounds < 1 or args.n < 1:
        parser.error("--n and --rounds must be at least 1")
    if args.long is None:
        args.long = min(args.n, len(long_documents()))
    docs = load_documents(args.n, args.long)
    with bench_database() as url:
        return run(args, docs, url)


def ingest(url: str, docs: list[tuple[str, str, bool]]) -> None:
    from storage.database import make_engine, make_session_factory, session_scope
    from storage.documents import DocumentRecord, DocumentRepository

    engine = make_engine(url, pool_size=1)
    with session_scope(make_session_factory(engine)) as session:
        repo = DocumentRepository(session)
        for start in range(0, len(docs), 2000):
            repo.upsert_documents(
                documents=[
                    DocumentRecord(canonical_url=f"urn:bench:{i}", title=t, text=x)
                    for i, (t, x, _) in enumerate(docs[start : start + 2000], start)
                ],
                source_id=None,
            )
    engine.dispose()


def run(args: argparse.Namespace, docs: list[tuple[str, str, bool]], url: str) -> int:
    import ray

    from jobs.embed.pipeline import EmbedJobConfig, run_embed
    from jobs.embed.recipe import TextRecipe

    ingest(url, docs)
    pairs = [(t, x) for t, x, _ in docs]
    n = len(docs)
    storage = tempfile.mkdtemp(prefix="pulse-bench-vectors-")
    jobs_run = 0

    def ray_job(device: str, batch_size: int) -> Any:
        nonlocal jobs_run
        summary = run_embed(
            EmbedJobConfig(
                database_url=url,
                storage_uri=storage,
                model_name="default",
                device=device,
                batch_size=batch_size,
                gpu_batch_size=args.gpu_batch_size,
                full=jobs_run > 0,
                progress=False,
            )
        )
        jobs_run += 1
        return summary

    ray.init(
        address="local",  # always a new cluster of its own, never one `ray start` left running
        num_cpus=args.num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
        object_store_memory=args.object_store_mb * 1024 * 1024,
    )
    rounds: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    gpu: dict[str, Any] | None = None
    gpu_reason = ""
    try:
        for r in range(args.rounds):
            plain: dict[str, Any] = {}
            summary: Any = None
            for side in ("plain", "ray") if r % 2 == 0 else ("ray", "plain"):
                if side == "plain":
                    plain = in_fresh_process(
                        plain_round,
                        pairs,
                        batch_size=args.batch_size,
                        threads=args.plain_threads,
                        device="cpu",
                        details=r == 0,
                    )
                else:
                    summary = ray_job("cpu", args.batch_size)
            if r == 0:
                details = {
                    k: plain.pop(k)
                    for k in list(plain)
                    if k.startswith(("retokenized", "chunks_per", "tokens_per"))
                }
            assert summary.embedded == n, f"the job embedded {summary.embedded} documents, not {n}: {summary}"
            assert summary.chunks == plain["chunks"], (
                f"the job made {summary.chunks} chunks, the plain chunking {plain['chunks']}: "
                "the benchmark no longer reproduces the job's chunking"
            )
            plain_s = plain["chunk_s"] + plain["encode_s"]
            rounds.append(
                {
                    "plain_chunk_s": plain["chunk_s"],
                    "plain_load_s": plain["load_s"],
                    "plain_encode_s": plain["encode_s"],
                    "plain_s": plain_s,
                    "plain_peak_rss_mb": plain["peak_rss_mb"],
                    "plain_tokens": plain["tokens"],
                    "ray_s": summary.seconds,
                    "ray_tokens": summary.tokens,
                    "ray_encoders": summary.actors,
                    "ray_files": summary.files,
                    "ray_actor_load_s_sum": summary.actor_load_s,
                    "ray_actor_encode_s_sum": summary.actor_encode_s,
                    "ray_actor_peak_rss_mb": summary.actor_peak_rss_mb,
                    "ray_devices": list(summary.devices),
                    "ratio": plain_s / summary.seconds,
                    "ratio_vs_encode_only": plain["encode_s"] / summary.seconds,
                }
            )
            print(json.dumps({"round": r, **rounds[-1]}), file=sys.stderr, flush=True)

        sentences = [TextRecipe().text_of(t, x) for t, x in short_documents()]
        sentences = (sentences * (GPU_SENTENCES // len(sentences) + 1))[:GPU_SENTENCES]
        gpu_plain_result = in_fresh_process(gpu_plain, sentences, pairs, batch_size=args.gpu_batch_size)
        if gpu_plain_result is None:
            gpu_reason = "torch.cuda.is_available() is False in a fresh process"
        elif ray.cluster_resources().get("GPU", 0) < 1:  # type: ignore[no-untyped-call]
            gpu_reason = "torch sees a GPU but the Ray cluster has none: ray job on GPU not run"
            gpu = gpu_plain_result
        else:
            gpu = gpu_plain_result
            summary = ray_job("cuda", args.batch_size)
            assert summary.embedded == n and summary.chunks == gpu["chunks"], (summary, gpu["chunks"])
            gpu_plain_s = gpu["chunk_s"] + gpu["encode_s"]
            gpu.update(
                {
                    "ray_s": summary.seconds,
                    "ray_devices": list(summary.devices),
                    "ray_encoders": summary.actors,
                    "ray_actor_load_s_sum": summary.actor_load_s,
                    "ray_docs_per_s": n / summary.seconds,
                    "ray_chunks_per_s": summary.chunks / summary.seconds,
                    "plain_chunks_per_s": gpu["chunks"] / gpu_plain_s,
                    "ratio": gpu_plain_s / summary.seconds,
                }
            )
        if gpu is not None:
            gpu["gpu_sentences_per_s"] = gpu["sentences"] / gpu.pop("sentences_s")
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)

    def med(key: str) -> float:
        return float(statistics.median(x[key] for x in rounds))

    chunks = sum(details["chunks_per_doc"])
    tokens = sum(details["tokens_per_doc"])
    is_long = [d[2] for d in docs]
    chunks_long = sum(c for c, lg in zip(details["chunks_per_doc"], is_long, strict=True) if lg)
    tokens_long = sum(t for t, lg in zip(details["tokens_per_doc"], is_long, strict=True) if lg)
    plain_s, ray_s = med("plain_s"), med("ray_s")

    def rates(seconds: float) -> dict[str, float]:
        return {"docs_per_s": n / seconds, "chunks_per_s": chunks / seconds, "tokens_per_s": tokens / seconds}

    result = {
        "benchmark": "embed",
        "n_documents": n,
        "n_long": args.long,
        "n_short": n - args.long,
        "chunks": chunks,
        "chunks_long": chunks_long,
        "chunks_short": chunks - chunks_long,
        "tokens": tokens,
        "tokens_long": tokens_long,
        "tokens_short": tokens - tokens_long,
        "mean_tokens_per_chunk": tokens / chunks,
        "ray_tokens_match": all(x["ray_tokens"] == x["plain_tokens"] for x in rounds),
        "plain_retokenized_tokens": details["retokenized_tokens"],
        "plain_retokenized_truncated_chunks": details["retokenized_truncated_chunks"],
        "rounds": args.rounds,
        "cpus": args.num_cpus,
        "baseline": (
            f"SentenceTransformer.encode of the job's chunk texts in one fresh process, "
            f"{args.plain_threads} torch threads, batch {args.batch_size}; time = chunking + encode"
        ),
        "plain": {**rates(plain_s), "seconds": plain_s},
        "plain_encode_only": {**rates(med("plain_encode_s")), "seconds": med("plain_encode_s")},
        "plain_chunk_s": med("plain_chunk_s"),
        "plain_load_s": med("plain_load_s"),
        "ray": {**rates(ray_s), "seconds": ray_s},
        "ratio": plain_s / ray_s,
        "ratio_vs_encode_only": med("plain_encode_s") / ray_s,
        "ratio_vs_plain_with_load": (plain_s + med("plain_load_s")) / ray_s,
        "ratios_per_round": [x["ratio"] for x in rounds],
        "ratios_vs_encode_only_per_round": [x["ratio_vs_encode_only"] for x in rounds],
        "memory": {
            "driver_peak_rss_mb": peak_rss_mb(),
            "ray_encoder_peak_rss_mb": max(x["ray_actor_peak_rss_mb"] for x in rounds),
            "ray_encoders": rounds[0]["ray_encoders"],
            "plain_peak_rss_mb": max(x["plain_peak_rss_mb"] for x in rounds),
            "note": (
                "driver: this process (Ray driver, documents, ingestion; no model); ray encoder: the "
                "largest encoder actor process (there are ray_encoders of them, plus reader and tokenizer "
                "actors and Ray's own processes, not counted); plain: the fresh process that ran the "
                "baseline (chunking, model, encode)"
            ),
        },
        "gpu_sentences_per_s": gpu["gpu_sentences_per_s"] if gpu else None,
        "gpu": gpu,
        **({"gpu_reason": gpu_reason} if gpu_reason else {}),
        "per_round": rounds,
    }
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
