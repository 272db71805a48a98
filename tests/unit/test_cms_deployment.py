"""The CMS deployment as its settings shape it (no Ray started: the application is only built)."""

from __future__ import annotations

from typing import Any

import pytest

from cluster.ground.settings import Settings
from cluster.top.serve_config import cms_app_args
from serve_apps.cms.app import app_builder

ARGS = {"database_url": "postgresql://pulse@127.0.0.1/pulse", "jwt_secret": "s" * 40, "scheduler": False}


def deployment_of(args: dict[str, Any]) -> Any:
    return app_builder(args)._bound_deployment  # Serve has no public accessor for it


def test_routes_run_on_the_replica_loop_by_default() -> None:
    options = deployment_of(ARGS).ray_actor_options
    assert options["runtime_env"]["env_vars"] == {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}
    assert options["num_cpus"] == 0


def test_user_code_thread_and_replicas_are_passed_to_serve() -> None:
    deployment = deployment_of({**ARGS, "user_code_thread": True, "replicas": 3})
    assert "runtime_env" not in deployment.ray_actor_options  # Serve's default: a separate thread
    assert deployment.num_replicas == 3


def test_settings_reach_the_builder_args(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("PULSE_CMS__REPLICAS", "2")
    monkeypatch.setenv("PULSE_CMS__USER_CODE_THREAD", "true")
    monkeypatch.setenv("PULSE_CMS__JWT_SECRET", "k" * 40)
    monkeypatch.setenv("PULSE_VAR_DIR", str(tmp_path))
    args = cms_app_args(Settings(_env_file=None), "postgresql://pulse@127.0.0.1/pulse")  # type: ignore[call-arg]
    assert (args["replicas"], args["user_code_thread"]) == (2, True)
    assert deployment_of(args).num_replicas == 2


def test_zero_replicas_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_CMS__REPLICAS", "0")
    with pytest.raises(ValueError, match="replicas"):
        Settings(_env_file=None)  # type: ignore[call-arg]
