"""The committed Serve config is what the application builders generate (`pulse serve-config`), and each
deployment's options (replicas or autoscaling, CPUs, health checks, shutdown, logs) come from the args, so
`pulse up` and `serve deploy` give them alike. No Ray is started: applications are only built."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

from cluster.ground.settings import Settings
from cluster.top import deploy_args
from cluster.top.deploy_args import PLACEHOLDERS, deployed_apps
from cluster.top.serve_build import COMMITTED_CONFIG, EXIT_DRIFT, drift, render, serve_config_command
from cluster.top.serve_config import cms_app_args, search_app_args, trends_app_args
from serve_apps.search.app import app_builder as search_builder
from serve_apps.trends.app import app_builder as trends_builder

DB = "postgresql://pulse@127.0.0.1/pulse"


@pytest.fixture(scope="module")
def fresh() -> str:
    return render()


def deployments(app: Any) -> dict[str, Any]:
    """The deployments of a built application by name (Serve has no public accessor for the bound ones)."""
    from ray.serve._private.build_app import build_app

    return {d.name: d for d in build_app(app, name="app").deployments}


def test_committed_config_is_what_the_builders_generate(fresh: str) -> None:
    diff = drift(COMMITTED_CONFIG, fresh)
    assert diff is None, f"serve_apps/serve_config.yaml is stale: run `pulse serve-config`\n{diff}"


def test_a_changed_arg_is_a_drift(fresh: str) -> None:
    apps = tuple(
        dataclasses.replace(app, args=app.args.model_copy(update={"max_replicas": 3}))
        if app.name == "topics"
        else app
        for app in deployed_apps()
    )
    diff = drift(COMMITTED_CONFIG, render(apps))
    assert diff is not None
    changed = [
        line[0] + line[1:].strip()
        for line in diff.splitlines()
        if line[:1] in ("+", "-") and not line.startswith(("+++", "---"))
    ]
    # The arg and the deployment option the builder derives from it, both in the topics application only.
    assert changed == ["-max_replicas: 2", "+max_replicas: 3", "-max_replicas: 2", "+max_replicas: 3"], diff
    assert diff.count("@@ -") == 2


def test_a_changed_builder_option_is_a_drift(monkeypatch: pytest.MonkeyPatch, fresh: str) -> None:
    from serve_apps.trends import app as trends_app

    real = trends_app.deployment_options

    def slower_health_checks(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**real(*args, **kwargs), "health_check_period_s": 60.0}

    monkeypatch.setattr(trends_app, "deployment_options", slower_health_checks)
    diff = drift(COMMITTED_CONFIG, render())
    assert diff is not None and "+    health_check_period_s: 60.0" in diff, diff


def test_check_command_exits_nonzero_with_a_diff_on_a_stale_file(tmp_path: Path, fresh: str) -> None:
    ok = CliRunner().invoke(serve_config_command, ["--check"], standalone_mode=False)
    assert ok.exception is None and ok.return_value == 0, ok.output
    stale = tmp_path / "serve_config.yaml"
    stale.write_text(fresh.replace("target_ongoing_requests: 2.0", "target_ongoing_requests: 5.0", 1))
    result = CliRunner().invoke(
        serve_config_command, ["--check", "--output", str(stale)], standalone_mode=False
    )
    assert result.return_value == EXIT_DRIFT
    assert "-      target_ongoing_requests: 5.0" in result.output
    assert "+      target_ongoing_requests: 2.0" in result.output
    written = CliRunner().invoke(serve_config_command, ["--output", str(stale)], standalone_mode=False)
    assert written.return_value == 0 and stale.read_text() == fresh


def test_generated_config_is_valid_and_holds_only_placeholders_for_secrets(fresh: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    assert fresh.startswith("# Ray Serve config") and "DO NOT EDIT" in fresh
    config = yaml.safe_load(fresh)
    ServeDeploySchema.model_validate(config)
    apps = {app["name"]: app for app in config["applications"]}
    assert [(a["name"], a["route_prefix"]) for a in config["applications"]] == [
        ("search", "/"),
        ("cms", "/v1/cms"),
        ("trends", "/v1/trends"),
        ("topics", "/v1/topics"),
    ]
    assert [d["name"] for d in apps["search"]["deployments"]] == ["QueryEmbedder", "SearchIngress"]
    for app in config["applications"]:
        assert app["args"]["database_url"] == deploy_args.DATABASE_URL_PLACEHOLDER
        for d in app["deployments"]:
            assert {"max_ongoing_requests", "ray_actor_options", "health_check_period_s"} <= set(d)
            assert {"health_check_timeout_s", "graceful_shutdown_timeout_s", "logging_config"} <= set(d)
            assert ("num_replicas" in d) != ("autoscaling_config" in d), d
    assert apps["search"]["args"]["jwt_secret"] == apps["cms"]["args"]["jwt_secret"]
    assert set(PLACEHOLDERS) == {deploy_args.DATABASE_URL_PLACEHOLDER, deploy_args.JWT_SECRET_PLACEHOLDER}
    assert all(p in fresh for p in PLACEHOLDERS)


def test_a_fixed_count_is_num_replicas_and_a_range_autoscales() -> None:
    fixed = deployments(search_builder({"database_url": DB}))
    assert fixed["QueryEmbedder"].num_replicas == 1
    assert fixed["QueryEmbedder"]._deployment_config.autoscaling_config is None
    ranged = deployments(
        search_builder(
            {
                "database_url": DB,
                "embedder_replicas": 2,
                "embedder_max_replicas": 5,
                "target_ongoing_requests": 8,
                "ingress_num_cpus": 0.25,
                "health_check_timeout_s": 7,
                "graceful_shutdown_timeout_s": 3,
            }
        )
    )
    auto = ranged["QueryEmbedder"]._deployment_config.autoscaling_config
    assert (auto.min_replicas, auto.max_replicas, auto.target_ongoing_requests) == (2, 5, 8.0)
    ingress = ranged["SearchIngress"]
    assert ingress.num_replicas == 1 and ingress.ray_actor_options["num_cpus"] == 0.25
    assert ingress._deployment_config.health_check_timeout_s == 7.0
    assert ingress._deployment_config.graceful_shutdown_timeout_s == 3.0


def test_a_maximum_below_the_replicas_is_refused_saying_what_to_set() -> None:
    with pytest.raises(ValidationError, match=r"max_replicas \(1\) is below replicas \(2\): set it to 2"):
        trends_builder({"database_url": DB, "replicas": 2, "max_replicas": 1})


def test_settings_reach_every_deployment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "PULSE_SERVE__INGRESS_MAX_REPLICAS": "3",
        "PULSE_SERVE__HEALTH_CHECK_PERIOD_S": "4",
        "PULSE_SERVE__TARGET_ONGOING_REQUESTS": "16",
        "PULSE_CMS__MAX_REPLICAS": "2",
        "PULSE_TRENDS__REPLICAS": "2",
        "PULSE_VAR_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    from serve_apps.cms.app import app_builder as cms_builder

    built = {
        **deployments(search_builder(search_app_args(settings, DB))),
        **deployments(cms_builder(cms_app_args(settings, DB))),
        **deployments(trends_builder(trends_app_args(settings, DB))),
    }
    ingress = built["SearchIngress"]._deployment_config.autoscaling_config
    assert (ingress.min_replicas, ingress.max_replicas, ingress.target_ongoing_requests) == (1, 3, 16.0)
    assert built["QueryEmbedder"].num_replicas == 1
    cms = built["CmsIngress"]._deployment_config.autoscaling_config
    assert (cms.min_replicas, cms.max_replicas) == (1, 2)
    assert built["TrendsIngress"].num_replicas == 2
    assert {d._deployment_config.health_check_period_s for d in built.values()} == {4.0}


def test_laptop_defaults_reserve_what_they_did(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """docs/architecture.md "Resources on the smallest machine": the embedder 0.1 CPU, ingresses 0, one
    replica each, no autoscaling."""
    monkeypatch.setenv("PULSE_VAR_DIR", str(tmp_path))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    from serve_apps.cms.app import app_builder as cms_builder

    built = {
        **deployments(search_builder(search_app_args(settings, DB))),
        **deployments(cms_builder(cms_app_args(settings, DB))),
        **deployments(trends_builder(trends_app_args(settings, DB))),
    }
    cpus = {name: d.ray_actor_options["num_cpus"] for name, d in built.items()}
    assert cpus == {"QueryEmbedder": 0.1, "SearchIngress": 0.0, "CmsIngress": 0.0, "TrendsIngress": 0.0}
    assert all(d.num_replicas == 1 for d in built.values())
    assert all(d._deployment_config.autoscaling_config is None for d in built.values())
