"""`pulse backfill` (a dump from a filesystem URI, loaded then embedded) and `pulse reindex` (each index
shard rebuilt from the vector files as a Ray task, its snapshot written), both run twice: the second run
does nothing, as a resumed or repeated job must."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cluster.ground.settings import get_settings
from storage.index_snapshots import SnapshotStore
from tests.integration.helpers import cli_runner

DOCUMENTS = 12


@pytest.fixture
def pulse(  # type: ignore[no-untyped-def]
    ray_session: None,
    clean_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator:
    monkeypatch.setenv("PULSE_DATABASE__URL", clean_db)
    monkeypatch.setenv("PULSE_STORAGE__URI", str(tmp_path / "storage"))
    monkeypatch.setenv("PULSE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PULSE_EMBED__MAX_ACTORS", "1")
    monkeypatch.setenv("PULSE_RAY__PLACEMENT_TIMEOUT_S", "60")
    get_settings.cache_clear()
    yield cli_runner(capsys)
    get_settings.cache_clear()


def test_backfill_from_a_uri_then_reindex_twice(pulse, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dump = tmp_path / "dumps" / "archive_2019.jsonl"
    dump.parent.mkdir()
    dump.write_text(
        "".join(
            json.dumps({"id": f"old-{i}", "title": f"Archive {i}", "text": f"An old story, number {i}."})
            + "\n"
            for i in range(DOCUMENTS)
        )
    )
    uri = dump.as_uri()  # file:///...: read through pyarrow.fs like s3://

    code, out, err = pulse("backfill", "--file", uri, "--no-progress")
    assert code == 0, err
    assert "(source archive_2019)" in out
    assert f"backfill {uri}: {DOCUMENTS} new, 0 updated, 0 unchanged, 0 rejected; {DOCUMENTS} embedded" in out

    code, out, err = pulse("backfill", "--file", uri, "--no-progress")
    assert code == 0, err
    assert f"0 new, 0 updated, {DOCUMENTS} unchanged, 0 rejected; 0 embedded" in out

    with pytest.raises(SystemExit) as stopped:  # a click error: message on stderr, exit 1
        pulse("backfill", "--file", str(tmp_path / "missing.jsonl"), "--no-embed")
    assert stopped.value.code == 1

    code, out, err = pulse("reindex")
    assert code == 0, err
    assert "reindex: model 1: 1 shard(s) rebuilt, 0 up to date, 12 vectors" in out, out
    store = SnapshotStore(str(tmp_path / "storage"))
    loaded = store.load("model=1/document/shard-0-of-1")
    assert loaded is not None
    arrays, info = loaded
    assert int(np.count_nonzero(arrays["live"])) == DOCUMENTS and info["live_vectors"] == DOCUMENTS

    code, out, err = pulse("reindex")  # nothing changed: every shard is up to date
    assert code == 0, err
    assert "0 shard(s) rebuilt, 1 up to date" in out, out
    assert store.current_info("model=1/document/shard-0-of-1")["stamp"] == info["stamp"]  # type: ignore[index]

    code, out, err = pulse("reindex", "--shards", "2")
    assert code == 0, err
    assert "2 shard(s) rebuilt" in out and f"{DOCUMENTS} vectors" in out, out
    halves = [store.load(f"model=1/document/shard-{s}-of-2") for s in (0, 1)]
    assert sum(int(np.count_nonzero(h[0]["live"])) for h in halves if h) == DOCUMENTS
