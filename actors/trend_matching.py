"""Matching a new partition of the window to the stories (or topics) it replaces, so ids persist.

Given, for the same documents, the id each had before (``old``, -1: none) and its new community
(``new``, 0..m-1, -1: noise), ``match`` decides which id every community carries and what happened:

1. Pairs (community, old id) are taken greedily by overlap, largest first; a pair is taken when both
   are still free and the overlap is at least ``min_share`` of the smaller of the two: the community
   **continues** that id.
2. An old id left without a community whose documents went mostly (``> 1/2``) to one community is
   **merged** into that community's id (a merge event: subject the survivor, related the merged ids).
3. A community left without an id that holds at least ``min_size`` documents of one old id, making
   at least half of the community, is a **split** of it (a new id; related the parent).
4. Any other community is a **birth** (a new id).
5. An old id whose documents now all sit in communities carrying other ids (none in noise, none kept)
   without a majority to one is **dissolved** (a death).

Pure NumPy; used for stories and, with stories' topics as ``old``, for topics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Matching:
    ids: np.ndarray  #: id carried by each community (index = community)
    continued: list[int] = field(default_factory=list)
    births: list[int] = field(default_factory=list)
    splits: list[tuple[int, int]] = field(default_factory=list)  #: (new id, parent id)
    merges: list[tuple[int, list[int]]] = field(default_factory=list)  #: (survivor, merged ids)
    dissolved: list[int] = field(default_factory=list)

    def merged_into(self) -> dict[int, int]:
        return {m: survivor for survivor, merged in self.merges for m in merged}


def match(
    old: np.ndarray,
    new: np.ndarray,
    *,
    new_id: Callable[[], int],
    min_size: int,
    min_share: float = 0.3,
) -> Matching:
    old = np.asarray(old, dtype=np.int64)
    new = np.asarray(new, dtype=np.int64)
    m = int(new.max(initial=-1)) + 1
    ids = np.full(m, -1, dtype=np.int64)
    result = Matching(ids=ids)
    both = (old >= 0) & (new >= 0)
    old_ids, old_sizes = np.unique(old[old >= 0], return_counts=True)
    old_size = dict(zip(old_ids.tolist(), old_sizes.tolist(), strict=True))
    new_sizes = np.bincount(new[new >= 0], minlength=m)
    pairs: dict[tuple[int, int], int] = {}
    if both.any():
        keys, counts = np.unique(np.stack([new[both], old[both]], axis=1), axis=0, return_counts=True)
        pairs = {(int(j), int(s)): int(c) for (j, s), c in zip(keys, counts, strict=True)}
    # 1. continuations, greedily by overlap (ties: smaller community index, then older id)
    taken_old: set[int] = set()
    for (j, s), c in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1])):
        if ids[j] >= 0 or s in taken_old:
            continue
        if c >= min_share * min(new_sizes[j], old_size[s]):
            ids[j] = s
            taken_old.add(s)
            result.continued.append(s)
    # 2. merges: a free old id whose documents went mostly to one (now owned) community
    by_old: dict[int, list[tuple[int, int]]] = {}
    for (j, s), c in pairs.items():
        by_old.setdefault(s, []).append((j, c))
    merged: dict[int, list[int]] = {}
    for s in sorted(old_size):
        if s in taken_old:
            continue
        spread = by_old.get(s, [])
        best = max(spread, key=lambda jc: (jc[1], -jc[0]), default=None)
        if best is not None and ids[best[0]] >= 0 and best[1] * 2 > old_size[s]:
            merged.setdefault(int(ids[best[0]]), []).append(s)
            taken_old.add(s)
    result.merges = [(survivor, sorted(ms)) for survivor, ms in sorted(merged.items())]
    # 3./4. splits and births for communities still without an id
    for j in range(m):
        if ids[j] >= 0:
            continue
        parents = [(s, c) for (jj, s), c in pairs.items() if jj == j]
        parent = max(parents, key=lambda sc: (sc[1], -sc[0]), default=None)
        ids[j] = new_id()
        if parent is not None and parent[1] >= min_size and parent[1] * 2 >= new_sizes[j]:
            result.splits.append((int(ids[j]), parent[0]))
        else:
            result.births.append(int(ids[j]))
    # 5. dissolved: free old ids all of whose documents sit in communities (none in noise)
    for s in sorted(old_size):
        if s in taken_old:
            continue
        in_noise = int(((old == s) & (new < 0)).sum())
        if in_noise == 0:
            result.dissolved.append(s)
    return result
