"""HTTP metrics of every Serve application: requests by route and status, latency by route, 5xx errors.

``install_http_metrics(api, app="search")`` adds ``HttpMetrics``, a plain ASGI middleware (no
``BaseHTTPMiddleware``: it would copy the scope and hide the matched route). After the app answers, the
route is the template Starlette matched (``scope["route"].path``, ``/v1/documents/{document_id}``), so the
tags stay a bounded set; a request no route matched is ``unmatched``. Recorded per request, in the replica
(``cluster.ground.ray_metrics``):

- ``pulse_http_requests_total{app,route,status}`` and ``pulse_http_latency_ms{app,route}``;
- ``pulse_errors_total{component=<app>,kind}`` for a 5xx answer: ``http_<status>``, or the exception
  class when the app raised (Starlette's outer error middleware then answers 500).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cluster.ground import ray_metrics
from cluster.ground.metrics import ERRORS, HTTP_LATENCY, HTTP_REQUESTS

#: The route tag of a request no route matched (a 404 from the router, or a 405).
UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The path template of the route that handled the request, else ``UNMATCHED``."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class HttpMetrics:
    """ASGI middleware recording each HTTP request's metrics under ``app``'s name."""

    def __init__(self, inner: ASGIApp, *, app: str) -> None:
        self._inner = inner
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._inner(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._inner(scope, receive, send_status)
        except Exception as exc:
            self._record(scope, 500, started, kind=type(exc).__name__)
            raise
        self._record(scope, status, started, kind=f"http_{status}" if status >= 500 else None)

    def _record(self, scope: Scope, status: int, started: float, *, kind: str | None) -> None:
        route = route_template(scope)
        ray_metrics.inc(HTTP_REQUESTS, app=self._app, route=route, status=status)
        ray_metrics.observe(HTTP_LATENCY, (time.perf_counter() - started) * 1000, app=self._app, route=route)
        if kind is not None:
            ray_metrics.inc(ERRORS, component=self._app, kind=kind)


def install_http_metrics(api: FastAPI, *, app: str) -> None:
    """Record ``api``'s requests as Serve application ``app`` (``search``, ``cms``, ``trends``...)."""
    api.add_middleware(HttpMetrics, app=app)
