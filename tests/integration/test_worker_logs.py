"""A job's log lines carry their fields: a Ray task and a Ray actor in a Ray started by ``init_ray`` write
one JSON object a line, with the ``extra`` fields beside the message, while the driver keeps its console
format. Runs in a subprocess (``tests.support.logging_probe``): the test session's Ray is started without
Pulse's logging config, and one process holds one Ray."""

from __future__ import annotations

import json

from tests.support.logging_probe import ACTOR_FIELDS, TASK_FIELDS
from tests.support.probe_run import run_probe


def test_task_and_actor_log_lines_are_json_with_their_fields() -> None:
    result = run_probe("tests.support.logging_probe", timeout_s=300, clear_pulse_env=True)

    task = json.loads(result["task"])
    assert task["message"] == "retrying" and task["levelname"] == "INFO"
    assert task["name"] == "jobs.collect.fetch"
    assert {k: task[k] for k in TASK_FIELDS} == TASK_FIELDS
    assert task["job_id"] and task["worker_id"] and task["task_name"] == "log_from_task"
    assert not result["noise_logged"]  # the console's noisy loggers are held at WARNING in workers too

    actor = json.loads(result["actor"])
    assert actor["message"] == "actor probe" and actor["levelname"] == "WARNING"
    assert {k: actor[k] for k in ACTOR_FIELDS} == ACTOR_FIELDS
    assert actor["actor_id"] and actor["name"] == "actors.probe"

    # The driver's own lines stay on the console format: no JSON handler was added to its root logger.
    assert result["root_formatters"] == ["ConsoleFormatter"]
