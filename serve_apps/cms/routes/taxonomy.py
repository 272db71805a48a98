"""Categories and tags: created by staff, listed to everyone."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request

from serve_apps.cms import schemas as s
from serve_apps.cms.context import CmsContext
from serve_apps.cms.deps import Caller, Cms
from serve_apps.cms.security import Principal
from serve_apps.errors import InvalidRequest, error_responses
from storage.cms_actions import AuditAction, EventType
from storage.cms_taxonomy import TaxonomyRepository

router = APIRouter()

Kind = Literal["category", "tag"]
#: The audit action of creating each kind.
CREATE_ACTIONS: dict[Kind, AuditAction] = {
    "category": AuditAction.CATEGORY_CREATE,
    "tag": AuditAction.TAG_CREATE,
}
#: The outbox event of creating each kind (webhooks; the replicas' caches drop their taxonomy answers).
CREATE_EVENTS: dict[Kind, EventType] = {"category": EventType.CATEGORY_CREATED, "tag": EventType.TAG_CREATED}


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
        w.event = (CREATE_EVENTS[kind], [], {"id": row.id, "slug": row.slug})
    return out


def _routes(kind: Kind, path: str) -> None:
    """Add a kind's two routes: POST ``path`` (``create_<kind>``) and GET ``path`` (named as the path)."""

    async def create(request: Request, body: s.Taxonomy, principal: Caller, cms: Cms) -> s.TaxonomyOut:
        return await _create(cms, request, kind, body, principal)

    async def listing(principal: Caller, cms: Cms) -> list[s.TaxonomyOut]:
        async with cms.sessions() as session:
            return [s.TaxonomyOut.model_validate(r) for r in await TaxonomyRepository(session).list(kind)]

    router.add_api_route(
        path,
        create,
        methods=["POST"],
        name=f"create_{kind}",
        response_model=s.TaxonomyOut,
        status_code=201,
        summary=f"Create a {kind}",
        responses=error_responses(409),
    )
    router.add_api_route(
        path,
        listing,
        methods=["GET"],
        name=path[1:],
        response_model=list[s.TaxonomyOut],
        summary=f"Every {kind}",
    )


_routes("category", "/categories")
_routes("tag", "/tags")
