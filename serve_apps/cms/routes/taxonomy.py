"""Categories and tags: created by staff, listed to everyone."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request

from serve_apps.cms import schemas as s
from serve_apps.cms.context import CmsContext
from serve_apps.cms.deps import Caller, Cms
from serve_apps.cms.security import Principal
from serve_apps.errors import InvalidRequest, error_responses
from storage.cms_actions import AuditAction
from storage.cms_taxonomy import TaxonomyRepository

router = APIRouter()

Kind = Literal["category", "tag"]
#: The audit action of creating each kind.
CREATE_ACTIONS: dict[Kind, AuditAction] = {
    "category": AuditAction.CATEGORY_CREATE,
    "tag": AuditAction.TAG_CREATE,
}


async def _create(
    cms: CmsContext, request: Request, kind: Kind, body: s.Taxonomy, principal: Principal
) -> s.TaxonomyOut:
    async with cms.write(request, principal, CREATE_ACTIONS[kind], kind, permission="taxonomy.manage") as w:
        if not (body.slug or body.name_en or body.name_ar):
            raise InvalidRequest(f"a {kind} needs a slug or a name (name_en or name_ar)")
        row = await TaxonomyRepository(w.session).create(
            kind, slug=body.slug, name_en=body.name_en, name_ar=body.name_ar
        )
        out = s.TaxonomyOut.model_validate(row)
        w.target, w.after = f"{kind}:{row.id}", out.model_dump()
    return out


async def _list(cms: CmsContext, kind: Kind) -> list[s.TaxonomyOut]:
    async with cms.sessions() as session:
        return [s.TaxonomyOut.model_validate(r) for r in await TaxonomyRepository(session).list(kind)]


@router.post(
    "/categories",
    response_model=s.TaxonomyOut,
    status_code=201,
    summary="Create a category",
    responses=error_responses(409),
)
async def create_category(request: Request, body: s.Taxonomy, principal: Caller, cms: Cms) -> s.TaxonomyOut:
    return await _create(cms, request, "category", body, principal)


@router.post(
    "/tags",
    response_model=s.TaxonomyOut,
    status_code=201,
    summary="Create a tag",
    responses=error_responses(409),
)
async def create_tag(request: Request, body: s.Taxonomy, principal: Caller, cms: Cms) -> s.TaxonomyOut:
    return await _create(cms, request, "tag", body, principal)


@router.get("/categories", response_model=list[s.TaxonomyOut], summary="Every category")
async def categories(principal: Caller, cms: Cms) -> list[s.TaxonomyOut]:
    return await _list(cms, "category")


@router.get("/tags", response_model=list[s.TaxonomyOut], summary="Every tag")
async def tags(principal: Caller, cms: Cms) -> list[s.TaxonomyOut]:
    return await _list(cms, "tag")
