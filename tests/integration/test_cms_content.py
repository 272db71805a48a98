"""CMS content in real PostgreSQL: slugs, optimistic concurrency, revisions, workflow, Arabic and English
full-text search, listing with keyset pages, and the outbox/audit rows every write leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.cms_content import ContentRepository
from storage.cms_items import ItemQuery
from storage.cms_taxonomy import TaxonomyRepository
from storage.database import make_async_engine
from storage.errors import CmsConflict, InvalidTransition, StaleVersion, UnknownReference
from tests.conftest import CMS_TABLES, SHARED_DATA, truncate

T = TypeVar("T")


@pytest.fixture
def cms_db(engine, database_url: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    truncate(engine, CMS_TABLES)
    yield database_url


def run(url: str, body: Callable[[ContentRepository, AsyncSession], Awaitable[T]]) -> T:
    """Run ``body`` in one committed transaction on a fresh async engine."""

    async def main() -> T:
        engine = make_async_engine(url, pool_size=1)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
                return await body(ContentRepository(session), session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def arabic_sentences(n: int) -> list[str]:
    rows = (SHARED_DATA / "sib200_ar_en" / "arb_Arab" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 2)[2] for line in rows[1 : n + 1]]


def test_create_generates_unique_slugs_per_locale_and_records_history(cms_db: str) -> None:
    async def body(repo: ContentRepository, session: AsyncSession) -> list[Any]:
        a = await repo.create(
            {"title_en": "Desert Rain", "title_ar": "مطر الصحراء", "body_en": "<p>Rain.</p>"},
            actor="user:1",
            author_id=None,
        )
        b = await repo.create(
            {"title_en": "Desert Rain!", "title_ar": "مطر الصحراء"}, actor="user:1", author_id=None
        )
        events = (await session.execute(text("SELECT type FROM cms_events ORDER BY id"))).scalars().all()
        audit = (await session.execute(text("SELECT action, target FROM cms_audit ORDER BY id"))).all()
        revisions = (
            await session.execute(text("SELECT item_id, version FROM cms_revisions ORDER BY id"))
        ).all()
        return [a, b, events, audit, revisions]

    a, b, events, audit, revisions = run(cms_db, body)
    assert (a.fields["slug_en"], a.fields["slug_ar"]) == ("desert-rain", "مطر-الصحراء")
    assert (b.fields["slug_en"], b.fields["slug_ar"]) == ("desert-rain-2", "مطر-الصحراء-2")
    assert a.status == "draft" and a.version == 1
    assert events == ["item.created", "item.created"]
    assert [tuple(r) for r in audit] == [("item.create", f"item:{a.id}"), ("item.create", f"item:{b.id}")]
    assert [tuple(r) for r in revisions] == [(a.id, 1), (b.id, 1)]

    async def taken(repo: ContentRepository, _: AsyncSession) -> None:
        await repo.update(b.id, {"slug_en": "desert-rain"}, actor="user:1", expected_version=1)

    with pytest.raises(CmsConflict, match="taken"):
        run(cms_db, taken)


def test_two_items_of_one_title_created_at_once_both_get_a_slug(cms_db: str) -> None:
    """The second save's generated slug is taken by the first between its check and its write: it is
    chosen again (``-2``) instead of failing with a 409 (found by tests/security/test_access_control.py)."""

    async def main() -> tuple[Any, Any]:
        engine = make_async_engine(cms_db, pool_size=2)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        try:
            async with sessions() as first_session, sessions() as second_session:
                await first_session.begin()
                first = await ContentRepository(first_session).create(
                    {"title_en": "Rivers rise", "title_ar": "ارتفاع الأنهار"}, actor="user:1", author_id=None
                )

                async def second_save() -> Any:
                    async with second_session.begin():
                        return await ContentRepository(second_session).create(
                            {"title_en": "Rivers rise", "title_ar": "ارتفاع الأنهار"},
                            actor="user:2",
                            author_id=None,
                        )

                # The second save checked the slug free (the first is not committed) and now waits on the
                # unique index for the first transaction; it must retry once that commits.
                second_task = asyncio.create_task(second_save())
                await asyncio.sleep(1.0)
                assert not second_task.done()
                await first_session.commit()
                second = await asyncio.wait_for(second_task, timeout=30)
            return first, second
        finally:
            await engine.dispose()

    first, second = asyncio.run(main())
    assert (first.fields["slug_en"], first.fields["slug_ar"]) == ("rivers-rise", "ارتفاع-الأنهار")
    assert (second.fields["slug_en"], second.fields["slug_ar"]) == ("rivers-rise-2", "ارتفاع-الأنهار-2")

    async def stored(_: ContentRepository, session: AsyncSession) -> list[str]:
        return list((await session.execute(text("SELECT slug_en FROM cms_items ORDER BY id"))).scalars())

    assert run(cms_db, stored) == ["rivers-rise", "rivers-rise-2"]


def test_stale_version_is_refused_and_changes_nothing(cms_db: str) -> None:
    item = run(cms_db, lambda repo, _: repo.create({"title_en": "One"}, actor="user:1", author_id=None))
    _, after = run(
        cms_db, lambda repo, _: repo.update(item.id, {"title_en": "Two"}, actor="u", expected_version=1)
    )
    assert after.version == 2

    with pytest.raises(StaleVersion) as err:
        run(
            cms_db, lambda repo, _: repo.update(item.id, {"title_en": "Three"}, actor="u", expected_version=1)
        )
    assert err.value.current == 2
    current = run(cms_db, lambda repo, _: repo.require(item.id))
    assert current.fields["title_en"] == "Two" and current.version == 2


def test_revisions_list_and_restore_as_a_new_version(cms_db: str) -> None:
    item = run(
        cms_db,
        lambda repo, _: repo.create({"title_en": "First", "summary_en": "s1"}, actor="u", author_id=None),
    )
    run(cms_db, lambda repo, _: repo.update(item.id, {"title_en": "Second"}, actor="u", expected_version=1))
    run(cms_db, lambda repo, _: repo.update(item.id, {"summary_en": "s3"}, actor="u", expected_version=2))
    revisions = run(cms_db, lambda repo, _: repo.revisions(item.id))
    assert [r.version for r in revisions] == [3, 2, 1]
    assert revisions[-1].data["title_en"] == "First"
    _, restored = run(cms_db, lambda repo, _: repo.restore(item.id, 1, actor="u", expected_version=3))
    assert restored.version == 4
    assert (restored.fields["title_en"], restored.fields["summary_en"]) == ("First", "s1")
    assert run(cms_db, lambda repo, _: repo.revisions(item.id))[0].note == "restored version 1"


def test_workflow_moves_and_refusals(cms_db: str) -> None:
    item = run(cms_db, lambda repo, _: repo.create({"title_en": "Flow"}, actor="u", author_id=None))
    with pytest.raises(InvalidTransition, match="draft"):
        run(cms_db, lambda repo, _: repo.transition(item.id, "archived", actor="u", expected_version=None))
    for target in ("in_review", "published", "archived", "draft"):
        _, after = run(
            cms_db, lambda repo, _, t=target: repo.transition(item.id, t, actor="u", expected_version=None)
        )
        assert after.status == target
    assert after.published_at is not None  # kept from when it was published

    async def events(_: ContentRepository, session: AsyncSession) -> list[str]:
        return list((await session.execute(text("SELECT type FROM cms_events ORDER BY id"))).scalars())

    assert run(cms_db, events) == [
        "item.created",
        "item.status_changed",
        "item.published",
        "item.archived",
        "item.status_changed",
    ]


def test_arabic_and_english_full_text_search_with_stemming_and_weights(cms_db: str) -> None:
    sentences = arabic_sentences(40)
    trips = next(s for s in sentences if "الرحلات" in s)  # "the trips"

    async def body(repo: ContentRepository, _: AsyncSession) -> None:
        await repo.create(
            {"title_ar": "نصائح السفر", "body_ar": f"<p>{trips}</p>", "body_text_ar": trips},
            actor="u",
            author_id=None,
        )
        for s in sentences[:10]:
            if s != trips:
                await repo.create({"title_ar": s[:40], "body_text_ar": s}, actor="u", author_id=None)
        await repo.create(
            {"title_en": "Running shoes", "body_text_en": "A runner's guide"}, actor="u", author_id=None
        )
        await repo.create(
            {"title_en": "Marathon diary", "body_text_en": "Why I kept running."}, actor="u", author_id=None
        )

    run(cms_db, body)
    # "رحلة" (a trip) finds the body's "الرحلات" (the trips) through the Arabic stemmer.
    found = run(cms_db, lambda repo, _: repo.search(ItemQuery(q="رحلة", locale="ar", sort="relevance")))
    assert [i.fields["title_ar"] for i in found.items] == ["نصائح السفر"]
    # English stems; a title match (weight A) ranks above a body match (weight C).
    runs = run(cms_db, lambda repo, _: repo.search(ItemQuery(q="run", locale="en", sort="relevance")))
    assert [i.fields["title_en"] for i in runs.items] == ["Running shoes", "Marathon diary"]


def test_listing_filters_and_keyset_pages(cms_db: str) -> None:
    async def body(repo: ContentRepository, session: AsyncSession) -> None:
        taxonomy = TaxonomyRepository(session)
        await taxonomy.create("category", slug="science", name_en="Science", name_ar="علوم")
        await taxonomy.create("tag", slug=None, name_en="Space", name_ar="فضاء")
        for n in range(25):
            fields: dict[str, Any] = {"title_en": f"Item {n:02d}", "category": "science" if n % 2 else None}
            if n % 5 == 0:
                fields["tags"] = ["space"]
            await repo.create(fields, actor="u", author_id=None)

    run(cms_db, body)
    seen: list[int] = []
    after = None
    while True:
        page = run(
            cms_db,
            lambda repo, _, a=after: repo.search(
                ItemQuery(sort="title", descending=False, limit=10, after=a)
            ),
        )
        seen.extend(i.id for i in page.items)
        after = page.next_after
        if after is None:
            break
    titles = run(
        cms_db, lambda repo, _: repo.search(ItemQuery(sort="title", descending=False, limit=100))
    ).items
    assert seen == [i.id for i in titles] and len(seen) == 25
    science = run(cms_db, lambda repo, _: repo.search(ItemQuery(category="science", limit=100))).items
    assert len(science) == 12 and all(i.category == "science" for i in science)
    spaced = run(cms_db, lambda repo, _: repo.search(ItemQuery(tag="space", limit=100))).items
    assert len(spaced) == 5 and all(i.tags == ("space",) for i in spaced)
    with pytest.raises(UnknownReference, match="nope"):
        run(
            cms_db,
            lambda repo, _: repo.create({"title_en": "x", "tags": ["nope"]}, actor="u", author_id=None),
        )


def test_null_tags_in_an_update_clear_them(cms_db: str) -> None:
    # schemathesis sent PATCH /items/{id} {"tags": null}: it was a 500 (iterating None).
    async def body(repo: ContentRepository, session: AsyncSession) -> tuple[str, ...]:
        await TaxonomyRepository(session).create("tag", slug="space", name_en="Space", name_ar="فضاء")
        item = await repo.create({"title_en": "Tagged", "tags": ["space"]}, actor="u", author_id=None)
        assert item.tags == ("space",)
        _, after = await repo.update(item.id, {"tags": None}, actor="u", expected_version=item.version)
        return after.tags

    assert run(cms_db, body) == ()


def test_due_items_for_the_scheduler(cms_db: str) -> None:
    async def body(repo: ContentRepository, _: AsyncSession) -> tuple[list[int], list[int]]:
        a = await repo.create(
            {"title_en": "Later", "publish_at": "2030-01-01T00:00:00Z"}, actor="u", author_id=None
        )
        await repo.create(
            {"title_en": "Due", "publish_at": "2020-01-01T00:00:00Z"}, actor="u", author_id=None
        )
        c = await repo.create(
            {"title_en": "Off", "unpublish_at": "2020-01-01T00:00:00Z"}, actor="u", author_id=None
        )
        await repo.transition(c.id, "published", actor="u", expected_version=None)
        from datetime import UTC, datetime

        publish, unpublish = await repo.due(datetime(2025, 1, 1, tzinfo=UTC))
        assert a.id not in publish
        return publish, unpublish

    publish, unpublish = run(cms_db, body)
    assert publish == [2] and unpublish == [3]
