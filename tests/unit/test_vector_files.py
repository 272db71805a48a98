from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from storage.errors import VectorFileError
from storage.vector_files import VectorFileStore, vector_schema


def test_roundtrip_and_no_temporary_files_left(tmp_path: Path) -> None:
    store = VectorFileStore(str(tmp_path / "store"))
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    rel = store.write(
        model_id=5, document_ids=np.array([9, 8, 7]), content_hashes=["a", "b", "c"], vectors=vectors
    )
    assert rel.startswith("vectors/model=5/date=")
    batch = store.read(rel)
    assert batch.document_ids.tolist() == [9, 8, 7]
    assert batch.content_hashes == ["a", "b", "c"]
    np.testing.assert_array_equal(batch.vectors, vectors)
    files = [p.name for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].endswith(".parquet")
    assert pq.read_schema(tmp_path / "store" / rel) == vector_schema(4)


def test_length_mismatch_is_refused(tmp_path: Path) -> None:
    store = VectorFileStore(str(tmp_path))
    with pytest.raises(ValueError, match="same length"):
        store.write(
            model_id=1, document_ids=np.array([1]), content_hashes=["a", "b"], vectors=np.zeros((1, 2))
        )


def test_missing_file_is_a_vector_file_error(tmp_path: Path) -> None:
    with pytest.raises(VectorFileError, match=r"missing\.parquet"):
        VectorFileStore(str(tmp_path)).read("missing.parquet")
