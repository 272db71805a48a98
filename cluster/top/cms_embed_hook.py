"""The CMS scheduler's embedding hook: after its search sync wrote or deleted documents, embed the new
ones incrementally and hint the index actors.

The scheduler actor (``actors.cms_scheduler_actor``) cannot import this module (``actors`` never import
``jobs``), so the caller that starts it passes an ``EmbedCmsDocuments`` as ``on_documents_changed``; it is
a frozen dataclass of plain values, so Ray pickles it into the actor. The actor calls it from a worker
thread, never two at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from jobs.embed.notify import notify_index
from jobs.embed.pipeline import EmbedJobConfig, EmbedSummary, run_embed
from storage.database import make_engine, make_session_factory, session_scope
from storage.model_registry import ModelRegistry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedCmsDocuments:
    """Embed documents lacking vectors for the index's active entry (``job.model_name`` when there is
    none yet, or ``job.model_id`` when set), then tell that entry's index actors."""

    job: EmbedJobConfig
    namespace: str

    def _model_id(self) -> int | None:
        if self.job.model_id is not None:
            return self.job.model_id
        engine = make_engine(self.job.database_url, pool_size=1)
        try:
            with session_scope(make_session_factory(engine)) as session:
                active = ModelRegistry(session).active(self.job.index_name)
        finally:
            engine.dispose()
        return active.id if active else None

    def __call__(self) -> EmbedSummary:
        cfg = replace(self.job, model_id=self._model_id(), full=False, progress=False, input_path=None)
        summary = run_embed(cfg)
        logger.info("cms documents: %s", summary.line())
        notify_index(summary, self.namespace)
        return summary
