"""``TopicLevel``: the trend clusterer's coarse level, topics (plain class, no Ray).

Every document of the window has a topic: the coarse community a re-cluster puts it in, with ids matched
to the topics the documents had (``actors.trend_matching``, as stories are), so topic ids persist; a
document the re-cluster leaves as noise keeps its topic unless that topic is gone. Between two
re-clusters a new document takes its story's topic, or, in no story, the topic whose centroid at the
last re-cluster is nearest (``nearest``). A story's topic is the one most of its documents have. Topics
are broad subjects (politics, sport), so a document in no story (one of a kind) has one all the same.
"""

from __future__ import annotations

import numpy as np

from actors.trend_delta import ClusterDelta, Lineage, StoryState
from actors.trend_matching import match
from actors.trend_sticky import unit_centroids
from actors.trend_window import WindowArrays


class TopicLevel:
    def __init__(self, *, id_base: int, min_size: int) -> None:
        self.id_base = id_base
        self.min_size = min_size
        self.counts: dict[int, int] = {}  #: topic -> its active stories
        self.next = 1  #: the next topic number (ids are ``id_base + n``)
        self._centroids: tuple[np.ndarray, np.ndarray] | None = None  #: (topic ids, unit centroids)

    def new_id(self) -> int:
        tid = self.id_base + self.next
        self.next += 1
        return tid

    def nearest(self, window: WindowArrays, vectors: np.ndarray) -> np.ndarray:
        """The topic whose centroid (the window's at the last re-cluster) is nearest each vector; -1
        before any topic exists."""
        if self._centroids is None:
            by_topic = unit_centroids(window.vecs, window.topic)
            ids = np.asarray(sorted(by_topic), np.int64)
            stacked = (
                np.stack([by_topic[t] for t in ids]) if len(ids) else np.empty((0, window.dim), np.float32)
            )
            self._centroids = (ids, stacked)
        ids, units = self._centroids
        if not len(ids) or not len(vectors):
            return np.full(len(vectors), -1, np.int64)
        return np.asarray(ids[(vectors @ units.T).argmax(axis=1)], np.int64)

    def recut(
        self,
        window: WindowArrays,
        rows: np.ndarray,
        communities: np.ndarray,
        *,
        stories: dict[int, StoryState],
        delta: ClusterDelta,
        at: int,
    ) -> None:
        """Adopt a re-cluster's topic ``communities`` of the window ``rows``: documents' topics, ids
        matched; lineage, changed documents, stories and topics into ``delta``."""
        story = window.story[rows]
        story_topic = np.asarray(
            [
                stories[int(s)].topic
                if s >= 0 and int(s) in stories and stories[int(s)].topic is not None
                else -1
                for s in story
            ],
            np.int64,
        )
        # A document without a topic yet counts with its story's.
        old_topic = np.where(window.topic[rows] >= 0, window.topic[rows], story_topic)
        m = match(old_topic, communities, new_id=self.new_id, min_size=self.min_size)
        for tid in m.births:
            delta.lineage.append(Lineage("topic", "birth", tid, (), 0, at, f"topic:birth:{tid}"))
        for tid, parent in m.splits:
            delta.lineage.append(
                Lineage("topic", "split", tid, (parent,), 0, at, f"topic:split:{tid}:{parent}")
            )
        gone: dict[int, int] = {}
        for survivor, merged in m.merges:
            key = f"topic:merge:{survivor}:{','.join(map(str, merged))}"
            delta.lineage.append(Lineage("topic", "merge", survivor, tuple(merged), 0, at, key))
            for t in merged:
                gone[t] = survivor
                self.counts.pop(t, None)
                delta.topics[t] = ("merged", 0)
        for t in m.dissolved:
            gone[t] = -1
            self.counts.pop(t, None)
            delta.topics[t] = ("dead", 0)
            delta.lineage.append(Lineage("topic", "death", t, (), 0, at, f"topic:death:{t}"))
        new_topic = window.topic.copy()
        # Rows in no community keep their topic. Masked, not np.where: a re-cluster that found no
        # community at all (a small partition) has no ids to index, and np.where evaluates both sides.
        picked = old_topic.copy()
        grouped = communities >= 0
        picked[grouped] = m.ids[communities[grouped]]
        new_topic[rows] = picked
        for t, survivor in gone.items():
            new_topic[new_topic == t] = survivor
        for row in np.flatnonzero(new_topic != window.topic):
            delta.document_topics[int(window.ids[row])] = (int(new_topic[row]), int(window.times[row]))
        window.topic = new_topic
        self._centroids = None
        self._story_topics(window, stories, delta, gone)

    def _story_topics(
        self, window: WindowArrays, stories: dict[int, StoryState], delta: ClusterDelta, gone: dict[int, int]
    ) -> None:
        """Each active story's topic: the one most of its documents have; topics' story counts."""
        counts: dict[int, dict[int, int]] = {}
        for s, t in zip(window.story.tolist(), window.topic.tolist(), strict=True):
            if s >= 0 and t >= 0:
                counts.setdefault(s, {}).setdefault(t, 0)
                counts[s][t] += 1
        story_count: dict[int, int] = {int(t): 0 for t in np.unique(window.topic[window.topic >= 0])}
        for s, st in stories.items():
            if st.status != "active":
                continue
            choice = counts.get(s)
            topic = max(choice.items(), key=lambda kv: (kv[1], -kv[0]))[0] if choice else st.topic
            if topic is not None and gone.get(topic, topic) != topic:
                topic = gone[topic] if gone[topic] >= 0 else None
            if topic != st.topic:
                st.topic = topic
                delta.stories[s] = (topic, "active", None)
            if st.topic is not None:
                story_count[st.topic] = story_count.get(st.topic, 0) + 1
        for t, c in story_count.items():
            if self.counts.get(t) != c:
                delta.topics[t] = ("active", c)
            self.counts[t] = c
        for s, (topic, status, into) in list(delta.stories.items()):
            if topic is None and s in stories:
                delta.stories[s] = (stories[s].topic, status, into)
