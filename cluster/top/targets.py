"""Which database and which Ray cluster a command uses, and the one line that says so.

In order, for each of the two:

1. an explicit setting: ``PULSE_DATABASE__URL``; ``PULSE_RAY__ADDRESS``, or ``RAY_ADDRESS`` (which
   ``ray job submit`` sets for the job it runs);
2. what `pulse up` recorded in ``<var_dir>/platform.json``: the database it used (kept after `pulse down`,
   since the data lives there) and the Ray cluster it started or joined (cleared by `pulse down`);
3. the default choice: the database order of ``cluster.top.database``; a node started with `ray start` on this
   machine, else a local Ray started for this command alone.

A recorded database that does not answer is an error naming it: another database would not hold the
platform's data (a recorded embedded server is started again, as `pulse up` would). A recorded Ray cluster
that does not answer (stopped without `pulse down`) is reported, and the command starts its own local Ray.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cluster.ground.runtime import init_ray
from cluster.ground.settings import Settings
from cluster.top.database import DatabaseChoice, connect_database, connect_recorded
from cluster.top.platform_state import PlatformState, address_answers, local_ray_address, state_path

logger = logging.getLogger(__name__)

#: Ray's variable for the cluster's authentication mode ("token" for a `ray start` node of Ray >= 2.59).
RAY_AUTH_MODE_VAR = "RAY_AUTH_MODE"


@dataclass(frozen=True)
class RayChoice:
    """``address`` None: a local Ray started for this command (or a `ray start` node found by "auto")."""

    address: str | None
    origin: str
    auth_mode: str | None = None

    def describe(self) -> str:
        where = self.address or "a local Ray started for this command"
        return f"Ray {where} ({self.origin})"

    def join(self, settings: Settings) -> None:
        """Start or join this Ray (the recorded cluster's authentication mode unless RAY_AUTH_MODE is set)."""
        if self.auth_mode and RAY_AUTH_MODE_VAR not in os.environ:
            # An explicit address never turns token authentication on by itself (Ray 2.60). Ray read its
            # config when it was imported: reload it, as Ray itself does when it turns token auth on
            # (`_enable_token_auth`), or this process still connects without the token (the stub of the
            # compiled `ray._raylet` does not name `Config`).
            os.environ[RAY_AUTH_MODE_VAR] = self.auth_mode
            from ray._raylet import Config  # type: ignore[attr-defined]

            Config.initialize("")
        init_ray(settings.ray, address=self.address, log_level=settings.log_level)


def _recorded(settings: Settings) -> tuple[PlatformState, Path]:
    path = state_path(settings.var_dir)
    return PlatformState.load(path), path


def choose_database(settings: Settings, *, migrate: bool = False) -> DatabaseChoice:
    """The database in the module's order, migrated (``migrate=True``) or checked to be."""
    if settings.database.url is not None:
        return connect_database(settings.database, migrate=migrate)
    state, path = _recorded(settings)
    if state.database_url and state.database_kind:
        return connect_recorded(
            state.database_url,
            state.database_kind,
            record=path,
            embedded_dir=Path(state.embedded_db_dir) if state.embedded_db_dir else None,
            timeout_s=settings.database.connect_timeout_s,
            migrate=migrate,
        )
    return connect_database(settings.database, migrate=migrate)


def choose_ray(settings: Settings) -> RayChoice:
    """The Ray cluster in the module's order; a recorded one that does not answer is logged and skipped."""
    if settings.ray.address:
        return RayChoice(settings.ray.address, "PULSE_RAY__ADDRESS")
    if os.environ.get("RAY_ADDRESS"):
        return RayChoice(os.environ["RAY_ADDRESS"], "RAY_ADDRESS")
    state, path = _recorded(settings)
    if state.ray_address:
        if address_answers(state.ray_address):
            return RayChoice(state.ray_address, f"recorded by `pulse up` in {path}", state.ray_auth_mode)
        logger.warning(
            "the Ray cluster `pulse up` recorded in %s (%s) does not answer (stopped without `pulse down`?): "
            "this command starts its own local Ray; `pulse up` starts the platform again",
            path,
            state.ray_address,
        )
        return RayChoice(None, f"the recorded {state.ray_address} does not answer")
    found = local_ray_address()
    if found:
        return RayChoice("auto", f"the `ray start` node at {found} on this machine")
    return RayChoice(None, "none recorded by `pulse up`, none set")


def using_line(database: DatabaseChoice, ray: RayChoice | None = None) -> str:
    """The one line each command prints first (on stderr): which database and which Ray it uses."""
    line = f"using {database.describe()}"
    return f"{line}; {ray.describe()}" if ray else line
