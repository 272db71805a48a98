"""`pulse profiles rebuild` (and ``python -m jobs.profiles``): rebuild the readers' profiles (a Ray job)."""

from __future__ import annotations

import click

from actors.rec_profiles import ProfileParams
from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.entry import InOrderGroup
from cluster.top.profiles_job import ProfilesRebuildConfig, rebuild_profiles
from storage.vector_files import absolute_storage_uri


@click.command("rebuild", short_help="rebuild the profile book from all stored events (a Ray job)")
@click.option(
    "--groups",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="groups of readers, one Ray task each",
)
@click.option(
    "--num-cpus",
    type=click.FloatRange(min=0.0, min_open=True),
    default=0.5,
    show_default=True,
    help="CPUs each group task reserves",
)
@pass_env
def rebuild(env: CommandEnv, *, groups: int, num_cpus: float) -> int:
    """Rebuild the readers' profiles, co-reads and popularity from every stored interaction event (one Ray
    task per group of readers), save them as the profile snapshot, and have the running profile actor
    adopt it; events stored meanwhile are applied after it."""
    db, ray_target = env.database_and_ray()
    ray_target.join(env.settings)
    result = rebuild_profiles(
        ProfilesRebuildConfig(
            database_url=db.url,
            storage_uri=absolute_storage_uri(env.settings.storage.uri),
            namespace=env.settings.ray.namespace,
            params=ProfileParams.from_settings(env.settings.recommend),
            groups=groups,
            num_cpus=num_cpus,
            placement_timeout_s=env.settings.ray.placement_timeout_s,
        )
    )
    env.console.print(result.line(), markup=False)
    return 0


@click.group("profiles", cls=InOrderGroup, short_help="readers' profiles for recommendations: rebuild")
def profiles() -> None:
    """The readers' profiles, co-reads and popularity that recommendations use (the profile actor)."""


profiles.add_command(rebuild)
