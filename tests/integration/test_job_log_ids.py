"""The JSON log lines of a submitted job's workers carry its submission id beside Ray's ids.

``ray job submit`` hands the driver its job config (with the submission id in the metadata) in
``RAY_JOB_CONFIG_JSON_ENV_VAR``, and ``ray.init`` in the driver merges it; the probe runs with that
variable set as the job supervisor sets it, starts Ray through ``init_ray`` and reads its workers' log
files (``tests.support.logging_probe``)."""

from __future__ import annotations

import json

import pytest

from tests.support.probe_run import run_probe

SUBMISSION = "raysubmit_metricsprobe01"


@pytest.mark.integration
def test_worker_and_actor_lines_carry_the_submission_id(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"runtime_env": {}, "metadata": {"job_submission_id": SUBMISSION, "job_name": SUBMISSION}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(config))
    result = run_probe("tests.support.logging_probe", timeout_s=300, clear_pulse_env=True)

    task = json.loads(result["task"])
    assert task["submission_id"] == SUBMISSION
    assert task["job_id"] and task["worker_id"] and task["task_id"] and task["node_id"]
    actor = json.loads(result["actor"])
    assert actor["submission_id"] == SUBMISSION
    assert actor["actor_id"] and actor["job_id"] == task["job_id"]
