"""The rules that keep story ids steady through a re-cluster (pure numpy, no Ray): ids change for a reason,
not for the noise of a re-cluster.

- ``close_merges``: a merge the matching proposes stands only between stories whose centroids are
  ``merge_threshold`` alike;
- ``stay_unless_closer``: a document moves to another story only when that one is clearly closer
  (``move_margin`` of cosine similarity) than its own, or is a split far from the rest of its parent
  (centroids under ``split_threshold`` alike: two events one story held, taken whole);
- ``story_lineage``: the births, splits, merges and deaths of a matching as lineage events.
"""

from __future__ import annotations

import numpy as np

from actors.trend_delta import Lineage
from actors.trend_matching import Matching


def unit_centroids(vectors: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Unit centroid of each label (>= 0) of ``labels`` over the rows of ``vectors``."""
    out: dict[int, np.ndarray] = {}
    valid = labels >= 0
    if not valid.any():
        return out
    ids, inverse = np.unique(labels[valid], return_inverse=True)
    sums = np.zeros((len(ids), vectors.shape[1]), np.float32)
    np.add.at(sums, inverse, vectors[valid])
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return dict(zip(ids.tolist(), sums, strict=True))


def close_merges(
    merges: list[tuple[int, list[int]]], units: dict[int, np.ndarray], *, threshold: float
) -> list[tuple[int, list[int]]]:
    """The merges (survivor, merged) kept: only the merged stories ``threshold`` alike the survivor."""
    kept = []
    for survivor, merged in merges:
        if survivor not in units:
            continue
        close = [s for s in merged if s in units and float(units[s] @ units[survivor]) >= threshold]
        if close:
            kept.append((survivor, close))
    return kept


def stay_unless_closer(
    vectors: np.ndarray,
    current: np.ndarray,
    proposed: np.ndarray,
    *,
    old_units: dict[int, np.ndarray],
    merged: set[int],
    splits: dict[int, int],
    move_margin: float,
    split_threshold: float,
) -> None:
    """Put back in ``proposed`` (in place) the current story of each document whose move is not
    clearly better; documents of merged stories follow the merge."""
    rows = np.flatnonzero((proposed != current) & (current >= 0) & (proposed >= 0))
    rows = np.asarray([r for r in rows if int(current[r]) not in merged], np.int64)
    if not len(rows):
        return
    new_units = unit_centroids(vectors, proposed)
    apart = {
        (parent, sid)
        for sid, parent in splits.items()
        if sid in new_units
        and parent in new_units
        and float(new_units[sid] @ new_units[parent]) < split_threshold
    }
    for row in rows:
        was, now = int(current[row]), int(proposed[row])
        if was not in old_units or now not in new_units or (was, now) in apart:
            continue
        if float(vectors[row] @ new_units[now]) < float(vectors[row] @ old_units[was]) + move_margin:
            proposed[row] = was


def story_lineage(m: Matching, old: np.ndarray, new: np.ndarray, at: int) -> list[Lineage]:
    """Lineage events of a matching: ``old`` and ``new`` are the window's stories before and after."""
    events = []
    for sid in m.births:
        n = int((new == sid).sum())
        events.append(Lineage("story", "birth", sid, (), n, at, f"story:birth:{sid}"))
    for sid, parent in m.splits:
        n = int((new == sid).sum())
        events.append(Lineage("story", "split", sid, (parent,), n, at, f"story:split:{sid}:{parent}"))
    for survivor, merged in m.merges:
        n = int(np.isin(old, merged).sum())
        key = f"story:merge:{survivor}:{','.join(map(str, merged))}"
        events.append(Lineage("story", "merge", survivor, tuple(merged), n, at, key))
    for s in m.dissolved:
        n = int((old == s).sum())
        events.append(Lineage("story", "death", s, (), n, at, f"story:death:{s}"))
    return events
