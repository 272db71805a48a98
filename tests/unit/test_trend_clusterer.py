"""TrendClusterer's identity rules on constructed vectors (no Ray, no database): immediate assignment and
births, ids that survive a snapshot and a full re-cluster, and lineage of a merge, a split and a death.

Vectors are built on purpose (tight groups around chosen directions) so the geometry each rule depends
on is known exactly; the clustering quality on real MiniLM vectors is measured in bench/trend_quality.py.
"""

from __future__ import annotations

import functools

import numpy as np

from actors.trend_clusterer import ClustererParams, Communities, TrendClusterer
from jobs.recluster.communities import CommunityParams, window_communities

DIM = 32
DAY = 86_400


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def group(direction: int, n: int, *, seed: int, spread: float = 0.05) -> np.ndarray:
    """``n`` vectors close to basis ``direction``."""
    rng = np.random.default_rng(seed)
    centre = np.zeros(DIM, np.float32)
    centre[direction] = 1.0
    return unit(centre + spread * rng.standard_normal((n, DIM)).astype(np.float32))


REAL: Communities = functools.partial(window_communities, params=CommunityParams())


def fixed(stories: list[int], topics: list[int] | None = None) -> Communities:
    """A re-cluster that answers a constructed partition (for lineage on a constructed case)."""

    def communities(
        vectors: np.ndarray, current: np.ndarray, times: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(stories, np.int64)
        return s, np.asarray(topics if topics is not None else [0 if x >= 0 else -1 for x in stories])

    return communities


def params(**kw: object) -> ClustererParams:
    values: dict[str, object] = {"recluster_every": 10_000, "recluster_hours": 10_000.0}
    values.update(kw)
    return ClustererParams(**values)  # type: ignore[arg-type]


def feed(c: TrendClusterer, vectors: np.ndarray, *, start: int, day: int = 0) -> np.ndarray:
    ids = np.arange(start, start + len(vectors), dtype=np.int64)
    c.add(ids, vectors, np.full(len(vectors), 1_500_000_000 + day * DAY, np.int64))
    return ids


def test_close_unassigned_documents_become_a_story_and_later_ones_join_it() -> None:
    c = TrendClusterer(params(), REAL, id_base=7_000_000_000, dim=DIM)
    first = feed(c, group(0, 4, seed=1), start=1)
    stories = set(c.story_of(first).tolist())
    assert len(stories) == 1 and min(stories) > 7_000_000_000  # born at once, id in the partition's block
    (story,) = stories
    delta = c.drain()
    assert [(e.kind, e.subject) for e in delta.lineage] == [("birth", story)]
    later = feed(c, group(0, 3, seed=2), start=10)
    assert set(c.story_of(later).tolist()) == {story}
    assert all(m == "assign" for _, _, m, _ in c.drain().assignments.values())
    lone = feed(c, group(5, 1, seed=3), start=20)  # alone and far from every story: waits
    assert c.story_of(lone).tolist() == [-1]


def test_ids_survive_a_snapshot_and_a_full_recluster() -> None:
    c = TrendClusterer(params(), REAL, id_base=0, dim=DIM)
    a = feed(c, group(0, 6, seed=1), start=1)
    b = feed(c, group(1, 6, seed=2), start=100)
    before = c.story_of(np.concatenate([a, b]))
    c.drain()
    arrays, info = c.snapshot()
    restored = TrendClusterer.restore(params(), REAL, arrays, info)
    assert restored.story_of(np.concatenate([a, b])).tolist() == before.tolist()
    restored.recluster()
    assert restored.story_of(np.concatenate([a, b])).tolist() == before.tolist()
    assert not [e for e in restored.drain().lineage if e.level == "story"]
    # counters continue: the next story is new, not a reused id
    d = feed(restored, group(2, 4, seed=3), start=200)
    new = set(restored.story_of(d).tolist())
    assert len(new) == 1 and new.isdisjoint(set(before.tolist()))


def test_a_merge_is_recorded_and_documents_follow_the_survivor() -> None:
    # two stories born apart (assignment threshold above their cross similarity) of one event
    p = params(assign_threshold=0.995, birth_threshold=0.9, merge_threshold=0.8)
    c = TrendClusterer(p, REAL, dim=DIM)
    a = feed(c, group(0, 4, seed=1, spread=0.01), start=1)
    shifted = unit(group(0, 4, seed=2, spread=0.01) + 0.25 * group(1, 4, seed=4, spread=0.01))
    b = feed(c, shifted, start=10)
    sa, sb = int(c.story_of(a)[0]), int(c.story_of(b)[0])
    assert sa != sb
    c.drain()
    c._communities = fixed([0] * 8)  # the re-cluster sees one event
    c.recluster()
    delta = c.drain()
    merges = [e for e in delta.lineage if e.kind == "merge"]
    assert len(merges) == 1 and {merges[0].subject, *merges[0].related} == {sa, sb}
    survivor = merges[0].subject
    assert set(c.story_of(np.concatenate([a, b])).tolist()) == {survivor}
    (gone,) = merges[0].related
    assert delta.stories[gone][1:] == ("merged", survivor)


def test_a_split_is_recorded_when_a_story_holds_two_events() -> None:
    c = TrendClusterer(params(sticky=False), REAL, dim=DIM)
    a = feed(c, group(0, 5, seed=1), start=1)
    b = feed(c, group(3, 5, seed=2), start=10)
    c.drain()
    # a re-cluster without the sticky rule put both events in one story
    both = np.concatenate([a, b])
    c.apply_communities(both, np.zeros(10, np.int64), np.zeros(10, np.int64), method="job")
    (joined,) = set(c.story_of(both).tolist())
    c.drain()
    c.params = params()  # sticky again: a document moves only to a clearly closer story
    c.recluster()  # the real re-cluster tells them apart again
    delta = c.drain()
    splits = [e for e in delta.lineage if e.level == "story" and e.kind == "split"]
    assert len(splits) == 1 and splits[0].related == (joined,)
    assert len(set(c.story_of(a).tolist()) | set(c.story_of(b).tolist())) == 2
    assert joined in set(c.story_of(a).tolist()) | set(c.story_of(b).tolist())  # one half keeps the id


def test_a_story_whose_documents_leave_the_window_dies() -> None:
    c = TrendClusterer(params(window_days=2.0), REAL, dim=DIM)
    a = feed(c, group(0, 4, seed=1), start=1, day=0)
    (story,) = set(c.story_of(a).tolist())
    c.drain()
    feed(c, group(4, 4, seed=2), start=10, day=5)
    delta = c.drain()
    assert ("death", story) in [(e.kind, e.subject) for e in delta.lineage]
    assert delta.stories[story][1] == "dead"
    assert c.story_of(a).tolist() == [-1] * 4  # out of the window


def test_every_document_has_a_topic_in_a_story_or_not() -> None:
    c = TrendClusterer(params(), fixed([0, 0, 0, -1], [0, 0, 0, 0]), dim=DIM)
    story_docs = feed(c, group(0, 3, seed=1), start=1)
    (lone,) = feed(c, group(5, 1, seed=2), start=4)  # one of a kind: no story
    (story,) = set(c.story_of(story_docs).tolist())
    c.drain()
    c.recluster()
    delta = c.drain()
    (topic,) = {t for t, _ in delta.document_topics.values()}
    assert sorted(delta.document_topics) == [*story_docs.tolist(), int(lone)]
    assert delta.stories[story][0] == topic and delta.topics[topic] == ("active", 1)
    assert c.story_of(np.asarray([lone])).tolist() == [-1]
    # A new document in no story takes the topic with the nearest centroid at once.
    (newcomer,) = feed(c, group(6, 1, seed=3), start=5)
    assert c.drain().document_topics == {int(newcomer): (topic, 1_500_000_000)}
    # Document topics survive a snapshot; a re-cluster that finds the same topic changes nothing.
    arrays, info = c.snapshot()
    again = TrendClusterer.restore(c.params, fixed([0, 0, 0, -1, -1], [0, 0, 0, 0, 0]), arrays, info)
    assert again.document_topics().tolist() == [topic] * 5
    again.recluster()
    assert again.drain().document_topics == {}


def test_a_recluster_that_finds_no_community_keeps_every_document_as_it_was() -> None:
    """A small partition (a few documents of a rare language): the re-cluster finds no story and no
    topic (all -1); the clusterer keeps what it had instead of failing (it once raised IndexError on
    every catch-up, so the partition never advanced)."""
    c = TrendClusterer(params(), fixed([-1, -1, -1], [-1, -1, -1]), dim=DIM)
    ids = feed(c, np.concatenate([group(0, 1, seed=1), group(3, 1, seed=2), group(6, 1, seed=3)]), start=1)
    before = c.story_of(ids).tolist()
    c.recluster()
    assert c.story_of(ids).tolist() == before
    assert c.reclusters == 1
