"""A SIMULATED interaction log over HuffPost 2018 headlines, for the offline recommendation benchmark.

No real user ever read these documents: the readers, their interests and every event are drawn from the
model below, with HuffPost's categories standing in for interests. The log has the three signals a news
recommender uses (popularity, content, recency), of strengths fixed by the constants, so the benchmark
compares methods on a known, stated world, not on real behaviour. Pure: numpy only; the caller passes
the corpus (``bench/recommend_quality.py`` uses ``trend_data.huffpost()`` and its cached MiniLM vectors).
Document ids are the corpus's row indices (0..4781 for HuffPost, oldest first).

The model (``SimParams``: the constants, their defaults in brackets), seeded by one numpy Generator:

- **Documents.** Each document has a latent appeal ``q ~ LogNormal(0, appeal_sigma [1.0])`` (the
  popularity signal) and is available from 00:00 UTC of its date (``doc_times``; HuffPost has only dates).
- **Users.** ``n_users`` [2,000], ids ``u00000``... Each has 1 to ``max_interests`` [3] interest
  categories (the count uniform), drawn without replacement with probability proportional to
  sqrt(category size); interest weights ~ Dirichlet(1, ..., 1); and a taste vector, the normalised mean
  of ``taste_docs`` [3] documents drawn uniformly from the union of its categories (the content signal
  within a category).
- **Activity.** A user plans ``reads_base [8] + Poisson(reads_poisson [12])`` reads. Its first active day
  is uniform over the corpus's days (88 for HuffPost); each active day has 1 to ``max_reads_per_day`` [3]
  reads (uniform), the next active day comes 1 to ``max_skip_days + 1`` [3] days later (0 to 2 days
  skipped, uniform). Activity stops at the planned count or at the end of the corpus, whichever comes
  first: users who start late read less.
- **A read on day D**: with probability ``explore`` [0.1] a category uniform over all categories, else
  one of the user's categories by interest weight; then a document of that category published in
  [D - ``window_days`` [6], D] (if none, in [D - ``wide_window_days`` [30], D]) that the user has not
  read, with probability proportional to ``q * exp(cos(doc, taste) / temperature [0.1])``. A read
  with no candidate even in the wide window is skipped (``skipped_reads``).
- **Events of a read**: ``click`` at a time uniform in day D (a day's clicks in time order); ``dwell``
  at click + seconds, value the seconds ~ LogNormal(log ``dwell_median_s`` [40], ``dwell_sigma``
  [0.8]); with probability ``p_like`` [0.15] a ``like`` and with ``p_share`` [0.03] a ``share``, 1 s and
  2 s after the dwell ends.
- **Events of an active day**: ``impression`` events, each at a time uniform in the day, for
  ``impressions_per_day`` [5] documents published that day that the user never reads (fewer if the day
  has fewer); with probability ``p_dislike`` [0.3] a ``dislike`` of one of them outside the user's
  categories (uniform among those; none if all are inside), 1 to 30 s after its impression.

``value`` is the dwell's seconds, else None. Events are sorted by time and numbered ``e0000000``...

``split_last_positive`` is the evaluation split: per user with at least 3 clicks, the last click is held
out, with every event of that user on that document and every event of that user from that click on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import NamedTuple

import numpy as np

DAY = 86_400
#: Event types, in the order their events are written for one read or day.
EVENT_TYPES = ("click", "dwell", "like", "share", "impression", "dislike")
#: A user needs this many clicks to get a held-out one (``split_last_positive``).
MIN_CLICKS_TO_HOLD_OUT = 3


class Event(NamedTuple):
    event_id: str
    user: str
    doc: int
    type: str
    ts: float  # epoch seconds
    value: float | None  # dwell seconds; None for every other type


@dataclass(frozen=True)
class SimParams:
    """The simulation's constants (module docstring)."""

    n_users: int = 2000
    appeal_sigma: float = 1.0
    max_interests: int = 3
    taste_docs: int = 3
    reads_base: int = 8
    reads_poisson: float = 12.0
    max_reads_per_day: int = 3
    max_skip_days: int = 2
    explore: float = 0.1
    window_days: int = 6
    wide_window_days: int = 30
    temperature: float = 0.1
    dwell_median_s: float = 40.0
    dwell_sigma: float = 0.8
    p_like: float = 0.15
    p_share: float = 0.03
    impressions_per_day: int = 5
    p_dislike: float = 0.3


@dataclass(frozen=True)
class UserTruth:
    """What the simulation knows about a user and no method sees (for diagnostics)."""

    categories: tuple[str, ...]
    weights: tuple[float, ...]
    taste: np.ndarray
    start_day: int
    planned_reads: int
    reads: int


@dataclass(frozen=True)
class Simulation:
    events: list[Event]
    truth: dict[str, UserTruth]
    doc_times: np.ndarray  # epoch seconds at which each document becomes available
    appeal: np.ndarray  # each document's q
    skipped_reads: int
    params: SimParams
    seed: int


def _day_starts(dates: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each document's day index from the first date, and the epoch of 00:00 UTC of each day."""
    parsed = [date.fromisoformat(d) for d in dates]
    first = min(parsed)
    days = np.array([(d - first).days for d in parsed], dtype=np.int64)
    origin = datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()
    starts = origin + DAY * np.arange(int(days.max()) + 1, dtype=np.float64)
    return days, starts


def simulate(
    *,
    labels: Sequence[str],
    dates: Sequence[str],
    vectors: np.ndarray,
    params: SimParams | None = None,
    seed: int = 7,
) -> Simulation:
    """The simulated log over a corpus: category per document, ISO date per document, unit vectors."""
    p = params or SimParams()
    rng = np.random.default_rng(seed)
    n_docs = len(labels)
    if len(dates) != n_docs or vectors.shape[0] != n_docs:
        raise ValueError(f"labels ({n_docs}), dates ({len(dates)}) and vectors ({vectors.shape[0]}) differ")
    days, day_starts = _day_starts(dates)
    n_days = len(day_starts)
    doc_times = day_starts[days]
    categories = sorted(set(labels))
    cat_index = {c: i for i, c in enumerate(categories)}
    doc_cat = np.array([cat_index[c] for c in labels], dtype=np.int64)
    # Per category: its documents by day (stable, so by row within a day), and their days for searchsorted.
    cat_docs = [np.flatnonzero(doc_cat == c) for c in range(len(categories))]
    cat_docs = [d[np.argsort(days[d], kind="stable")] for d in cat_docs]
    cat_days = [days[d] for d in cat_docs]
    day_docs = [np.flatnonzero(days == d) for d in range(n_days)]
    sizes = np.array([len(d) for d in cat_docs], dtype=np.float64)
    p_cat = np.sqrt(sizes) / np.sqrt(sizes).sum()
    appeal = rng.lognormal(0.0, p.appeal_sigma, n_docs)

    def candidates(cat: int, day: int, read: set[int]) -> np.ndarray:
        for back in (p.window_days, p.wide_window_days):
            lo = np.searchsorted(cat_days[cat], day - back, side="left")
            hi = np.searchsorted(cat_days[cat], day, side="right")
            found = np.array([d for d in cat_docs[cat][lo:hi] if int(d) not in read], dtype=np.int64)
            if len(found):
                return found
        return np.empty(0, dtype=np.int64)

    raw: list[tuple[float, str, int, str, float | None]] = []
    truth: dict[str, UserTruth] = {}
    skipped = 0
    for u in range(p.n_users):
        user = f"u{u:05d}"
        m = int(rng.integers(1, p.max_interests + 1))
        interests = rng.choice(len(categories), size=m, replace=False, p=p_cat)
        weights = rng.dirichlet(np.ones(m))
        pool = np.concatenate([cat_docs[c] for c in interests])
        taste = vectors[rng.choice(pool, size=min(p.taste_docs, len(pool)), replace=False)].mean(axis=0)
        taste = taste / np.linalg.norm(taste)
        # q * exp(cos / T), scaled by exp(-1 / T) so that it cannot overflow (proportions unchanged).
        affinity = appeal * np.exp((vectors @ taste - 1.0) / p.temperature)
        planned = p.reads_base + int(rng.poisson(p.reads_poisson))
        start = int(rng.integers(0, n_days))
        day = start
        reads: list[tuple[int, float, int]] = []  # (day, click ts, doc)
        read: set[int] = set()
        while len(reads) < planned and day < n_days:
            today = min(int(rng.integers(1, p.max_reads_per_day + 1)), planned - len(reads))
            for offset in np.sort(rng.uniform(0.0, DAY, today)):
                if rng.random() < p.explore:
                    cat = int(rng.integers(len(categories)))
                else:
                    cat = int(interests[rng.choice(m, p=weights)])
                found = candidates(cat, day, read)
                if not len(found):
                    skipped += 1
                    continue
                w = affinity[found]
                doc = int(found[rng.choice(len(found), p=w / w.sum())])
                read.add(doc)
                reads.append((day, float(day_starts[day] + offset), doc))
            day += 1 + int(rng.integers(0, p.max_skip_days + 1))
        for _day, ts, doc in reads:
            seconds = float(rng.lognormal(math.log(p.dwell_median_s), p.dwell_sigma))
            raw.append((ts, user, doc, "click", None))
            raw.append((ts + seconds, user, doc, "dwell", seconds))
            if rng.random() < p.p_like:
                raw.append((ts + seconds + 1.0, user, doc, "like", None))
            if rng.random() < p.p_share:
                raw.append((ts + seconds + 2.0, user, doc, "share", None))
        own = set(int(c) for c in interests)
        for active in sorted({d for d, _, _ in reads}):
            unread = np.array([d for d in day_docs[active] if int(d) not in read], dtype=np.int64)
            shown = rng.choice(unread, size=min(p.impressions_per_day, len(unread)), replace=False)
            times = day_starts[active] + rng.uniform(0.0, DAY, len(shown))
            for doc, ts in zip(shown, times, strict=True):
                raw.append((float(ts), user, int(doc), "impression", None))
            if rng.random() < p.p_dislike:
                outside = [i for i, d in enumerate(shown) if int(doc_cat[d]) not in own]
                if outside:
                    i = outside[int(rng.integers(len(outside)))]
                    raw.append(
                        (
                            float(times[i]) + float(rng.uniform(1.0, 30.0)),
                            user,
                            int(shown[i]),
                            "dislike",
                            None,
                        )
                    )
        truth[user] = UserTruth(
            categories=tuple(categories[c] for c in interests),
            weights=tuple(float(w) for w in weights),
            taste=taste.astype(np.float32),
            start_day=start,
            planned_reads=planned,
            reads=len(reads),
        )
    order = {t: i for i, t in enumerate(EVENT_TYPES)}
    raw.sort(key=lambda r: (r[0], r[1], order[r[3]], r[2]))
    events = [
        Event(f"e{i:07d}", user, doc, kind, ts, value) for i, (ts, user, doc, kind, value) in enumerate(raw)
    ]
    return Simulation(events, truth, doc_times, appeal, skipped, p, seed)


def split_last_positive(events: Sequence[Event]) -> tuple[list[Event], dict[str, tuple[int, float]]]:
    """Training events and, per user with at least 3 clicks, the held-out last click ``(doc, ts)``.

    Held out with it (not in training): every event of that user on that document, and every event of
    that user at or after that click's time. Users with fewer clicks are in training only. Events keep
    their order."""
    clicks: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e.type == "click":
            clicks[e.user].append(e)
    held_out: dict[str, tuple[int, float]] = {}
    for user, theirs in clicks.items():
        if len(theirs) >= MIN_CLICKS_TO_HOLD_OUT:
            last = max(theirs, key=lambda e: e.ts)  # the first of equal times: order is kept
            held_out[user] = (last.doc, last.ts)
    train = [
        e
        for e in events
        if e.user not in held_out or (e.doc != held_out[e.user][0] and e.ts < held_out[e.user][1])
    ]
    return train, held_out
