"""CMS content in PostgreSQL: items with English and Arabic fields, workflow moves, revisions, listing
and full-text search (categories and tags are ``storage.cms_taxonomy``).

Every write runs in the caller's transaction together with its revision row, its outbox event and its
audit row, so a change, its history and its notifications commit or roll back as one. Optimistic
concurrency: each item has a ``version`` (the API's ETag); a write that names another version than the
current one raises ``StaleVersion`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slugify import slugify
from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage.cms_actions import STATUS_EVENTS, Action, AuditAction, EventType, transition_action
from storage.cms_audit import audit_insert
from storage.cms_events import event_insert
from storage.cms_items import (
    ITEM_COLUMNS,
    ITEMS,
    ItemPage,
    ItemQuery,
    ItemRow,
    item_select,
    listing,
    page_of,
    row_of,
)
from storage.cms_models import LOCALES, CmsCategory, CmsItem, CmsItemTag, CmsRevision, CmsTag, table_of
from storage.errors import CmsConflict, CmsNotFound, InvalidTransition, StaleVersion, UnknownReference
from storage.languages import ARABIC_MARKS

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
#: A caller's check of the locked item before a write (raises to refuse; the transaction rolls back).
Check = Callable[["ItemRow"], None]
#: Longest generated slug.
SLUG_MAX = 80


def make_slug(text: str) -> str:
    """A URL slug of ``text``: lower-case letters and digits of any script joined by hyphens, at most
    ``SLUG_MAX`` characters. Arabic harakat and tatweel are dropped first: a shadda would otherwise cut a word
    in two ("عمّان" gave "عم-ان")."""
    return str(slugify(ARABIC_MARKS.sub("", text), allow_unicode=True, max_length=SLUG_MAX))


#: Writes of an item whose generated slug concurrent saves keep taking first (each try picks a new free one).
SLUG_TRIES = 5
#: The unique index of each locale's slug (migration 0005), by the field it guards.
SLUG_CONSTRAINTS = {f"uq_cms_items_slug_{locale}": f"slug_{locale}" for locale in LOCALES}


@dataclass(frozen=True)
class RevisionRow:
    item_id: int
    version: int
    data: dict[str, Any]
    actor: str
    note: str | None
    created_at: datetime


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ItemColumns:
    """Client fields into an item's column values: the category's id, the tags, parsed times, and slugs (an
    explicit one must be free; a missing one is made from the title)."""

    def __init__(self, run: Callable[[Any], Awaitable[Any]]) -> None:
        self._exec = run

    async def _category_id(self, slug: str | None) -> int | None:
        if slug is None:
            return None
        found = (await self._exec(select(CmsCategory.id).where(CmsCategory.slug == slug))).scalar()
        if found is None:
            raise UnknownReference("category", [slug])
        return int(found)

    async def set_tags(self, item_id: int, slugs: Sequence[str]) -> tuple[str, ...]:
        wanted = sorted(set(slugs))
        found = dict((await self._exec(select(CmsTag.slug, CmsTag.id).where(CmsTag.slug.in_(wanted)))).all())
        missing = [s for s in wanted if s not in found]
        if missing:
            raise UnknownReference("tags", missing)
        await self._exec(delete(CmsItemTag).where(CmsItemTag.item_id == item_id))
        if wanted:
            await self._exec(
                insert(table_of(CmsItemTag)).values(
                    [{"item_id": item_id, "tag_id": found[s]} for s in wanted]
                )
            )
        return tuple(wanted)

    async def _free_slug(self, locale: str, base: str, item_id: int | None) -> str:
        column = getattr(CmsItem, f"slug_{locale}")
        taken = set(
            (
                await self._exec(
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

    async def values(self, before: ItemRow | None, fields: dict[str, Any]) -> dict[str, Any]:
        """The column values that ``fields`` set on ``before`` (``None``: a new item): the category's id,
        parsed times, and slugs (an explicit one must be free; a missing one is made from the title)."""
        values: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "category":
                values["category_id"] = await self._category_id(value)
            elif name in ("publish_at", "unpublish_at"):
                values[name] = _parse_time(value)
            elif name not in ("tags", "type") and not name.startswith("slug_"):
                values[name] = value
        item_id = before.id if before else None
        for locale in LOCALES:
            slug_field, title_field = f"slug_{locale}", f"title_{locale}"
            explicit = fields.get(slug_field)
            title = values[title_field] if title_field in values else (before and before.fields[title_field])
            current = before.fields[slug_field] if before else None
            if explicit:
                wanted = make_slug(explicit)
                if not wanted:
                    raise CmsConflict(slug_field, explicit, "has no letters or digits")
                if await self._free_slug(locale, wanted, item_id) != wanted:
                    raise CmsConflict(slug_field, wanted, f"is taken in locale {locale}; choose another")
                values[slug_field] = wanted
            elif title and not current:
                kind = fields.get("type") or (before.type if before else "article")
                base = make_slug(title) or f"{kind}-{locale}"
                values[slug_field] = await self._free_slug(locale, base, item_id)
        return values


#: One item by id, built once: a statement object memoizes its cache key, so running it again skips
#: building the SELECT and walking it for SQLAlchemy's compiled cache (about a tenth of a CMS replica's
#: CPU per read, measured with py-spy under load).
_ITEM_BY_ID = item_select().where(CmsItem.id == bindparam("item_id"))
_ITEM_BY_ID_LOCKED = _ITEM_BY_ID.with_for_update(of=CmsItem)


async def read_item(conn: AsyncConnection, item_id: int, *, lock: bool = False) -> ItemRow | None:
    """One item (``lock``: FOR UPDATE) on a connection; reads outside a write use a plain connection,
    without an ORM session (the hot path of a read)."""
    stmt = _ITEM_BY_ID_LOCKED if lock else _ITEM_BY_ID
    m = (await conn.execute(stmt, {"item_id": item_id})).mappings().one_or_none()
    return row_of(m, m["category"], m["tags"]) if m else None


class ContentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._columns = ItemColumns(self._exec)

    async def _exec(self, stmt: Any) -> Any:
        """Run a Core statement on the session's connection (no ORM bookkeeping: a write here costs
        about half the CPU of its ORM form)."""
        return await (await self.session.connection()).execute(stmt)

    # ---------------------------------------------------------------------------------------- reads
    async def get(self, item_id: int, *, lock: bool = False) -> ItemRow | None:
        return await read_item(await self.session.connection(), item_id, lock=lock)

    async def require(self, item_id: int, *, lock: bool = False) -> ItemRow:
        item = await self.get(item_id, lock=lock)
        if item is None:
            raise CmsNotFound("item", item_id)
        return item

    async def search(self, query: ItemQuery) -> ItemPage:
        """A page of the listing ``query`` describes (``storage.cms_items.listing``)."""
        rows = (await self._exec(listing(query))).mappings().all()
        return page_of(rows, query)

    # --------------------------------------------------------------------------------------- writes
    async def _write(self, stmt: Any) -> Any:
        """Run an INSERT or UPDATE ... RETURNING the item's columns."""
        return (await self._exec(stmt.returning(*ITEM_COLUMNS))).mappings().one()

    async def _write_fields(
        self,
        before: ItemRow | None,
        fields: dict[str, Any],
        extra: dict[str, Any],
        build: Callable[[dict[str, Any]], Any],
    ) -> Any:
        """Write ``fields`` (plus the ``extra`` columns) with the statement ``build`` makes of the values.

        A slug the caller did not give is made from the title and checked free, but a concurrent save can
        take it between the check and the write (two items of one title created at once): the write then
        runs again in a savepoint with a freshly chosen slug (``name-2``...), up to ``SLUG_TRIES`` times. A
        slug the caller gave that was taken meanwhile is a ``CmsConflict`` naming it."""
        for attempt in range(1, SLUG_TRIES + 1):
            values = {**await self._columns.values(before, fields), **extra}
            # Only a write that generates a slug pays for the savepoint (most updates do not).
            retry = any(f"slug_{locale}" in values and not fields.get(f"slug_{locale}") for locale in LOCALES)
            try:
                if not retry:
                    return await self._write(build(values))
                async with self.session.begin_nested():
                    return await self._write(build(values))
            except IntegrityError as exc:
                field = SLUG_CONSTRAINTS.get(getattr(getattr(exc.orig, "diag", None), "constraint_name", ""))
                if field is None:
                    raise
                if fields.get(field) or not retry:
                    raise CmsConflict(
                        field, values.get(field), "was taken by a concurrent save; choose another"
                    ) from exc
                if attempt == SLUG_TRIES:
                    raise CmsConflict(
                        field,
                        values.get(field),
                        f"was taken by {SLUG_TRIES} concurrent saves in a row; retry",
                    ) from exc
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _journal(
        self,
        item: ItemRow,
        *,
        revision_note: str | None,
        event: dict[str, Any] | None,
        audit: dict[str, Any],
        revision: bool = True,
    ) -> None:
        """The write's revision, outbox event and audit row, in one statement (one round trip)."""
        stmt = audit_insert(target=f"item:{item.id}", **audit)
        ctes = []
        if revision:
            ctes.append(
                insert(table_of(CmsRevision))
                .values(
                    item_id=item.id,
                    version=item.version,
                    data=item.data(),
                    actor=audit["actor"],
                    note=revision_note,
                )
                .cte("revision")
            )
        if event is not None:
            ctes.append(event_insert(item_ids=[item.id], **event).cte("event"))
        await self._exec(stmt.add_cte(*ctes) if ctes else stmt)

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
        extra = {
            "type": fields.get("type") or "article",
            "status": "draft",
            "author_id": author_id,
            "version": 1,
        }
        m = await self._write_fields(None, fields, extra, lambda values: insert(ITEMS).values(**values))
        tags = await self._columns.set_tags(m["id"], fields["tags"]) if fields.get("tags") else ()
        row = row_of(m, fields.get("category"), tags)
        await self._journal(
            row,
            revision_note="created",
            event={"type": EventType.ITEM_CREATED, "payload": {"item": row.state()}} if emit else None,
            audit={"actor": actor, "ip": ip, "action": AuditAction.ITEM_CREATE, "after": row.state()},
        )
        return row

    async def _locked(self, item_id: int, expected_version: int | None, check: Check | None) -> ItemRow:
        """The item, locked for this transaction; ``check`` (the caller's permission check) runs before the
        version is compared, so a caller who may not act learns nothing from a version mismatch."""
        before = await self.require(item_id, lock=True)
        if check is not None:
            check(before)
        if expected_version is not None and expected_version != before.version:
            raise StaleVersion(item_id, expected_version, before.version)
        return before

    async def update(
        self,
        item_id: int,
        fields: dict[str, Any],
        *,
        actor: str,
        expected_version: int | None,
        ip: str | None = None,
        note: str | None = None,
        action: Action = AuditAction.ITEM_UPDATE,
        emit: bool = True,
        check: Check | None = None,
    ) -> tuple[ItemRow, ItemRow]:
        before = await self._locked(item_id, expected_version, check)
        extra: dict[str, Any] = {"version": before.version + 1, "updated_at": datetime.now(UTC)}
        if fields.get("type"):
            extra["type"] = fields["type"]
        m = await self._write_fields(
            before, fields, extra, lambda values: update(ITEMS).where(ITEMS.c.id == item_id).values(**values)
        )
        # "tags": null clears them, as null clears any other field (it used to fail on iterating None).
        tags = (
            await self._columns.set_tags(item_id, fields["tags"] or ()) if "tags" in fields else before.tags
        )
        after = row_of(m, fields.get("category", before.category), tags)
        after_data, before_data = after.data(), before.data()
        changed = sorted(k for k in after_data if after_data[k] != before_data.get(k))
        await self._journal(
            after,
            revision_note=note,
            event={"type": EventType.ITEM_UPDATED, "payload": {"item": after.state(), "changed": changed}}
            if emit
            else None,
            audit={
                "actor": actor,
                "ip": ip,
                "action": action,
                "before": before.state(),
                "after": after.state(),
            },
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
        check: Check | None = None,
    ) -> tuple[ItemRow, ItemRow]:
        before = await self._locked(item_id, expected_version, check)
        allowed = list(TRANSITIONS.get(before.status, ()))
        if target not in allowed:
            raise InvalidTransition(item_id, before.status, target, allowed)
        now = datetime.now(UTC)
        values: dict[str, Any] = {"status": target, "version": before.version + 1, "updated_at": now}
        if target == "published":
            values["published_at"] = now
            if before.publish_at is not None and before.publish_at <= now:
                values["publish_at"] = None  # fired (or overtaken by a manual publish)
        if target == "archived" and before.unpublish_at is not None and before.unpublish_at <= now:
            values["unpublish_at"] = None
        m = await self._write(update(ITEMS).where(ITEMS.c.id == item_id).values(**values))
        after = row_of(m, before.category, before.tags)
        await self._journal(
            after,
            revision_note=f"{before.status} -> {target}",
            event={
                "type": STATUS_EVENTS.get(target, EventType.ITEM_STATUS_CHANGED),
                "payload": {"item": after.state(), "from": before.status, "to": target},
            }
            if emit
            else None,
            audit={
                "actor": actor,
                "ip": ip,
                "action": transition_action(before.status, target),
                "before": before.state(),
                "after": after.state(),
            },
        )
        return before, after

    async def delete(
        self, item_id: int, *, actor: str, ip: str | None = None, check: Check | None = None
    ) -> ItemRow:
        before = await self._locked(item_id, None, check)
        await self._exec(delete(ITEMS).where(ITEMS.c.id == item_id))
        await self._journal(
            before,
            revision_note=None,
            revision=False,
            event={"type": EventType.ITEM_DELETED, "payload": {"item": before.state()}},
            audit={"actor": actor, "ip": ip, "action": AuditAction.ITEM_DELETE, "before": before.state()},
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
        self,
        item_id: int,
        version: int,
        *,
        actor: str,
        expected_version: int | None,
        ip: str | None = None,
        check: Check | None = None,
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
            action=AuditAction.ITEM_RESTORE,
            check=check,
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
