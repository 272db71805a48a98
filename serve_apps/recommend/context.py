"""What every recommendation route needs, built once per replica of the search application's ingress, and who
is calling.

``RecommendContext`` is made by ``SearchIngress``'s constructor and installed with ``install``: Serve freezes
a copy of the FastAPI app when the ingress class is declared, so routes cannot find per-replica state on
``request.app``; each replica is its own process with one ingress, and ``get_recommend`` hands the routes
the context installed in it.

Access (the CMS's credentials, checked here without the CMS's app): an API key (``X-API-Key``, a client
application) may post events and ask for any user's or session's list; a user's access token (``Authorization:
Bearer``, ``POST /v1/cms/auth/login``) only for its own user id; a session's list needs no credentials (the
session id is the client's secret), a user's does. Managing experiments needs an admin's or editor's key or
token; reading their report, any key or token. Authenticated keys are remembered for ``KEY_CACHE_S`` per
replica: a revoked key stops working within that time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from ray.actor import ActorProxy
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors.rec_actor import ProfileService
from cluster.ground.settings import RecommendSettings
from serve_apps.cms.credentials import KeyCache, UserCache, authenticate
from serve_apps.cms.deps import API_KEY, BEARER
from serve_apps.cms.security import Principal, TokenIssuer
from serve_apps.errors import Forbidden, NotReady, Unauthorized
from serve_apps.recommend.engine import Periodic, Recommender
from serve_apps.search.model_switch import ModelSwitch
from serve_apps.search.retriever import Retriever
from storage.rec_experiments import ExperimentRow, ServedList, active_experiments, record_served

logger = logging.getLogger(__name__)

#: Seconds an authenticated API key is remembered by a replica.
KEY_CACHE_S = 10.0
#: Seconds a replica keeps the list of active experiments (a PUT in the replica clears it at once).
EXPERIMENTS_REFRESH_S = 5.0
#: Roles that may create and change experiments.
EXPERIMENT_ROLES = frozenset({"admin", "editor"})


class ServedRecorder:
    """Records served lists (``rec_served``) in batches: ``add`` queues a list; a flush every ``FLUSH_S``
    writes what is queued in one INSERT, off the request's path. A list queued when the replica dies is lost
    (one row of an experiment's count); at most ``MAX_QUEUED`` wait (more are dropped, with a warning)."""

    FLUSH_S = 0.2
    MAX_QUEUED = 10_000

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._queued: list[ServedList] = []
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def add(self, served: ServedList) -> None:
        if len(self._queued) >= self.MAX_QUEUED:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.warning("served lists queue full: %d lists not recorded so far", self.dropped)
            return
        self._queued.append(served)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(self.FLUSH_S)
        batch, self._queued = self._queued, []
        try:
            async with self._sessions() as session, session.begin():
                await record_served(session, batch)
        except Exception:  # the lists were answered; losing their records loses experiment rows
            logger.exception("recording %d served lists failed", len(batch))


@dataclass
class RecommendContext:
    retriever: Retriever
    switch: ModelSwitch
    sessions: async_sessionmaker[AsyncSession]
    recommender: Recommender
    profiles: ActorProxy[ProfileService]
    settings: RecommendSettings
    tokens: TokenIssuer | None
    served: ServedRecorder
    keys: KeyCache = field(default_factory=lambda: KeyCache(ttl_s=KEY_CACHE_S))
    users: UserCache = field(default_factory=UserCache)
    experiments: Periodic[list[ExperimentRow]] = field(init=False)

    def __post_init__(self) -> None:
        self.experiments = Periodic(self._active_experiments, EXPERIMENTS_REFRESH_S)

    async def _active_experiments(self) -> list[ExperimentRow]:
        async with self.sessions() as session:
            return await active_experiments(session)


_installed: list[RecommendContext] = []


def install(context: RecommendContext) -> None:
    """Make ``context`` the one the routes of this process get (see the module docstring)."""
    _installed[:] = [context]


async def get_recommend() -> RecommendContext:
    if not _installed:
        raise NotReady("recommendations are not enabled on this deployment (PULSE_RECOMMEND__ENABLED)")
    return _installed[0]


Rec = Annotated[RecommendContext, Depends(get_recommend)]


async def current_caller(
    request: Request,
    rec: Rec,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    api_key: Annotated[str | None, Depends(API_KEY)],
) -> Principal:
    """The caller, from the CMS's credentials (``serve_apps.cms.credentials.authenticate``)."""
    return await authenticate(
        rec.sessions,
        rec.tokens,
        authorization=request.headers.get("authorization"),
        bearer=bearer,
        api_key=api_key,
        keys=rec.keys,
        users=rec.users,
    )


Caller = Annotated[Principal, Depends(current_caller)]


def subject_of(user_id: str | None, session_id: str | None) -> str | None:
    """``user:<id>`` or ``session:<id>`` (``None`` for neither)."""
    if user_id is not None:
        return f"user:{user_id}"
    if session_id is not None:
        return f"session:{session_id}"
    return None


def may_act_for(who: Principal, user_id: str | None) -> str | None:
    """Why ``who`` may not act for ``user_id`` (``None``: it may)."""
    if who.kind == "key":
        return None
    if who.kind == "user":
        if user_id is not None and user_id == str(who.id):
            return None
        return f"a user's token acts only for its own user_id ({who.id}); use an API key for others"
    return "send an API key (X-API-Key) or the user's access token"


def check_reader(who: Principal, user_id: str | None) -> None:
    """401/403 unless ``who`` may read ``user_id``'s list (a session's or an anonymous list: anyone)."""
    if user_id is None:
        return
    reason = may_act_for(who, user_id)
    if reason is None:
        return
    if who.kind == "anonymous":
        raise Unauthorized(f"user_id {user_id}: {reason}")
    raise Forbidden(f"user_id {user_id}: {reason}")
