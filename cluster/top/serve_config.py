"""Serve configuration: the applications' arguments from settings (search, CMS, trends), and deploying them.

The application is loaded by import path (``SEARCH_APP_IMPORT_PATH``), exactly as ``serve run`` and
``serve deploy`` load it from ``serve_apps/serve_config.yaml``; nothing imports ``serve_apps`` directly.
That file is generated from the same builders (`pulse serve-config`, ``cluster.top.serve_build``, with the
args of ``cluster.top.deploy_args``), so each deployment's options (replicas or autoscaling, CPUs, health
checks, shutdown, logs) are the builders' whichever way the applications are deployed; a unit test fails
when the committed file and the builders drift apart.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import secrets
import socket
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cluster.ground.constants import (
    CMS_APP_IMPORT_PATH,
    CMS_APP_NAME,
    CMS_ROUTE_PREFIX,
    SEARCH_APP_IMPORT_PATH,
    SEARCH_APP_NAME,
    SEARCH_ROUTE_PREFIX,
    TOPICS_APP_IMPORT_PATH,
    TOPICS_APP_NAME,
    TOPICS_ROUTE_PREFIX,
    TRENDS_APP_IMPORT_PATH,
    TRENDS_APP_NAME,
    TRENDS_ROUTE_PREFIX,
)
from cluster.ground.settings import Settings
from serve_apps.cms.args import CmsArgs
from serve_apps.deployment_options import DeploymentArgs
from serve_apps.search.args import SearchArgs
from serve_apps.trends.args import TrendsArgs
from storage.vector_files import absolute_storage_uri


def carried(section: BaseModel, target: type[BaseModel]) -> dict[str, Any]:
    """The fields of a settings section that an application's args have under the same name (pydantic
    carries them; only renamed or cross-section values are spelled out by the callers)."""
    return section.model_dump(include=set(target.model_fields) & set(type(section).model_fields))


def deployment_args(settings: Settings) -> dict[str, Any]:
    """The args every application shares (``DeploymentArgs``: requests per replica, autoscaling target,
    health checks, shutdown, logs), from ``PULSE_SERVE__*`` and ``PULSE_LOG_LEVEL``."""
    return {**carried(settings.serve, DeploymentArgs), "log_level": settings.log_level.upper()}


def search_app_args(settings: Settings, database_url: str) -> dict[str, Any]:
    """The search application's args (``SearchArgs``) from settings."""
    return {
        **carried(settings.serve, SearchArgs),
        **deployment_args(settings),
        "database_url": database_url,
        "storage_uri": absolute_storage_uri(settings.storage.uri),
        "model_name": settings.model.name,
        "device": settings.model.device,
        "namespace": settings.ray.namespace,
        "index_name": settings.embed.index_name,
        "index": settings.index.model_dump(),
        "search": settings.search.model_dump(),
        "recommend": settings.recommend.model_dump(),
        "jwt_secret": cms_jwt_secret(settings),
        "console": console_args(settings),
    }


def console_args(settings: Settings) -> dict[str, Any]:
    """The console's settings, with the local Ray dashboard's address when no link is set."""
    console = settings.console.model_dump()
    if console["dashboard_url"] is None and settings.ray.include_dashboard and not settings.ray.address:
        console["dashboard_url"] = f"http://127.0.0.1:{settings.ray.dashboard_port}"
    return console


#: When HAProxy replays a request on another replica (``retry-on``). Serve's default, ``conn-failure``, only
#: covers a replica that refused the connection: a request in flight on a replica that dies (killed, its
#: node lost) came back as a dropped client connection (tests/chaos/test_serve_replica_kill.py).
#: ``empty-response`` replays a request that got no byte back from the dead replica on another one. A
#: write whose replica died after committing and before answering would then be applied twice, unless it
#: carries an ``Idempotency-Key`` (``serve_apps/cms/idempotency.py``: the replay gets the first answer).
HAPROXY_RETRY_ON = "conn-failure empty-response"

#: Longest HAProxy folder: Serve adds ``/<56-hex node id>/metrics.sock`` (70 characters) and HAProxy's
#: unix socket paths may be 97 long.
HAPROXY_FOLDER_MAX = 27


def haproxy_env(folder: Path, *, stats_port: int, metrics_port: int) -> dict[str, str]:
    """Environment that turns on Serve's HAProxy ingress, with HAProxy's files in ``folder`` and its ports
    as given (Serve's defaults are fixed /tmp paths and ports, which two Ray instances on one machine
    would share). Set it for the Ray node (its controller reads it) and for the process starting Serve."""
    folder = folder.resolve()
    if len(str(folder)) > HAPROXY_FOLDER_MAX:
        raise ValueError(
            f"HAProxy folder {folder}: longer than {HAPROXY_FOLDER_MAX} characters (HAProxy's unix sockets, "
            "which Serve puts in a per-node subfolder of it, take paths of at most 97); choose a shorter one"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_RETRY_ON": HAPROXY_RETRY_ON,
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
    }


def free_port() -> int:
    """A TCP port free on this machine now."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def private_haproxy_env() -> dict[str, str]:
    """``haproxy_env`` with a fresh short folder and free ports: for a Ray started beside others on one
    machine (the test session, a benchmark)."""
    folder = Path(tempfile.mkdtemp(prefix="phx-", dir="/tmp"))
    return haproxy_env(folder, stats_port=free_port(), metrics_port=free_port())


def ingress_env(settings: Settings) -> dict[str, str]:
    """Environment of a Ray node `pulse up` starts, for ``PULSE_SERVE__INGRESS``."""
    s = settings.serve
    if s.ingress == "proxy":
        return {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
    # One short folder per installation (``var_dir``): HAProxy's socket paths are limited in length.
    digest = hashlib.sha1(str(Path(settings.var_dir).resolve()).encode()).hexdigest()[:8]
    return haproxy_env(
        Path("/tmp") / f"pulse-{digest}",
        stats_port=s.haproxy_stats_port,
        metrics_port=s.haproxy_metrics_port,
    )


def serve_logging_config(settings: Settings) -> dict[str, Any]:
    """Serve's ``logging_config`` for its controller and proxies (``serve.start``) and for each application
    (``serve.run``): JSON lines in Serve's log files, at ``PULSE_LOG_LEVEL``, the per-request access log
    as ``PULSE_SERVE__ACCESS_LOG``. The generated ``serve_apps/serve_config.yaml`` holds the same for the
    default settings (a test checks it). An application's config applies to its deployments that set no
    ``logging_config`` of their own."""
    return {
        "encoding": "JSON",
        "log_level": settings.log_level.upper(),
        "enable_access_log": settings.serve.access_log,
    }


def load_builder(import_path: str = SEARCH_APP_IMPORT_PATH) -> Any:
    module_name, _, attr = import_path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def deploy_search(settings: Settings, database_url: str) -> None:
    """Start Serve's HTTP proxy on the configured host/port and (re)deploy the search application."""
    from ray import serve

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # the CLI prints its own summary
    logs = serve_logging_config(settings)
    serve.start(http_options={"host": settings.serve.host, "port": settings.serve.port}, logging_config=logs)
    app = load_builder()(search_app_args(settings, database_url))
    serve.run(
        app, name=SEARCH_APP_NAME, route_prefix=SEARCH_ROUTE_PREFIX, blocking=False, logging_config=logs
    )


def local_secret(settings: Settings, name: str) -> str:
    """A random secret generated once and kept in ``var/<name>`` (owner-only), for dev defaults."""
    path = Path(settings.var_dir) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(36))
        path.chmod(0o600)
    return path.read_text().strip()


def cms_jwt_secret(settings: Settings) -> str:
    """PULSE_CMS__JWT_SECRET, or in dev a random key kept in var/cms_jwt_secret."""
    if settings.cms.jwt_secret is not None:
        return settings.cms.jwt_secret.get_secret_value()
    return local_secret(settings, "cms_jwt_secret")


def cms_admin_password(settings: Settings) -> str | None:
    """PULSE_CMS__ADMIN_PASSWORD, or in dev a random one kept in var/cms_admin_password."""
    if settings.cms.admin_password is not None:
        return settings.cms.admin_password.get_secret_value()
    return local_secret(settings, "cms_admin_password") if settings.env == "dev" else None


def cms_app_args(settings: Settings, database_url: str) -> dict[str, Any]:
    """The CMS application's args (``CmsArgs``) from settings."""
    return {
        **carried(settings.cms, CmsArgs),
        **deployment_args(settings),
        "database_url": database_url,
        "jwt_secret": cms_jwt_secret(settings),
        "storage_uri": absolute_storage_uri(settings.storage.uri),
        "namespace": settings.ray.namespace,
        "admin_password": cms_admin_password(settings),
    }


def deploy_cms(settings: Settings, database_url: str) -> None:
    """(Re)deploy the CMS application under /v1/cms (Serve's proxy must be started)."""
    from ray import serve

    app = load_builder(CMS_APP_IMPORT_PATH)(cms_app_args(settings, database_url))
    serve.run(
        app,
        name=CMS_APP_NAME,
        route_prefix=CMS_ROUTE_PREFIX,
        blocking=False,
        logging_config=serve_logging_config(settings),
    )


#: The trends API is two applications below ``TRENDS_ROUTE_PREFIX``, one per collection: Serve routes by
#: longest route prefix, so one application at ``/v1`` itself would take search's ``/v1/search`` and
#: ``/v1/documents`` (search is at ``/``). Name, route prefix and builder of each.
TRENDS_APPS: tuple[tuple[str, str, str], ...] = (
    (TRENDS_APP_NAME, TRENDS_ROUTE_PREFIX, TRENDS_APP_IMPORT_PATH),
    (TOPICS_APP_NAME, TOPICS_ROUTE_PREFIX, TOPICS_APP_IMPORT_PATH),
)


def trends_app_args(settings: Settings, database_url: str) -> dict[str, Any]:
    """The trends applications' args (``TrendsArgs``) from settings."""
    return {
        **carried(settings.trends, TrendsArgs),
        **deployment_args(settings),
        "database_url": database_url,
    }


def deploy_trends(settings: Settings, database_url: str) -> None:
    """(Re)deploy the trends applications, stories under /v1/trends and topics under /v1/topics (Serve's
    proxy must be started)."""
    from ray import serve

    args = trends_app_args(settings, database_url)
    for name, route_prefix, import_path in TRENDS_APPS:
        serve.run(
            load_builder(import_path)(args),
            name=name,
            route_prefix=route_prefix,
            blocking=False,
            logging_config=serve_logging_config(settings),
        )
