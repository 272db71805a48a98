"""Vector Parquet files under the storage URI (a local folder or any pyarrow filesystem such as S3).

Schema (one row per vector)::

    document_id   int64
    content_hash  string
    vector        fixed_size_list<float32>[dimension]
    chunk         int16   -1: the document vector (mean of its chunks, normalised); 0..n-1: chunk n
    chunks        int16   how many chunks the document has
    char_start    int32   where the chunk starts in the embedded text (0 for the document vector)
    char_end      int32   where it ends (the text's length for the document vector)

Every document has one document row; a document with several chunks also has one row per chunk (a
document with one chunk has no chunk row: its document vector is its chunk vector). Files written before
chunking (three columns) read as document rows of one chunk each.

Files are written under a temporary name, flushed, then renamed, so a reader never sees half a file;
only after that does the writer commit the manifest row in PostgreSQL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from storage.atomic import write_parquet_atomic
from storage.errors import VectorFileError

#: Column holding the document id.
COL_DOCUMENT_ID = "document_id"
#: Column holding the content hash the vector was computed from.
COL_CONTENT_HASH = "content_hash"
#: Column holding the vector.
COL_VECTOR = "vector"
#: Column holding the chunk number (-1: the document vector).
COL_CHUNK = "chunk"
#: Column holding the document's number of chunks.
COL_CHUNKS = "chunks"
#: Columns holding the chunk's character span in the embedded text.
COL_CHAR_START, COL_CHAR_END = "char_start", "char_end"
#: ``chunk`` value of a document vector.
DOCUMENT_ROW = -1
#: Index keys per document in an index of chunks (``document * CHUNK_SLOTS + chunk``): the most chunks
#: a document may have.
CHUNK_SLOTS = 1024


def vector_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field(COL_DOCUMENT_ID, pa.int64(), nullable=False),
            pa.field(COL_CONTENT_HASH, pa.string(), nullable=False),
            pa.field(COL_VECTOR, pa.list_(pa.float32(), dimension), nullable=False),
            pa.field(COL_CHUNK, pa.int16(), nullable=False),
            pa.field(COL_CHUNKS, pa.int16(), nullable=False),
            pa.field(COL_CHAR_START, pa.int32(), nullable=False),
            pa.field(COL_CHAR_END, pa.int32(), nullable=False),
        ]
    )


@dataclass(frozen=True)
class VectorBatch:
    """Rows of a vector file; ``chunk``, ``chunks`` and the spans default to one document row each."""

    document_ids: np.ndarray  # int64, shape (n,)
    content_hashes: list[str]
    vectors: np.ndarray  # float32, shape (n, d)
    chunk: np.ndarray | None = None  # int16, -1 for document rows
    chunks: np.ndarray | None = None  # int16
    char_start: np.ndarray | None = None  # int32
    char_end: np.ndarray | None = None  # int32

    def __post_init__(self) -> None:
        n = len(self.document_ids)
        if len(self.content_hashes) != n or self.vectors.shape[0] != n:
            raise ValueError("document_ids, content_hashes and vectors must have the same length")
        defaults = {
            "chunk": np.full(n, DOCUMENT_ROW, dtype=np.int16),
            "chunks": np.ones(n, dtype=np.int16),
            "char_start": np.zeros(n, dtype=np.int32),
            "char_end": np.zeros(n, dtype=np.int32),
        }
        for name, default in defaults.items():
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, default)
            elif len(value) != n:
                raise ValueError(f"{name} must have one value per row")

    def select(self, mask: np.ndarray) -> VectorBatch:
        return VectorBatch(
            document_ids=self.document_ids[mask],
            content_hashes=[h for h, keep in zip(self.content_hashes, mask, strict=True) if keep],
            vectors=self.vectors[mask],
            chunk=self.column("chunk")[mask],
            chunks=self.column("chunks")[mask],
            char_start=self.column("char_start")[mask],
            char_end=self.column("char_end")[mask],
        )

    def column(self, name: str) -> np.ndarray:
        value = getattr(self, name)
        assert value is not None  # filled in __post_init__
        return np.asarray(value)


def absolute_storage_uri(uri: str) -> str:
    """A local storage path made absolute (Ray workers do not share the caller's working directory)."""
    if "://" in uri:
        return uri
    return str(Path(uri).expanduser().resolve())


def resolve_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and root path; a plain path (relative or absolute) is the local filesystem."""
    if "://" in uri:
        fs, root = pafs.FileSystem.from_uri(uri)
        return fs, root.rstrip("/")
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


class VectorFileStore:
    """Reads and writes vector files; paths it hands out are relative to the storage root."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fs, self.root = resolve_filesystem(uri)

    def _full(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def write(self, *, model_id: int, batch: VectorBatch) -> str:
        vectors = np.ascontiguousarray(batch.vectors, dtype=np.float32)
        dimension = vectors.shape[1]
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        relative = f"vectors/model={model_id}/date={day}/{uuid.uuid4().hex}.parquet"
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        table = pa.Table.from_arrays(
            [
                pa.array(np.asarray(batch.document_ids, dtype=np.int64)),
                pa.array(batch.content_hashes, type=pa.string()),
                pa.FixedSizeListArray.from_arrays(flat, dimension),
                pa.array(batch.column("chunk").astype(np.int16)),
                pa.array(batch.column("chunks").astype(np.int16)),
                pa.array(batch.column("char_start").astype(np.int32)),
                pa.array(batch.column("char_end").astype(np.int32)),
            ],
            schema=vector_schema(dimension),
        )
        write_parquet_atomic(self.fs, self._full(relative), table)
        return relative

    def read(self, relative: str) -> VectorBatch:
        try:
            table = pq.read_table(self._full(relative), filesystem=self.fs)
        except (FileNotFoundError, OSError) as exc:
            raise VectorFileError(relative, str(exc)) from exc
        if table.column_names[:3] != [COL_DOCUMENT_ID, COL_CONTENT_HASH, COL_VECTOR]:
            raise VectorFileError(relative, f"unexpected columns {table.column_names}")
        vec_col = table.column(COL_VECTOR).combine_chunks()
        dimension = vec_col.type.list_size
        values = vec_col.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        optional = {
            name: table.column(col).to_numpy() if col in table.column_names else None
            for name, col in (
                ("chunk", COL_CHUNK),
                ("chunks", COL_CHUNKS),
                ("char_start", COL_CHAR_START),
                ("char_end", COL_CHAR_END),
            )
        }
        return VectorBatch(
            document_ids=table.column(COL_DOCUMENT_ID).to_numpy().astype(np.int64, copy=False),
            content_hashes=table.column(COL_CONTENT_HASH).to_pylist(),
            vectors=values.reshape(-1, dimension),
            **optional,
        )
