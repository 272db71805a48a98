"""Small deltas embedded in the calling process, with a model it keeps loaded (``EmbedJobConfig.inline_max``).

A CMS edit changes one or a few documents. Starting the Ray Data pipeline for them (three actor pools,
a model loaded in a fresh encoder) takes seconds and leaves a trail in Ray's control store: every run
registers actors and tasks the GCS keeps for its history, so a scheduler that embeds after every few edits
made the GCS grow all day (the soak, ``bench/soak.py``, measured +58 % in 10 minutes). With ``inline_max``
set, a run whose pending documents number at most that many goes through the same read, tokenize and
encode stages (``jobs.embed.stages``) right here, one block, one vector file, and the manifest rows are
committed by the caller exactly as for the pipeline (``jobs.embed.pipeline._run_locked``).

The stages are built once per process and model entry and kept: the first inline run loads the model
(about 1 s; the process then holds some 900 MB more with torch and all-MiniLM-L6-v2 on CPU, measured
over 80 runs in fresh threads), later ones reuse it. Only the newest entry's stages are kept, so
activating another model frees the old one. Encoding uses one thread and small batches
(``INLINE_BATCH``): the callers that set ``inline_max`` (the CMS scheduler actor) reserve no CPU.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from jobs.embed.encode import ModelInfo
from jobs.embed.stages import EncodeBatch, TokenizeBatch, documents_table
from storage.database import session_scope
from storage.embeddings import EmbeddingRepository
from storage.model_registry import ModelRow

#: Torch threads of the inline encoder.
INLINE_THREADS = 1
#: Chunks per forward pass inline on CPU: small, so a delta of long pages does not raise the caller's peak.
INLINE_BATCH = 16


@dataclass(frozen=True)
class _Key:
    model_id: int
    recipe: str
    storage_uri: str
    device: str
    batch_size: int


@dataclass
class _Stages:
    key: _Key
    tokenize: TokenizeBatch
    encode: EncodeBatch


_lock = threading.Lock()
_kept: _Stages | None = None


def _stages(key: _Key, *, info: ModelInfo, entry: ModelRow, gpu_batch_size: int) -> _Stages:
    global _kept
    if _kept is None or _kept.key != key:
        _kept = None  # the old model is freed before the new one loads
        _kept = _Stages(
            key=key,
            tokenize=TokenizeBatch(model=asdict(info), recipe=entry.recipe),
            encode=EncodeBatch(
                model=asdict(info),
                model_id=entry.id,
                storage_uri=key.storage_uri,
                device=key.device,
                batch_size=min(key.batch_size, INLINE_BATCH),
                gpu_batch_size=gpu_batch_size,
                threads=INLINE_THREADS,
            ),
        )
    return _kept


def embed_inline(
    sessions: Any,
    *,
    info: ModelInfo,
    entry: ModelRow,
    storage_uri: str,
    device: str,
    batch_size: int,
    gpu_batch_size: int,
) -> Iterator[dict[str, Any]]:
    """Embed every pending document of ``entry`` (no cutoff) in this process: yields the encode stage's
    row (the vector file written and its documents), as the pipeline's ``iter_rows`` does; nothing when no
    document is pending any more."""
    with session_scope(sessions) as session:
        repo = EmbeddingRepository(session)
        rows = [
            doc
            for r in list(repo.plan_ranges(model_id=entry.id, rows_per_range=1 << 30))
            for doc in repo.pending_in_range(model_id=entry.id, lo=r.lo, hi=r.hi)
        ]
    if not rows:
        return
    key = _Key(entry.id, json.dumps(entry.recipe, sort_keys=True), storage_uri, device, batch_size)
    with _lock:  # one inline run at a time per process: the stages are shared
        stages = _stages(key, info=info, entry=entry, gpu_batch_size=gpu_batch_size)
        out = stages.encode(stages.tokenize(documents_table(rows)))
    yield from out.to_pylist()


def loaded_model_id() -> int | None:
    """The model entry whose stages this process keeps (None: none loaded)."""
    return _kept.key.model_id if _kept is not None else None
