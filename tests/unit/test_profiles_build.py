"""The profile rebuild's per-group paging (jobs.profiles.build.fill) and the group query's argument check,
without a database: pages come from a list, the book is a list."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np
import pytest

from jobs.profiles.build import fill
from storage.rec_events import EventRow, events_of_group


def row(seq: int) -> EventRow:
    return EventRow(
        seq=seq,
        event_id=f"e{seq}",
        subject=f"user:u{seq % 3}",
        document_id=seq,
        type="view",
        value=None,
        occurred_at=datetime(2024, 1, 1, tzinfo=UTC),
        list_id=None,
        experiment=None,
        variant=None,
    )


class ListBook:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def add(self, events: Iterable[int]) -> int:
        before = len(self.seen)
        self.seen.extend(events)
        return len(self.seen) - before

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"seen": np.array(self.seen, np.int64)}


def test_fill_pages_by_the_last_seq_until_a_page_is_empty() -> None:
    rows = [row(s) for s in (2, 3, 5, 8, 13, 21, 34)]  # seqs with gaps: other groups' events
    asked: list[int] = []

    def pages(after_seq: int) -> list[EventRow]:
        asked.append(after_seq)
        return [r for r in rows if r.seq > after_seq][:3]

    book = ListBook()
    assert fill(book, pages=pages, to_event=lambda r: r.seq) == len(rows)
    assert book.seen == [r.seq for r in rows]  # every event once, in seq order
    assert asked == [0, 5, 21, 34]


def test_fill_without_events_asks_once() -> None:
    asked: list[int] = []

    def pages(after_seq: int) -> list[EventRow]:
        asked.append(after_seq)
        return []

    book = ListBook()
    assert fill(book, pages=pages, to_event=lambda r: r.seq) == 0
    assert asked == [0] and book.seen == []


@pytest.mark.parametrize(("group", "groups"), [(0, 0), (-1, 4), (4, 4)])
def test_events_of_group_refuses_a_group_outside_the_groups(group: int, groups: int) -> None:
    with pytest.raises(ValueError, match="group"):
        events_of_group(None, group=group, groups=groups, after_seq=0, until=10, limit=10)  # type: ignore[arg-type]
