"""Benchmark: quality of Pulse's trend clustering (topics, stories, stability), against BERTopic and HDBSCAN.

Every system gets the same cached MiniLM vectors (``trend_data.vectors``: all-MiniLM-L6-v2, normalised).
Scores (``trend_metrics.py``): NMI and ARI with noise counted as one label of its own, pairwise precision,
recall and F1 (noise documents as singletons), the noise share and the cluster count. Prints one JSON
object; progress goes to stderr.

    python bench/trend_quality.py                      # every part, core side (about 10 minutes here)
    python bench/trend_quality.py --part topics        # BBC and HuffPost only
    python bench/trend_quality.py --part stories --runs 3
    python bench/trend_quality.py --front-door         # also through `pulse` + HTTP (see below)

**The core side** feeds each corpus through ``actors.trend_clusterer.TrendClusterer`` (default
``ClustererParams`` and ``jobs.recluster.communities.window_communities`` configured as ``pulse up``
configures the actor: settings' defaults, ``PULSE_TRENDS__*`` from the environment; ``params`` in the JSON)
in stream order, draining its deltas after each ``add`` call as the actor does, and tracks each document's
first story, its latest story (merges followed to the survivor) and each story's topic:

- BBC News (``../shared/data/bbc_news``, 2,225 articles, 5 categories, no dates): every article at noon
  of one day, 500 per call. HuffPost 2018 (4,782 headlines, 19 categories, 88 days): its dates at noon
  UTC, oldest first, one day per call (the same replay serves the topic level and the stability part).
  Tweets-T (``story_tweets``, 30,322 tweets, 269 stories): line order, one minute apart, 500 per call.
- **topics** (BBC, HuffPost; categories as labels): a document's topic is the topic of its final story
  (no story: noise). Against BERTopic (``embeddings=`` the same vectors, ``UMAP(random_state=42)``,
  ``calculate_probabilities=False``, otherwise its defaults), plain HDBSCAN (``min_cluster_size=10`` on
  the vectors) and KMeans told the true number of classes (an oracle: Pulse is told nothing).
  ``ratio``: Pulse / BERTopic. Targets: NMI >= 0.75 on BBC, >= 0.35 on HuffPost, noise <= 20 %.
- **stories** (Tweets-T, story labels): the final stories against BERTopic in batch and plain HDBSCAN.
  Targets: NMI >= 0.90 and better than BERTopic on NMI, ARI and pairwise F1.
- **stability** (the HuffPost replay, periodic re-clusters included): ``share``, of the documents that
  ever got a story, those whose story at the end is the first id they got (target >= 0.9); and for each
  event of the data set's SOURCE.md (keywords matched in ``headline. short_description``, lower-cased):
  its first article's day and its onset (the first day with 3 of its articles within 3 days: a lone early
  mention is not the event), the story holding most of its articles at the end, the day that story was born
  (a birth or split in a drained delta), and the first day from then on when its lifecycle
  (``actors.trend_lifecycle.lifecycle`` of the story's members' daily counts, at the partition's clock)
  reads ``emerging``: the day it was flagged. ``delay_days``: flagged day - onset (target
  <= 1 day for the five dated events; the three spread over the window are reported, not targeted). A
  story born before the event's first article means the event was absorbed by an older story.

**The front door** (``--front-door``), per data set, in the same run: a fresh database and a private
platform (``bench/front_door.py``: `pulse up --no-sample`, free ports, its own Ray node), the corpus as
JSONL (id, title, text, category, published_at, url where the data has one) through `pulse ingest` and
`pulse embed` (the embed job's own text recipe, same model), then ``GET /v1/trends`` polled until its
stories stop changing, paged through (``limit=200``, ``cursor``) with each story's ``topic_id``, and
``GET /v1/trends/{id}/documents`` paged for each story; documents are mapped back by URL (``urn:pulse:
<source>:<id>`` without one) and scored by the same code. ``difference``: front door - core. Stability
is not measured there: the API does not keep a document's first story, and `pulse embed` hands the
clusterer a whole corpus at once, not day by day.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from common import emit
from trend_data import LOADERS, Corpus, vectors
from trend_metrics import Scores, ratio, score

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DAY = 86_400
#: BBC has no dates: every article is published at noon of this day.
BBC_DAY = "2005-06-01"
#: Tweets-T has no times: tweet i is published i minutes after this.
TWEETS_START = datetime(2012, 1, 1, tzinfo=UTC)
#: Documents per ``add`` call where the data has no days to group by.
CALL_SIZE = 500
#: The events of ``huffpost_2018/SOURCE.md``: keyword -> whether the issue targets it (dated events).
EVENTS = {
    "march for our lives": True,
    "cambridge analytica": True,
    "syria": True,
    "royal wedding": True,
    "santa fe": True,
    "stormy": False,
    "mueller": False,
    "kim jong": False,
}
#: An event's burst begins on the first day with this many of its articles within ``ONSET_DAYS`` days.
ONSET_ARTICLES = 3
ONSET_DAYS = 3
TARGETS = {
    "topics": {"bbc_nmi": 0.75, "huffpost_nmi": 0.35, "noise": 0.20},
    "stories": {"nmi": 0.90},
    "stability": {"share": 0.9, "delay_days": 1},
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def published(corpus: Corpus) -> list[str]:
    """Each document's publication time (ISO, UTC), as the benchmark gives it (module docstring)."""
    if corpus.name == "tweets":
        return [(TWEETS_START + timedelta(minutes=i)).isoformat() for i in range(len(corpus.ids))]
    days = corpus.dates or [BBC_DAY] * len(corpus.ids)
    return [f"{d}T12:00:00+00:00" for d in days]


def epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def calls_of(corpus: Corpus, times: np.ndarray) -> list[np.ndarray]:
    """The rows given to each ``add`` call: one day each when the data has dates, else ``CALL_SIZE``."""
    if corpus.dates is not None:
        days = times // DAY
        return [np.flatnonzero(days == d) for d in np.unique(days)]
    return [np.arange(s, min(s + CALL_SIZE, len(times))) for s in range(0, len(times), CALL_SIZE)]


# ---------------------------------------------------------------------------------------------- core
@dataclass
class Tracker:
    """What a reader of the drained deltas knows: each document's first and latest story, merges,
    topics, and when each story was born. Documents are rows 0..n-1, given to the clusterer as id row+1."""

    n: int
    first: np.ndarray = field(init=False)
    latest: np.ndarray = field(init=False)
    topic: np.ndarray = field(init=False)  #: each document's latest topic (-1: none)
    merged: dict[int, int] = field(default_factory=dict)
    topic_of: dict[int, int] = field(default_factory=dict)
    topic_merged: dict[int, int] = field(default_factory=dict)
    born: dict[int, int] = field(default_factory=dict)  #: story -> call index of its birth or split

    def __post_init__(self) -> None:
        self.first = np.full(self.n, -1, np.int64)
        self.latest = np.full(self.n, -1, np.int64)
        self.topic = np.full(self.n, -1, np.int64)

    def take(self, delta: Any, call: int) -> None:
        for doc, (story, *_) in delta.assignments.items():
            row = doc - 1
            if self.first[row] < 0:
                self.first[row] = story
            self.latest[row] = story
        for doc in delta.unassigned:
            self.latest[doc - 1] = -1
        for doc, (topic, _time) in delta.document_topics.items():
            self.topic[doc - 1] = topic
        for story, (topic, _status, into) in delta.stories.items():
            if topic is not None:
                self.topic_of[story] = topic
            if into is not None:
                self.merged[story] = into
        for event in delta.lineage:
            if event.level == "story" and event.kind in ("birth", "split"):
                self.born.setdefault(event.subject, call)
            if event.level == "topic" and event.kind == "merge":
                for old in event.related:
                    self.topic_merged[old] = event.subject

    def stories(self) -> np.ndarray:
        """Each document's story now, merges followed to the survivor (-1: none)."""
        return np.asarray([_follow(int(s), self.merged) if s >= 0 else -1 for s in self.latest], np.int64)

    def topics(self) -> np.ndarray:
        """Each document's topic now, merges followed to the survivor (-1: none)."""
        followed = [_follow(int(t), self.topic_merged) if t >= 0 else -1 for t in self.topic]
        return np.asarray(followed, np.int64)


def _follow(x: int, links: dict[int, int]) -> int:
    seen = set()
    while x in links and x not in seen:
        seen.add(x)
        x = links[x]
    return x


@dataclass
class Stream:
    corpus: str
    tracker: Tracker
    stories: np.ndarray
    topics: np.ndarray
    clocks: list[int]  #: the partition's clock after each call
    snapshots: list[np.ndarray]  #: each document's story after each call (kept when asked)
    reclusters: int
    seconds: float


def product_params(**changes: Any) -> tuple[Any, Any]:
    """(``ClustererParams``, ``CommunityParams``) as ``pulse up`` configures the clusterer actors
    (``cluster.top.trends.clusterer_params``, ``cluster.top.job_configs.community_params``): settings'
    defaults and ``PULSE_TRENDS__*`` from the environment (no .env file); ``changes`` to the first."""
    from cluster.ground.settings import Settings
    from cluster.top.job_configs import community_params
    from cluster.top.trends import clusterer_params

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    return replace(clusterer_params(settings), **changes), community_params(settings)


def communities_of(community: Any) -> Any:
    """The clusterer's re-cluster: ``window_communities`` bound to ``community``."""
    from jobs.recluster.communities import window_communities

    return functools.partial(window_communities, params=community)


def new_clusterer(*, id_base: int = 0, **changes: Any) -> Any:
    """A ``TrendClusterer`` configured as the actor (``product_params``)."""
    from actors.trend_clusterer import TrendClusterer

    params, community = product_params(**changes)
    return TrendClusterer(params, communities_of(community), id_base=id_base)


def described_params() -> dict[str, Any]:
    params, community = product_params()
    return {"clusterer": asdict(params), "communities": asdict(community)}


def replay(corpus: Corpus, x: np.ndarray, times: np.ndarray, *, keep_snapshots: bool = False) -> Stream:
    """Feed the corpus through ``TrendClusterer`` in stream order (module docstring)."""
    from cluster.ground.constants import TREND_ID_BLOCK

    clusterer = new_clusterer(id_base=TREND_ID_BLOCK)
    tracker = Tracker(len(x))
    ids = np.arange(len(x), dtype=np.int64) + 1
    clocks: list[int] = []
    snapshots: list[np.ndarray] = []
    started = time.perf_counter()
    calls = calls_of(corpus, times)
    for i, rows in enumerate(calls):
        clusterer.add(ids[rows], x[rows], times[rows])
        tracker.take(clusterer.drain(), i)
        clocks.append(int(clusterer.clock or 0))
        if keep_snapshots:
            snapshots.append(tracker.stories())
        if (i + 1) % max(1, len(calls) // 10) == 0:
            log(f"  {corpus.name}: call {i + 1}/{len(calls)}, {clusterer.reclusters} re-clusters")
    seconds = time.perf_counter() - started
    stories = tracker.stories()
    return Stream(
        corpus.name,
        tracker,
        stories,
        tracker.topics(),
        clocks,
        snapshots,
        clusterer.reclusters,
        seconds,
    )


def stability(stream: Stream) -> dict[str, Any]:
    """The share of documents whose final story is the first id they got (of those that got one)."""
    got = stream.tracker.first >= 0
    same = got & (stream.tracker.first == stream.tracker.latest)
    following = got & (
        np.asarray([_follow(int(s), stream.tracker.merged) for s in stream.tracker.first]) == stream.stories
    )
    return {
        "documents_with_a_story": int(got.sum()),
        "share": round(float(same.sum() / max(got.sum(), 1)), 3),
        "share_following_merges": round(float(following.sum() / max(got.sum(), 1)), 3),
        "lost_their_story": int((got & (stream.stories < 0)).sum()),
    }


def emergence(corpus: Corpus, times: np.ndarray, stream: Stream) -> dict[str, Any]:
    """Per SOURCE.md event: first article's day, the story holding most of it, when that story was born
    and first flagged emerging (module docstring)."""
    from actors.trend_lifecycle import LifecycleParams, lifecycle

    params = LifecycleParams()
    texts = [t.lower() for t in corpus.texts]
    day_of = times // DAY
    out: dict[str, Any] = {}
    for keyword, targeted in EVENTS.items():
        rows = np.asarray([i for i, t in enumerate(texts) if keyword in t], np.int64)
        first = int(day_of[rows].min())
        start = onset(day_of[rows])
        row: dict[str, Any] = {
            "targeted": targeted,
            "articles": len(rows),
            "first_article": _iso_day(first),
            "onset": _iso_day(start),
        }
        held = Counter(int(s) for s in stream.stories[rows] if s >= 0)
        if not held:
            out[keyword] = {**row, "story": None, "flagged": None, "delay_days": None, "met": False}
            continue
        story, count = held.most_common(1)[0]
        born_call = stream.tracker.born.get(story)
        flagged_call = None
        for call in range(born_call if born_call is not None else len(stream.clocks), len(stream.clocks)):
            members = stream.snapshots[call] == story
            days, counts = np.unique(day_of[members], return_counts=True)
            series = [(_day_start(int(d)), int(c)) for d, c in zip(days, counts, strict=True)]
            now = datetime.fromtimestamp(stream.clocks[call], UTC)
            if series and lifecycle(series, now=now, params=params).state == "emerging":
                flagged_call = call
                break
        born_day = None if born_call is None else int(stream.clocks[born_call] // DAY)
        flagged_day = None if flagged_call is None else int(stream.clocks[flagged_call] // DAY)
        delay = None if flagged_day is None else flagged_day - start
        row["delay_from_first_article"] = None if flagged_day is None else flagged_day - first
        older = born_day is not None and born_day < start
        row.update(
            story=story,
            event_articles_in_story=count,
            story_size=int((stream.stories == story).sum()),
            story_born=None if born_day is None else _iso_day(born_day),
            emerging_at_birth=flagged_call is not None and flagged_call == born_call,
            flagged=None if flagged_day is None else _iso_day(flagged_day),
            delay_days=delay,
            story_older_than_event=older,
            met=delay is not None and not older and delay <= TARGETS["stability"]["delay_days"],
        )
        out[keyword] = row
    return out


def onset(days: np.ndarray) -> int:
    """The day an event's burst begins: the first day with ``ONSET_ARTICLES`` of its articles within
    ``ONSET_DAYS`` days from it (its first article's day if none has): a lone mention weeks before the
    event is not its start (``syria``: a mention on 03-02, the strikes in April)."""
    ordered = np.sort(days)
    for day in ordered.tolist():
        if np.count_nonzero((ordered >= day) & (ordered < day + ONSET_DAYS)) >= ONSET_ARTICLES:
            return int(day)
    return int(ordered[0])


def _iso_day(day: int) -> str:
    return date.fromtimestamp(day * DAY).isoformat() if day >= 0 else str(day)


def _day_start(day: int) -> datetime:
    return datetime.fromtimestamp(day * DAY, UTC)


# ----------------------------------------------------------------------------------------- baselines
def bertopic_labels(texts: list[str], x: np.ndarray) -> np.ndarray:
    """BERTopic on the given vectors, UMAP seeded (``ImportError`` when it is not installed)."""
    from bertopic import BERTopic
    from umap import UMAP

    umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=42)
    model = BERTopic(umap_model=umap_model, calculate_probabilities=False)
    topics, _ = model.fit_transform(texts, embeddings=x)
    return np.asarray(topics, np.int64)


def hdbscan_labels(texts: list[str], x: np.ndarray) -> np.ndarray:
    del texts
    import hdbscan

    return np.asarray(hdbscan.HDBSCAN(min_cluster_size=10).fit_predict(x), np.int64)


def kmeans_oracle(truth: list[str], x: np.ndarray) -> np.ndarray:
    from sklearn.cluster import KMeans

    k = len(set(truth))
    return np.asarray(KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(x), np.int64)


#: Seconds one baseline run may take before it is stopped (plain HDBSCAN in 384 dimensions is slow).
BASELINE_LIMIT_S = 300


class Stopped(Exception):
    """A baseline ran past its limit and was stopped."""


def _child(conn: Any, run: Callable[..., np.ndarray | None], args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", run(*args)))
    except ImportError as exc:
        conn.send(("missing", str(exc)))


def in_subprocess(run: Callable[..., np.ndarray | None], args: tuple[Any, ...], limit_s: float) -> Any:
    """``run(*args)`` in a fresh (spawned) process, stopped after ``limit_s`` (``Stopped``)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(send, run, args), daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(limit_s):
            raise Stopped
        kind, value = receive.recv()
    except EOFError:
        kind, value = "failed", f"exit code {process.exitcode}"
    finally:
        if process.is_alive():
            process.kill()
        process.join()
    if kind != "ok":
        raise ImportError(value)
    return value


def measured(
    name: str,
    run: Callable[..., np.ndarray | None],
    args: tuple[Any, ...],
    truth: list[str],
    runs: int,
    limit_s: float,
) -> dict[str, Any]:
    """Scores of ``run(*args)``'s labels (the median of each over ``runs`` runs) and its median seconds;
    each run in a subprocess stopped after ``limit_s``."""
    results: list[Scores] = []
    seconds: list[float] = []
    for _ in range(runs):
        log(f"  {name}")
        t0 = time.perf_counter()
        try:
            labels = in_subprocess(run, args, limit_s)
        except Stopped:
            log(f"  {name} stopped after {limit_s:.0f} s")
            return {"stopped_after_s": limit_s}
        except ImportError as exc:
            return {"skipped": f"{name}: {exc}"}
        seconds.append(time.perf_counter() - t0)
        results.append(score(truth, labels))
    return _median_scores(results) | {"seconds": round(statistics.median(seconds), 1)}


def _median_scores(results: list[Scores]) -> dict[str, Any]:
    rows = [r.rounded() for r in results]
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


# ------------------------------------------------------------------------------------------- parts
def core_stream(corpus: Corpus, x: np.ndarray, runs: int, *, keep_snapshots: bool = False) -> Stream:
    """The replay, ``runs`` times (it is deterministic: the scores of the last, the median seconds)."""
    times = np.asarray([epoch(t) for t in published(corpus)], np.int64)
    streams = [replay(corpus, x, times, keep_snapshots=keep_snapshots) for _ in range(runs)]
    streams[-1].seconds = statistics.median(s.seconds for s in streams)
    return streams[-1]


def pulse_figures(stream: Stream, truth: list[str], level: str) -> dict[str, Any]:
    labels = stream.topics if level == "topics" else stream.stories
    return score(truth, labels).rounded() | {
        "stories": len(np.unique(stream.stories[stream.stories >= 0])),
        "reclusters": stream.reclusters,
        "seconds": round(stream.seconds, 1),
    }


def with_baselines(
    corpus: Corpus, x: np.ndarray, pulse: dict[str, Any], runs: int, *, oracle: bool, limit_s: float
) -> dict[str, Any]:
    """Pulse's figures beside BERTopic's, plain HDBSCAN's and (topics) the KMeans oracle's."""
    truth = corpus.labels
    out: dict[str, Any] = {"documents": len(truth), "classes": len(set(truth)), "pulse": pulse}
    if limit_s <= 0:
        return out
    data = (corpus.texts, x)
    out["bertopic"] = bertopic = measured("BERTopic", bertopic_labels, data, truth, runs, limit_s)
    out["hdbscan"] = measured("HDBSCAN", hdbscan_labels, data, truth, runs, limit_s)
    if oracle:
        out["kmeans_oracle"] = measured("KMeans (oracle)", kmeans_oracle, (truth, x), truth, runs, limit_s)
    if "nmi" in bertopic:
        out["ratio_pulse_bertopic"] = {m: ratio(pulse[m], bertopic[m]) for m in ("nmi", "ari", "f1")}
    return out


def topics_part(runs: int, huffpost_stream: Stream | None, limit_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("bbc", "huffpost"):
        corpus = LOADERS[name]()
        x = vectors(corpus)
        log(f"topics: {name} ({len(x)} documents)")
        stream = huffpost_stream if name == "huffpost" and huffpost_stream else core_stream(corpus, x, runs)
        pulse = pulse_figures(stream, corpus.labels, "topics")
        out[name] = with_baselines(corpus, x, pulse, runs, oracle=True, limit_s=limit_s)
    bbc, huff = out["bbc"]["pulse"], out["huffpost"]["pulse"]
    out["target"] = {
        "rule": "Pulse topic NMI >= 0.75 on BBC and >= 0.35 on HuffPost, noise <= 20 % on both",
        "bbc_nmi": bbc["nmi"] >= TARGETS["topics"]["bbc_nmi"],
        "huffpost_nmi": huff["nmi"] >= TARGETS["topics"]["huffpost_nmi"],
        "noise": max(bbc["noise"], huff["noise"]) <= TARGETS["topics"]["noise"],
    }
    out["target"]["met"] = all(v for k, v in out["target"].items() if k != "rule")
    return out


def stories_part(runs: int, limit_s: float) -> dict[str, Any]:
    corpus = LOADERS["tweets"]()
    x = vectors(corpus)
    log(f"stories: tweets ({len(x)} documents, stream order)")
    stream = core_stream(corpus, x, runs)
    pulse = pulse_figures(stream, corpus.labels, "stories")
    out = with_baselines(corpus, x, pulse, runs, oracle=False, limit_s=limit_s)
    out["stability"] = stability(stream)
    pulse, bertopic = out["pulse"], out.get("bertopic", {})
    beats = {m: "nmi" in bertopic and pulse[m] > bertopic[m] for m in ("nmi", "ari", "f1")}
    out["target"] = {
        "rule": "Pulse story NMI >= 0.90 and above BERTopic's NMI, ARI and pairwise F1",
        "nmi": pulse["nmi"] >= TARGETS["stories"]["nmi"],
        **{f"beats_bertopic_{m}": v for m, v in beats.items()},
    }
    out["target"]["met"] = all(v for k, v in out["target"].items() if k != "rule")
    return out


def stability_part(stream: Stream) -> dict[str, Any]:
    corpus = LOADERS["huffpost"]()
    times = np.asarray([epoch(t) for t in published(corpus)], np.int64)
    events = emergence(corpus, times, stream)
    share = stability(stream)
    targeted = [e for e in events.values() if e["targeted"]]
    return {
        "replay": f"HuffPost, {len(stream.clocks)} days, one add call a day, {stream.reclusters} re-clusters",
        **share,
        "events": events,
        "target": {
            "rule": "share >= 0.9; each dated event flagged emerging <= 1 day after its onset",
            "share": share["share"] >= TARGETS["stability"]["share"],
            "events": all(e["met"] for e in targeted),
            "met": share["share"] >= TARGETS["stability"]["share"] and all(e["met"] for e in targeted),
        },
    }


# ------------------------------------------------------------------------------------------ front door
class FrontDoorUnavailable(RuntimeError):
    """The platform does not give stories through the trends API (not deployed, no clusterer running)."""


#: Seconds after `pulse embed` within which a first story must show in GET /v1/trends.
FIRST_STORY_S = 300
#: Seconds between two reads of GET /v1/trends while waiting for the stories to settle.
POLL_S = 15


def ingest_rows(corpus: Corpus) -> list[dict[str, Any]]:
    """The corpus as JSONL records for `pulse ingest`: id, title, text, category, published_at, url."""
    rows = []
    for i, (doc_id, text, label, at) in enumerate(
        zip(corpus.ids, corpus.texts, corpus.labels, published(corpus), strict=True)
    ):
        row: dict[str, Any] = {"id": doc_id, "category": label, "published_at": at}
        if corpus.name == "tweets":
            row["text"] = text
        else:  # the benchmark's text is "title. lead": give them apart
            title = corpus.titles[i]
            row.update(title=title, text=text[len(title) + 2 :] if text.startswith(title) else text)
        if corpus.name == "huffpost":
            row["url"] = doc_id
        rows.append(row)
    return rows


def url_keys(corpus: Corpus, source: str) -> dict[str, int]:
    """Each document's URL as Pulse stores it (canonical; ``urn:pulse:<source>:<id>`` without one) -> row."""
    from jobs.urls import canonical_url

    if corpus.name == "huffpost":
        return {canonical_url(u): i for i, u in enumerate(corpus.ids)}
    return {f"urn:pulse:{source}:{doc_id}": i for i, doc_id in enumerate(corpus.ids)}


def pages(client: Any, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item of a paged listing (``items``, ``next_cursor``)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        resp = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        if resp.status_code == 404 and path == "/v1/trends":
            raise FrontDoorUnavailable(
                f"GET /v1/trends answered 404 ({resp.text[:200]}): `pulse up` did not deploy the trends API"
            )
        resp.raise_for_status()
        body = resp.json()
        items.extend(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return items


def settled_stories(client: Any, *, settle_s: float) -> tuple[list[dict[str, Any]], float]:
    """GET /v1/trends (every page) once two reads ``POLL_S`` apart show the same stories and sizes."""
    t0 = time.monotonic()
    last: list[tuple[int, int]] | None = None
    while True:
        stories = pages(client, "/v1/trends", {"limit": 200})
        seen = sorted((int(s["id"]), int(s["size"])) for s in stories)
        waited = time.monotonic() - t0
        if stories and seen == last:
            return stories, waited
        if not stories and waited > min(FIRST_STORY_S, settle_s):
            raise FrontDoorUnavailable(
                f"no story in GET /v1/trends {waited:.0f} s after `pulse embed`: the platform does not run "
                "a trend clusterer (no pulse-trends-* actor catching up from the vectors' manifest) yet"
            )
        if waited > settle_s:
            raise FrontDoorUnavailable(f"GET /v1/trends still changed after {settle_s:.0f} s")
        log(f"  {len(stories)} stories, {sum(n for _, n in seen)} documents in them; waiting")
        last = seen
        time.sleep(POLL_S)


def front_door_labels(api_url: str, corpus: Corpus, source: str, *, settle_s: float) -> dict[str, Any]:
    """Each document's story and topic as the trends API gives them (-1: in none)."""
    import httpx

    rows = url_keys(corpus, source)
    stories = np.full(len(corpus.ids), -1, np.int64)
    topics = np.full(len(corpus.ids), -1, np.int64)
    foreign = 0
    with httpx.Client(base_url=api_url, timeout=120) as client:
        listed, waited = settled_stories(client, settle_s=settle_s)
        for story in listed:
            for doc in pages(client, f"/v1/trends/{story['id']}/documents", {"limit": 200}):
                row = rows.get(doc.get("url") or "")
                if row is None:
                    foreign += 1
                    continue
                stories[row] = int(story["id"])
        listed_topics = pages(client, "/v1/topics", {"limit": 200})
        for topic in listed_topics:
            for doc in pages(client, f"/v1/topics/{topic['id']}/documents", {"limit": 200}):
                row = rows.get(doc.get("url") or "")
                if row is not None:
                    topics[row] = int(topic["id"])
    return {
        "stories": stories,
        "topics": topics,
        "listed": len(listed),
        "topics_listed": len(listed_topics),
        "foreign": foreign,
        "wait_s": waited,
    }


def summary_line(output: str, command: str) -> str | None:
    """The command's closing summary (its last line naming it; Ray's warnings may come after)."""
    lines = [
        line.strip()
        for line in output.splitlines()
        if line.strip().startswith((f"{command} ", f"{command}:"))
    ]
    return lines[-1] if lines else None


def front_door_one(
    name: str, core: dict[str, Any] | None, *, keep: bool, num_cpus: int | None, settle_s: float
) -> dict[str, Any]:
    from front_door import Platform

    corpus = LOADERS[name]()
    source = f"trends_{name}"
    level = "stories" if name == "tweets" else "topics"
    out: dict[str, Any] = {"level": level}
    with Platform(keep=keep, num_cpus=num_cpus) as platform:
        path = platform.folder / f"{source}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in ingest_rows(corpus)), encoding="utf-8")
        platform.up("--no-sample")
        out["ingest"] = summary_line(platform.pulse("ingest", str(path), "--source", source), "ingest")
        out["embed"] = summary_line(platform.pulse("embed"), "embed")
        got = front_door_labels(platform.api_url, corpus, source, settle_s=settle_s)
        out["commands_s"] = dict(platform.timings)
    labels = got["topics"] if level == "topics" else got["stories"]
    out["pulse"] = score(corpus.labels, labels).rounded() | {
        "stories": got["listed"],
        "topics": got["topics_listed"],
        "settle_wait_s": round(got["wait_s"], 1),
        "unknown_documents": got["foreign"],
    }
    if core is not None:
        out["difference"] = {
            m: round(out["pulse"][m] - core[m], 3) for m in ("nmi", "ari", "f1", "noise") if m in core
        }
    return out


def front_door(
    names: list[str], result: dict[str, Any], *, keep: bool, num_cpus: int | None, settle_s: float
) -> dict[str, Any]:
    """Each data set through a private platform of its own (module docstring); errors reported per set."""
    out: dict[str, Any] = {}
    for name in names:
        level = "stories" if name == "tweets" else "topics"
        part = result.get(level, {})
        core = (part if level == "stories" else part.get(name, {})).get("pulse")
        log(f"front door: {name}")
        try:
            out[name] = front_door_one(name, core, keep=keep, num_cpus=num_cpus, settle_s=settle_s)
        except Exception as exc:  # the core figures are still worth printing
            log(f"front door failed on {name}: {exc}")
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["topics", "stories", "stability", "all"], default="all")
    parser.add_argument("--runs", type=int, default=1, help="runs of each system (medians); default 1")
    parser.add_argument(
        "--front-door",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also measure through `pulse ingest` + GET /v1/trends (a private platform per data set)",
    )
    parser.add_argument(
        "--front-door-sets",
        default=None,
        help="front door: only these data sets (comma-separated: bbc, huffpost, tweets; default: the parts')",
    )
    parser.add_argument("--keep", action="store_true", help="keep the front door's databases and folders")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the front door's Ray node")
    parser.add_argument(
        "--settle-s", type=float, default=900, help="front door: seconds to wait for stories to settle"
    )
    parser.add_argument(
        "--baseline-limit-s",
        type=float,
        default=BASELINE_LIMIT_S,
        help="seconds one baseline run may take before it is stopped and reported as such (0: no baselines)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "trend_quality",
        "part": args.part,
        "runs": args.runs,
        "params": described_params(),
    }
    parts = ["topics", "stories", "stability"] if args.part == "all" else [args.part]
    huffpost_stream = None
    if "stability" in parts or "topics" in parts:
        corpus = LOADERS["huffpost"]()
        log(f"HuffPost replay, day by day ({len(corpus.ids)} documents)")
        huffpost_stream = core_stream(corpus, vectors(corpus), args.runs, keep_snapshots="stability" in parts)
    if "topics" in parts:
        result["topics"] = topics_part(args.runs, huffpost_stream, args.baseline_limit_s)
    if "stories" in parts:
        result["stories"] = stories_part(args.runs, args.baseline_limit_s)
    if "stability" in parts and huffpost_stream is not None:
        result["stability"] = stability_part(huffpost_stream)
    status = 0
    if args.front_door:
        names = [n for p in parts for n in {"topics": ["bbc", "huffpost"], "stories": ["tweets"]}.get(p, [])]
        if args.front_door_sets:
            names = [n for n in names if n in args.front_door_sets.split(",")]
        result["front_door"] = front_door(
            names, result, keep=args.keep, num_cpus=args.num_cpus, settle_s=args.settle_s
        )
        status = 1 if any("error" in v for v in result["front_door"].values()) else 0
    result["seconds"] = round(time.perf_counter() - started, 1)
    emit(result)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
