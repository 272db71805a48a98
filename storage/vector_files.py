"""Vector Parquet files under the storage URI (a local folder or any pyarrow filesystem such as S3).

Schema (one row per embedded document)::

    document_id   int64
    content_hash  string
    vector        fixed_size_list<float32>[dimension]

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


def vector_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field(COL_DOCUMENT_ID, pa.int64(), nullable=False),
            pa.field(COL_CONTENT_HASH, pa.string(), nullable=False),
            pa.field(COL_VECTOR, pa.list_(pa.float32(), dimension), nullable=False),
        ]
    )


@dataclass(frozen=True)
class VectorBatch:
    document_ids: np.ndarray  # int64, shape (n,)
    content_hashes: list[str]
    vectors: np.ndarray  # float32, shape (n, d)


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

    def write(
        self, *, model_id: int, document_ids: np.ndarray, content_hashes: list[str], vectors: np.ndarray
    ) -> str:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dimension = vectors.shape
        if len(document_ids) != n or len(content_hashes) != n:
            raise ValueError("document_ids, content_hashes and vectors must have the same length")
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        relative = f"vectors/model={model_id}/date={day}/{uuid.uuid4().hex}.parquet"
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        table = pa.Table.from_arrays(
            [
                pa.array(np.asarray(document_ids, dtype=np.int64)),
                pa.array(content_hashes, type=pa.string()),
                pa.FixedSizeListArray.from_arrays(flat, dimension),
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
        return VectorBatch(
            document_ids=table.column(COL_DOCUMENT_ID).to_numpy().astype(np.int64, copy=False),
            content_hashes=table.column(COL_CONTENT_HASH).to_pylist(),
            vectors=values.reshape(-1, dimension),
        )
