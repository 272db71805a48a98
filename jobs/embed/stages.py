"""The embedding job's Ray Data stages: the ``map_batches`` callables ``build`` wires (read, tokenize,
encode) and the rows of the vector files they write. ``jobs.embed.pipeline`` tells the whole story."""

from __future__ import annotations

import logging
import resource
import time
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import ray.data

from cluster.ground import ray_metrics
from cluster.ground.metrics import EMBED_DOCUMENTS, EMBED_ERRORS
from jobs.embed.chunking import chunk_document, pool_documents, token_template
from jobs.embed.encode import ModelInfo, encode_tokens, load_model, load_tokenizer, model_token_limit
from jobs.embed.recipe import TextRecipe
from storage.database import make_engine, make_session_factory, session_scope
from storage.document_files import read_row_group
from storage.embeddings import EmbeddingRepository
from storage.vector_files import DOCUMENT_ROW, VectorBatch, VectorFileStore

logger = logging.getLogger(__name__)


def _node_id() -> str:
    # Inline runs (``jobs.embed.inline``) may run in a process without Ray.
    return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else "local"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def documents_table(rows: list[Any]) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([r.id for r in rows], type=pa.int64()),
            "content_hash": pa.array([r.content_hash for r in rows], type=pa.string()),
            "title": pa.array([r.title for r in rows], type=pa.string()),
            "text": pa.array([r.text for r in rows], type=pa.string()),
        }
    )


class _PendingReader:
    def __init__(self, *, database_url: str, model_id: int, cutoff: datetime | None) -> None:
        self._engine = make_engine(database_url, pool_size=1)
        self._sessions = make_session_factory(self._engine)
        self._model_id = model_id
        self._cutoff = cutoff


class ReadPending(_PendingReader):
    """``map_batches`` callable: planned id ranges -> the documents in them that are still pending."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows: list[Any] = []
        with session_scope(self._sessions) as session:
            repo = EmbeddingRepository(session)
            for lo, hi in zip(batch.column("lo").to_pylist(), batch.column("hi").to_pylist(), strict=True):
                rows.extend(repo.pending_in_range(model_id=self._model_id, lo=lo, hi=hi, cutoff=self._cutoff))
        return documents_table(rows)


class FilterPending(_PendingReader):
    """``map_batches`` callable: Parquet row groups -> their documents that PostgreSQL says are pending."""

    def __init__(self, *, input_path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._input_path = input_path

    def __call__(self, batch: pa.Table) -> pa.Table:
        parts = [
            read_row_group(self._input_path, path, group)
            for path, group in zip(
                batch.column("path").to_pylist(), batch.column("row_group").to_pylist(), strict=True
            )
        ]
        table = pa.concat_tables(parts).cast(documents_table([]).schema)
        keys = list(
            zip(table.column("id").to_pylist(), table.column("content_hash").to_pylist(), strict=True)
        )
        with session_scope(self._sessions) as session:
            pending = EmbeddingRepository(session).pending_of(
                model_id=self._model_id, keys=keys, cutoff=self._cutoff
            )
        return table.filter(pa.array([int(k) in pending for k, _ in keys], type=pa.bool_()))


class TokenizeBatch:
    """``map_batches`` callable: documents -> token windows of the recipe's text (the model's tokenizer)."""

    def __init__(self, *, model: dict[str, Any], recipe: dict[str, Any]) -> None:
        info = ModelInfo(**model)
        self._recipe = TextRecipe.from_json(recipe)
        self._tokenizer = load_tokenizer(info)
        self._template = token_template(self._tokenizer, self._recipe.document_prefix)
        self._size = self._recipe.content_tokens(
            max_seq_length=model_token_limit(info, self._tokenizer),
            special_tokens=len(self._template.tail),
            prefix_tokens=len(self._template.head),
        )
        # Whole documents are tokenized on purpose (then windowed): no "longer than the maximum" warning.
        self._tokenizer.model_max_length = 1 << 30
        self._node = _node_id()

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = [
            self._recipe.text_of(title or "", text or "")
            for title, text in zip(
                batch.column("title").to_pylist(), batch.column("text").to_pylist(), strict=True
            )
        ]
        encoded = self._tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        input_ids: list[list[list[int]]] = []
        starts: list[list[int]] = []
        ends: list[list[int]] = []
        for ids, offsets in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True):
            chunks = chunk_document(
                ids,
                offsets,
                template=self._template,
                size=self._size,
                overlap=self._recipe.overlap,
                max_chunks=self._recipe.max_chunks,
            )
            input_ids.append([c.input_ids for c in chunks])
            starts.append([c.char_start for c in chunks])
            ends.append([c.char_end for c in chunks])
        return pa.table(
            {
                "id": batch.column("id"),
                "content_hash": batch.column("content_hash"),
                "input_ids": pa.array(input_ids, type=pa.list_(pa.list_(pa.int32()))),
                "char_start": pa.array(starts, type=pa.list_(pa.int32())),
                "char_end": pa.array(ends, type=pa.list_(pa.int32())),
                "text_chars": pa.array([len(t) for t in texts], type=pa.int32()),
                "tokenize_node": pa.array([self._node] * batch.num_rows, type=pa.string()),
            }
        )


class EncodeBatch:
    """``map_batches`` callable: one model per actor; each block becomes one durable vector file."""

    def __init__(
        self,
        *,
        model: dict[str, Any],
        model_id: int,
        storage_uri: str,
        device: str,
        batch_size: int,
        gpu_batch_size: int,
        threads: int,
    ) -> None:
        started = time.perf_counter()
        self._info = ModelInfo(**model)
        self._model = load_model(self._info, device=device, threads=threads)
        self._device = str(self._model.device.type)
        self._batch_size = gpu_batch_size if self._device == "cuda" else batch_size
        self._load_s = time.perf_counter() - started
        self._model_id = model_id
        self._store = VectorFileStore(storage_uri)
        self._node = _node_id()

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        per_doc = batch.column("input_ids").to_pylist()
        counts = np.fromiter((len(c) for c in per_doc), dtype=np.int64, count=len(per_doc))
        keep = counts > 0  # a blank document has no chunk: skipped, counted
        ids = batch.column("id").to_numpy()[keep]
        hashes = [h for h, k in zip(batch.column("content_hash").to_pylist(), keep, strict=True) if k]
        counts = counts[keep]
        flat = [chunk for chunks in per_doc for chunk in chunks]
        tokens = sum(len(c) for c in flat)
        path = ""
        rows = 0
        if len(ids):
            chunk_vectors = encode_tokens(
                self._model, flat, batch_size=self._batch_size, normalize=self._info.normalize
            )
            doc_vectors = pool_documents(chunk_vectors, counts)
            vectors = _file_rows(
                ids=ids,
                hashes=hashes,
                counts=counts,
                doc_vectors=doc_vectors,
                chunk_vectors=chunk_vectors,
                # A blank document has no chunk, so the flattened spans line up with ``flat``.
                starts=batch.column("char_start").combine_chunks().flatten().to_numpy(),
                ends=batch.column("char_end").combine_chunks().flatten().to_numpy(),
                text_chars=batch.column("text_chars").to_numpy()[keep],
            )
            path = self._store.write(model_id=self._model_id, batch=vectors)
            rows = len(vectors.document_ids)
        ray_metrics.inc(EMBED_DOCUMENTS, len(ids), model=self._info.name)
        ray_metrics.inc(EMBED_ERRORS, int((~keep).sum()), kind="blank_document")
        load_s, self._load_s = self._load_s, 0.0  # reported once per actor
        tokenize_nodes = sorted(set(batch.column("tokenize_node").to_pylist()))
        return pa.table(
            {
                "path": [path],
                "rows": [rows],
                "skipped": [int((~keep).sum())],
                "chunks": [len(flat)],
                "tokens": [tokens],
                "encode_s": [time.perf_counter() - started],
                "load_s": [load_s],
                "peak_rss_mb": [_peak_rss_mb()],
                "device": [self._device],
                "node": [self._node],
                "tokenize_nodes": pa.array([tokenize_nodes], type=pa.list_(pa.string())),
                "document_ids": pa.array([ids.tolist()], type=pa.list_(pa.int64())),
                "content_hashes": pa.array([hashes], type=pa.list_(pa.string())),
                "chunk_counts": pa.array([counts.tolist()], type=pa.list_(pa.int64())),
            }
        )


def _file_rows(
    *,
    ids: np.ndarray,
    hashes: list[str],
    counts: np.ndarray,
    doc_vectors: np.ndarray,
    chunk_vectors: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    text_chars: np.ndarray,
) -> VectorBatch:
    """Document rows for every document, then chunk rows of the documents with more than one chunk."""
    multi = counts > 1
    chunk_owner = np.repeat(np.arange(len(ids)), counts)
    chunk_no = np.concatenate([np.arange(n) for n in counts]).astype(np.int16)
    chunk_keep = multi[chunk_owner]
    return VectorBatch(
        document_ids=np.concatenate([ids, ids[chunk_owner[chunk_keep]]]),
        content_hashes=hashes + [hashes[o] for o in chunk_owner[chunk_keep]],
        vectors=np.concatenate([doc_vectors, chunk_vectors[chunk_keep]]),
        chunk=np.concatenate([np.full(len(ids), DOCUMENT_ROW, dtype=np.int16), chunk_no[chunk_keep]]),
        chunks=np.concatenate([counts, counts[chunk_owner[chunk_keep]]]).astype(np.int16),
        char_start=np.concatenate(
            [np.zeros(len(ids), dtype=np.int32), np.asarray(starts, dtype=np.int32)[chunk_keep]]
        ),
        char_end=np.concatenate(
            [np.asarray(text_chars, dtype=np.int32), np.asarray(ends, dtype=np.int32)[chunk_keep]]
        ),
    )
