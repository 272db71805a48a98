"""Serve configuration: the search application's arguments from settings, and deploying it.

The application is loaded by import path (``SEARCH_APP_IMPORT_PATH``), exactly as ``serve run`` and
``serve deploy`` load it from ``serve_apps/serve_config.yaml``; nothing imports ``serve_apps`` directly.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from cluster.constants import SEARCH_APP_IMPORT_PATH, SEARCH_APP_NAME, SEARCH_ROUTE_PREFIX
from cluster.settings import Settings
from storage.vector_files import absolute_storage_uri


def search_app_args(settings: Settings, database_url: str) -> dict[str, Any]:
    s = settings.serve
    return {
        "database_url": database_url,
        "storage_uri": absolute_storage_uri(settings.storage.uri),
        "model_name": settings.model.name,
        "device": settings.model.device,
        "namespace": settings.ray.namespace,
        "max_ongoing_requests": s.max_ongoing_requests,
        "ingress_replicas": s.ingress_replicas,
        "embedder_replicas": s.embedder_replicas,
        "embedder_num_cpus": s.embedder_num_cpus,
        "max_batch_size": s.max_batch_size,
        "batch_wait_timeout_s": s.batch_wait_timeout_s,
        "max_query_chars": s.max_query_chars,
        "index_name": settings.embed.index_name,
        "model_refresh_s": s.model_refresh_s,
        "index": settings.index.model_dump(),
        "search": settings.search.model_dump(),
    }


def load_builder(import_path: str = SEARCH_APP_IMPORT_PATH) -> Any:
    module_name, _, attr = import_path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def deploy_search(settings: Settings, database_url: str) -> None:
    """Start Serve's HTTP proxy on the configured host/port and (re)deploy the search application."""
    from ray import serve

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # the CLI prints its own summary
    serve.start(http_options={"host": settings.serve.host, "port": settings.serve.port})
    app = load_builder()(search_app_args(settings, database_url))
    serve.run(app, name=SEARCH_APP_NAME, route_prefix=SEARCH_ROUTE_PREFIX, blocking=False)
