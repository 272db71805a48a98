"""CMS items as rows and listings: an item's columns, ``ItemRow``, and the SELECTs that read items (one by
id, or a page of a filtered, sorted, full-text-searched listing with keyset positions). Statement building
only; ``storage.cms_content.ContentRepository`` runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select

from storage.cms_models import LOCALES, CmsCategory, CmsItem, CmsItemTag, CmsTag, table_of


@dataclass(frozen=True)
class ItemRow:
    id: int
    type: str
    status: str
    author_id: int | None
    category: str | None
    tags: tuple[str, ...]
    fields: dict[str, Any]  # title_en ... slug_ar, featured_image_url, seo
    publish_at: datetime | None
    unpublish_at: datetime | None
    published_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime

    def data(self) -> dict[str, Any]:
        """The editable state as JSON (revisions, audit, diffs)."""
        return {
            "type": self.type,
            "category": self.category,
            "tags": list(self.tags),
            **self.fields,
            "publish_at": self.publish_at.isoformat() if self.publish_at else None,
            "unpublish_at": self.unpublish_at.isoformat() if self.unpublish_at else None,
        }

    def state(self) -> dict[str, Any]:
        """``data()`` plus status and version (audit before/after)."""
        return {**self.data(), "status": self.status, "version": self.version}


@dataclass(frozen=True)
class ItemQuery:
    """A listing: filters, full-text query, sort and keyset position."""

    q: str | None = None
    locale: str | None = None  # full-text language, and "has fields in this locale"
    statuses: tuple[str, ...] = ()
    type: str | None = None
    category: str | None = None
    tag: str | None = None
    author_id: int | None = None
    since: datetime | None = None  # on updated_at, inclusive
    until: datetime | None = None  # exclusive
    sort: str = "updated_at"  # updated_at | created_at | published_at | title | relevance
    descending: bool = True
    limit: int = 20
    after: tuple[Any, int] | None = None  # (sort value, id) of the last row of the previous page
    visible_to_author: int | None = None  # an author sees published items and their own


@dataclass(frozen=True)
class ItemPage:
    items: list[ItemRow]
    next_after: tuple[Any, int] | None


#: Locale fields of an item, in ``ItemRow.fields`` order.
LOCALE_FIELDS = tuple(f"{f}_{loc}" for f in ("title", "summary", "body", "slug") for loc in LOCALES)
#: The columns an ``ItemRow`` is made of (not the search vectors nor the bodies' derived text).
ITEMS = table_of(CmsItem)
ITEM_COLUMNS = tuple(
    ITEMS.c[name]
    for name in (
        "id",
        "type",
        "status",
        "author_id",
        *LOCALE_FIELDS,
        "featured_image_url",
        "seo",
        "publish_at",
        "unpublish_at",
        "published_at",
        "version",
        "created_at",
        "updated_at",
    )
)


def row_of(m: Any, category: str | None, tags: Sequence[str] | None) -> ItemRow:
    """An ``ItemRow`` from a result row's mapping of ``ITEM_COLUMNS``."""
    fields = {name: m[name] for name in LOCALE_FIELDS}
    fields["featured_image_url"] = m["featured_image_url"]
    fields["seo"] = dict(m["seo"] or {})
    return ItemRow(
        id=m["id"],
        type=m["type"],
        status=m["status"],
        author_id=m["author_id"],
        category=category,
        tags=tuple(sorted(tags or ())),
        fields=fields,
        publish_at=m["publish_at"],
        unpublish_at=m["unpublish_at"],
        published_at=m["published_at"],
        version=m["version"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def item_select() -> Select[Any]:
    """Items with their category's slug and their tags' slugs (``row_of`` reads a row)."""
    tags = (
        select(func.array_agg(CmsTag.slug))
        .select_from(CmsItemTag)
        .join(CmsTag, CmsTag.id == CmsItemTag.tag_id)
        .where(CmsItemTag.item_id == CmsItem.id)
        .scalar_subquery()
    )
    return (
        select(*ITEM_COLUMNS, CmsCategory.slug.label("category"), tags.label("tags"))
        .select_from(CmsItem)
        .outerjoin(CmsCategory, CmsCategory.id == CmsItem.category_id)
    )


def listing(query: ItemQuery) -> Select[Any]:
    """The SELECT of one page of a listing (and one row more, which says whether a next page exists)."""
    stmt = item_select()
    conditions: list[ColumnElement[bool]] = []
    rank: ColumnElement[Any] | None = None
    if query.q:
        configs = (query.locale,) if query.locale else LOCALES
        matches, ranks = [], []
        for loc in configs:
            config = "arabic" if loc == "ar" else "english"
            tsq = func.websearch_to_tsquery(config, query.q)
            column = CmsItem.tsv_ar if loc == "ar" else CmsItem.tsv_en
            matches.append(column.op("@@")(tsq))
            ranks.append(func.ts_rank_cd(column, tsq))
        conditions.append(or_(*matches))
        rank = ranks[0] if len(ranks) == 1 else func.greatest(*ranks)
    if query.locale:
        conditions.append(getattr(CmsItem, f"title_{query.locale}").is_not(None))
    if query.statuses:
        conditions.append(CmsItem.status.in_(query.statuses))
    if query.type:
        conditions.append(CmsItem.type == query.type)
    if query.category:
        conditions.append(CmsCategory.slug == query.category)
    if query.tag:
        conditions.append(
            CmsItem.id.in_(
                select(CmsItemTag.item_id)
                .join(CmsTag, CmsTag.id == CmsItemTag.tag_id)
                .where(CmsTag.slug == query.tag)
            )
        )
    if query.author_id is not None:
        conditions.append(CmsItem.author_id == query.author_id)
    if query.since is not None:
        conditions.append(CmsItem.updated_at >= query.since)
    if query.until is not None:
        conditions.append(CmsItem.updated_at < query.until)
    if query.visible_to_author is not None:
        conditions.append(or_(CmsItem.status == "published", CmsItem.author_id == query.visible_to_author))
    sort_key: ColumnElement[Any]
    if query.sort == "relevance":
        if rank is None:
            raise ValueError("sort=relevance needs a query (q)")
        sort_key = rank
    elif query.sort == "title":
        sort_key = func.coalesce(CmsItem.title_en, CmsItem.title_ar, "")
    else:
        sort_key = func.coalesce(getattr(CmsItem, query.sort), datetime(1970, 1, 1, tzinfo=UTC))
    if query.after is not None:
        value, last_id = query.after
        if query.descending:
            conditions.append(or_(sort_key < value, and_(sort_key == value, CmsItem.id < last_id)))
        else:
            conditions.append(or_(sort_key > value, and_(sort_key == value, CmsItem.id > last_id)))
    order = (sort_key.desc(), CmsItem.id.desc()) if query.descending else (sort_key.asc(), CmsItem.id.asc())
    return (
        stmt.add_columns(sort_key.label("sort_key"))
        .where(*conditions)
        .order_by(*order)
        .limit(query.limit + 1)
    )


def page_of(rows: Sequence[Any], query: ItemQuery) -> ItemPage:
    """The page in the result rows of ``listing(query)``."""
    items = [row_of(m, m["category"], m["tags"]) for m in rows[: query.limit]]
    next_after = None
    if len(rows) > query.limit:
        last = rows[query.limit - 1]
        next_after = (last["sort_key"], last["id"])
    return ItemPage(items, next_after)
