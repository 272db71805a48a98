"""The trends API: stories under ``/v1/trends`` and topics under ``/v1/topics``, read from PostgreSQL
(``storage.trend_queries``); the trend clusterer actors write what they read.

Two Serve applications from this module, one per collection, because Serve routes a request to the
application with the longest route prefix that matches it: one application at ``/v1`` would also take
the search application's ``/v1/search`` and ``/v1/documents`` (search is at ``/``). So ``app_builder``
makes the stories application (route prefix ``/v1/trends``, deployment ``TrendsIngress``) and
``topics_app_builder`` the topics one (``/v1/topics``, ``TopicsIngress``); both take ``TrendsArgs``.

Each is one FastAPI ingress deployment with no CPU reservation (like the CMS's); its constructor builds
the replica's ``TrendsContext`` (``serve_apps.trends.context``), which routes reach as ``app.state.trends``.
Errors have the one shape (``serve_apps.errors``): 422 for invalid input (unknown state, malformed date,
bad cursor, limit out of range), 404 ``story_not_found`` / ``topic_not_found``, 503 while the database is
unavailable.

Run it with ``pulse up``, ``serve run serve_apps.trends.app:app_builder database_url=...`` (and
``...:topics_app_builder``), or ``serve deploy`` with ``serve_apps/serve_config.yaml``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from fastapi import Depends, FastAPI
from ray import serve

from serve_apps.deployment_options import deployment_options
from serve_apps.errors import error_responses, install_error_handlers
from serve_apps.http_metrics import install_http_metrics
from serve_apps.inputs import reject_unstorable_text
from serve_apps.trends import stories, topics
from serve_apps.trends.args import TrendsArgs
from serve_apps.trends.context import TrendsContext
from serve_apps.trends.schemas import Health

logger = logging.getLogger(__name__)

Collection = Literal["trends", "topics"]

#: Each application's title and routes.
COLLECTIONS: dict[Collection, tuple[str, Callable[[FastAPI], None]]] = {
    "trends": ("Pulse trends API: stories", stories.add_routes),
    "topics": ("Pulse trends API: topics", topics.add_routes),
}


def build_api(trends: TrendsContext, collection: Collection) -> FastAPI:
    """The FastAPI app of one collection, serving ``trends`` (one per replica)."""
    title, add_routes = COLLECTIONS[collection]
    api = FastAPI(
        title=title,
        version="0.1.0",
        description="Stories and topics found by Pulse's trend clusterers, with their analytics and lineage.",
        # Every route: invalid input (422), the database unavailable (503).
        responses=error_responses(422, 503),
        dependencies=[Depends(reject_unstorable_text)],
    )
    install_error_handlers(api)
    install_http_metrics(api, app=collection)
    api.state.trends = trends

    @api.get("/healthz", response_model=Health, summary="Liveness")
    async def healthz() -> Health:
        return Health(status="ok")

    add_routes(api)
    return api


@serve.ingress()
class TrendsIngress:
    """A trends deployment: one ``TrendsContext`` per replica, served by the app ``build_api`` makes."""

    def __init__(self, args: dict[str, Any], collection: Collection) -> None:
        self._trends = TrendsContext(TrendsArgs.model_validate(args))
        self._collection = collection

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve's hook, run after the constructor: the replica's app, serving its context."""
        return build_api(self._trends, self._collection)


def _application(args: dict[str, Any], collection: Collection, name: str) -> serve.Application:
    parsed = TrendsArgs.model_validate(args)
    ingress = serve.deployment(
        **deployment_options(
            parsed,
            name=name,
            replicas=parsed.replicas,
            max_replicas=parsed.max_replicas,
            num_cpus=parsed.ingress_num_cpus,
        )
    )(TrendsIngress)
    app: serve.Application = ingress.bind(parsed.model_dump(), collection)
    return app


def app_builder(args: dict[str, Any]) -> serve.Application:
    """The stories application (route prefix ``/v1/trends``)."""
    return _application(args, "trends", "TrendsIngress")


def topics_app_builder(args: dict[str, Any]) -> serve.Application:
    """The topics application (route prefix ``/v1/topics``)."""
    return _application(args, "topics", "TopicsIngress")
