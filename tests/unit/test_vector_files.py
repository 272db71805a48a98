from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from storage.errors import VectorFileError
from storage.vector_files import VectorBatch, VectorFileStore, vector_schema


def test_roundtrip_and_no_temporary_files_left(tmp_path: Path) -> None:
    store = VectorFileStore(str(tmp_path / "store"))
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    rel = store.write(
        model_id=5,
        batch=VectorBatch(
            document_ids=np.array([9, 8, 7]),
            content_hashes=["a", "b", "c"],
            vectors=vectors,
            chunk=np.array([-1, -1, 0], dtype=np.int16),
            chunks=np.array([1, 2, 2], dtype=np.int16),
            char_start=np.array([0, 0, 0], dtype=np.int32),
            char_end=np.array([10, 20, 12], dtype=np.int32),
        ),
    )
    assert rel.startswith("vectors/model=5/date=")
    batch = store.read(rel)
    assert batch.document_ids.tolist() == [9, 8, 7]
    assert batch.content_hashes == ["a", "b", "c"]
    np.testing.assert_array_equal(batch.vectors, vectors)
    assert batch.column("chunk").tolist() == [-1, -1, 0]
    assert batch.column("chunks").tolist() == [1, 2, 2]
    assert batch.column("char_end").tolist() == [10, 20, 12]
    files = [p.name for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].endswith(".parquet")
    assert pq.read_schema(tmp_path / "store" / rel) == vector_schema(4)


def test_length_mismatch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same length"):
        VectorBatch(document_ids=np.array([1]), content_hashes=["a", "b"], vectors=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="one value per row"):
        VectorBatch(
            document_ids=np.array([1]), content_hashes=["a"], vectors=np.zeros((1, 2)), chunk=np.zeros(2)
        )


def test_files_from_before_chunking_read_as_document_rows(tmp_path: Path) -> None:
    import pyarrow as pa

    table = pa.table(
        {
            "document_id": pa.array([4, 5], type=pa.int64()),
            "content_hash": ["x", "y"],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array([0.0, 1.0, 1.0, 0.0], pa.float32()), 2),
        }
    )
    (tmp_path / "old").mkdir()
    pq.write_table(table, tmp_path / "old" / "v.parquet")
    batch = VectorFileStore(str(tmp_path)).read("old/v.parquet")
    assert batch.column("chunk").tolist() == [-1, -1]
    assert batch.column("chunks").tolist() == [1, 1]


def test_missing_file_is_a_vector_file_error(tmp_path: Path) -> None:
    with pytest.raises(VectorFileError, match=r"missing\.parquet"):
        VectorFileStore(str(tmp_path)).read("missing.parquet")
