"""Webhooks (admin): subscribe a URL (the signing secret is shown once), list, unsubscribe, and read a
webhook's delivery log. The CMS scheduler sends the deliveries."""

from __future__ import annotations

import secrets
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from cluster.ground.webhook_targets import refusal as webhook_refusal
from serve_apps.cms import schemas as s
from serve_apps.cms.deps import Caller, Cms
from serve_apps.errors import InvalidRequest, NotFound, error_responses
from serve_apps.inputs import Id
from storage.cms_actions import AuditAction
from storage.cms_events import DeliveryRepository, WebhookRepository

router = APIRouter()

#: Who may manage webhooks.
PERMISSION = "webhook.manage"


@router.post("/webhooks", response_model=s.WebhookCreated, status_code=201, summary="Subscribe a URL (admin)")
async def create_webhook(
    request: Request, body: s.WebhookCreate, principal: Caller, cms: Cms
) -> s.WebhookCreated:
    action = AuditAction.WEBHOOK_CREATE
    async with cms.write(request, principal, action, "webhooks", permission=PERMISSION) as w:
        if not cms.args.webhook_private_targets:
            refused = await webhook_refusal(body.url)
            if refused is not None:
                raise InvalidRequest(f"url: {refused}")
        secret = body.secret or secrets.token_urlsafe(32)
        hook = await WebhookRepository(w.session).create(body.url, secret, body.events)
        w.target, w.after = f"webhook:{hook.id}", {"url": hook.url, "events": hook.events}
    return s.WebhookCreated.model_validate({**asdict(hook), "secret": secret})


@router.get("/webhooks", response_model=list[s.WebhookOut], summary="Every webhook, without secrets (admin)")
async def webhooks(request: Request, principal: Caller, cms: Cms) -> list[s.WebhookOut]:
    async with cms.read(request, principal, PERMISSION, AuditAction.WEBHOOK_LIST, "webhooks") as session:
        return [s.WebhookOut.model_validate(h) for h in await WebhookRepository(session).list()]


@router.delete(
    "/webhooks/{webhook_id}", status_code=204, summary="Unsubscribe (admin)", responses=error_responses(404)
)
async def delete_webhook(request: Request, webhook_id: Id, principal: Caller, cms: Cms) -> Response:
    missing = NotFound(f"no webhook {webhook_id}", code="webhook_not_found")
    action, target = AuditAction.WEBHOOK_DELETE, f"webhook:{webhook_id}"

    async def delete(db: AsyncSession) -> None:
        await WebhookRepository(db).delete(webhook_id)

    return await cms.remove(request, principal, PERMISSION, action, target, missing, delete)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=list[s.DeliveryOut],
    summary="The delivery log of a webhook, newest first (admin)",
    responses=error_responses(404),
)
async def deliveries(
    request: Request,
    webhook_id: Id,
    principal: Caller,
    cms: Cms,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[s.DeliveryOut]:
    target = f"webhook:{webhook_id}"
    async with cms.read(request, principal, PERMISSION, AuditAction.WEBHOOK_LOG, target) as session:
        if await WebhookRepository(session).get(webhook_id) is None:
            raise NotFound(f"no webhook {webhook_id}", code="webhook_not_found")
        rows = await DeliveryRepository(session).log(webhook_id, limit)
    return [s.DeliveryOut.model_validate(r) for r in rows]
