"""What every `pulse` command works with: the settings, the consoles, and the database (and Ray) it uses.

Commands take it with ``@pass_env``; it is made on first use, so ``--help`` and usage errors read no
settings.
"""

from __future__ import annotations

import click
from rich.console import Console

from cluster.ground.runtime import configure_logging
from cluster.ground.settings import Settings, get_settings
from cluster.top.database import DatabaseChoice
from cluster.top.targets import RayChoice, choose_database, choose_ray, using_line


class CommandEnv:
    """The settings (read once, logging configured from them), ``console`` (stdout) and ``notices``
    (stderr) of one command."""

    def __init__(self) -> None:
        self.settings: Settings = get_settings()
        configure_logging(self.settings.log_level)
        self.console = Console(highlight=False, soft_wrap=True)
        self.notices = Console(stderr=True, highlight=False, soft_wrap=True)

    def database(self, *, migrate: bool = False) -> DatabaseChoice:
        """The database this command uses (cluster.top.targets), said in one line on stderr."""
        db = choose_database(self.settings, migrate=migrate)
        self.notices.print(using_line(db), markup=False)
        return db

    def database_and_ray(self) -> tuple[DatabaseChoice, RayChoice]:
        """The database and the Ray cluster this command uses, said in one line on stderr."""
        db = choose_database(self.settings)
        ray_target = choose_ray(self.settings)
        self.notices.print(using_line(db, ray_target), markup=False)
        return db, ray_target


#: Decorator passing the command's ``CommandEnv`` as the first argument of a click callback.
pass_env = click.make_pass_decorator(CommandEnv, ensure=True)
