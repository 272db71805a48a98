"""Logging at each edge: the console format shows a record's fields; Ray's workers get JSON logging
through the job config; Serve's logging config from settings matches the committed Serve config."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.ground.runtime import ConsoleFormatter, init_ray, record_fields, worker_logging_config
from cluster.ground.settings import Settings
from cluster.top.serve_config import serve_logging_config

ROOT = Path(__file__).resolve().parents[2]


def _record(msg: str = "retrying", exc_info: Any = None, **extra: Any) -> logging.LogRecord:
    logger = logging.getLogger("jobs.collect.fetch")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 1, msg, (), exc_info, extra=extra)


def test_console_line_ends_with_the_records_fields() -> None:
    line = ConsoleFormatter().format(_record(url="https://a.example/feed?a=1", attempt=2, error=None))
    assert line.endswith(
        " INFO jobs.collect.fetch: retrying url=https://a.example/feed?a=1 attempt=2 error=None"
    )


def test_console_values_with_spaces_or_quotes_are_json_quoted() -> None:
    line = ConsoleFormatter().format(
        _record(reason='said "no"', refused=["10.0.0.1", "::1"], empty="", expr="a=b", word="ok")
    )
    fields = line.split("retrying ", 1)[1]
    assert fields == ('reason="said \\"no\\"" refused="[\'10.0.0.1\', \'::1\']" empty="" expr=a=b word=ok')


def test_console_line_without_fields_is_the_plain_line() -> None:
    line = ConsoleFormatter().format(_record("fetched %d pages"))
    assert line.endswith(" INFO jobs.collect.fetch: fetched %d pages")
    assert record_fields(_record()) == {}


def test_console_fields_stay_on_the_first_line_before_a_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("fetch failed", exc_info=sys.exc_info(), url="https://a.example/")
    first, *rest = ConsoleFormatter().format(record).splitlines()
    assert first.endswith("fetch failed url=https://a.example/")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"


def test_worker_logging_config_is_json_with_the_logger_name() -> None:
    config = worker_logging_config("debug")
    assert (config.encoding, config.log_level, config.additional_log_standard_attrs) == (
        "JSON",
        "DEBUG",
        ["name"],
    )


def _spy_init(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import ray

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 1.0})
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return calls


@pytest.mark.parametrize("address", [None, "auto", "10.0.0.2:6379"])
def test_init_ray_gives_the_jobs_workers_json_logging_not_the_driver(
    monkeypatch: pytest.MonkeyPatch, address: str | None
) -> None:
    calls = _spy_init(monkeypatch)
    init_ray(Settings(_env_file=None).ray, address=address, log_level="WARNING")  # type: ignore[call-arg]
    (kwargs,) = calls
    # Not ray.init(logging_config=...): that would add a JSON handler to this process's root logger too.
    assert "logging_config" not in kwargs
    config = kwargs["job_config"].py_logging_config
    assert (config.encoding, config.log_level) == ("JSON", "WARNING")
    module, _, name = kwargs["runtime_env"]["worker_process_setup_hook"].rpartition(".")
    quiet = getattr(importlib.import_module(module), name)
    logging.getLogger("faiss.loader").setLevel(logging.NOTSET)
    quiet()
    assert logging.getLogger("faiss.loader").level == logging.WARNING


def test_init_ray_through_ray_client_passes_no_job_config(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy_init(monkeypatch)
    init_ray(Settings(_env_file=None).ray, address="ray://head:10001")  # type: ignore[call-arg]
    (kwargs,) = calls
    assert kwargs["address"] == "ray://head:10001" and "job_config" not in kwargs


def test_committed_serve_config_logs_as_pulse_up_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve.schema import ServeDeploySchema

    monkeypatch.delenv("PULSE_LOG_LEVEL", raising=False)
    monkeypatch.delenv("PULSE_SERVE__ACCESS_LOG", raising=False)
    config = yaml.safe_load((ROOT / "serve_apps" / "serve_config.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    expected = serve_logging_config(Settings(_env_file=None))  # type: ignore[call-arg]
    assert config["logging_config"] == expected
    assert [app["logging_config"] for app in config["applications"]] == [expected] * len(
        config["applications"]
    )
