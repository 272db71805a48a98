"""The embed job's driver killed mid-run, then run again (issue 20, part 1 (f)).

``python -m jobs.embed`` (the `pulse embed` command as ``ray job submit`` runs it) embeds 1,200 sample
documents against the session's Ray; once it has committed a few vector files its whole process group gets
SIGKILL (no cleanup runs), and the same command runs again to the end. A clean run of the same command on
the same documents in a sibling database is the reference. The test proves:

- every document ends with exactly one current vector, with the same chunk count as the clean run
  (0 lost, 0 duplicated, read through the manifest as an index shard reads it);
- the manifest is consistent: ids increase, every listed file exists, every ``document_embeddings`` row
  points at a listed file holding that document; files the killed driver wrote but never committed are
  counted (``orphan_files``) and never read;
- no run stays ``running``: the killed run is marked ``interrupted`` by the next run's start, which is
  ``done``.

Figure ``chaos`` (scenario ``job_driver``): lost, duplicated, rerun_s, killed_after_files, orphan_files,
runs. Measured 132 s on 2 cores shared at load average ~20 (three embed runs of 1,200 documents, each
starting Ray Data actors and loading the model).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from sqlalchemy import text

from jobs.ingest.loader import ingest_file
from storage.database import drop_database, ensure_database, make_engine
from storage.migrate import upgrade
from storage.vector_files import VectorFileStore
from storage.vector_source import ManifestVectorSource
from tests.conftest import ROOT, sibling_database
from tests.integration.helpers import sample_subset

pytestmark = [pytest.mark.chaos, pytest.mark.long]  # ~2.5 min: `pytest -m chaos`, not CI

DOCUMENTS = 1200


def query(url: str, sql: str) -> list[Any]:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)).all())
    finally:
        engine.dispose()


def _env(url: str, storage: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env.update(
        {
            "PULSE_DATABASE__URL": url,
            "PULSE_STORAGE__URI": str(storage),
            "PULSE_VAR_DIR": str(tmp_path / "var"),
            "PULSE_RAY__NAMESPACE": "pulse-chaos-driver",
            "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "RAY_AUTH_MODE": "token",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


def _embed(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.embed", "--no-progress"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: SIGKILL reaches the driver and its children
    )


@pytest.fixture
def reference(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A sibling database for the clean run (dropped afterwards)."""
    url = sibling_database(database_url, "_driver_clean")
    ensure_database(url)
    upgrade(url)
    try:
        yield url
    finally:
        drop_database(url)


def _vectors(url: str, storage: Path) -> tuple[dict[int, int], dict[int, int]]:
    """``(vectors per document, chunk count per document)`` read through the manifest, as a shard does."""
    [(model_id,)] = query(url, "SELECT id FROM embedding_models")
    source = ManifestVectorSource(database_url=url, storage_uri=str(storage), model_id=model_id)
    per_doc: dict[int, int] = {}
    try:
        for update in source.updates_after(0):
            for doc in update.document_ids.tolist():
                per_doc[int(doc)] = per_doc.get(int(doc), 0) + 1
    finally:
        source.close()
    chunks = {
        int(d): int(c) for d, c in query(url, "SELECT document_id, chunk_count FROM document_embeddings")
    }
    return per_doc, chunks


def _manifest_problems(url: str, storage: Path) -> tuple[list[str], int]:
    """What is inconsistent in the manifest, and how many files on disk it does not list."""
    files = query(url, "SELECT id, path FROM vector_files ORDER BY id")
    store = VectorFileStore(str(storage))
    problems = []
    held: dict[int, set[int]] = {}
    for file_id, path in files:
        try:
            held[file_id] = set(store.read(path).document_ids.tolist())
        except Exception as exc:
            problems.append(f"file {file_id} ({path}): {exc}")
    for doc, file_id in query(url, "SELECT document_id, file_id FROM document_embeddings"):
        if doc not in held.get(file_id, set()):
            problems.append(f"document {doc} points at file {file_id}, which does not hold it")
    listed = {Path(p).name for _, p in files}
    on_disk = [p for p in storage.rglob("*.parquet")]
    orphans = sum(1 for p in on_disk if p.name not in listed)
    return problems, orphans


def test_embed_driver_killed_mid_run_then_rerun(
    clean_db: str, reference: str, ray_session: None, tmp_path: Path, figure: Any
) -> None:
    corpus = sample_subset(tmp_path / "driver_kill.jsonl", n_other=DOCUMENTS, must_contain=())
    for url in (clean_db, reference):
        ingest_file(corpus, database_url=url, source_name="huffpost_2018")
    expected = query(clean_db, "SELECT count(*) FROM documents")[0][0]
    assert expected == query(reference, "SELECT count(*) FROM documents")[0][0] > DOCUMENTS - 50

    storage = tmp_path / "killed"
    env = _env(clean_db, storage, tmp_path)
    job = _embed(env)
    deadline = time.monotonic() + 120
    files = 0
    while files < 3:
        if job.poll() is not None:
            pytest.fail(f"the embed job ended before it was killed:\n{job.communicate()[0].decode()[-3000:]}")
        assert time.monotonic() < deadline, "the embed job committed no 3 files in 120 s"
        time.sleep(0.1)
        files = query(clean_db, "SELECT count(*) FROM vector_files")[0][0]
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    killed_after = query(clean_db, "SELECT count(*) FROM vector_files")[0][0]
    embedded_before = query(clean_db, "SELECT count(*) FROM document_embeddings")[0][0]
    assert embedded_before < expected, "the job finished before the kill: nothing was tested"
    assert query(clean_db, "SELECT status FROM embed_runs") == [("running",)]  # nobody marked it yet

    started = time.monotonic()
    rerun = subprocess.run(
        [sys.executable, "-m", "jobs.embed", "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    rerun_s = time.monotonic() - started
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]

    clean_storage = tmp_path / "clean"
    clean = subprocess.run(
        [sys.executable, "-m", "jobs.embed", "--no-progress"],
        cwd=ROOT, env=_env(reference, clean_storage, tmp_path), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]

    killed_vectors, killed_chunks = _vectors(clean_db, storage)
    clean_vectors, clean_chunks = _vectors(reference, clean_storage)
    # Documents are compared by their natural key (their canonical URL): the two databases number them alike
    # only by chance.
    ids = {i: u for i, u in query(clean_db, "SELECT id, canonical_url FROM documents")}
    clean_ids = {i: u for i, u in query(reference, "SELECT id, canonical_url FROM documents")}
    by_url = {ids[d]: (n, killed_chunks.get(d)) for d, n in killed_vectors.items()}
    clean_by_url = {clean_ids[d]: (n, clean_chunks.get(d)) for d, n in clean_vectors.items()}
    lost = len(set(clean_by_url) - set(by_url))
    duplicated = sum(n - 1 for n, _ in by_url.values() if n > 1)
    problems, orphans = _manifest_problems(clean_db, storage)
    runs = [s for (s,) in query(clean_db, "SELECT status FROM embed_runs ORDER BY id")]
    figure(
        "chaos",
        scenario="job_driver",
        requests=0,
        failed_requests=0,
        recovery_s=round(rerun_s, 2),
        rerun_s=round(rerun_s, 2),
        documents=expected,
        killed_after_files=killed_after,
        embedded_before_kill=embedded_before,
        lost=lost,
        duplicated=duplicated,
        orphan_files=orphans,
        manifest_problems=len(problems),
        runs=runs,
    )
    assert len(clean_by_url) == expected
    assert lost == 0 and duplicated == 0
    assert by_url == clean_by_url  # one vector per document, the clean run's chunk count for each
    assert problems == []
    ids_in_order = [i for (i,) in query(clean_db, "SELECT id FROM vector_files ORDER BY created_at, id")]
    assert ids_in_order == sorted(ids_in_order)  # the watermark only grows
    assert runs == ["interrupted", "done"]
