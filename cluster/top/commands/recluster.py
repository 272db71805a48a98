"""`pulse recluster` (and ``python -m jobs.recluster``): recompute stories and topics on the cluster."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.job_configs import community_params
from cluster.top.recluster_job import ReclusterConfig, run_recluster
from storage.database import make_engine, make_session_factory, session_scope
from storage.model_registry import ModelRegistry


def _epoch(value: datetime | None) -> int | None:
    if value is None:
        return None
    return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())


@click.command("recluster", short_help="recompute stories and topics (a Ray job)")
@click.option("--since", type=click.DateTime(), help="only documents from this date (document time, UTC)")
@click.option("--until", type=click.DateTime(), help="only documents up to this date")
@click.option(
    "--partition", "partitions", multiple=True, help="partition key (en, ar, en/wires...); all if none"
)
@click.option(
    "--num-cpus", type=float, default=1.0, show_default=True, help="CPUs each re-cluster task reserves"
)
@pass_env
def recluster(
    env: CommandEnv,
    *,
    since: datetime | None,
    until: datetime | None,
    partitions: tuple[str, ...],
    num_cpus: float,
) -> int:
    """Recompute the stories and topics of each trend clusterer's window (documents in [SINCE, UNTIL]),
    matched to the ids it holds, while the clusterers keep serving."""
    db, ray_target = env.database_and_ray()
    engine = make_engine(db.url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            active = ModelRegistry(session).active()
    finally:
        engine.dispose()
    if active is None:
        raise click.ClickException("no active model: run `pulse ingest` and `pulse embed` first")
    ray_target.join(env.settings)
    results = run_recluster(
        ReclusterConfig(
            model_id=active.id,
            namespace=env.settings.ray.namespace,
            since=_epoch(since),
            until=_epoch(until),
            partitions=partitions,
            num_cpus=num_cpus,
            placement_timeout_s=env.settings.ray.placement_timeout_s,
            params=community_params(env.settings),
        )
    )
    if not results:
        raise click.ClickException(
            "no trend clusterer is running for the active model: `pulse up` starts them"
        )
    for result in results:
        env.console.print(result.line(), markup=False)
    env.console.print(f"re-clustered {len(results)} partition(s)", markup=False)
    return 0
