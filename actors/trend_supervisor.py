"""The trend supervisor: a small detached actor that starts a clusterer for every partition as documents
arrive. `pulse up` may run before any document exists (`--no-sample`), and a language (or an active model)
can appear at any time: every ``poll_interval_s`` it reads the active model and the languages documents
have, and gets or creates the clusterer of each (language, source group) from a template config.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

import ray
from ray.actor import ActorClass, ActorProxy

from actors.trend_actor import TrendActorConfig, get_or_create_trend_actor
from cluster.ground.constants import TREND_ACTOR_PREFIX
from storage.database import make_engine, make_session_factory, session_scope
from storage.model_registry import ModelRegistry
from storage.trend_derived import (
    document_languages,
)
from storage.trends import (
    DEFAULT_SOURCE_GROUP,
)

logger = logging.getLogger(__name__)

#: Name of the supervisor actor.
TREND_SUPERVISOR_NAME = f"{TREND_ACTOR_PREFIX}-supervisor"


class TrendSupervisor:
    def __init__(self, template: TrendActorConfig) -> None:
        self._template = template
        self._engine = make_engine(template.database_url, pool_size=1)
        self._sessions = make_session_factory(self._engine)
        self._started: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trend-supervisor", daemon=True)
        self._thread.start()

    def _configs(self) -> list[TrendActorConfig]:
        with session_scope(self._sessions) as session:
            active = ModelRegistry(session).active()
            languages = document_languages(session)
        if active is None:
            return []
        groups = [DEFAULT_SOURCE_GROUP, *sorted(self._template.source_groups)]
        return [
            dataclasses.replace(self._template, model_id=active.id, language=language, source_group=group)
            for language in languages
            for group in groups
        ]

    def _ensure(self) -> list[str]:
        started = []
        for config in self._configs():
            name = f"{config.model_id}/{config.key}"
            handle = get_or_create_trend_actor(config)
            if name not in self._started:
                handle.catch_up.remote()
                self._started.add(name)
                started.append(name)
                logger.info("trend clusterer %s started", name)
        return started

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._ensure()
            except Exception:  # keep supervising; the next round retries
                logger.exception("trend supervisor: could not start the clusterers")
            self._stop.wait(self._template.poll_interval_s)

    # Typed through a handle by ``@ray.method``.
    @ray.method
    def ensure(self) -> list[str]:
        """Start what is missing now; the partitions started by this call (``model/key``)."""
        return self._ensure()


TrendSupervisorActor: ActorClass[TrendSupervisor] = ray.remote(TrendSupervisor)


def get_or_create_trend_supervisor(template: TrendActorConfig) -> ActorProxy[TrendSupervisor]:
    return TrendSupervisorActor.options(
        name=TREND_SUPERVISOR_NAME,
        namespace=template.namespace,
        get_if_exists=True,
        num_cpus=0,
        max_restarts=-1,
        max_task_retries=3,
        lifetime="detached",
    ).remote(template)
