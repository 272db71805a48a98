"""`pulse submit` and `pulse jobs` against a real `ray start --head` node's job server.

The node is started here with the flags and environment `pulse up` uses (cluster.top.platform
start_ray_head), with its own ports and its own RAY_TMPDIR (so no other process's ``ray.init()`` finds it),
and stopped by port in a ``finally``. The CLI runs as a subprocess of .venv/bin/pulse and talks to the job
server over HTTP only: this module does not use the ``ray_session`` fixture.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray.job_submission import JobStatus
from sqlalchemy import text

from cluster.ground.job_specs import JOB_METADATA_KIND
from cluster.top.jobs_cli import connect
from storage.database import make_engine
from tests.support.ray_node import head_node

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCUMENTS = 20


@pytest.fixture(scope="module")
def job_server() -> Iterator[str]:
    """A local head node with the dashboard (the job server); its URL."""
    with head_node(prefix="pjs") as node:
        yield node.job_server


def pulse(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pulse"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_submit_embed_list_logs_refuse_and_stop(job_server: str, clean_db: str, tmp_path: Path) -> None:
    from jobs.ingest.loader import ingest_file

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(
        "".join(
            json.dumps(
                {"id": f"job-{i}", "title": f"Headline {i}", "text": f"Short story number {i} of a test."}
            )
            + "\n"
            for i in range(DOCUMENTS)
        )
    )
    assert ingest_file(corpus, database_url=clean_db).counts.inserted == DOCUMENTS
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "RAY_ADDRESS"))},
        "PULSE_DATABASE__URL": clean_db,
        "PULSE_STORAGE__URI": str(tmp_path / "storage"),
        "PULSE_VAR_DIR": str(tmp_path / "var"),
        "PULSE_JOBS__ADDRESS": job_server,
        "PULSE_EMBED__MAX_ACTORS": "1",
    }

    # Submit and wait: the job runs `python -m jobs.embed` on the node and succeeds.
    done = pulse("submit", "embed", "--no-progress", "--wait", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.splitlines()[0].strip()
    assert job_id.startswith("pulse-embed-"), done.stdout
    assert f"{DOCUMENTS} embedded" in done.stdout, done.stdout
    assert f"job {job_id}: SUCCEEDED" in done.stderr

    engine = make_engine(clean_db, pool_size=1)
    try:
        with engine.connect() as conn:
            vectors = conn.execute(
                text("SELECT count(DISTINCT document_id) FROM document_embeddings")
            ).scalar()
    finally:
        engine.dispose()
    assert vectors == DOCUMENTS

    # Another kind, with arguments: the index shards rebuilt from the files the embed job wrote.
    rebuilt = pulse("submit", "reindex", "--wait", "--", "--shards", "2", env=env)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert f"2 shard(s) rebuilt, 0 up to date, {DOCUMENTS} vectors" in rebuilt.stdout, rebuilt.stdout
    assert (
        tmp_path / "storage" / "snapshots" / "model=1" / "document" / "shard-1-of-2" / "CURRENT"
    ).is_file()

    listed = pulse("jobs", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if job_id in line)
    assert "embed" in row and "SUCCEEDED" in row and "python -m jobs.embed --no-progress" in row

    logs = pulse("jobs", "logs", job_id, env=env)
    assert logs.returncode == 0, logs.stderr
    assert f"{DOCUMENTS} embedded" in logs.stdout and "embed: model" in logs.stdout

    unknown = pulse("jobs", "logs", "pulse-embed-nosuchjob", env=env)
    assert unknown.returncode == 1
    assert "no job 'pulse-embed-nosuchjob'" in unknown.stderr

    # Never two copies: while an embed job runs (a sleeping stand-in recorded as kind embed, so the test
    # does not race a 20-document embed), a second submit is refused, naming it.
    client = connect(job_server, "the test's node")
    blocker = client.submit_job(entrypoint="sleep 120", metadata={JOB_METADATA_KIND: "embed"})
    deadline = time.monotonic() + 60
    while client.get_job_status(blocker) != JobStatus.RUNNING:
        assert time.monotonic() < deadline, client.get_job_info(blocker)
        time.sleep(0.5)
    refused = pulse("submit", "embed", env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert blocker in refused.stderr and "--allow-concurrent" in refused.stderr

    stopped = pulse("jobs", "stop", blocker, env=env)
    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 60
    while client.get_job_status(blocker) != JobStatus.STOPPED:
        assert time.monotonic() < deadline, client.get_job_info(blocker)
        time.sleep(0.5)
