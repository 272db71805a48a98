"""``TrendClusterer``: the incremental story clusterer of one partition (plain class, no Ray).

It holds a **window** of recent document vectors (at most ``window_size``, spanning ``window_days`` of
document time) and, for each, the story it belongs to (or none yet).

- **Immediate assignment** (``add``): a new document joins the story whose centroid is most similar,
  when that similarity is at least ``assign_threshold``; otherwise it waits, unassigned. Unassigned
  documents that are close to each other (a connected group of at least ``min_story_size`` at
  ``birth_threshold``) become a new story at once, so an event is seen within its first documents.
- **Re-cluster** (``recluster``, every ``recluster_every`` documents or ``recluster_hours`` of document
  time): Leiden on the window's kNN graph (``jobs.recluster.communities``), started from the current stories,
  at a fine resolution for stories and a coarse one for topics. The new communities are
  **matched** to the stories they replace (``actors.trend_matching``): ids persist; births, merges,
  splits and deaths are recorded as lineage. A document the re-cluster leaves as noise keeps the story
  it had (it was assigned above the threshold); one whose story merged follows the survivor.
- **Topics**: every document of the window has a topic, the coarse community it falls in at the last
  re-cluster (between two, a new document takes its story's topic, or the topic whose centroid at the
  last re-cluster is nearest when it has no story yet); topic ids are
  matched the same way as stories'. A story's topic is the topic most of its documents have. Topics
  are broad subjects (politics, sport), so a document in no story (one of a kind) has one all the same.

Ids are ``id_base + n`` with ``n`` counted here (the partition's block; ``cluster.ground.constants``),
so replaying the same documents from a snapshot gives the same ids. Triggers use document time and
counts, never the wall clock, for the same reason. ``drain()`` hands the changes since the last call
to the caller, which writes them (``storage.trends``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from actors.trend_delta import ClusterDelta, Lineage, StoryState
from actors.trend_matching import match
from actors.trend_sticky import close_merges, stay_unless_closer, story_lineage, unit_centroids
from actors.trend_topics import TopicLevel
from actors.trend_window import WindowArrays

#: A re-cluster: (window vectors, current stories (-1: none), document times (epoch s)) ->
#: (story communities, topic communities),
#: each 0..m-1 with -1 for noise. ``jobs.recluster.communities.window_communities`` bound to its
#: parameters; injected so the core stays testable and the actor needs no import of the job.
Communities = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

logger = logging.getLogger(__name__)

DAY = 86_400
#: Documents ``add`` assigns at a time (then births, eviction and the re-cluster check).
BATCH = 256


@dataclass(frozen=True)
class ClustererParams:
    window_size: int = 200_000
    window_days: float = 30.0
    assign_threshold: float = 0.55
    birth_threshold: float = 0.6
    recluster_every: int = 1_000
    recluster_hours: float = 24.0
    min_story_size: int = 3
    birth_pool: int = 5_000  #: most recent unassigned documents considered for an immediate birth
    story_gap_days: float = 3.0  #: a document joins (or founds with others) only stories this recent
    sticky: bool = True  #: a re-cluster moves documents and merges stories only for a reason
    move_margin: float = 0.3  #: sticky: how much closer the new story must be for a document to move
    #: sticky: a split is taken whole (no margin) when its centroid and the rest of its parent's are
    #: less alike than this: two events one story held
    split_threshold: float = 0.4
    merge_threshold: float = 0.9  #: sticky: centroid similarity two stories need to merge


class TrendClusterer:
    def __init__(
        self, params: ClustererParams, communities: Communities, *, id_base: int = 0, dim: int = 384
    ) -> None:
        self.params = params
        self._communities = communities
        self.id_base = id_base
        self.dim = dim
        #: the window's documents: ids, vectors, times, story and topic (-1: none yet) of each
        self._w = WindowArrays(dim, limit=params.window_size + BATCH)
        self._stories: dict[int, StoryState] = {}
        self._next_story = 1
        self._since_recluster = 0
        self._last_recluster_time: int | None = None
        self.clock: int | None = None  # latest document time seen (epoch s)
        self.reclusters = 0
        self.last_recluster_s = 0.0
        self._delta = ClusterDelta()
        self._centroids: np.ndarray | None = None
        self._topic_level = TopicLevel(id_base=id_base, min_size=params.min_story_size)
        self._centroid_ids = np.empty(0, np.int64)
        self._centroid_last = np.empty(0, np.int64)

    # ------------------------------------------------------------------------------------ queries
    @property
    def size(self) -> int:
        return len(self._w.ids)

    @property
    def unassigned(self) -> int:
        return int((self._w.story < 0).sum())

    def story_of(self, doc_ids: np.ndarray) -> np.ndarray:
        pos = {int(d): i for i, d in enumerate(self._w.ids)}
        return np.asarray([self._w.story[pos[int(d)]] if int(d) in pos else -1 for d in doc_ids], np.int64)

    def window(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(document ids, vectors, times, stories) of the window (views; do not modify)."""
        return self._w.ids, self._w.vecs, self._w.times, self._w.story

    def active_stories(self) -> list[int]:
        return sorted(s for s, st in self._stories.items() if st.status == "active")

    def story_states(self) -> dict[str, int]:
        """How many stories the clusterer holds in each status (``active``, ``merged``...)."""
        counts: dict[str, int] = {}
        for st in self._stories.values():
            counts[st.status] = counts.get(st.status, 0) + 1
        return counts

    def topic_of(self, story: int) -> int | None:
        st = self._stories.get(story)
        return st.topic if st else None

    def document_topics(self) -> np.ndarray:
        """Each window document's topic (-1: none yet), rows as ``window()``'s (a view)."""
        return self._w.topic

    # ------------------------------------------------------------------------------------ ingest
    def add(self, doc_ids: np.ndarray, vectors: np.ndarray, times: np.ndarray, *, batch: int = BATCH) -> None:
        """Take documents in stream order: assign, grow the window, re-cluster when due."""
        doc_ids = np.asarray(doc_ids, np.int64)
        vectors = np.ascontiguousarray(vectors, np.float32)
        times = np.asarray(times, np.int64)
        fresh = ~np.isin(doc_ids, self._w.ids)  # a replayed document is not taken twice
        doc_ids, vectors, times = doc_ids[fresh], vectors[fresh], times[fresh]
        for start in range(0, len(doc_ids), batch):
            stop = start + batch
            self._add_batch(doc_ids[start:stop], vectors[start:stop], times[start:stop])
            if self.recluster_due():
                self.recluster()

    def _add_batch(self, doc_ids: np.ndarray, vectors: np.ndarray, times: np.ndarray) -> None:
        n = len(doc_ids)
        labels = np.full(n, -1, np.int64)
        sims = np.zeros(n, np.float32)
        centroids, cids = self._centroid_matrix()
        gap = int(self.params.story_gap_days * DAY)
        recent = self._centroid_last >= (int(times.min()) - gap if n else 0)
        if recent.any():
            centroids, cids = centroids[recent], cids[recent]
        else:
            cids = cids[:0]
        if len(cids):
            all_sims = vectors @ centroids.T
            best = all_sims.argmax(axis=1)
            sims = all_sims[np.arange(n), best]
            ok = sims >= self.params.assign_threshold
            labels[ok] = cids[best[ok]]
        topics = np.full(n, -1, np.int64)
        for i in np.flatnonzero(labels >= 0):
            s = int(labels[i])
            story = self._stories[s]
            if story.topic is not None:
                topics[i] = story.topic
                self._delta.document_topics[int(doc_ids[i])] = (story.topic, int(times[i]))
            story.centroid_sum += vectors[i]
            story.count += 1
            story.last = max(story.last, int(times[i]))
            self._delta.assignments[int(doc_ids[i])] = (s, float(sims[i]), "assign", int(times[i]))
        rest = np.flatnonzero(topics < 0)
        if len(rest):  # in no story (or one without a topic yet): the nearest topic
            topics[rest] = self._topic_level.nearest(self._w, vectors[rest])
            for i in rest[topics[rest] >= 0].tolist():
                self._delta.document_topics[int(doc_ids[i])] = (int(topics[i]), int(times[i]))
        self._w.append(doc_ids, vectors, times, labels, topics)
        self._centroids = None
        self._since_recluster += n
        latest = int(times.max(initial=np.iinfo(np.int64).min))
        self.clock = latest if self.clock is None else max(self.clock, latest)
        if self._last_recluster_time is None and n:
            self._last_recluster_time = int(times.min())
        self._births()
        self._evict()

    def _centroid_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        if self._centroids is None:
            live = [(s, st) for s, st in self._stories.items() if st.status == "active" and st.count > 0]
            self._centroid_ids = np.asarray([s for s, _ in live], np.int64)
            self._centroid_last = np.asarray([st.last for _, st in live], np.int64)
            if live:
                mat = np.stack([st.centroid_sum for _, st in live]).astype(np.float32)
                mat /= np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
            else:
                mat = np.empty((0, self.dim), np.float32)
            self._centroids = mat
        return self._centroids, self._centroid_ids

    def _births(self) -> None:
        """Groups of close unassigned documents become stories at once."""
        horizon = (self.clock or 0) - int(self.params.story_gap_days * DAY)
        pool = np.flatnonzero((self._w.story < 0) & (self._w.times >= horizon))[-self.params.birth_pool :]
        if len(pool) < self.params.min_story_size:
            return
        x = self._w.vecs[pool]
        adjacency = (x @ x.T) >= self.params.birth_threshold
        np.fill_diagonal(adjacency, False)
        degree = adjacency.sum(axis=1)
        candidates = degree >= self.params.min_story_size - 1
        if not candidates.any():
            return
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import connected_components

        sub = np.flatnonzero(candidates)
        _, comp = connected_components(csr_matrix(adjacency[np.ix_(sub, sub)]), directed=False)
        for c in np.unique(comp):
            members = pool[sub[comp == c]]
            if len(members) < self.params.min_story_size:
                continue
            sid = self._new_story_id()
            centroid = self._w.vecs[members].sum(axis=0)
            last = int(self._w.times[members].max())
            self._stories[sid] = StoryState(centroid_sum=centroid, count=len(members), last=last)
            unit = centroid / max(float(np.linalg.norm(centroid)), 1e-12)
            member_sims = self._w.vecs[members] @ unit
            for row, sim in zip(members, member_sims, strict=True):
                self._w.story[row] = sid
                self._delta.assignments[int(self._w.ids[row])] = (
                    sid,
                    float(sim),
                    "assign",
                    int(self._w.times[row]),
                )
            self._delta.stories[sid] = (None, "active", None)
            at = int(self._w.times[members].max())
            self._delta.lineage.append(
                Lineage("story", "birth", sid, (), len(members), at, f"story:birth:{sid}")
            )
            self._centroids = None

    def _evict(self) -> None:
        """Drop documents older than the window's span, then the oldest past its size."""
        if self.clock is None or not len(self._w.ids):
            return
        keep = self._w.times >= self.clock - int(self.params.window_days * DAY)
        over = int(keep.sum()) - self.params.window_size
        if over > 0:
            order = np.argsort(self._w.times[keep], kind="stable")
            kept_rows = np.flatnonzero(keep)
            keep[kept_rows[order[:over]]] = False
        if keep.all():
            return
        gone = self._w.story[~keep]
        for s, c in zip(*np.unique(gone[gone >= 0], return_counts=True), strict=True):
            story = self._stories[int(s)]
            story.centroid_sum -= self._w.vecs[~keep][gone == s].sum(axis=0)
            story.count -= int(c)
            if story.count <= 0:
                # All its documents left the window: the story ends (its rows stay in storage).
                del self._stories[int(s)]
                at = int(self.clock)
                self._delta.lineage.append(
                    Lineage("story", "death", int(s), (), 0, at, f"story:death:{int(s)}")
                )
                self._delta.stories[int(s)] = (story.topic, "dead", None)
        self._w.keep(keep)
        self._centroids = None

    # ---------------------------------------------------------------------------------- re-cluster
    def recluster_due(self) -> bool:
        if self._since_recluster >= self.params.recluster_every:
            return True
        if self.clock is None or self._last_recluster_time is None or self._since_recluster == 0:
            return False
        return self.clock - self._last_recluster_time >= self.params.recluster_hours * 3600

    def compute_communities(self) -> tuple[np.ndarray, np.ndarray]:
        """Story and topic communities of the window (the expensive part; a job may run it)."""
        return self._communities(self._w.vecs, self._w.story, self._w.times)

    def recluster(self) -> None:
        started = time.perf_counter()
        stories, topics = self.compute_communities()
        self.apply_communities(self._w.ids.copy(), stories, topics, method="recluster")
        self.last_recluster_s = time.perf_counter() - started

    def apply_communities(
        self, doc_ids: np.ndarray, stories: np.ndarray, topics: np.ndarray, *, method: str
    ) -> None:
        """Adopt a partition of (some of) the window computed elsewhere, matched to the current ids.

        Documents in a community take the id it carries; documents left as noise keep their story.
        With ``sticky``, an assigned document moves only when the story it would move to is clearly
        closer (``move_margin`` of cosine similarity) or is a split far from the rest of its parent
        (centroids under ``split_threshold`` alike: two events one story held), and a merge is accepted
        only between stories whose centroids are ``merge_threshold`` alike: ids change for a reason, not
        for the noise of a re-cluster. New stories (births, splits) need ``min_story_size`` documents.
        """
        pos = {int(d): i for i, d in enumerate(self._w.ids)}
        rows = np.asarray([pos.get(int(d), -1) for d in doc_ids], np.int64)
        inside = rows >= 0
        rows, stories, topics = rows[inside], np.asarray(stories)[inside], np.asarray(topics)[inside]
        at = int(self.clock or 0)
        old = self._w.story[rows]
        m = match(old, stories, new_id=self._new_story_id, min_size=self.params.min_story_size)
        old_units = unit_centroids(self._w.vecs, self._w.story)
        if self.params.sticky:
            m.merges = close_merges(m.merges, old_units, threshold=self.params.merge_threshold)
            m.dissolved = []
        merged_into = m.merged_into()
        proposed = self._w.story.copy()
        assigned = stories >= 0
        proposed[rows[assigned]] = m.ids[stories[assigned]]
        for s, survivor in merged_into.items():
            proposed[proposed == s] = survivor
        for s in m.dissolved:
            proposed[proposed == s] = -1
        new_ids = set(m.births) | {sid for sid, _ in m.splits}
        if self.params.sticky:
            stay_unless_closer(
                self._w.vecs,
                self._w.story,
                proposed,
                old_units=old_units,
                merged=set(merged_into),
                splits=dict(m.splits),
                move_margin=self.params.move_margin,
                split_threshold=self.params.split_threshold,
            )
        for sid in list(new_ids):
            members = proposed == sid
            if int(members.sum()) < self.params.min_story_size:
                proposed[members] = self._w.story[members]
                new_ids.discard(sid)
        m.births = [sid for sid in m.births if sid in new_ids]
        m.splits = [(sid, parent) for sid, parent in m.splits if sid in new_ids]
        self._delta.lineage.extend(story_lineage(m, old, proposed, at))
        self._set_stories(proposed, method)
        for s, survivor in merged_into.items():
            topic = self._stories[s].topic if s in self._stories else None
            self._delta.stories[s] = (topic, "merged", survivor)
            self._stories.pop(s, None)
        for s in m.dissolved:
            topic = self._stories[s].topic if s in self._stories else None
            self._delta.stories[s] = (topic, "dead", None)
            self._stories.pop(s, None)
        self._topic_level.recut(self._w, rows, topics, stories=self._stories, delta=self._delta, at=at)
        self._since_recluster = 0
        self._last_recluster_time = self.clock
        self.reclusters += 1
        self._centroids = None

    def _set_stories(self, new_story: np.ndarray, method: str) -> None:
        changed = np.flatnonzero(new_story != self._w.story)
        unit_cache: dict[int, np.ndarray] = {}
        for s in np.unique(new_story[new_story >= 0]):
            s = int(s)
            members = new_story == s
            total = self._w.vecs[members].sum(axis=0)
            story = self._stories.get(s)
            if story is None:
                story = self._stories[s] = StoryState(total, int(members.sum()))
                self._delta.stories[s] = (None, "active", None)
            story.centroid_sum, story.count = total, int(members.sum())
            story.last = int(self._w.times[members].max())
            unit_cache[s] = total / max(float(np.linalg.norm(total)), 1e-12)
        for row in changed:
            doc = int(self._w.ids[row])
            s = int(new_story[row])
            if s < 0:
                self._delta.assignments.pop(doc, None)
                self._delta.unassigned.add(doc)
            else:
                sim = float(self._w.vecs[row] @ unit_cache[s])
                self._delta.unassigned.discard(doc)
                self._delta.assignments[doc] = (s, sim, method, int(self._w.times[row]))
        for s in {int(x) for x in self._w.story[changed] if x >= 0} - set(unit_cache):
            if s in self._stories:
                self._stories[s].count = 0
                self._stories[s].centroid_sum = np.zeros(self.dim, np.float32)
        self._w.story = new_story

    # ---------------------------------------------------------------------------------- ids, delta
    def _new_story_id(self) -> int:
        sid = self.id_base + self._next_story
        self._next_story += 1
        return sid

    def drain(self) -> ClusterDelta:
        delta, self._delta = self._delta, ClusterDelta()
        for s, st in self._stories.items():  # a story born since the last drain names its topic
            if s in delta.stories and delta.stories[s][0] is None and st.topic is not None:
                delta.stories[s] = (st.topic, st.status, st.merged_into)
        return delta

    # ------------------------------------------------------------------------------------ snapshot
    def snapshot(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and a JSON-able description of the whole state (pending changes excluded: the
        caller snapshots after writing them)."""
        sids = sorted(self._stories)
        arrays: dict[str, np.ndarray] = {
            "ids": self._w.ids,
            "vectors": self._w.vecs,
            "times": self._w.times,
            "story": self._w.story,
            "topic": self._w.topic,
            "story_ids": np.asarray(sids, np.int64),
            "story_sums": (
                np.stack([self._stories[s].centroid_sum for s in sids]).astype(np.float32)
                if sids
                else np.empty((0, self.dim), np.float32)
            ),
            "story_counts": np.asarray([self._stories[s].count for s in sids], np.int64),
            "story_lasts": np.asarray([self._stories[s].last for s in sids], np.int64),
            "story_topics": np.asarray(
                [-1 if self._stories[s].topic is None else self._stories[s].topic for s in sids], np.int64
            ),
            "topic_ids": np.asarray(sorted(self._topic_level.counts), np.int64),
            "topic_counts": np.asarray(
                [self._topic_level.counts[t] for t in sorted(self._topic_level.counts)], np.int64
            ),
        }
        info: dict[str, Any] = {
            "id_base": self.id_base,
            "dim": self.dim,
            "next_story": self._next_story,
            "next_topic": self._topic_level.next,
            "since_recluster": self._since_recluster,
            "last_recluster_time": self._last_recluster_time,
            "clock": self.clock,
            "reclusters": self.reclusters,
        }
        return arrays, info

    @classmethod
    def restore(
        cls,
        params: ClustererParams,
        communities: Communities,
        arrays: dict[str, np.ndarray],
        info: dict[str, Any],
    ) -> TrendClusterer:
        self = cls(params, communities, id_base=int(info["id_base"]), dim=int(info["dim"]))
        for s, total, count, last, topic in zip(
            arrays["story_ids"].tolist(),
            arrays["story_sums"],
            arrays["story_counts"].tolist(),
            arrays["story_lasts"].tolist(),
            arrays["story_topics"].tolist(),
            strict=True,
        ):
            self._stories[s] = StoryState(total.astype(np.float32), count, last, None if topic < 0 else topic)
        counts = zip(arrays["topic_ids"].tolist(), arrays["topic_counts"].tolist(), strict=True)
        self._topic_level.counts = dict(counts)
        story = arrays["story"].astype(np.int64)
        if "topic" in arrays:
            topic = arrays["topic"].astype(np.int64)
        else:  # a snapshot from before document topics: each document starts with its story's
            topic = np.asarray(
                [self._stories[int(s)].topic or -1 if int(s) in self._stories else -1 for s in story],
                np.int64,
            )
        self._w = WindowArrays.of(
            arrays["ids"].astype(np.int64),
            arrays["vectors"].astype(np.float32, copy=False),
            arrays["times"].astype(np.int64),
            story,
            topic,
            limit=params.window_size + BATCH,
        )
        self._next_story = int(info["next_story"])
        self._topic_level.next = int(info["next_topic"])
        self._since_recluster = int(info["since_recluster"])
        self._last_recluster_time = info["last_recluster_time"]
        self.clock = info["clock"]
        self.reclusters = int(info["reclusters"])
        return self
