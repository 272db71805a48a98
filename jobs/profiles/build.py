"""One group's share of the profile rebuild: read the events of the subjects in group ``g`` of ``groups``
(``storage.rec_events.events_of_group``, up to the rebuild's watermark, in seq order, page by page) and
apply them to an empty book; the book comes back as named arrays, which travel through Ray's object
store. Nothing here reads settings or imports Ray: ``cluster.top.profiles_job`` runs ``group_book`` as a
Ray task.

Jobs may not import actors (import-linter's layers), so the book and the row-to-event conversion are
handed in: ``cluster.top`` passes an empty ``actors.rec_profiles.ProfileBook`` (it carries the
``ProfileParams``) and ``actors.rec_actor.interaction``. ``fill`` is the plain paging loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from storage.database import make_engine, make_session_factory, session_scope
from storage.rec_events import EventRow, events_of_group

logger = logging.getLogger(__name__)

#: Events read from PostgreSQL at once by one group's task.
PAGE_SIZE = 5_000

E = TypeVar("E")
E_contra = TypeVar("E_contra", contravariant=True)


class Book(Protocol[E_contra]):
    """What a group task needs of a book (``actors.rec_profiles.ProfileBook`` is one)."""

    def add(self, events: Iterable[E_contra]) -> int: ...

    def to_arrays(self) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class GroupBook:
    """One group's book, as arrays (``ProfileBook.from_arrays`` restores it), and what it took."""

    group: int
    arrays: dict[str, np.ndarray]
    events: int
    seconds: float


def fill(book: Book[E], *, pages: Callable[[int], list[EventRow]], to_event: Callable[[EventRow], E]) -> int:
    """Apply every page to ``book``: ``pages(after_seq)`` gives the next events in seq order after
    ``after_seq`` (empty at the end); returns how many events were applied."""
    applied = 0
    after = 0
    while rows := pages(after):
        applied += book.add(to_event(row) for row in rows)
        after = rows[-1].seq
    return applied


@dataclass(frozen=True)
class GroupQuery:
    """Which events one group task reads: those of group ``group`` of ``groups`` with ``seq <= until``."""

    database_url: str
    group: int
    groups: int
    until: int
    page_size: int = PAGE_SIZE


def group_book(query: GroupQuery, book: Book[E], to_event: Callable[[EventRow], E]) -> GroupBook:
    """Build one group: ``book`` (empty) gets the events ``query`` names, in seq order; one database
    connection for the whole group."""
    started = time.perf_counter()
    engine = make_engine(query.database_url, pool_size=1)
    try:
        sessions = make_session_factory(engine)

        def page(after_seq: int) -> list[EventRow]:
            with session_scope(sessions) as session:
                return events_of_group(
                    session,
                    group=query.group,
                    groups=query.groups,
                    after_seq=after_seq,
                    until=query.until,
                    limit=query.page_size,
                )

        events = fill(book, pages=page, to_event=to_event)
    finally:
        engine.dispose()
    seconds = time.perf_counter() - started
    logger.info(
        "profile rebuild: group %d of %d: %d events in %.1f s", query.group, query.groups, events, seconds
    )
    return GroupBook(group=query.group, arrays=book.to_arrays(), events=events, seconds=seconds)
