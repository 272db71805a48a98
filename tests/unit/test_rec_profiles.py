"""ProfileBook on constructed event streams (no Ray, no database): what each interaction weighs and how it
decays, the bounds on a profile, the profile vector on orthogonal unit vectors (so the expected vector is
exact), co-read scores against the cosine of hand-counted reader sets, popularity's half-life, and the book's
snapshot and merge, which must answer exactly as the book they were made from.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.rec_profiles import (
    EVENT_TYPES,
    Interaction,
    ProfileBook,
    ProfileParams,
    profile_vector,
)

T0 = 1_700_000_000.0
HOUR = 3_600.0
HALF = ProfileParams().half_life_s
POP_HALF = ProfileParams().popularity_half_life_s


def ev(subject: str, document: int, kind: str, at: float = T0, value: float | None = None) -> Interaction:
    return Interaction(subject, document, kind, at, value)


def book_of(events: list[Interaction], **params: object) -> ProfileBook:
    book = ProfileBook(ProfileParams(**params))  # type: ignore[arg-type]
    assert book.add(events) == len(events)
    return book


def weights_of(book: ProfileBook, subject: str) -> dict[int, float]:
    profile = book.user(subject)
    assert profile is not None
    return dict(zip(profile.documents, profile.weights, strict=True))


# ------------------------------------------------------------------------------------------------ weights
def test_a_like_weighs_twice_a_click_and_a_dislike_counts_against() -> None:
    book = book_of([ev("user:1", 1, "click"), ev("user:1", 2, "like"), ev("user:1", 3, "dislike")])
    profile = book.user("user:1")
    assert profile is not None
    assert profile.documents == (2, 3, 1)  # by absolute weight, ties by id
    assert profile.weights == (2.0, -2.0, 1.0)
    assert profile.events == 3 and profile.updated_at == T0


@pytest.mark.parametrize(
    ("seconds", "weight"), [(30.0, 0.5), (60.0, 1.0), (90.0, 1.5), (120.0, 2.0), (600.0, 2.0), (-5.0, 0.0)]
)
def test_dwell_weighs_its_seconds_over_a_minute_capped_at_2(seconds: float, weight: float) -> None:
    assert ProfileParams().weight("dwell", seconds) == weight
    book = book_of([ev("user:1", 7, "dwell", value=seconds)])
    assert weights_of(book, "user:1") == ({7: weight} if weight else {})


def test_an_impression_weighs_nothing_and_is_not_seen_while_every_other_type_is_seen() -> None:
    assert ProfileParams().weight("impression", None) == 0.0
    events = [ev(f"user:{kind}", i, kind, value=30.0) for i, kind in enumerate(EVENT_TYPES)]
    book = book_of(events)
    for i, kind in enumerate(EVENT_TYPES):
        profile = book.user(f"user:{kind}")
        assert profile is not None and profile.events == 1
        if kind == "impression":
            assert profile.seen == frozenset() and profile.documents == () and profile.positives == ()
        else:
            assert profile.seen == {i}
    assert book.user("user:never") is None
    assert len(book) == len(EVENT_TYPES)


# ------------------------------------------------------------------------------------------------- decay
def test_an_event_one_half_life_older_weighs_half_at_the_subjects_latest_time() -> None:
    book = book_of(
        [
            ev("user:1", 1, "click", T0),
            ev("user:1", 2, "click", T0 + HALF),
            ev("user:1", 3, "like", T0 + HALF / 2),
            ev("user:1", 4, "click", T0 - HALF),  # in the past of the subject: two half-lives old
        ]
    )
    got = weights_of(book, "user:1")
    assert got[1] == pytest.approx(0.5, abs=1e-9)
    assert got[2] == pytest.approx(1.0, abs=1e-9)
    assert got[3] == pytest.approx(2.0 / math.sqrt(2.0), abs=1e-9)
    assert got[4] == pytest.approx(0.25, abs=1e-9)
    profile = book.user("user:1")
    assert profile is not None and profile.updated_at == T0 + HALF


def test_repeated_events_on_one_document_add_up_after_decay_in_either_order() -> None:
    in_order = book_of([ev("user:1", 1, "click", T0), ev("user:1", 1, "like", T0 + HALF)])
    late = book_of(
        [ev("user:1", 1, "like", T0 + HALF), ev("user:1", 1, "click", T0)]
    )  # the click arrives late
    assert weights_of(in_order, "user:1")[1] == pytest.approx(2.5, abs=1e-9)
    assert weights_of(late, "user:1")[1] == pytest.approx(2.5, abs=1e-9)
    # the late event is decayed to the subject's time, which does not go back
    profile = late.user("user:1")
    assert profile is not None and profile.updated_at == T0 + HALF


def test_a_like_undone_by_a_dislike_weighs_nothing() -> None:
    book = book_of([ev("user:1", 1, "like", T0), ev("user:1", 1, "dislike", T0)])
    assert weights_of(book, "user:1") == {1: 0.0}


# ------------------------------------------------------------------------------------------------ bounds
def test_max_documents_keeps_the_heaviest_at_the_subjects_time() -> None:
    book = book_of(
        [
            ev("user:1", 1, "like", T0),  # 2, but 0.5 two half-lives later
            ev("user:1", 2, "dislike", T0 + 2 * HALF),  # -2: heavy by absolute weight
            ev("user:1", 3, "click", T0 + 2 * HALF),  # 1
            ev("user:1", 4, "view", T0 + 2 * HALF),  # 1
        ],
        max_documents=3,
    )
    assert weights_of(book, "user:1") == pytest.approx({2: -2.0, 3: 1.0, 4: 1.0})
    lighter = book_of(
        [ev("user:2", 1, "like"), ev("user:2", 2, "share"), ev("user:2", 3, "view")], max_documents=2
    )
    assert weights_of(lighter, "user:2") == {1: 2.0, 2: 2.0}  # the newest, lighter document is not kept


def test_max_seen_forgets_the_oldest_first_and_a_new_touch_makes_a_document_young() -> None:
    events = [ev("user:1", d, "view", T0 + i) for i, d in enumerate([1, 2, 3, 1, 4])]
    profile = book_of(events, max_seen=3).user("user:1")
    assert profile is not None and profile.seen == {1, 3, 4}


def test_positives_are_newest_first_distinct_and_at_most_recent() -> None:
    events = [
        ev("user:1", d, kind, T0 + i)
        for i, (d, kind) in enumerate([(1, "click"), (2, "view"), (1, "like"), (3, "share")])
    ]
    profile = book_of(events).user("user:1")
    assert profile is not None
    assert profile.positives == (3, 2, 1)  # by first positive, each once
    assert profile.negatives == ()
    short = book_of(events, recent=2).user("user:1")
    assert short is not None and short.positives == (3, 2)


def test_a_dislike_moves_a_document_from_positives_to_negatives() -> None:
    events = [
        ev("user:1", 1, "click", T0),
        ev("user:1", 2, "click", T0 + 1),
        ev("user:1", 1, "dislike", T0 + 2),
    ]
    profile = book_of(events).user("user:1")
    assert profile is not None
    assert profile.positives == (2,)
    assert profile.negatives == (1,)
    assert profile.seen == {1, 2}


# ---------------------------------------------------------------------------------------- profile vector
def test_the_profile_vector_is_the_normalised_weighted_sum() -> None:
    book = book_of(
        [ev("user:1", 10, "like"), ev("user:1", 11, "click"), ev("user:1", 12, "dwell", value=30.0)]
    )
    profile = book.user("user:1")
    assert profile is not None and profile.documents == (10, 11, 12)
    vectors = np.eye(4, dtype=np.float32)[:3]  # documents 10, 11, 12 on the first three axes
    got = profile_vector(profile.weights, vectors)
    assert got is not None and got.dtype == np.float32
    np.testing.assert_allclose(got, np.array([2.0, 1.0, 0.5, 0.0]) / math.sqrt(5.25), atol=1e-7)
    # a document without a vector (zeros) adds nothing
    got = profile_vector(profile.weights, np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]], np.float32))
    assert got is not None
    np.testing.assert_allclose(got, np.array([2.0, 0.0, 0.5, 0.0]) / math.sqrt(4.25), atol=1e-7)


def test_a_dislike_pulls_the_profile_vector_away_from_the_disliked_document() -> None:
    vector = {
        1: np.array([1, 0, 0, 0.0]),
        2: np.array([0, 1, 1, 0.0]) / math.sqrt(2),
        3: np.array([0, 0, 1, 0.0]),
    }

    def cosine_to_3(events: list[Interaction]) -> float:
        profile = book_of(events).user("user:1")
        assert profile is not None
        v = profile_vector(profile.weights, np.stack([vector[d] for d in profile.documents]))
        assert v is not None
        return float(v @ vector[3])

    liked = [ev("user:1", 1, "like"), ev("user:1", 2, "like")]
    without, with_dislike = cosine_to_3(liked), cosine_to_3([*liked, ev("user:1", 3, "dislike")])
    assert without == pytest.approx(0.5, abs=1e-6)  # 2 e1 + sqrt(2) (e2 + e3): sqrt(2) / sqrt(8)
    assert without > 0 > with_dislike
    # 2 e1 + sqrt(2) (e2 + e3) - 2 e3: its cosine to e3 is (sqrt(2) - 2) / |.|
    total = np.array([2.0, math.sqrt(2), math.sqrt(2) - 2, 0.0])
    assert with_dislike == pytest.approx(total[2] / np.linalg.norm(total), abs=1e-6)


def test_no_profile_vector_with_only_negatives_or_nothing() -> None:
    profile = book_of([ev("user:1", 1, "dislike"), ev("user:1", 2, "dislike")]).user("user:1")
    assert profile is not None and profile.weights == (-2.0, -2.0)
    assert profile_vector(profile.weights, np.eye(4, dtype=np.float32)[:2]) is None
    assert profile_vector([], np.zeros((0, 4), np.float32)) is None
    assert profile_vector([1.0], np.zeros((1, 4), np.float32)) is None  # no vector at all


# ------------------------------------------------------------------------------------------------ co-reads
def three_readers() -> ProfileBook:
    """Reader sets: 1 by a, b; 2 by a, b, c; 3 by a; 4 by c. Pairs: (1, 2) by a and b; (1, 3), (2, 3) by a;
    (2, 4) by c."""
    reads = {"user:a": [1, 2, 3], "user:b": [2, 1], "user:c": [4, 2]}
    return book_of([ev(s, d, "view", T0 + i * HOUR) for s, docs in reads.items() for i, d in enumerate(docs)])


def test_co_read_scores_are_the_cosine_of_the_reader_sets() -> None:
    book = three_readers()
    got = book.co_read([1], limit=10)
    assert [(c.document_id, c.because) for c in got] == [(2, 1), (3, 1)]
    assert [c.score for c in got] == pytest.approx([2 / math.sqrt(2 * 3), 1 / math.sqrt(2 * 1)], abs=1e-12)
    got = book.co_read([2], limit=10)
    assert [c.document_id for c in got] == [1, 3, 4]  # 3 and 4 tie at 1 / sqrt(3): by id
    assert [c.score for c in got] == pytest.approx(
        [2 / math.sqrt(6), 1 / math.sqrt(3), 1 / math.sqrt(3)], abs=1e-12
    )
    assert [c.document_id for c in book.co_read([2], limit=2)] == [1, 3]


def test_co_read_sums_over_the_inputs_names_the_main_contributor_and_never_returns_an_input() -> None:
    book = three_readers()
    got = book.co_read([1, 4], limit=10)
    assert [(c.document_id, c.because) for c in got] == [(2, 1), (3, 1)]
    assert got[0].score == pytest.approx(2 / math.sqrt(6) + 1 / math.sqrt(3), abs=1e-12)
    # weighted: document 4 now counts most for document 2
    got = book.co_read([1, 4], limit=10, weights=[0.1, 1.0])
    assert (got[0].document_id, got[0].because) == (2, 4)
    assert got[0].score == pytest.approx(0.2 / math.sqrt(6) + 1 / math.sqrt(3), abs=1e-12)
    assert {c.document_id for c in book.co_read([1, 2, 3, 4], limit=10)} == set()
    assert book.co_read([99], limit=10) == []


def test_co_read_with_a_weight_that_adds_nothing_or_counts_against_does_not_fail() -> None:
    """A zero or negative weight (a profile weight after a dislike, say) used to raise KeyError."""
    book = three_readers()
    assert [c.document_id for c in book.co_read([1], limit=10, weights=[0.0])] == [2, 3]
    got = book.co_read([1, 4], limit=10, weights=[-1.0, 1.0])
    assert {c.document_id: c.because for c in got} == {2: 4, 3: 1}
    assert [c.document_id for c in got] == [2, 3]  # 2: 1/sqrt(3) - 2/sqrt(6) = -0.24; 3: -1/sqrt(2)
    assert got[1].score == pytest.approx(-1 / math.sqrt(2), abs=1e-12)


def test_documents_read_further_apart_than_the_covisit_window_are_not_paired() -> None:
    window = 100.0
    book = book_of(
        [ev("user:1", 1, "view", T0), ev("user:1", 2, "view", T0 + 50), ev("user:1", 3, "view", T0 + 151)],
        covisit_window_s=window,
    )
    assert [c.document_id for c in book.co_read([1], limit=10)] == [2]
    assert [c.document_id for c in book.co_read([2], limit=10)] == [1]
    assert book.co_read([3], limit=10) == []


def test_impressions_and_dislikes_make_no_co_reads() -> None:
    book = book_of([ev("user:1", 1, "view"), ev("user:1", 2, "impression"), ev("user:1", 3, "dislike")])
    assert book.co_read([1], limit=10) == []


def test_a_subject_counts_once_as_a_reader_however_often_they_come_back() -> None:
    """Coming back to a document after a dislike, or after it left the ``recent`` positives, is not a second
    reader (it counted the subject again, and gave cosines above 1)."""
    events = [
        ev("user:1", d, kind, T0 + i)
        for i, (d, kind) in enumerate(
            [
                (1, "click"),
                (2, "click"),
                (1, "dislike"),
                (1, "like"),
                (3, "click"),
                (4, "click"),
                (1, "click"),
            ]
        )
    ]
    book = book_of(events, recent=2)
    got = book.co_read([1], limit=10)
    assert [c.document_id for c in got] == [2, 3, 4]
    assert [c.score for c in got] == [1.0, 1.0, 1.0]  # one reader of each, who read each pair once
    profile = book.user("user:1")
    assert profile is not None and profile.positives == (1, 4) and profile.negatives == (1,)


# ---------------------------------------------------------------------------------------------- popularity
def test_popularity_halves_every_half_life() -> None:
    book = book_of(
        [ev("user:1", 1, "click", T0), ev("user:2", 1, "dwell", T0, 30.0), ev("user:3", 2, "dislike")]
    )
    got = book.popularity([1, 2, 3], now=T0)
    np.testing.assert_allclose(got, [1.5, 0.0, 0.0])  # a dwell counts its weight, a dislike nothing
    np.testing.assert_allclose(book.popularity([1], now=T0 + POP_HALF), [0.75], atol=1e-12)
    np.testing.assert_allclose(book.popularity([1], now=T0 + 3 * POP_HALF), [0.1875], atol=1e-12)
    np.testing.assert_allclose(book.popularity([1], now=T0 - 10), [1.5])  # not grown for a time before


def test_popular_orders_by_decayed_popularity_and_skips_the_excluded() -> None:
    events = [ev(f"user:{i}", 1, "view", T0) for i in range(3)]  # 3, then 1.5 a half-life later
    events += [ev(f"user:{i}", 2, "view", T0 + POP_HALF) for i in range(2)]  # 2
    events += [ev("user:9", 3, "view", T0 + POP_HALF)]  # 1
    book = book_of(events)
    now = T0 + POP_HALF
    assert book.popular(now=now, limit=10) == [(2, 2.0), (1, 1.5), (3, 1.0)]
    assert book.popular(now=T0, limit=10)[0] == (1, 3.0)  # documents read after ``now`` are not decayed up
    assert book.popular(now=now, limit=10, exclude={2, 7}) == [(1, 1.5), (3, 1.0)]
    assert book.popular(now=now, limit=1) == [(2, 2.0)]
    assert book.popular(now=now, limit=10, exclude=[1, 2, 3]) == []
    assert ProfileBook(ProfileParams()).popular(now=now, limit=10) == []


# ----------------------------------------------------------------------------------------- snapshot, merge
def random_events(seed: int, n: int, subjects: int = 12, documents: int = 40) -> list[Interaction]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = str(rng.choice(EVENT_TYPES))
        at = T0 + i * 600.0 - (float(rng.integers(0, 5 * 86_400)) if rng.random() < 0.1 else 0.0)  # some late
        value = float(rng.integers(0, 300)) if kind == "dwell" else None
        out.append(ev(f"user:{rng.integers(subjects)}", int(rng.integers(documents)), kind, at, value))
    return out


def answers(book: ProfileBook, subjects: list[str], documents: list[int], now: float) -> dict[str, Any]:
    """Everything a book is asked: each subject's profile, co-reads of each document and of several, the
    most popular documents."""
    return {
        "users": [book.user(s) for s in subjects],
        "co_read": [book.co_read([d], limit=50) for d in documents] + [book.co_read(documents[:5], limit=50)],
        "popular": book.popular(now=now, limit=100),
        "len": len(book),
        "applied": book.applied,
    }


SUBJECTS = [f"user:{i}" for i in range(12)] + ["user:none"]
DOCUMENTS = list(range(40))


def test_a_snapshot_restores_a_book_that_answers_exactly_the_same() -> None:
    params = ProfileParams(max_documents=8, max_seen=15, recent=5, max_neighbours=3)
    book = ProfileBook(params)
    book.add(random_events(1, 2_000))
    arrays = book.to_arrays()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # as the snapshot file holds it
    buffer.seek(0)
    with np.load(buffer) as loaded:
        restored = ProfileBook.from_arrays(params, dict(loaded))
    now = T0 + 2_000 * 600.0
    assert answers(restored, SUBJECTS, DOCUMENTS, now) == answers(book, SUBJECTS, DOCUMENTS, now)
    # and goes on exactly as the original would
    more = random_events(2, 500)
    book.add(more)
    restored.add(more)
    assert answers(restored, SUBJECTS, DOCUMENTS, now) == answers(book, SUBJECTS, DOCUMENTS, now)


def test_an_empty_book_round_trips() -> None:
    params = ProfileParams()
    restored = ProfileBook.from_arrays(params, ProfileBook(params).to_arrays())
    assert answers(restored, ["user:1"], [1, 2], T0) == answers(ProfileBook(params), ["user:1"], [1, 2], T0)
    assert len(restored) == 0 and restored.user("user:1") is None
    restored.add([ev("user:1", 1, "click")])
    assert restored.popular(now=T0, limit=5) == [(1, 1.0)]


def test_merging_books_of_disjoint_subjects_equals_the_book_of_all_events() -> None:
    params = ProfileParams(max_documents=8, max_seen=15, recent=5, max_neighbours=1_000)  # no pruning
    events = random_events(3, 3_000)
    odd = [e for e in events if int(e.subject.split(":")[1]) % 2]
    even = [e for e in events if not int(e.subject.split(":")[1]) % 2]
    whole, merged, other = ProfileBook(params), ProfileBook(params), ProfileBook(params)
    whole.add(events)
    merged.add(even)
    other.add(odd)
    merged.merge(other)
    now = T0 + 3_000 * 600.0
    want, got = answers(whole, SUBJECTS, DOCUMENTS, now), answers(merged, SUBJECTS, DOCUMENTS, now)
    assert got["users"] == want["users"]
    assert (got["len"], got["applied"]) == (want["len"], want["applied"]) == (12, 3_000)
    for mine, theirs in zip(got["co_read"], want["co_read"], strict=True):
        assert [(c.document_id, c.because) for c in mine] == [(c.document_id, c.because) for c in theirs]
        assert [c.score for c in mine] == pytest.approx([c.score for c in theirs], rel=1e-12)
    assert dict(got["popular"]) == pytest.approx(dict(want["popular"]), rel=1e-9)
    assert any(c for c in want["co_read"])


# --------------------------------------------------------------------------------------------- properties
EVENT = st.builds(
    Interaction,
    subject=st.sampled_from(["user:1", "user:2", "session:x"]),
    document_id=st.integers(0, 12),
    type=st.sampled_from(EVENT_TYPES),
    at=st.floats(T0, T0 + 30 * 86_400.0),
    value=st.one_of(st.none(), st.floats(-10.0, 1_000.0)),
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    events=st.lists(EVENT, max_size=80),
    max_documents=st.integers(1, 5),
    max_seen=st.integers(1, 6),
    recent=st.integers(1, 4),
    max_neighbours=st.integers(1, 3),
)
def test_random_streams_keep_the_bounds_and_round_trip(
    events: list[Interaction], max_documents: int, max_seen: int, recent: int, max_neighbours: int
) -> None:
    params = ProfileParams(
        max_documents=max_documents, max_seen=max_seen, recent=recent, max_neighbours=max_neighbours
    )
    book = ProfileBook(params)
    book.add(events)
    subjects = ["user:1", "user:2", "session:x"]
    for s in subjects:
        profile = book.user(s)
        if profile is None:
            assert all(e.subject != s for e in events)
            continue
        assert len(profile.documents) <= max_documents
        assert len(profile.seen) <= max_seen
        assert len(set(profile.positives)) == len(profile.positives) <= recent
        assert len(set(profile.negatives)) == len(profile.negatives) <= recent
        assert profile.events == sum(e.subject == s for e in events)
    restored = ProfileBook.from_arrays(params, book.to_arrays())
    now = T0 + 15 * 86_400.0
    assert answers(restored, subjects, list(range(13)), now) == answers(book, subjects, list(range(13)), now)
