"""Writing Parquet files so that readers never see half of one: temp name, flush, fsync, rename."""

from __future__ import annotations

import os
import uuid

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def write_parquet_atomic(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(tmp) as sink:
        pq.write_table(table, sink, compression="zstd")
    if isinstance(fs, pafs.LocalFileSystem):
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fs.move(tmp, path)
