"""Starting the CMS scheduler: the named, detached actor that publishes on schedule, sends webhooks and
syncs published items into search (``actors.cms_scheduler_actor``), with the embedding hook
(``cluster.top.cms_embed_hook``) wired in here, at the top, since actors never import jobs.

``pulse up`` starts it after the database is migrated, beside the CMS application; after ``serve run``
or ``serve deploy`` of ``serve_apps/serve_config.yaml``, ``pulse cms scheduler --config <that file>``
starts it with the CMS application's own arguments. Starting is get-or-create: one per namespace, and a
second start leaves the running actor as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import yaml

from actors.cms_scheduler_actor import CmsSchedulerConfig, get_or_create_cms_scheduler
from cluster.ground.constants import CMS_APP_IMPORT_PATH, CMS_SCHEDULER_NAME
from cluster.top.cms_embed_hook import EmbedCmsDocuments
from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.serve_config import cms_app_args
from cluster.top.targets import choose_ray
from jobs.embed.pipeline import EmbedJobConfig
from serve_apps.cms.args import CmsArgs

logger = logging.getLogger(__name__)


def scheduler_config(args: CmsArgs) -> CmsSchedulerConfig:
    """The scheduler's configuration from the CMS application's arguments."""
    return CmsSchedulerConfig(
        database_url=args.database_url,
        public_base_url=args.public_base_url,
        namespace=args.namespace,
        interval_s=args.scheduler_interval_s,
        embed=args.embed_on_publish,
        max_attempts=args.webhook_max_attempts,
        private_targets=args.webhook_private_targets,
    )


def start_cms_scheduler(app_args: Mapping[str, Any]) -> Any:
    """Get or create the scheduler actor for the CMS application with these arguments (``CmsArgs``;
    ``None`` when they say ``scheduler: false``). Ray must be initialised."""
    args = CmsArgs.model_validate(app_args)
    if not args.scheduler:
        return None
    embed = None
    if args.embed_on_publish:
        job = EmbedJobConfig(
            database_url=args.database_url,
            storage_uri=args.storage_uri,
            model_name="default",
            inline_max=args.embed_inline_max,
        )
        embed = EmbedCmsDocuments(job=job, namespace=args.namespace)
    return get_or_create_cms_scheduler(scheduler_config(args), embed)


def serve_config_cms_args(path: Path) -> dict[str, Any]:
    """The ``args`` of the CMS application in a Serve config file (``serve_apps/serve_config.yaml``)."""
    config = yaml.safe_load(path.read_text())
    for app in config.get("applications") or []:
        if app.get("import_path") == CMS_APP_IMPORT_PATH:
            return dict(app.get("args") or {})
    raise click.ClickException(f"{path} has no application with import_path {CMS_APP_IMPORT_PATH}")


@click.command("scheduler", short_help="start the CMS scheduler unless it runs (after serve run/deploy)")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A Serve config (serve_apps/serve_config.yaml): use its CMS application's args. "
    "Default: the PULSE_* settings, as `pulse up` does.",
)
@pass_env
def scheduler_command(env: CommandEnv, config_path: Path | None) -> None:
    """Start the CMS scheduler (scheduled publishing, webhooks, search sync) if it is not running."""
    if config_path is not None:
        args = serve_config_cms_args(config_path)
        ray_target = choose_ray(env.settings)
    else:
        db, ray_target = env.database_and_ray()
        args = cms_app_args(env.settings, db.url)
    ray_target.join(env.settings)
    namespace = CmsArgs.model_validate(args).namespace
    if start_cms_scheduler(args) is None:
        click.echo("the CMS arguments say scheduler: false; nothing started")
    else:
        click.echo(f"CMS scheduler {CMS_SCHEDULER_NAME} running in namespace {namespace}")
