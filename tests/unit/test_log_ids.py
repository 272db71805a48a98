"""A job run by ``ray job submit`` passes its submission id to its workers, whose log records carry it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from cluster.ground.runtime import SUBMISSION_ID_ENV, submission_id, tag_submission_id, worker_logging


def _job_config(metadata: object) -> dict[str, str]:
    return {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": {}, "metadata": metadata})}


@pytest.fixture
def record_factory() -> Iterator[None]:
    saved = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(saved)


def test_submission_id_comes_from_the_job_config_ray_job_submit_hands_the_driver() -> None:
    assert submission_id(_job_config({"job_submission_id": "raysubmit_abc"})) == "raysubmit_abc"
    assert submission_id(_job_config({})) is None
    assert submission_id(_job_config(None)) is None
    assert submission_id({"RAY_JOB_CONFIG_JSON_ENV_VAR": "not json"}) is None
    assert submission_id({}) is None


def test_workers_of_a_submitted_job_get_its_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "RAY_JOB_CONFIG_JSON_ENV_VAR",
        _job_config({"job_submission_id": "raysubmit_x"})["RAY_JOB_CONFIG_JSON_ENV_VAR"],
    )
    assert worker_logging(None, "INFO")["runtime_env"]["env_vars"] == {SUBMISSION_ID_ENV: "raysubmit_x"}
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    assert "env_vars" not in worker_logging(None, "INFO")["runtime_env"]


def test_records_carry_the_submission_id_once_tagged(record_factory: None) -> None:
    tag_submission_id({})
    assert not hasattr(logging.makeLogRecord({}), "submission_id")
    record = logging.getLogger("probe").makeRecord("probe", logging.INFO, "f", 1, "m", None, None)
    assert not hasattr(record, "submission_id")
    tag_submission_id({SUBMISSION_ID_ENV: "raysubmit_y"})
    tag_submission_id({SUBMISSION_ID_ENV: "raysubmit_y"})  # a second call wraps nothing more
    record = logging.getLogger("probe").makeRecord("probe", logging.INFO, "f", 1, "m", None, None)
    assert record.submission_id == "raysubmit_y"
    factory = logging.getLogRecordFactory()
    assert not isinstance(factory.previous, type(factory))  # type: ignore[attr-defined]
