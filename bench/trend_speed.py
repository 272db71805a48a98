"""Benchmark: speed and memory of Pulse's trend clusterer, against plain FAISS and BERTopic in the same run.

Prints one JSON object; progress goes to stderr.

    python bench/trend_speed.py                       # every part (about 10 minutes here)
    python bench/trend_speed.py --part throughput --runs 5
    python bench/trend_speed.py --part recluster --no-bertopic

- **throughput**: documents/s through ``TrendClusterer.add`` (default ``ClustererParams`` with re-clusters
  switched off: ``recluster_every`` and ``recluster_hours`` huge) on a window already holding stories: the
  first 20,000 tweets of Tweets-T (one minute apart) added and re-clustered once, then the next 10,000
  added (immediate assignment and births, as the actor does between re-clusters), from the same snapshot
  each run; median of ``--runs`` (3). Baseline: plain FAISS ``IndexFlatIP`` over the same story centroids,
  searched with the same vectors in the same batches of 256 (nearest centroid only). ``ratio``: Pulse / FAISS.
- **recluster**: ``jobs.recluster.communities.window_communities`` (kNN graph + Leiden, stories and topics:
  what a re-cluster computes) of 100,000 vectors, from scratch: real MiniLM vectors of Tweets-T, HuffPost
  and BBC (37,329) and noisy copies of them (Gaussian noise, renormalised, cosine about 0.9 to the original;
  seeded) up to 100,000. Target: under 2 minutes. Baseline: BERTopic (seeded UMAP,
  ``calculate_probabilities=False``) fitted on the same 100,000 precomputed vectors (copies carry their
  original's text), in a subprocess stopped after 5 minutes (then the figure is a lower bound). ``ratio``:
  BERTopic / Pulse.
- **memory**: a ``TrendClusterer`` holding a 1,000,000-vector window (``window_size`` 1,000,000): 990,000
  vectors (copies of the 100,000 above with a little more noise, each in its original's story) restored
  as from a snapshot, then the last 10,000 added with assignment; in a fresh subprocess, so the figures are
  its own: peak RSS (``getrusage``; includes restoring, which copies the arrays), RSS once the window is
  held, and the peak while adding (sampled). No re-cluster of 1,000,000. Target: under 8 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import emit, median
from trend_data import LOADERS, vectors
from trend_quality import communities_of, described_params, product_params

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BASE = 20_000  #: tweets in the window before the throughput is measured
TIMED = 10_000  #: tweets added while it is measured
BATCH = 256  #: ``TrendClusterer.add``'s batch, used by the FAISS baseline too
RECLUSTER_SIZE = 100_000
WINDOW_SIZE = 1_000_000
ADDED = 10_000  #: of the 1,000,000-vector window, the vectors added with assignment
COPY_NOISE = 0.025  #: std of the Gaussian noise of a copy (cosine about 0.9 to its original)
BERTOPIC_LIMIT_S = 300
TARGETS = {"recluster_s": 120, "window_peak_gb": 8}
DAY = 86_400


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def params_without_recluster(**changes: Any) -> tuple[Any, Any]:
    """The actor's parameters (``product_params``) with re-clusters switched off."""
    return product_params(recluster_every=10**12, recluster_hours=1e12, **changes)


def noisy_copies(x: np.ndarray, rows: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = x[rows] + rng.normal(0.0, sigma, size=(len(rows), x.shape[1])).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    copies: np.ndarray = out.astype(np.float32)
    return copies


# ---------------------------------------------------------------------------------------- throughput
def throughput(runs: int) -> dict[str, Any]:
    import faiss

    from actors.trend_clusterer import TrendClusterer

    x = vectors(LOADERS["tweets"]())[: BASE + TIMED]
    ids = np.arange(len(x), dtype=np.int64) + 1
    times = ids * 60
    params, community = params_without_recluster()
    log(f"throughput: a window of {BASE} tweets, re-clustered once")
    t0 = time.perf_counter()
    base = TrendClusterer(params, communities_of(community))
    base.add(ids[:BASE], x[:BASE], times[:BASE])
    base.recluster()
    base.drain()
    arrays, info = base.snapshot()
    prepare_s = time.perf_counter() - t0
    live = arrays["story_counts"] > 0
    centroids = arrays["story_sums"][live]
    centroids = np.ascontiguousarray(centroids / np.linalg.norm(centroids, axis=1, keepdims=True), np.float32)
    new_ids, new_x, new_t = ids[BASE:], x[BASE:], times[BASE:]
    pulse_s, faiss_s, assigned = [], [], []
    for run in range(runs):
        clusterer = TrendClusterer.restore(params, communities_of(community), arrays, info)
        t0 = time.perf_counter()
        clusterer.add(new_ids, new_x, new_t)
        pulse_s.append(time.perf_counter() - t0)
        assigned.append(int((clusterer.story_of(new_ids) >= 0).sum()))
        faiss.omp_set_num_threads(1)
        index = faiss.IndexFlatIP(centroids.shape[1])
        index.add(centroids)
        t0 = time.perf_counter()
        for start in range(0, len(new_x), BATCH):
            index.search(new_x[start : start + BATCH], 1)
        faiss_s.append(time.perf_counter() - t0)
        log(
            f"  run {run + 1}: Pulse {TIMED / pulse_s[-1]:.0f} docs/s, FAISS {TIMED / faiss_s[-1]:.0f} docs/s"
        )
    pulse_rate, faiss_rate = TIMED / median(pulse_s), TIMED / median(faiss_s)
    return {
        "window": {"documents": BASE, "stories": int(live.sum()), "prepare_s": round(prepare_s, 1)},
        "added": TIMED,
        "runs": runs,
        "pulse_docs_per_s": round(pulse_rate),
        "pulse_assigned_or_born": int(median([float(a) for a in assigned])),
        "faiss_flat_ip_docs_per_s": round(faiss_rate),
        "ratio_pulse_faiss": round(pulse_rate / faiss_rate, 3),
    }


# ----------------------------------------------------------------------------------------- recluster
def hundred_thousand() -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """100,000 vectors: every real one of the three data sets, then noisy copies (module docstring)."""
    parts = [(c, vectors(c)) for c in (LOADERS[n]() for n in ("tweets", "huffpost", "bbc"))]
    real = np.concatenate([x for _, x in parts])
    texts = [t for c, _ in parts for t in c.texts]
    rows = np.random.default_rng(7).integers(0, len(real), RECLUSTER_SIZE - len(real))
    copies = noisy_copies(real, rows, COPY_NOISE, seed=8)
    cosine = float(np.einsum("ij,ij->i", copies, real[rows]).mean())
    described = {
        "real": len(real),
        "copies": len(rows),
        "copy_noise_std": COPY_NOISE,
        "copy_cosine_mean": round(cosine, 3),
    }
    return np.concatenate([real, copies]), texts + [texts[i] for i in rows], described


def recluster_part(x: np.ndarray, described: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
    """A re-cluster of the whole window from scratch, as the clusterer calls it (its documents spread
    evenly over ``window_days``)."""
    params, community = product_params()
    communities = communities_of(community)
    times = 1_500_000_000 + (np.arange(len(x)) * (params.window_days * DAY / len(x))).astype(np.int64)
    log(f"recluster: window_communities of {len(x)} vectors")
    t0 = time.perf_counter()
    stories, topics = communities(x, np.full(len(x), -1, np.int64), times)
    seconds = time.perf_counter() - t0
    graph = community.graph
    return {
        "vectors": described,
        "times": f"spread evenly over {params.window_days:g} days",
        "graph": (
            f"k={graph.k} (stories), {community.topic_k} (topics), "
            f"{'exact' if len(x) <= graph.exact_max else 'HNSW'}, threads={graph.threads}"
        ),
        "pulse_s": round(seconds, 1),
        "stories": int(stories.max() + 1),
        "topics": int(topics.max() + 1),
        "noise": round(float((stories < 0).mean()), 3),
        "target_met": seconds < TARGETS["recluster_s"],
    }, stories


def bertopic_part(x: np.ndarray, texts: list[str], folder: Path) -> dict[str, Any]:
    """BERTopic on the same vectors in a subprocess, stopped at ``BERTOPIC_LIMIT_S``."""
    np.save(folder / "x.npy", x)
    (folder / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    log(f"BERTopic on {len(x)} precomputed vectors (stopped after {BERTOPIC_LIMIT_S} s)")
    t0 = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", "bertopic", "--folder", str(folder)],
            capture_output=True,
            text=True,
            timeout=BERTOPIC_LIMIT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"bertopic_s": None, "bertopic_s_at_least": BERTOPIC_LIMIT_S, "stopped": True}
    if done.returncode != 0:
        return {"bertopic_skipped": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    child = json.loads(done.stdout)
    return {**child, "bertopic_wall_s": round(time.perf_counter() - t0, 1)}


def bertopic_child(folder: Path) -> dict[str, Any]:
    try:
        from bertopic import BERTopic
        from umap import UMAP
    except ImportError as exc:
        raise SystemExit(f"BERTopic baseline skipped: {exc}") from exc
    x = np.load(folder / "x.npy")
    texts = json.loads((folder / "texts.json").read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=42)
    topics, _ = BERTopic(umap_model=umap_model, calculate_probabilities=False).fit_transform(
        texts, embeddings=x
    )
    labels = np.asarray(topics)
    return {
        "bertopic_s": round(time.perf_counter() - t0, 1),
        "bertopic_topics": int(labels.max() + 1),
        "bertopic_noise": round(float((labels < 0).mean()), 3),
    }


# -------------------------------------------------------------------------------------------- memory
def memory_part(x: np.ndarray, stories: np.ndarray, folder: Path) -> dict[str, Any]:
    np.save(folder / "x.npy", x)
    np.save(folder / "stories.npy", stories)
    log(f"memory: a {WINDOW_SIZE}-vector window in a subprocess")
    done = subprocess.run(
        [sys.executable, __file__, "--child", "window", "--folder", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-5:]}
    child: dict[str, Any] = json.loads(done.stdout)
    child["target_met"] = child["peak_rss_gb"] < TARGETS["window_peak_gb"]
    return child


def rss_gb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**30


def window_child(folder: Path) -> dict[str, Any]:
    """The 1,000,000-vector window of the module docstring, measured in this (fresh) process."""
    from scipy.sparse import csr_matrix

    from actors.trend_clusterer import TrendClusterer

    start_gb = rss_gb()
    source = np.load(folder / "x.npy")
    source_story = np.load(folder / "stories.npy")
    held = WINDOW_SIZE - ADDED
    rows = np.arange(held) % len(source)
    x = np.empty((held, source.shape[1]), np.float32)  # filled in place: no second copy while building
    for s in range(0, held, 100_000):
        x[s : s + 100_000] = noisy_copies(source, rows[s : s + 100_000], 0.01, seed=s)
    story = source_story[rows]
    times = (np.arange(held, dtype=np.int64) * 2) + 1_500_000_000  # two seconds apart: 23 days
    sids, members = np.unique(story[story >= 0], return_inverse=True)
    in_story = np.flatnonzero(story >= 0)
    membership = csr_matrix(
        (np.ones(len(in_story), np.float32), (members, in_story)), shape=(len(sids), held)
    )
    sums = np.asarray(membership @ x, np.float32)
    counts = np.bincount(members, minlength=len(sids))
    lasts = np.zeros(len(sids), np.int64)
    np.maximum.at(lasts, members, times[in_story])
    arrays = {
        "ids": np.arange(held, dtype=np.int64) + 1,
        "vectors": x,
        "times": times,
        "story": np.where(story >= 0, story + 1, -1),
        "story_ids": sids + 1,
        "story_sums": sums,
        "story_counts": counts.astype(np.int64),
        "story_lasts": lasts,
        "story_topics": np.full(len(sids), -1, np.int64),
        "topic_ids": np.empty(0, np.int64),
        "topic_counts": np.empty(0, np.int64),
    }
    info = {
        "id_base": 0,
        "dim": x.shape[1],
        "next_story": int(sids.max(initial=0)) + 2,
        "next_topic": 1,
        "since_recluster": 0,
        "last_recluster_time": int(times[-1]),
        "clock": int(times[-1]),
        "reclusters": 1,
    }
    params, community = params_without_recluster(window_size=WINDOW_SIZE)
    t0 = time.perf_counter()
    clusterer = TrendClusterer.restore(params, communities_of(community), arrays, info)
    restore_s = time.perf_counter() - t0
    del arrays, x, story, times, source_story
    held_gb = rss_gb()
    new = noisy_copies(source, np.arange(ADDED) % len(source), 0.01, seed=99)
    del source
    peak = [rss_gb()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak.append(rss_gb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    new_ids = np.arange(held, WINDOW_SIZE, dtype=np.int64) + 1
    clusterer.add(new_ids, new, held * 2 + 1_500_000_000 + np.arange(ADDED, dtype=np.int64) * 2)
    add_s = time.perf_counter() - t0
    stop.set()
    sampler.join()
    return {
        "window": clusterer.size,
        "stories": len(clusterer.active_stories()),
        "vectors_gb": round(clusterer.size * clusterer.dim * 4 / 2**30, 2),
        "rss_at_start_gb": round(start_gb, 2),
        "rss_window_held_gb": round(held_gb, 2),
        "peak_rss_while_adding_gb": round(max(peak), 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "restore_s": round(restore_s, 1),
        "added": ADDED,
        "add_docs_per_s": round(ADDED / add_s),
        "assigned_or_born": int((clusterer.story_of(new_ids) >= 0).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["throughput", "recluster", "memory", "all"], default="all")
    parser.add_argument("--runs", type=int, default=3, help="throughput runs (median); default 3")
    parser.add_argument("--no-bertopic", action="store_true", help="skip BERTopic on the 100,000 vectors")
    parser.add_argument("--child", choices=["bertopic", "window"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run = bertopic_child if args.child == "bertopic" else window_child
        sys.stdout.write(json.dumps(run(args.folder)) + "\n")
        return 0
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "trend_speed",
        "part": args.part,
        "cpus": os.cpu_count(),
        "params": described_params(),
    }
    if args.part in ("throughput", "all"):
        result["throughput"] = throughput(args.runs)
    if args.part in ("recluster", "memory", "all"):
        x, texts, described = hundred_thousand()
        with tempfile.TemporaryDirectory(prefix="pulse-trend-speed-") as tmp:
            if args.part == "memory":  # the window's stories from a re-cluster of the real vectors only
                x = x[: described["real"]]
                _, stories = recluster_part(x, described)
            else:
                result["recluster"], stories = recluster_part(x, described)
                if not args.no_bertopic:
                    result["recluster"].update(bertopic_part(x, texts, Path(tmp)))
                    theirs = result["recluster"].get("bertopic_s") or result["recluster"].get(
                        "bertopic_s_at_least"
                    )
                    if theirs:
                        result["recluster"]["ratio_bertopic_pulse"] = round(
                            theirs / result["recluster"]["pulse_s"], 2
                        )
            if args.part in ("memory", "all"):
                result["memory"] = memory_part(x, stories, Path(tmp))
    result["seconds"] = round(time.perf_counter() - started, 1)
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
