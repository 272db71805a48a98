"""Every dependency of every route is a coroutine function: FastAPI runs a plain function (or a class) in
a worker thread, a thread hop on every request (the CMS's ``get_cms`` and ``Versioned`` were, found by
profiling a replica under load with py-spy)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute


def _routers() -> Iterator[Any]:
    from serve_apps.cms.app import ITEM_ROUTERS, ROUTERS
    from serve_apps.search.app import api as search_api
    from serve_apps.trends.app import COLLECTIONS

    for module in (*ROUTERS, *ITEM_ROUTERS):
        yield module.router
    yield search_api
    for _, add_routes in COLLECTIONS.values():
        api = FastAPI()
        add_routes(api)
        yield api


def _runs_on_the_loop(call: Any) -> bool:
    if inspect.isclass(call):
        return False
    if inspect.iscoroutinefunction(call):
        return True
    return inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004 (security schemes)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """The routes, and those of included routers (FastAPI keeps an included router whole, as its
    ``original_router``; Serve's class-based ingress includes its class's routes so)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes)
        elif isinstance(route, APIRoute):
            yield route


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def test_every_dependency_of_every_route_runs_on_the_event_loop() -> None:
    routes = [r for router in _routers() for r in _api_routes(router.routes)]
    paths = {r.path for r in routes}
    assert {"/items/{item_id}", "/v1/search", "/v1/recommend", "/{story_id}"} <= paths, paths
    threaded = sorted(
        {
            f"{route.path}: {getattr(call, '__qualname__', call)}"
            for route in routes
            for call in _calls(route.dependant)
            if not _runs_on_the_loop(call)
        }
    )
    assert threaded == []


def test_a_plain_function_or_a_class_would_be_caught() -> None:
    class Dep:
        pass

    def plain() -> None: ...

    async def coroutine() -> None: ...

    assert not _runs_on_the_loop(Dep) and not _runs_on_the_loop(plain) and _runs_on_the_loop(coroutine)
