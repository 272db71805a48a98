"""Raw fetch records under the storage URI, as Parquet partitioned by fetch date.

One file per batch of fetches: ``raw/date=YYYY-MM-DD/run=<run id>/<uuid>.parquet``. The body is kept
as fetched (bytes) so pages can be re-extracted later without fetching them again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import write_parquet_atomic
from storage.vector_files import resolve_filesystem

#: Schema of a raw fetch record.
RAW_SCHEMA = pa.schema(
    [
        pa.field("url", pa.string(), nullable=False),
        pa.field("final_url", pa.string()),
        pa.field("source_id", pa.int32()),
        pa.field("kind", pa.string()),
        pa.field("status", pa.int32()),
        pa.field("error", pa.string()),
        pa.field("content_type", pa.string()),
        pa.field("charset", pa.string()),
        pa.field("etag", pa.string()),
        pa.field("last_modified", pa.string()),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC")),
        pa.field("elapsed_s", pa.float64()),
        pa.field("body", pa.binary()),
    ]
)


class RawFileStore:
    def __init__(self, uri: str) -> None:
        self.fs, self.root = resolve_filesystem(uri)

    def write(self, records: Sequence[dict[str, Any]], *, run_id: int, day: datetime) -> str | None:
        """Write one batch of records; returns the path relative to the storage root."""
        if not records:
            return None
        table = pa.Table.from_pylist(
            [{name: rec.get(name) for name in RAW_SCHEMA.names} for rec in records], schema=RAW_SCHEMA
        )
        relative = f"raw/date={day:%Y-%m-%d}/run={run_id}/{uuid.uuid4().hex}.parquet"
        write_parquet_atomic(self.fs, f"{self.root}/{relative}", table)
        return relative

    def read(self, relative: str) -> pa.Table:
        return pq.read_table(f"{self.root}/{relative}", filesystem=self.fs)

    def paths(self) -> list[str]:
        from pyarrow.fs import FileSelector

        try:
            infos = self.fs.get_file_info(FileSelector(f"{self.root}/raw", recursive=True))
        except FileNotFoundError:
            return []
        prefix = len(self.root) + 1
        return sorted(i.path[prefix:] for i in infos if i.path.endswith(".parquet"))
