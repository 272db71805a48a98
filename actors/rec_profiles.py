"""``ProfileBook``: what Pulse knows of each reader and of each document's readers, kept up to date one
batch of interaction events at a time (plain Python and numpy, no Ray, no database).

Three things are derived from the same events, in one pass:

- **Profiles.** A reader (``user:<id>`` or ``session:<id>``, the *subject*) has a weight on each document they
  interacted with: what they did (``ProfileParams.weights``: a like counts more than a view, a dislike counts
  against, dwell counts by its seconds), halved every ``half_life_s`` of event time; the ``max_documents``
  heaviest (by absolute weight) are kept. The profile vector is the weighted sum of those documents' vectors,
  normalised (``profile_vector``): it is made when asked, from the vectors of the index being served, so a
  model switch needs no rebuild. Beside the weights: the documents the subject has seen (every type but
  ``impression``, at most ``max_seen``, oldest forgotten first), their newest positives (for reasons and
  co-reads) and negatives.
- **Co-reads** ("people who read this also read"). When a subject reads document ``d`` for the first time,
  each document they read positively in the ``covisit_window_s`` before (at most ``recent`` of them) gains one
  co-read with ``d``. A pair's score is its count over the square root of the two documents' reader counts
  (cosine of the reader sets), so a document everyone reads does not co-occur with everything. Each
  document keeps its ``max_neighbours`` strongest pairs.
- **Popularity**: per document, the positive interactions, halved every ``popularity_half_life_s``.

The book is snapshotted as named numpy arrays (``to_arrays`` / ``from_arrays``) and restored exactly.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

#: Interaction types, as the events API takes them.
EVENT_TYPES: tuple[str, ...] = ("view", "click", "like", "dislike", "share", "dwell", "impression")
#: Types that say the subject wanted the document (co-reads, popularity, the recent positives).
POSITIVE_TYPES = frozenset({"view", "click", "like", "share", "dwell"})

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "click": 1.0,
    "like": 2.0,
    "share": 2.0,
    "dislike": -2.0,
    "impression": 0.0,
    "dwell": 1.0,  # times min(seconds / dwell_full_s, dwell_cap)
}


@dataclass(frozen=True)
class Interaction:
    """One event, as the book reads it."""

    subject: str
    document_id: int
    type: str
    at: float  # epoch seconds
    value: float | None = None  # dwell seconds


class ProfileSettings(Protocol):
    """What ``ProfileParams.from_settings`` reads: the recommend settings' fields of the same names."""

    @property
    def profile_half_life_h(self) -> float: ...
    @property
    def popularity_half_life_h(self) -> float: ...
    @property
    def co_read_window_h(self) -> float: ...
    @property
    def max_seen(self) -> int: ...
    @property
    def profile_documents(self) -> int: ...
    @property
    def recent_positives(self) -> int: ...


@dataclass(frozen=True)
class ProfileParams:
    half_life_s: float = 14 * 86_400.0
    popularity_half_life_s: float = 2 * 86_400.0
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    dwell_full_s: float = 60.0
    dwell_cap: float = 2.0
    max_seen: int = 2_000
    max_documents: int = 100
    recent: int = 20
    covisit_window_s: float = 7 * 86_400.0
    max_neighbours: int = 200

    @classmethod
    def from_hours(
        cls,
        *,
        half_life_h: float,
        popularity_half_life_h: float,
        co_read_window_h: float,
        max_seen: int,
        max_documents: int,
        recent: int,
    ) -> ProfileParams:
        """The parameters as settings give them (durations in hours; the recommend settings' fields
        ``profile_half_life_h``, ``popularity_half_life_h``, ``co_read_window_h``, ``max_seen``,
        ``profile_documents``, ``recent_positives``); the rest keep their defaults."""
        return cls(
            half_life_s=half_life_h * 3600,
            popularity_half_life_s=popularity_half_life_h * 3600,
            covisit_window_s=co_read_window_h * 3600,
            max_seen=max_seen,
            max_documents=max_documents,
            recent=recent,
        )

    @classmethod
    def from_settings(cls, s: ProfileSettings) -> ProfileParams:
        """``from_hours`` with the recommend settings' fields (``PULSE_RECOMMEND__*``)."""
        return cls.from_hours(
            half_life_h=s.profile_half_life_h,
            popularity_half_life_h=s.popularity_half_life_h,
            co_read_window_h=s.co_read_window_h,
            max_seen=s.max_seen,
            max_documents=s.profile_documents,
            recent=s.recent_positives,
        )

    def weight(self, kind: str, value: float | None) -> float:
        """What one event adds to its subject's profile (negative: counts against)."""
        w = float(self.weights.get(kind, 0.0))
        if kind == "dwell":
            seconds = max(float(value or 0.0), 0.0)
            return w * min(seconds / self.dwell_full_s, self.dwell_cap)
        return w


@dataclass(frozen=True)
class UserProfile:
    """A subject's profile at its latest event."""

    subject: str
    documents: tuple[int, ...]  # heaviest first
    weights: tuple[float, ...]  # each document's weight at ``updated_at`` (negative: counts against)
    positives: tuple[int, ...]  # newest first, distinct
    negatives: tuple[int, ...]  # newest first, distinct
    seen: frozenset[int]
    events: int
    updated_at: float


@dataclass(frozen=True)
class CoRead:
    """A document read by readers of ``because``."""

    document_id: int
    score: float
    because: int


class _Subject:
    __slots__ = ("events", "negatives", "positives", "seen", "t", "weights")

    def __init__(self) -> None:
        self.weights: dict[int, tuple[float, float]] = {}  # document -> (weight at time, time)
        self.t = -math.inf
        self.events = 0
        self.seen: OrderedDict[int, float] = OrderedDict()  # document -> last time, oldest first
        self.positives: OrderedDict[int, float] = OrderedDict()  # document -> time of first positive
        self.negatives: OrderedDict[int, float] = OrderedDict()


def _decay(elapsed_s: float, half_life_s: float) -> float:
    return float(2.0 ** (-elapsed_s / half_life_s)) if half_life_s > 0 else 1.0


class ProfileBook:
    """Profiles, co-reads and popularity, updated by ``add``; see the module docstring."""

    def __init__(self, params: ProfileParams) -> None:
        self.params = params
        self._subjects: dict[str, _Subject] = {}
        self._pairs: dict[int, dict[int, float]] = {}
        self._readers: dict[int, float] = {}
        self._pop: dict[int, tuple[float, float]] = {}  # document -> (value at t, t)
        self._pop_version = 0  # changes with _pop; _pop_rank is the order computed at a version
        self._pop_rank: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.applied = 0

    # ---------------------------------------------------------------------------------------- update
    def add(self, events: Iterable[Interaction]) -> int:
        """Apply events (in the order given; time order is expected but not required); how many."""
        n = 0
        for ev in events:
            self._apply(ev)
            n += 1
        self.applied += n
        return n

    def _apply(self, ev: Interaction) -> None:
        p = self.params
        subject = self._subjects.get(ev.subject)
        if subject is None:
            subject = self._subjects[ev.subject] = _Subject()
        subject.events += 1
        subject.t = max(subject.t, ev.at)
        weight = p.weight(ev.type, ev.value)
        if weight != 0.0:
            old, t = subject.weights.get(ev.document_id, (0.0, ev.at))
            if ev.at >= t:
                subject.weights[ev.document_id] = (old * _decay(ev.at - t, p.half_life_s) + weight, ev.at)
            else:
                subject.weights[ev.document_id] = (old + weight * _decay(t - ev.at, p.half_life_s), t)
            if len(subject.weights) > p.max_documents:
                lightest = min(
                    subject.weights,
                    key=lambda d: (
                        abs(subject.weights[d][0]) * _decay(subject.t - subject.weights[d][1], p.half_life_s)
                    ),
                )
                del subject.weights[lightest]
        first_read = ev.document_id not in subject.seen  # a reader counts once, however often they return
        if ev.type != "impression":
            subject.seen.pop(ev.document_id, None)
            subject.seen[ev.document_id] = ev.at
            while len(subject.seen) > p.max_seen:
                subject.seen.popitem(last=False)
        if ev.type == "dislike":
            subject.negatives.pop(ev.document_id, None)
            subject.negatives[ev.document_id] = ev.at
            subject.positives.pop(ev.document_id, None)
            _trim(subject.negatives, p.recent)
        elif ev.type in POSITIVE_TYPES:
            self._popular(ev.document_id, ev.at, max(weight, 0.0) if ev.type == "dwell" else 1.0)
            if ev.document_id not in subject.positives:
                if first_read:
                    self._co_read(ev.document_id, ev.at, subject.positives)
                subject.positives[ev.document_id] = ev.at
                _trim(subject.positives, p.recent)

    def _co_read(self, doc: int, at: float, before: Mapping[int, float]) -> None:
        p = self.params
        self._readers[doc] = self._readers.get(doc, 0.0) + 1.0
        for other, t in before.items():
            if other == doc or abs(at - t) > p.covisit_window_s:
                continue
            for a, b in ((doc, other), (other, doc)):
                row = self._pairs.setdefault(a, {})
                row[b] = row.get(b, 0.0) + 1.0
                if len(row) > 2 * p.max_neighbours:
                    self._prune(a, row)

    def _prune(self, doc: int, row: dict[int, float]) -> None:
        keep = sorted(row.items(), key=lambda kv: -self._cosine(doc, kv[0], kv[1]))[
            : self.params.max_neighbours
        ]
        self._pairs[doc] = dict(keep)

    def _cosine(self, a: int, b: int, count: float) -> float:
        return count / math.sqrt(max(self._readers.get(a, 1.0), 1.0) * max(self._readers.get(b, 1.0), 1.0))

    def _popular(self, doc: int, at: float, amount: float) -> None:
        self._pop_version += 1
        value, t = self._pop.get(doc, (0.0, at))
        half = self.params.popularity_half_life_s
        if at >= t:
            self._pop[doc] = (value * _decay(at - t, half) + amount, at)
        else:
            self._pop[doc] = (value + amount * _decay(t - at, half), t)

    # ----------------------------------------------------------------------------------------- reads
    def __len__(self) -> int:
        return len(self._subjects)

    def user(self, subject: str) -> UserProfile | None:
        """The subject's profile, or ``None`` for a subject never seen."""
        s = self._subjects.get(subject)
        if s is None:
            return None
        half = self.params.half_life_s
        now = {d: w * _decay(s.t - t, half) for d, (w, t) in s.weights.items()}
        heaviest = sorted(now, key=lambda d: (-abs(now[d]), d))
        return UserProfile(
            subject=subject,
            documents=tuple(heaviest),
            weights=tuple(now[d] for d in heaviest),
            positives=tuple(reversed(s.positives)),
            negatives=tuple(reversed(s.negatives)),
            seen=frozenset(s.seen),
            events=s.events,
            updated_at=s.t,
        )

    def co_read(
        self, documents: Sequence[int], *, limit: int, weights: Sequence[float] | None = None
    ) -> list[CoRead]:
        """Documents read by the readers of ``documents`` (each weighted, default 1), best first, none of
        ``documents`` themselves; each names the input document that contributed most."""
        scores: dict[int, float] = {}
        best: dict[int, tuple[float, int]] = {}
        given = set(documents)
        for i, doc in enumerate(documents):
            w = 1.0 if weights is None else float(weights[i])
            for other, count in self._pairs.get(doc, {}).items():
                if other in given:
                    continue
                contribution = w * self._cosine(doc, other, count)
                scores[other] = scores.get(other, 0.0) + contribution
                if other not in best or contribution > best[other][0]:
                    best[other] = (contribution, doc)
        top = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [CoRead(doc, score, best[doc][1]) for doc, score in top]

    def popularity(self, documents: Sequence[int], *, now: float) -> np.ndarray:
        """Decayed popularity of each document at ``now`` (0 for documents never read)."""
        half = self.params.popularity_half_life_s
        out = np.zeros(len(documents), np.float64)
        for i, doc in enumerate(documents):
            value, t = self._pop.get(doc, (0.0, now))
            out[i] = value * _decay(max(now - t, 0.0), half)
        return out

    def _ranked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every read document, most popular first, with its (value, time): the order does not depend on
        the time asked (every value decays alike: ``value * 2^(-(now - t) / h)`` ranks as
        ``log2(value) + t / h``), so it is computed once per change of the book, not per request."""
        if self._pop_rank is None or self._pop_rank[0] != self._pop_version:
            docs = np.fromiter(self._pop.keys(), np.int64, len(self._pop))
            vt = np.array(list(self._pop.values()), np.float64).reshape(len(self._pop), 2)
            key = np.log2(np.maximum(vt[:, 0], 1e-300)) + vt[:, 1] / self.params.popularity_half_life_s
            order = np.argsort(-key, kind="stable")
            self._pop_rank = (self._pop_version, docs[order], vt[order, 0], vt[order, 1])
        return self._pop_rank[1], self._pop_rank[2], self._pop_rank[3]

    def popular(self, *, now: float, limit: int, exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
        """The ``limit`` most popular documents at ``now`` not in ``exclude``, best first."""
        if not self._pop or limit <= 0:
            return []
        docs, values, times = self._ranked()
        skip = set(exclude)
        half = self.params.popularity_half_life_s
        if len(times) and now < float(times.max()):
            # Asked as of a time before some reads (a replay): those are not decayed up, which breaks the
            # time-free order; rank every document at ``now`` instead.
            scores = values * np.exp2(-np.clip(now - times, 0.0, None) / half)
            order = np.argsort(-scores, kind="stable")
            docs, values, times = docs[order], scores[order], np.full(len(order), now)
        out: list[tuple[int, float]] = []
        for doc, value, t in zip(docs.tolist(), values.tolist(), times.tolist(), strict=True):
            if doc in skip or value <= 0:
                continue
            out.append((doc, value * _decay(max(now - t, 0.0), half)))
            if len(out) >= limit:
                break
        return out

    def merge(self, other: ProfileBook) -> None:
        """Take in a book built from other subjects' events (the rebuild job builds one book per group of
        subjects in parallel): subjects are added (a subject in both keeps this book's), co-read counts,
        reader counts and popularity are summed."""
        for key, subject in other._subjects.items():
            self._subjects.setdefault(key, subject)
        for doc, count in other._readers.items():  # before the pairs: pruning ranks by the summed readers
            self._readers[doc] = self._readers.get(doc, 0.0) + count
        for a, row in other._pairs.items():
            mine = self._pairs.setdefault(a, {})
            for b, count in row.items():
                mine[b] = mine.get(b, 0.0) + count
            if len(mine) > 2 * self.params.max_neighbours:
                self._prune(a, mine)
        half = self.params.popularity_half_life_s
        self._pop_version += 1
        for doc, (value, t) in other._pop.items():
            mine_value, mine_t = self._pop.get(doc, (0.0, t))
            at = max(t, mine_t)
            self._pop[doc] = (mine_value * _decay(at - mine_t, half) + value * _decay(at - t, half), at)
        self.applied += other.applied

    # -------------------------------------------------------------------------------------- snapshot
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The whole book as named arrays (``np.savez``-able); ``from_arrays`` restores it exactly."""
        subjects = list(self._subjects.items())
        out: dict[str, np.ndarray] = {
            "meta": np.frombuffer(
                json.dumps({"applied": self.applied, "subjects": [k for k, _ in subjects]}).encode(),
                np.uint8,
            ),
            "times": np.array([s.t for _, s in subjects], np.float64),
            "events": np.array([s.events for _, s in subjects], np.int64),
        }
        weights = [s.weights for _, s in subjects]
        out["weights_len"] = np.array([len(w) for w in weights], np.int64)
        out["weights"] = np.array(
            [(d, w, t) for ws in weights for d, (w, t) in ws.items()], np.float64
        ).reshape(-1, 3)
        for name in ("seen", "positives", "negatives"):
            lists = [getattr(s, name) for _, s in subjects]
            out[f"{name}_len"] = np.array([len(x) for x in lists], np.int64)
            out[f"{name}_doc"] = np.array([d for x in lists for d in x], np.int64)
            out[f"{name}_t"] = np.array([t for x in lists for t in x.values()], np.float64)
        pairs = [(a, b, c) for a, row in self._pairs.items() for b, c in row.items()]
        out["pairs"] = np.array(pairs, np.float64).reshape(len(pairs), 3)
        out["readers"] = np.array(list(self._readers.items()), np.float64).reshape(len(self._readers), 2)
        out["pop"] = np.array([(d, v, t) for d, (v, t) in self._pop.items()], np.float64).reshape(
            len(self._pop), 3
        )
        return out

    @classmethod
    def from_arrays(cls, params: ProfileParams, arrays: Mapping[str, np.ndarray]) -> ProfileBook:
        meta: dict[str, Any] = json.loads(bytes(arrays["meta"]).decode())
        book = cls(params)
        book.applied = int(meta["applied"])
        offsets = {
            name: np.concatenate([[0], np.cumsum(arrays[f"{name}_len"])])
            for name in ("weights", "seen", "positives", "negatives")
        }
        for i, key in enumerate(meta["subjects"]):
            s = _Subject()
            lo, hi = int(offsets["weights"][i]), int(offsets["weights"][i + 1])
            s.weights = {int(d): (w, t) for d, w, t in arrays["weights"][lo:hi].tolist()}
            s.t = float(arrays["times"][i])
            s.events = int(arrays["events"][i])
            for name in ("seen", "positives", "negatives"):
                lo, hi = int(offsets[name][i]), int(offsets[name][i + 1])
                docs, times = arrays[f"{name}_doc"][lo:hi], arrays[f"{name}_t"][lo:hi]
                getattr(s, name).update(zip(docs.tolist(), times.tolist(), strict=True))
            book._subjects[key] = s
        for a, b, c in arrays["pairs"].tolist():
            book._pairs.setdefault(int(a), {})[int(b)] = c
        book._readers = {int(d): c for d, c in arrays["readers"].tolist()}
        book._pop = {int(d): (v, t) for d, v, t in arrays["pop"].tolist()}
        return book


def profile_vector(weights: Sequence[float], vectors: np.ndarray) -> np.ndarray | None:
    """A profile's vector: the weighted sum of its documents' vectors (rows of ``vectors``, zeros for
    documents without one), normalised; ``None`` when nothing positive outweighs the negatives."""
    if not len(weights):
        return None
    total = np.asarray(weights, np.float64) @ np.asarray(vectors, np.float64)
    norm = float(np.linalg.norm(total))
    if norm <= 1e-9 or max(weights) <= 0:
        return None
    return (total / norm).astype(np.float32)


def _trim(items: OrderedDict[int, float], keep: int) -> None:
    while len(items) > keep:
        items.popitem(last=False)
