"""The catalogue of submittable jobs (cluster.ground.job_specs) and the submit side's plain helpers."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cluster.ground import job_specs
from cluster.ground.job_specs import (
    DEFAULT_EXCLUDES,
    JOB_KINDS,
    entrypoint,
    job_env_vars,
    job_runtime_env,
    kind_of_entrypoint,
    submission_id,
)
from cluster.ground.settings import Settings
from cluster.top.commands.backfill import is_uri
from cluster.top.jobs_cli import (
    DEFAULT_JOB_SERVER,
    JobServerError,
    job_server_address,
    local_auth_token,
    repository_root,
    submitted_env,
)
from cluster.top.platform_state import PlatformState, state_path

ROOT = Path(__file__).resolve().parents[2]


def test_every_kind_is_a_runnable_job_package() -> None:
    assert {"collect", "embed", "recluster", "reindex", "backfill", "profiles"} <= set(JOB_KINDS)
    for kind in JOB_KINDS:
        assert (ROOT / "jobs" / kind / "__main__.py").is_file(), kind


def test_entrypoint_quotes_each_argument() -> None:
    assert entrypoint("embed") == "python -m jobs.embed"
    args = ["--file", "s3://b/it's here.jsonl", "--source", "a;rm -rf /", "$HOME"]
    line = entrypoint("backfill", args)
    assert line.startswith("python -m jobs.backfill ")
    assert shlex.split(line) == ["python", "-m", "jobs.backfill", *args]
    assert kind_of_entrypoint(line) == "backfill"
    assert kind_of_entrypoint("sleep 60") is None
    assert kind_of_entrypoint("python -m jobs.nope") is None


def test_entrypoint_refuses_an_unknown_kind_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown job kind 'ingest'.*collect, embed, recluster"):
        entrypoint("ingest")
    with pytest.raises(TypeError, match=r"shlex\.split"):
        entrypoint("embed", "--full")  # type: ignore[arg-type]


def test_submission_ids_random_or_from_a_key() -> None:
    first, second = submission_id("embed"), submission_id("embed")
    assert re.fullmatch(r"pulse-embed-\d{8}T\d{6}Z-[0-9a-f]{6}", first)
    assert first != second
    keyed = submission_id("collect", "hour-2026-12-07T04")
    assert keyed == submission_id("collect", "hour-2026-12-07T04")
    assert re.fullmatch(r"pulse-collect-[0-9a-f]{16}", keyed)
    assert keyed != submission_id("collect", "hour-2026-12-07T05")
    assert keyed.split("-")[-1] != submission_id("embed", "hour-2026-12-07T04").split("-")[-1]
    with pytest.raises(ValueError, match="valid kinds"):
        submission_id("nope")
    with pytest.raises(ValueError, match="key is empty"):
        submission_id("embed", "")


def test_job_env_vars_pass_settings_but_never_the_ray_address() -> None:
    environ = {
        "PULSE_DATABASE__URL": "postgresql+psycopg://u:p@db/pulse",
        "PULSE_STORAGE__URI": "s3://bucket/pulse",
        "PULSE_RAY__NAMESPACE": "prod",
        "PULSE_RAY__ADDRESS": "ray://head:10001",
        "pulse_ray__address": "auto",  # pydantic-settings reads names case-insensitively
        "PULSE_JOBS__ADDRESS": "http://head:8265",
        "HOME": "/root",
        "RAY_AUTH_TOKEN": "secret",
        "PULSEX": "not a setting",
    }
    assert job_env_vars(environ) == {
        "PULSE_DATABASE__URL": "postgresql+psycopg://u:p@db/pulse",
        "PULSE_RAY__NAMESPACE": "prod",
        "PULSE_STORAGE__URI": "s3://bucket/pulse",
    }


def test_runtime_env_uploads_the_working_dir_without_local_state() -> None:
    env = job_runtime_env(working_dir="/repo", env_vars={"PULSE_LOG_LEVEL": "DEBUG"})
    assert env["working_dir"] == "/repo"
    assert {".venv", "var", ".git"} <= set(env["excludes"])
    assert env["excludes"] == list(DEFAULT_EXCLUDES)
    assert env["env_vars"] == {
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PULSE_LOG_LEVEL": "DEBUG",
    }
    uploaded = job_runtime_env(working_dir="gcs://_ray_pkg_abc.zip", env_vars={})
    assert uploaded["working_dir"] == "gcs://_ray_pkg_abc.zip" and "excludes" not in uploaded
    image = job_runtime_env(working_dir=None, env_vars={}, excludes=("x",))
    assert "working_dir" not in image and "excludes" not in image
    assert job_runtime_env(working_dir="/r", env_vars={}, excludes=("a", "b"))["excludes"] == ["a", "b"]
    with pytest.raises(TypeError, match="strings to strings"):
        job_runtime_env(working_dir="/r", env_vars={"PULSE_X": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="working_dir is empty"):
        job_runtime_env(working_dir=" ", env_vars={})


def test_job_specs_is_pure() -> None:
    source = Path(job_specs.__file__).read_text()
    assert "import ray" not in source and "from ray" not in source


def test_job_server_address_order(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path)  # type: ignore[call-arg]
    assert job_server_address(settings, None) == (DEFAULT_JOB_SERVER, "the default")
    PlatformState(dashboard_url="http://127.0.0.1:9265").save(state_path(tmp_path))
    url, origin = job_server_address(settings, None)
    assert url == "http://127.0.0.1:9265" and "recorded by `pulse up`" in origin
    configured = Settings(_env_file=None, var_dir=tmp_path, jobs={"address": "http://h:8265"})  # type: ignore[call-arg]
    assert job_server_address(configured, None) == ("http://h:8265", "PULSE_JOBS__ADDRESS")
    assert job_server_address(configured, "http://x:1") == ("http://x:1", "--address")


def test_submitted_env_makes_storage_absolute_and_passes_the_recorded_database(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path)  # type: ignore[call-arg]
    PlatformState(database_url="postgresql+psycopg://rec/pulse").save(state_path(tmp_path))
    env = submitted_env(
        settings,
        {"PULSE_LOG_LEVEL": "DEBUG", "PULSE_RAY__ADDRESS": "auto"},
        {"PULSE_CMS__JWT_SECRET": "from-dotenv", "PULSE_LOG_LEVEL": "INFO"},
    )
    assert env["PULSE_LOG_LEVEL"] == "DEBUG"  # the process's variables win over .env
    assert env["PULSE_CMS__JWT_SECRET"] == "from-dotenv"
    assert env["PULSE_DATABASE__URL"] == "postgresql+psycopg://rec/pulse"
    assert Path(env["PULSE_STORAGE__URI"]).is_absolute()
    assert "PULSE_RAY__ADDRESS" not in env
    explicit = submitted_env(settings, {"PULSE_DATABASE__URL": "postgresql+psycopg://mine/x"}, {})
    assert explicit["PULSE_DATABASE__URL"] == "postgresql+psycopg://mine/x"


def test_repository_root_is_found_from_a_subfolder_or_refused(tmp_path: Path) -> None:
    assert repository_root(ROOT / "jobs" / "embed") == ROOT
    with pytest.raises(JobServerError, match="--working-dir"):
        repository_root(tmp_path)


def test_local_auth_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    assert local_auth_token({"RAY_AUTH_TOKEN": " xyz "}) == "xyz"
    assert local_auth_token({"RAY_AUTH_TOKEN_PATH": str(token)}) == "abc"
    assert local_auth_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "none")}) is None


def test_backfill_tells_uris_from_paths() -> None:
    assert is_uri("s3://bucket/dump.jsonl") and is_uri("file:///tmp/x.csv")
    assert not is_uri("dumps/2019.jsonl") and not is_uri("C://x") and not is_uri("/abs/x.jsonl")


def test_submit_passes_the_job_its_arguments() -> None:
    from cluster.top.jobs_cli import submit

    def parsed(*argv: str) -> tuple[str, tuple[str, ...], bool]:
        params = submit.make_context("submit", list(argv)).params
        return params["kind"], params["args"], params["wait"]

    assert parsed("embed", "--full", "--wait") == ("embed", ("--full",), True)
    assert parsed("reindex", "--", "--shards", "4", "--wait") == (
        "reindex",
        ("--shards", "4", "--wait"),
        False,
    )
    assert parsed("backfill", "--file", "a b.jsonl", "--no-embed") == (
        "backfill",
        ("--file", "a b.jsonl", "--no-embed"),
        False,
    )
