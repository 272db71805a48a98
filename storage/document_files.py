"""Documents exported to Parquet (``id, content_hash, title, text``): the embedding job's other input.

A file or a folder of files on any pyarrow filesystem; the unit of parallel reading is one row group.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from storage.errors import DocumentFileError
from storage.vector_files import resolve_filesystem

#: Columns a document file must have.
DOCUMENT_FILE_COLUMNS = ("id", "content_hash", "title", "text")


@dataclass(frozen=True)
class RowGroupRef:
    path: str  # full path on the filesystem of the input URI
    row_group: int
    rows: int


def list_row_groups(uri: str) -> list[RowGroupRef]:
    """Every row group of the Parquet files at ``uri`` (a file or a folder, searched recursively)."""
    fs, root = resolve_filesystem(uri)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise DocumentFileError(uri, "no such file or folder")
    if info.type == pafs.FileType.File:
        paths = [root]
    else:
        selector = pafs.FileSelector(root, recursive=True)
        paths = sorted(f.path for f in fs.get_file_info(selector) if f.path.endswith(".parquet"))
    refs: list[RowGroupRef] = []
    for path in paths:
        with fs.open_input_file(path) as fh:
            meta = pq.ParquetFile(fh).metadata
            missing = set(DOCUMENT_FILE_COLUMNS) - set(meta.schema.names)
            if missing:
                raise DocumentFileError(path, f"missing columns {', '.join(sorted(missing))}")
            refs.extend(RowGroupRef(path, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups))
    if not refs:
        raise DocumentFileError(uri, "no Parquet files")
    return refs


def read_row_group(uri: str, path: str, row_group: int) -> pa.Table:
    """One row group's document columns."""
    fs, _ = resolve_filesystem(uri)
    with fs.open_input_file(path) as fh:
        return pq.ParquetFile(fh).read_row_group(row_group, columns=list(DOCUMENT_FILE_COLUMNS))
