"""Activating a model entry: re-embed everything for it in the background, then switch search to it.

``activate_entry`` is the plain procedure: mark the entry ``building``, run the embedding job for it
until a pass finds nothing new, then make it the index's active entry in one transaction (the entry it
replaces becomes ``retired``). Search keeps serving the previous entry's complete index all along; the
search ingress moves to the new entry's index only once that index has loaded every committed file
(``serve_apps/search/app.py``), so no query ever sees a half-built index. Afterwards the retired entry's
index actors are stopped once the new index is ready.

``ActivationActor`` runs it on the cluster as a named, detached actor that Ray restarts after a crash;
the procedure is idempotent (embedding resumes from what is committed), so a restart just goes on.
The actor lives here rather than in ``actors/`` because it drives a job (``actors`` never import
``jobs``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import ray
from ray.actor import ActorClass, ActorProxy

from actors.index_stats import ShardStats
from cluster.ground.constants import activation_actor_name
from jobs.embed.notify import index_actors
from jobs.embed.pipeline import EmbedJobConfig, EmbedSummary, run_embed
from storage.database import make_engine, make_session_factory, session_scope
from storage.model_registry import ModelRegistry, ModelRow

logger = logging.getLogger(__name__)

#: Embedding passes before switching even if documents keep arriving (the next incremental embed of
#: the active model picks up the rest).
MAX_PASSES = 5


@dataclass(frozen=True)
class ActivationResult:
    model_id: int
    replaced: int | None  # the entry that was active before, if any
    passes: list[EmbedSummary]
    seconds: float

    def line(self) -> str:
        embedded = sum(p.embedded for p in self.passes)
        before = f"entry {self.replaced}" if self.replaced is not None else "nothing"
        return (
            f"activate: entry {self.model_id} is active ({embedded} documents embedded in "
            f"{len(self.passes)} passes, {self.seconds:.1f} s); it replaced {before}"
        )


def activate_entry(
    cfg: EmbedJobConfig, *, namespace: str, ready_timeout_s: float = 600.0
) -> ActivationResult:
    """Embed for ``cfg.model_id`` until complete, then switch; returns once the switch is committed."""
    if cfg.model_id is None:
        raise ValueError("activate_entry needs cfg.model_id")
    started = time.perf_counter()
    engine = make_engine(cfg.database_url, pool_size=1)
    sessions = make_session_factory(engine)
    try:
        with session_scope(sessions) as session:
            registry = ModelRegistry(session)
            entry = registry.get(cfg.model_id)
            registry.request_activation(entry.id)
        passes: list[EmbedSummary] = []
        for _ in range(MAX_PASSES):
            summary = run_embed(replace(cfg, full=False))
            passes.append(summary)
            logger.info("activation of entry %d: %s", entry.id, summary.line())
            if summary.embedded == 0:
                break
        with session_scope(sessions) as session:
            replaced = ModelRegistry(session).switch_active(entry.id)
    finally:
        engine.dispose()
    if replaced is not None:
        threading.Thread(
            target=retire_indexes,
            args=(replaced, entry.id, namespace, ready_timeout_s),
            name=f"retire-{replaced.id}",
            daemon=True,
        ).start()
    return ActivationResult(
        entry.id, replaced.id if replaced else None, passes, time.perf_counter() - started
    )


def retire_indexes(replaced: ModelRow, new_id: int, namespace: str, timeout_s: float) -> None:
    """Stop the retired entry's index actors once the new entry's document index is ready.

    Without a search app running nobody creates the new index, and the old actors (if any) stay.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats: list[ShardStats] = []
        try:
            actors = index_actors(new_id, namespace)
            stats = ray.get([a.stats.remote() for a in actors], timeout=10)
        except ray.exceptions.RayError:
            stats = []
        if stats and all(s.ready for s in stats):
            break
        time.sleep(2)
    else:
        return
    time.sleep(15)  # let every ingress replica notice the switch before the old index goes
    for actor in index_actors(replaced.id, namespace):
        ray.kill(actor)


class ActivationRunner:
    """Runs ``activate_entry`` in a thread from the constructor, so a restarted actor simply resumes."""

    def __init__(self, cfg: EmbedJobConfig, namespace: str) -> None:
        self._cfg = cfg
        self._namespace = namespace
        self._state: dict[str, Any] = {"model_id": cfg.model_id, "status": "running", "error": None}
        self._thread = threading.Thread(target=self._run, name="activation", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            result = activate_entry(self._cfg, namespace=self._namespace)
            self._state.update(status="done", line=result.line())
        except Exception as exc:  # reported through status(); the entry stays `building`
            logger.exception("activation of entry %s failed", self._cfg.model_id)
            self._state.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        # The work is over either way: free the name so a later activation starts afresh.
        time.sleep(5)  # leave status() answerable to a waiting CLI for a moment
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    @ray.method  # types ``handle.status.remote()``
    def status(self) -> dict[str, Any]:
        return dict(self._state)


#: Ray options of the activation actor: detached, restarted after a crash, using no CPU itself (the
#: embedding job it drives reserves its own).
ACTIVATION_ACTOR_OPTIONS: dict[str, Any] = {
    "lifetime": "detached",
    "max_restarts": -1,
    "num_cpus": 0,
    "max_concurrency": 4,
}

ActivationActor: ActorClass[ActivationRunner] = ray.remote(ActivationRunner)


def resume_activations(cfg: EmbedJobConfig, namespace: str) -> list[int]:
    """Relaunch the activations a cluster restart cut off (entries asked for but not switched yet)."""
    engine = make_engine(cfg.database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            entries = ModelRegistry(session).requested_activations()
    finally:
        engine.dispose()
    for entry in entries:
        launch_activation(replace(cfg, model_id=entry.id, progress=False), namespace)
    return [e.id for e in entries]


def launch_activation(cfg: EmbedJobConfig, namespace: str) -> ActorProxy[ActivationRunner]:
    """The entry's activation actor, started unless one already runs (get-or-create)."""
    if cfg.model_id is None:
        raise ValueError("launch_activation needs cfg.model_id")
    return ActivationActor.options(
        name=activation_actor_name(cfg.model_id),
        namespace=namespace,
        get_if_exists=True,
        **ACTIVATION_ACTOR_OPTIONS,
    ).remote(cfg, namespace)
