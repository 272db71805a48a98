"""CMS content in PostgreSQL: items with English and Arabic fields, workflow moves, revisions, listing
and full-text search, categories and tags.

Every write runs in the caller's transaction together with its revision row, its outbox event and its
audit row, so a change, its history and its notifications commit or roll back as one. Optimistic
concurrency: each item has a ``version`` (the API's ETag); a write that names another version than the
current one raises ``StaleVersion`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slugify import slugify
from sqlalchemy import ColumnElement, Select, and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.cms_audit import record_audit
from storage.cms_events import append_event
from storage.cms_models import LOCALES, CmsCategory, CmsItem, CmsItemTag, CmsRevision, CmsTag
from storage.errors import CmsConflict, CmsNotFound, InvalidTransition, StaleVersion, UnknownReference

#: Fields a client sets (``body_text_*`` are derived from the bodies by the caller).
EDITABLE = (
    "type",
    "category",
    "tags",
    *(f"{field}_{locale}" for field in ("title", "summary", "body", "slug") for locale in LOCALES),
    "featured_image_url",
    "seo",
    "publish_at",
    "unpublish_at",
)
#: Derived search text of each body.
DERIVED = tuple(f"body_text_{locale}" for locale in LOCALES)
#: Workflow moves, whoever makes them (who may make which is the permission matrix's business).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("in_review", "published"),
    "in_review": ("draft", "published"),
    "published": ("archived", "draft"),
    "archived": ("draft",),
}
#: Event type of a move into a status.
STATUS_EVENTS = {"published": "item.published", "archived": "item.archived"}
#: Longest generated slug.
SLUG_MAX = 80


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
class RevisionRow:
    item_id: int
    version: int
    data: dict[str, Any]
    actor: str
    note: str | None
    created_at: datetime


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


def _row(item: CmsItem, category: str | None, tags: Sequence[str] | None) -> ItemRow:
    fields = {
        name: getattr(item, name)
        for name in (*(f"{f}_{loc}" for f in ("title", "summary", "body", "slug") for loc in LOCALES),)
    }
    fields["featured_image_url"] = item.featured_image_url
    fields["seo"] = dict(item.seo or {})
    return ItemRow(
        id=item.id,
        type=item.type,
        status=item.status,
        author_id=item.author_id,
        category=category,
        tags=tuple(sorted(tags or ())),
        fields=fields,
        publish_at=item.publish_at,
        unpublish_at=item.unpublish_at,
        published_at=item.published_at,
        version=item.version,
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ContentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ---------------------------------------------------------------------------------------- reads
    def _select(self) -> Select[Any]:
        tags = (
            select(func.array_agg(CmsTag.slug))
            .select_from(CmsItemTag)
            .join(CmsTag, CmsTag.id == CmsItemTag.tag_id)
            .where(CmsItemTag.item_id == CmsItem.id)
            .scalar_subquery()
        )
        return select(CmsItem, CmsCategory.slug, tags).outerjoin(
            CmsCategory, CmsCategory.id == CmsItem.category_id
        )

    async def get(self, item_id: int, *, lock: bool = False) -> ItemRow | None:
        stmt = self._select().where(CmsItem.id == item_id)
        if lock:
            stmt = stmt.with_for_update(of=CmsItem)
        row = (await self.session.execute(stmt)).one_or_none()
        return _row(row[0], row[1], row[2]) if row else None

    async def require(self, item_id: int, *, lock: bool = False) -> ItemRow:
        item = await self.get(item_id, lock=lock)
        if item is None:
            raise CmsNotFound("item", item_id)
        return item

    async def search(self, query: ItemQuery) -> ItemPage:
        stmt = self._select()
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
            conditions.append(
                or_(CmsItem.status == "published", CmsItem.author_id == query.visible_to_author)
            )
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
        order = (
            (sort_key.desc(), CmsItem.id.desc()) if query.descending else (sort_key.asc(), CmsItem.id.asc())
        )
        stmt = (
            stmt.add_columns(sort_key.label("sort_key"))
            .where(*conditions)
            .order_by(*order)
            .limit(query.limit + 1)
        )
        rows = (await self.session.execute(stmt)).all()
        items = [_row(r[0], r[1], r[2]) for r in rows[: query.limit]]
        next_after = None
        if len(rows) > query.limit:
            last = rows[query.limit - 1]
            next_after = (last[3], last[0].id)
        return ItemPage(items, next_after)

    # --------------------------------------------------------------------------------------- writes
    async def _category_id(self, slug: str | None) -> int | None:
        if slug is None:
            return None
        found = (await self.session.execute(select(CmsCategory.id).where(CmsCategory.slug == slug))).scalar()
        if found is None:
            raise UnknownReference("category", [slug])
        return int(found)

    async def _set_tags(self, item_id: int, slugs: Sequence[str]) -> None:
        wanted = sorted(set(slugs))
        found = dict(
            (await self.session.execute(select(CmsTag.slug, CmsTag.id).where(CmsTag.slug.in_(wanted)))).all()
        )
        missing = [s for s in wanted if s not in found]
        if missing:
            raise UnknownReference("tags", missing)
        await self.session.execute(delete(CmsItemTag).where(CmsItemTag.item_id == item_id))
        for slug in wanted:
            self.session.add(CmsItemTag(item_id=item_id, tag_id=found[slug]))

    async def _free_slug(self, locale: str, base: str, item_id: int | None) -> str:
        column = getattr(CmsItem, f"slug_{locale}")
        taken = set(
            (
                await self.session.execute(
                    select(column).where(
                        or_(column == base, column.like(f"{base}-%")), CmsItem.id != (item_id or -1)
                    )
                )
            ).scalars()
        )
        if base not in taken:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    async def _apply(self, item: CmsItem, fields: dict[str, Any]) -> None:
        for name, value in fields.items():
            if name == "category":
                item.category_id = await self._category_id(value)
            elif name in ("publish_at", "unpublish_at"):
                setattr(item, name, _parse_time(value))
            elif name != "tags" and not name.startswith("slug_"):
                setattr(item, name, value)
        for locale in LOCALES:
            slug_field = f"slug_{locale}"
            explicit = fields.get(slug_field)
            title = getattr(item, f"title_{locale}")
            if explicit:
                wanted = slugify(explicit, allow_unicode=True, max_length=SLUG_MAX)
                if not wanted:
                    raise CmsConflict(slug_field, explicit, "has no letters or digits")
                with self.session.no_autoflush:
                    clash = await self._free_slug(locale, wanted, item.id)
                if clash != wanted:
                    raise CmsConflict(slug_field, wanted, f"is taken in locale {locale}; choose another")
                setattr(item, slug_field, wanted)
            elif title and not getattr(item, slug_field):
                base = slugify(title, allow_unicode=True, max_length=SLUG_MAX) or f"{item.type}-{locale}"
                setattr(item, slug_field, await self._free_slug(locale, base, item.id))

    async def _revision(self, item: ItemRow, actor: str, note: str | None) -> None:
        self.session.add(
            CmsRevision(item_id=item.id, version=item.version, data=item.data(), actor=actor, note=note)
        )

    async def _flush(self) -> None:
        try:
            await self.session.flush()
        except IntegrityError as exc:  # a concurrent save took a generated slug first
            raise CmsConflict("slug", "", "taken by a concurrent save; retry") from exc

    async def create(
        self,
        fields: dict[str, Any],
        *,
        actor: str,
        author_id: int | None,
        ip: str | None = None,
        emit: bool = True,
    ) -> ItemRow:
        """A new draft. ``emit=False`` leaves the outbox event to the caller (bulk operations emit one)."""
        item = CmsItem(type=fields.get("type", "article"), status="draft", author_id=author_id, version=1)
        self.session.add(item)
        await self._flush()  # the id, for slugs and tags
        await self._apply(item, {k: v for k, v in fields.items() if k != "type"})
        if "tags" in fields:
            await self._set_tags(item.id, fields["tags"])
        await self._flush()
        row = await self.require(item.id)
        await self._revision(row, actor, "created")
        await append_event(
            self.session, type="item.created", item_ids=[row.id], payload={"item": row.state()}
        )
        await record_audit(
            self.session, actor=actor, ip=ip, action="item.create", target=f"item:{row.id}", after=row.state()
        )
        return row

    async def _locked(self, item_id: int, expected_version: int | None) -> tuple[CmsItem, ItemRow]:
        before = await self.require(item_id, lock=True)
        if expected_version is not None and expected_version != before.version:
            raise StaleVersion(item_id, expected_version, before.version)
        item = await self.session.get(CmsItem, item_id)
        assert item is not None
        return item, before

    async def update(
        self,
        item_id: int,
        fields: dict[str, Any],
        *,
        actor: str,
        expected_version: int | None,
        ip: str | None = None,
        note: str | None = None,
        action: str = "item.update",
        emit: bool = True,
    ) -> tuple[ItemRow, ItemRow]:
        item, before = await self._locked(item_id, expected_version)
        await self._apply(item, fields)
        if "tags" in fields:
            await self._set_tags(item_id, fields["tags"])
        item.version = before.version + 1
        item.updated_at = datetime.now(UTC)
        await self._flush()
        await self.session.refresh(item)
        after = await self.require(item_id)
        await self._revision(after, actor, note)
        changed = sorted(k for k in after.data() if after.data()[k] != before.data().get(k))
        if emit:
            await append_event(
                self.session,
                type="item.updated",
                item_ids=[item_id],
                payload={"item": after.state(), "changed": changed},
            )
        await record_audit(
            self.session,
            actor=actor,
            ip=ip,
            action=action,
            target=f"item:{item_id}",
            before=before.state(),
            after=after.state(),
        )
        return before, after

    async def transition(
        self,
        item_id: int,
        target: str,
        *,
        actor: str,
        expected_version: int | None,
        ip: str | None = None,
        emit: bool = True,
    ) -> tuple[ItemRow, ItemRow]:
        item, before = await self._locked(item_id, expected_version)
        allowed = list(TRANSITIONS.get(before.status, ()))
        if target not in allowed:
            raise InvalidTransition(item_id, before.status, target, allowed)
        now = datetime.now(UTC)
        item.status = target
        item.version = before.version + 1
        item.updated_at = now
        if target == "published":
            item.published_at = now
            if item.publish_at is not None and item.publish_at <= now:
                item.publish_at = None  # fired (or overtaken by a manual publish)
        if target == "archived" and item.unpublish_at is not None and item.unpublish_at <= now:
            item.unpublish_at = None
        await self._flush()
        await self.session.refresh(item)
        after = await self.require(item_id)
        await self._revision(after, actor, f"{before.status} -> {target}")
        if emit:
            await append_event(
                self.session,
                type=STATUS_EVENTS.get(target, "item.status_changed"),
                item_ids=[item_id],
                payload={"item": after.state(), "from": before.status, "to": target},
            )
        await record_audit(
            self.session,
            actor=actor,
            ip=ip,
            action=f"item.transition:{before.status}->{target}",
            target=f"item:{item_id}",
            before=before.state(),
            after=after.state(),
        )
        return before, after

    async def delete(self, item_id: int, *, actor: str, ip: str | None = None) -> ItemRow:
        before = await self.require(item_id, lock=True)
        await self.session.execute(delete(CmsItem).where(CmsItem.id == item_id))
        await append_event(
            self.session, type="item.deleted", item_ids=[item_id], payload={"item": before.state()}
        )
        await record_audit(
            self.session,
            actor=actor,
            ip=ip,
            action="item.delete",
            target=f"item:{item_id}",
            before=before.state(),
        )
        return before

    # ------------------------------------------------------------------------------------ revisions
    async def revisions(self, item_id: int) -> list[RevisionRow]:
        await self.require(item_id)
        rows = (
            await self.session.execute(
                select(CmsRevision).where(CmsRevision.item_id == item_id).order_by(CmsRevision.version.desc())
            )
        ).scalars()
        return [RevisionRow(r.item_id, r.version, r.data, r.actor, r.note, r.created_at) for r in rows]

    async def revision(self, item_id: int, version: int) -> RevisionRow:
        r = (
            await self.session.execute(
                select(CmsRevision).where(CmsRevision.item_id == item_id, CmsRevision.version == version)
            )
        ).scalar_one_or_none()
        if r is None:
            raise CmsNotFound("revision", f"{item_id}@{version}")
        return RevisionRow(r.item_id, r.version, r.data, r.actor, r.note, r.created_at)

    async def restore(
        self, item_id: int, version: int, *, actor: str, expected_version: int | None, ip: str | None = None
    ) -> tuple[ItemRow, ItemRow]:
        """Make a past revision's content current again (as a new version; history is kept)."""
        old = await self.revision(item_id, version)
        fields = {k: v for k, v in old.data.items() if k in EDITABLE and k != "type"}
        return await self.update(
            item_id,
            fields,
            actor=actor,
            expected_version=expected_version,
            ip=ip,
            note=f"restored version {version}",
            action="item.restore",
        )

    # ----------------------------------------------------------------------------------- scheduling
    async def due(self, now: datetime, *, limit: int = 100) -> tuple[list[int], list[int]]:
        """(items whose publish time has come, published items whose unpublish time has come)."""
        publish = (
            await self.session.execute(
                select(CmsItem.id)
                .where(CmsItem.publish_at <= now, CmsItem.status.in_(("draft", "in_review")))
                .order_by(CmsItem.publish_at)
                .limit(limit)
            )
        ).scalars()
        unpublish = (
            await self.session.execute(
                select(CmsItem.id)
                .where(CmsItem.unpublish_at <= now, CmsItem.status == "published")
                .order_by(CmsItem.unpublish_at)
                .limit(limit)
            )
        ).scalars()
        return [int(i) for i in publish], [int(i) for i in unpublish]


class TaxonomyRepository:
    """Categories and tags (bilingual names, unique slugs)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self, kind: str, *, slug: str | None, name_en: str | None, name_ar: str | None
    ) -> dict[str, Any]:
        model: type[CmsCategory] | type[CmsTag] = CmsCategory if kind == "category" else CmsTag
        base = slug or name_en or name_ar or ""
        value = slugify(base, allow_unicode=True, max_length=SLUG_MAX)
        if not value:
            raise CmsConflict("slug", base, "has no letters or digits")
        exists = (await self.session.execute(select(model.id).where(model.slug == value))).scalar()
        if exists is not None:
            raise CmsConflict("slug", value, f"a {kind} with this slug exists")
        row: CmsCategory | CmsTag = model(slug=value, name_en=name_en, name_ar=name_ar)
        self.session.add(row)
        await self.session.flush()
        return {"id": row.id, "slug": row.slug, "name_en": row.name_en, "name_ar": row.name_ar}

    async def list(self, kind: str) -> list[dict[str, Any]]:
        model: type[CmsCategory] | type[CmsTag] = CmsCategory if kind == "category" else CmsTag
        rows: list[Any] = list((await self.session.execute(select(model).order_by(model.slug))).scalars())
        return [{"id": r.id, "slug": r.slug, "name_en": r.name_en, "name_ar": r.name_ar} for r in rows]
