"""CMS categories and tags in PostgreSQL: bilingual names, unique slugs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.cms_content import make_slug
from storage.cms_models import CmsCategory, CmsTag
from storage.errors import CmsConflict


@dataclass(frozen=True)
class TaxonomyRow:
    """A category or a tag."""

    id: int
    slug: str
    name_en: str | None
    name_ar: str | None


def _taxonomy(row: CmsCategory | CmsTag) -> TaxonomyRow:
    return TaxonomyRow(id=row.id, slug=row.slug, name_en=row.name_en, name_ar=row.name_ar)


class TaxonomyRepository:
    """Categories and tags (bilingual names, unique slugs)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self, kind: str, *, slug: str | None, name_en: str | None, name_ar: str | None
    ) -> TaxonomyRow:
        model: type[CmsCategory] | type[CmsTag] = CmsCategory if kind == "category" else CmsTag
        base = slug or name_en or name_ar or ""
        value = make_slug(base)
        if not value:
            raise CmsConflict("slug", base, "has no letters or digits")
        exists = (await self.session.execute(select(model.id).where(model.slug == value))).scalar()
        if exists is not None:
            raise CmsConflict("slug", value, f"a {kind} with this slug exists")
        row: CmsCategory | CmsTag = model(slug=value, name_en=name_en, name_ar=name_ar)
        self.session.add(row)
        await self.session.flush()
        return _taxonomy(row)

    async def list(self, kind: str) -> list[TaxonomyRow]:
        model: type[CmsCategory] | type[CmsTag] = CmsCategory if kind == "category" else CmsTag
        rows: list[Any] = list((await self.session.execute(select(model).order_by(model.slug))).scalars())
        return [_taxonomy(r) for r in rows]
