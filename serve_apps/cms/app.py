"""The CMS application under ``/v1/cms``: bilingual content, workflow, revisions, auth, bulk, webhooks.

One Serve deployment (``CmsIngress``) on PostgreSQL through ``storage``. Its constructor builds the
replica's ``CmsContext`` (sessions, tokens, limits); ``build_api`` composes the FastAPI app from one
router per resource (``serve_apps/cms/routes/``) and hangs the context on ``app.state.cms``, where the
routes' ``Cms`` dependency finds it. Callers are users (``Authorization: Bearer <access token>`` from
``POST /auth/login``), services (``X-API-Key``) or anonymous readers of published content. Every action
is checked against the permission matrix (``serve_apps/cms/permissions.py``); a refusal is a 403 naming
who may do it, and is audit-logged like every write (``CmsContext.write``). Scheduled publishing, webhooks
and the search sync run in the CMS scheduler actor, which ``pulse up`` starts (``cluster.top.cms_scheduler``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from ray import serve

from serve_apps.cms import idempotency
from serve_apps.cms.args import CmsArgs
from serve_apps.cms.context import CmsContext
from serve_apps.cms.http_cache import HttpCache
from serve_apps.cms.idempotency import AnswerRecorder, IdempotentReplay, replay_response
from serve_apps.cms.limits import BodySizeLimit
from serve_apps.cms.routes import (
    audit,
    auth,
    bulk,
    items,
    keys,
    revisions,
    schedules,
    taxonomy,
    users,
    webhooks,
)
from serve_apps.deployment_options import deployment_options
from serve_apps.errors import error_responses, install_error_handlers
from serve_apps.http_metrics import install_http_metrics
from serve_apps.inputs import reject_unstorable_text

logger = logging.getLogger(__name__)

#: The routers, in the order of the OpenAPI document.
ROUTERS = (auth, taxonomy, users, keys, audit, webhooks, schedules)
ITEM_ROUTERS = (items, revisions, bulk)


def build_api(cms: CmsContext) -> FastAPI:
    """The CMS's FastAPI app serving ``cms`` (one per replica, or per process without Serve)."""
    api = FastAPI(
        title="Pulse CMS API",
        version="0.1.0",
        description="Bilingual (Arabic/English) headless CMS: content, workflow, revisions, bulk, webhooks.",
        # Every route: credentials (401, 403), the body limit (413), input (422), rate limits (429), the
        # database (503).
        responses=error_responses(401, 403, 413, 422, 429, 503),
        dependencies=[Depends(reject_unstorable_text)],
    )
    install_error_handlers(api)

    @api.exception_handler(IdempotentReplay)
    async def _replay(_: Request, exc: IdempotentReplay) -> Response:
        return replay_response(exc.kept)

    #: Innermost: keeps the answers of writes sent with an Idempotency-Key (serve_apps/cms/idempotency.py).
    api.add_middleware(AnswerRecorder, store=cms.keep_answer)
    #: ETags, 304s and the replica's cache of anonymous answers (serve_apps/cms/http_cache.py).
    api.add_middleware(
        HttpCache,
        answers=cms.answers,
        rate_check=cms.rate_check_anonymous,
        max_age_s=cms.args.cache_max_age_s,
    )
    #: Request bodies over the limit are refused with 413 before they reach a route (chunked ones too).
    api.add_middleware(BodySizeLimit, max_bytes=cms.args.max_body_bytes)
    install_http_metrics(api, app="cms")  # outermost: the 413s count too
    api.state.cms = cms
    for module in ROUTERS:
        api.include_router(module.router)

    @api.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for module in ITEM_ROUTERS:
        api.include_router(module.router)
    idempotency.document(api)
    return api


@serve.ingress()
class CmsIngress:
    """The CMS deployment: one ``CmsContext`` per replica, served by the app ``build_api`` makes."""

    def __init__(self, args: dict[str, Any]) -> None:
        self._cms = CmsContext(CmsArgs.model_validate(args))

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve's hook, run after the constructor: the replica's app, serving its context."""
        return build_api(self._cms)


def app_builder(args: dict[str, Any]) -> serve.Application:
    parsed = CmsArgs.model_validate(args)
    actor_options: dict[str, Any] = {}
    if not parsed.user_code_thread:
        # Serve runs a replica's routes on a second event loop in another thread by default; every ASGI
        # message then crosses threads. The routes never block (password hashing is in a worker thread),
        # so they run on the replica's own loop (bench/cms.py, closed loop: 174 -> 200 writes/s and
        # 286 -> 415 reads/s).
        actor_options["runtime_env"] = {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}}
    ingress = serve.deployment(
        **deployment_options(
            parsed,
            name="CmsIngress",
            replicas=parsed.replicas,
            max_replicas=parsed.max_replicas,
            num_cpus=parsed.ingress_num_cpus,
            actor_options=actor_options,
        )
    )(CmsIngress)
    app: serve.Application = ingress.bind(parsed.model_dump())
    return app
